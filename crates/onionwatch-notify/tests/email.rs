//! The e-mail notifier against a real SMTP server (aiosmtpd) on
//! 127.0.0.1: plain, STARTTLS and implicit TLS, with authentication.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use onionwatch_notify::Notifiers;
use onionwatch_test_support::smtp::{SmtpSink, SmtpTls};

/// A self-signed certificate for 127.0.0.1 and its key, in `dir`.
fn cert(dir: &Path) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

fn firing() -> onionwatch_notify::Group {
    group(
        "{name=\"shop\"}",
        vec![alert("OnionServiceUnreachable", "critical", None)],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_smtp_delivers_a_readable_message() {
    let Some(smtp) = SmtpSink::start(SmtpTls::None, None, None) else {
        return;
    };
    let n = Notifiers::start(vec![config(&format!(
        "type: email\nname: mail\nsmtp_host: 127.0.0.1\nsmtp_port: {}\ntls: none\nfrom: onionwatch <alerts@example.org>\nto: [oncall@example.org, Ops <ops@example.org>]\nexternal_url: http://dash.example/\n",
        smtp.addr.port()
    ))])
    .unwrap();
    n.notify(group(
        "{name=\"shop\"}",
        vec![
            alert("OnionServiceUnreachable", "critical", None),
            alert("DescriptorUnavailable", "warning", Some(60)),
        ],
    ));
    let m = &smtp.wait_messages(1)[0];
    assert_eq!(m["from"], "alerts@example.org");
    assert_eq!(
        m["to"],
        serde_json::json!(["oncall@example.org", "ops@example.org"])
    );
    assert_eq!(m["login"], serde_json::Value::Null);
    assert_eq!(m["tls"], false);
    // EHLO with this host's name (lettre's default is an address literal).
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(m["helo"], host.trim());
    // Long headers are folded: unfold them.
    let data = m["data"].as_str().unwrap().replace("\r\n ", " ");
    for needle in [
        "Subject: [FIRING:1] DescriptorUnavailable, OnionServiceUnreachable (name=shop project=news)",
        "Content-Type: text/plain",
        "FIRING: OnionServiceUnreachable",
        "RESOLVED: DescriptorUnavailable",
        "name=shop",
        "project=news",
        "summary: OnionServiceUnreachable on shop",
        "since 2024-05-01T12:00:00.000Z",
        "until 2024-05-01T12:01:00.000Z",
        "Dashboard: http://dash.example/",
    ] {
        assert!(data.contains(needle), "{needle:?} missing:\n{data}");
    }
    n.shutdown(Duration::from_secs(5)).await;
    assert_eq!(n.counts("mail"), Some((1, 0, 0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_with_authentication_and_the_password_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = cert(dir.path());
    let Some(smtp) = SmtpSink::start(SmtpTls::Starttls, Some((&c, &k)), Some("alerts:pa55word"))
    else {
        return;
    };
    // Only this test reads or writes this variable.
    std::env::set_var("OW_TEST_SMTP_PASSWORD", "pa55word");
    let n = Notifiers::start(vec![config(&format!(
        "type: email\nname: mail\nsmtp_host: 127.0.0.1\nsmtp_port: {}\nusername: alerts\npassword: {{env: OW_TEST_SMTP_PASSWORD}}\nca_file: {}\nfrom: alerts@example.org\nto: [oncall@example.org]\n",
        smtp.addr.port(),
        c.display()
    ))])
    .unwrap();
    n.notify(firing());
    let m = &smtp.wait_messages(1)[0];
    assert_eq!(m["login"], "alerts");
    assert_eq!(m["tls"], true);
    assert!(m["data"]
        .as_str()
        .unwrap()
        .contains("[FIRING:1] OnionServiceUnreachable"));
    n.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_with_authentication_and_the_password_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = cert(dir.path());
    let Some(smtp) = SmtpSink::start(SmtpTls::Tls, Some((&c, &k)), Some("alerts:pa55word")) else {
        return;
    };
    let pw = dir.path().join("password");
    std::fs::write(&pw, "pa55word\n").unwrap();
    let yaml = |password: &Path| {
        format!(
            "type: email\nname: mail\nsmtp_host: 127.0.0.1\nsmtp_port: {}\ntls: tls\nusername: alerts\npassword: {{file: {}}}\nca_file: {}\nfrom: alerts@example.org\nto: [oncall@example.org]\nmax_attempts: 1\ntimeout: 2s\n",
            smtp.addr.port(),
            password.display(),
            c.display()
        )
    };
    let n = Notifiers::start(vec![config(&yaml(&pw))]).unwrap();
    n.notify(firing());
    let m = &smtp.wait_messages(1)[0];
    assert_eq!(m["login"], "alerts");
    assert_eq!(m["tls"], true);
    n.shutdown(Duration::from_secs(5)).await;

    // A wrong password: refused and counted (aiosmtpd then stops
    // answering on an implicit TLS session: the timeout ends it).
    let bad = dir.path().join("bad");
    std::fs::write(&bad, "s3cret-but-wrong").unwrap();
    let n = Notifiers::start(vec![config(&yaml(&bad))]).unwrap();
    n.notify(firing());
    wait_counts(&n, "mail", (0, 1, 1));
    assert_eq!(smtp.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = cert(dir.path());
    let Some(smtp) = SmtpSink::start(SmtpTls::Starttls, Some((&c, &k)), None) else {
        return;
    };
    // No ca_file: the self-signed certificate is not trusted, and
    // STARTTLS is required, so nothing goes out in clear.
    let n = Notifiers::start(vec![config(&format!(
        "type: email\nname: mail\nsmtp_host: 127.0.0.1\nsmtp_port: {}\nfrom: alerts@example.org\nto: [oncall@example.org]\nmax_attempts: 1\ntimeout: 2s\n",
        smtp.addr.port()
    ))])
    .unwrap();
    n.notify(firing());
    wait_counts(&n, "mail", (0, 1, 1));
    assert!(smtp.messages().is_empty());
}

#[test]
fn email_configs_are_checked_at_start() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let err = |yaml: &str| {
        Notifiers::start(vec![config(yaml)])
            .map(|_| ())
            .unwrap_err()
            .to_string()
    };
    let base = "type: email\nsmtp_host: mail.example.org\nfrom: a@example.org\n";
    assert!(err(base).contains("to: required"));
    let e = err(&format!("{base}to: [not an address]\n"));
    assert!(e.contains("not an e-mail address"), "{e}");
    let e = err(&format!("{base}to: [b@example.org]\nusername: u\n"));
    assert!(e.contains("password: required"), "{e}");
    let e = err(&format!(
        "{base}to: [b@example.org]\nusername: u\npassword: {{file: /nonexistent/pw}}\n"
    ));
    assert!(e.contains("/nonexistent/pw"), "{e}");
    let e = err(&format!("{base}to: [b@example.org]\nurl: http://x/\n"));
    assert!(
        e.contains("url: not used by notifiers of type email"),
        "{e}"
    );
}
