//! TLS, mutual TLS, bearer and basic authentication, checked with a real
//! client (curl) against the real server.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use onionwatch_metrics::{Collect, Family};
use onionwatch_server::{
    router, start, AuthConfig, BasicUser, EndpointConfig, Registry, TlsConfig,
};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use sha2::{Digest, Sha256};

struct Up;
impl Collect for Up {
    fn collect(&self, out: &mut Vec<Family>) {
        let mut f = Family::gauge("onionwatch_secure_test_up", "Test series.");
        f.push(&[], 1.0);
        out.push(f);
    }
}

type Ca = CertifiedIssuer<'static, KeyPair>;

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// Write a leaf certificate signed by `ca` and return (cert, key) paths.
fn leaf(dir: &Path, name: &str, ca: &Ca, client: bool) -> (PathBuf, PathBuf) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    if client {
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    }
    let cert = params.signed_by(&key, ca).unwrap();
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k)
}

fn write_ca(dir: &Path, name: &str, ca: &Ca) -> PathBuf {
    let p = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&p, ca.pem()).unwrap();
    p
}

/// curl's HTTP status, or its exit code as a negative number when it failed
/// before HTTP (TLS refused, connection reset).
fn curl(url: &str, args: &[&str]) -> i32 {
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .args(args)
        .arg(url)
        .output()
        .expect("curl is installed (apt-get install curl)");
    let code: i32 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    if out.status.success() {
        code
    } else {
        -out.status.code().unwrap_or(1)
    }
}

fn sha_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_mtls_bearer_and_basic_succeed_with_credentials_and_fail_without() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server_ca = ca("server ca");
    let client_ca = ca("client ca");
    let stranger_ca = ca("stranger ca");
    let (cert, key) = leaf(d, "server", &server_ca, false);
    let (client_cert, client_key) = leaf(d, "client", &client_ca, true);
    let (bad_cert, bad_key) = leaf(d, "stranger", &stranger_ca, true);
    let server_ca_pem = write_ca(d, "server", &server_ca);
    let config = EndpointConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(TlsConfig {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: Some(write_ca(d, "client", &client_ca)),
        }),
        auth: AuthConfig {
            bearer_token_sha256: vec![sha_hex("scrape-token")],
            basic: vec![BasicUser {
                username: "prometheus".into(),
                password_bcrypt: bcrypt::hash("hunter2", 4).unwrap(),
            }],
        },
        auth_file: None,
        i_understand_the_risk: false,
        allowed_hosts: Vec::new(),
        ..EndpointConfig::default()
    };
    let registry = Arc::new(Registry::default());
    registry.register(Arc::new(Up));
    let server = start(&config, router(registry)).await.unwrap();
    let url = format!("https://localhost:{}/metrics", server.local_addr().port());
    let resolve = format!("localhost:{}:127.0.0.1", server.local_addr().port());
    let ca_arg = server_ca_pem.to_str().unwrap();
    let (cc, ck) = (client_cert.to_str().unwrap(), client_key.to_str().unwrap());

    let base = ["--resolve", &resolve, "--cacert", ca_arg];
    let with = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        // curl blocks: hand this worker's tasks to the other one meanwhile.
        tokio::task::block_in_place(|| curl(&url, &a))
    };
    let (bc, bk) = (bad_cert.to_str().unwrap(), bad_key.to_str().unwrap());
    let bearer = "Authorization: Bearer scrape-token";
    let results = [
        (
            "mtls+bearer",
            with(&["--cert", cc, "--key", ck, "-H", bearer]),
        ),
        (
            "mtls+lowercase bearer",
            with(&[
                "--cert",
                cc,
                "--key",
                ck,
                "-H",
                "Authorization: bearer scrape-token",
            ]),
        ),
        (
            "mtls+basic",
            with(&["--cert", cc, "--key", ck, "-u", "prometheus:hunter2"]),
        ),
        ("mtls, no credentials", with(&["--cert", cc, "--key", ck])),
        (
            "mtls, wrong token",
            with(&[
                "--cert",
                cc,
                "--key",
                ck,
                "-H",
                "Authorization: Bearer nope",
            ]),
        ),
        (
            "mtls, wrong password",
            with(&["--cert", cc, "--key", ck, "-u", "prometheus:hunter3"]),
        ),
        ("bearer, no client cert", with(&["-H", bearer])),
        (
            "bearer, foreign client cert",
            with(&["--cert", bc, "--key", bk, "-H", bearer]),
        ),
    ];
    let get = |name: &str| results.iter().find(|(n, _)| *n == name).unwrap().1;
    assert_eq!(get("mtls+bearer"), 200, "{results:?}");
    assert_eq!(get("mtls+lowercase bearer"), 200, "{results:?}");
    assert_eq!(get("mtls+basic"), 200, "{results:?}");
    assert_eq!(get("mtls, no credentials"), 401, "{results:?}");
    assert_eq!(get("mtls, wrong token"), 401, "{results:?}");
    assert_eq!(get("mtls, wrong password"), 401, "{results:?}");
    // Without an acceptable client certificate the TLS handshake fails.
    assert!(get("bearer, no client cert") < 0, "{results:?}");
    assert!(get("bearer, foreign client cert") < 0, "{results:?}");

    // Reload: a certificate from another CA replaces the old one.
    let new_ca = ca("new server ca");
    let (new_cert, new_key) = leaf(d, "server-new", &new_ca, false);
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    server.reload().unwrap();
    let new_ca_pem = write_ca(d, "new-server", &new_ca);
    let fetch = |ca: &Path| {
        let ca = ca.to_str().unwrap();
        let args = [
            "--resolve",
            &resolve,
            "--cacert",
            ca,
            "--cert",
            cc,
            "--key",
            ck,
            "-H",
            bearer,
        ];
        tokio::task::block_in_place(|| curl(&url, &args))
    };
    let (old, new) = (fetch(&server_ca_pem), fetch(&new_ca_pem));
    assert!(old < 0, "the old CA must no longer verify: {old}");
    assert_eq!(new, 200);
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_loopback_serves_and_exposed_addresses_need_tls_and_auth() {
    let registry = Arc::new(Registry::default());
    registry.register(Arc::new(Up));
    let config = EndpointConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..EndpointConfig::default()
    };
    let server = start(&config, router(registry.clone())).await.unwrap();
    let url = format!("http://{}/metrics", server.local_addr());
    let code = tokio::task::spawn_blocking(move || curl(&url, &[]))
        .await
        .unwrap();
    assert_eq!(code, 200);
    server.shutdown(Duration::from_secs(5)).await.unwrap();

    // Refused before binding anything.
    let exposed = EndpointConfig {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..EndpointConfig::default()
    };
    let err = start(&exposed, router(registry)).await.unwrap_err();
    assert!(err.to_string().contains("not a loopback address"), "{err}");
    let tls_only = EndpointConfig {
        tls: Some(TlsConfig {
            cert: "c".into(),
            key: "k".into(),
            client_ca: None,
        }),
        ..exposed.clone()
    };
    assert!(
        tls_only.check().is_err(),
        "TLS without authentication is not enough"
    );
    let protected = EndpointConfig {
        auth: AuthConfig {
            bearer_token_sha256: vec![sha_hex("t")],
            ..AuthConfig::default()
        },
        ..tls_only
    };
    protected.check().unwrap();
    let overridden = EndpointConfig {
        i_understand_the_risk: true,
        ..exposed
    };
    overridden.check().unwrap();
}

/// `GET path` with these header lines: (status, body).
fn raw_get(addr: std::net::SocketAddr, target: &str, headers: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    (status, body.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_endpoint_answers_only_host_names_that_cannot_be_rebound() {
    let registry = Arc::new(Registry::default());
    registry.register(Arc::new(Up));
    let config = EndpointConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        allowed_hosts: vec!["metrics.example.org".into()],
        ..EndpointConfig::default()
    };
    let server = start(&config, router(registry)).await.unwrap();
    let addr = server.local_addr();
    let port = addr.port();
    let ask = move |target: &'static str, headers: String| {
        tokio::task::spawn_blocking(move || raw_get(addr, target, &headers))
    };
    let host = |h: &str| format!("Host: {h}\r\n");
    let cases = [
        ("/metrics", host(&format!("evil.example:{port}")), 421),
        ("/healthz", host("evil.example"), 421),
        ("/metrics", host(&format!("localhost:{port}")), 200),
        ("/metrics", host(&format!("127.0.0.1:{port}")), 200),
        ("/metrics", host(&format!("[::1]:{port}")), 200),
        ("/metrics", host("metrics.example.org"), 200),
        (
            "/metrics",
            host("x4xvn4hk3mjfmzo6cb2ttmfatnelrm7pxw2oqgkk7ejf3zdvu4ilwqad.onion"),
            200,
        ),
        (
            "/metrics",
            format!("{}{}", host("localhost"), host("evil.example")),
            400,
        ),
        ("http://evil.example/metrics", host("localhost"), 421),
        ("/metrics", String::new(), 200),
    ];
    for (target, headers, want) in cases {
        let (status, body) = ask(target, headers.clone()).await.unwrap();
        assert_eq!(status, want, "{target} {headers:?}: {body}");
        if want == 421 {
            assert!(
                body.contains("does not answer to the host name \"evil.example")
                    && body.contains("DNS rebinding")
                    && body.contains("--allowed-host"),
                "{body}"
            );
        }
    }
    server.shutdown(Duration::from_secs(5)).await.unwrap();

    let bad = EndpointConfig {
        allowed_hosts: vec!["metrics.example.org:443".into()],
        ..config
    };
    let err = bad.check().unwrap_err();
    assert!(err.to_string().contains("invalid allowed host"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn off_loopback_the_host_check_applies_only_to_configured_names() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("server ca");
    let (cert, key) = leaf(dir.path(), "server", &server_ca, false);
    let ca_pem = write_ca(dir.path(), "server", &server_ca);
    let registry = Arc::new(Registry::default());
    registry.register(Arc::new(Up));
    let open = EndpointConfig {
        // Off loopback: every interface, on a free port, for this test only.
        listen: "0.0.0.0:0".parse().unwrap(),
        tls: Some(TlsConfig {
            cert,
            key,
            client_ca: None,
        }),
        auth: AuthConfig {
            bearer_token_sha256: vec![sha_hex("scrape-token")],
            ..AuthConfig::default()
        },
        ..EndpointConfig::default()
    };
    let named = EndpointConfig {
        allowed_hosts: vec!["metrics.example.org".into()],
        ..open.clone()
    };
    let mut got = Vec::new();
    for config in [open, named] {
        let server = start(&config, router(registry.clone())).await.unwrap();
        let port = server.local_addr().port();
        let url = format!("https://localhost:{port}/metrics");
        let resolve = format!("localhost:{port}:127.0.0.1");
        let ca = ca_pem.to_str().unwrap().to_owned();
        let fetch = |host: &str| {
            let host = format!("Host: {host}");
            let args = [
                "--resolve",
                &resolve,
                "--cacert",
                &ca,
                "-H",
                "Authorization: Bearer scrape-token",
                "-H",
                &host,
            ];
            tokio::task::block_in_place(|| curl(&url, &args))
        };
        got.push((fetch("evil.example"), fetch("metrics.example.org")));
        server.shutdown(Duration::from_secs(5)).await.unwrap();
    }
    assert_eq!(got, [(200, 200), (421, 200)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_rereads_the_auth_file_and_keeps_the_old_credentials_when_it_is_broken() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("auth.yaml");
    let write = |tokens: &[&str], user: &str, password: &str| {
        let tokens: String = tokens
            .iter()
            .map(|t| format!("  - {}\n", sha_hex(t)))
            .collect();
        let hash = bcrypt::hash(password, 4).unwrap();
        std::fs::write(
            &file,
            format!(
                "bearer_token_sha256:\n{tokens}basic:\n  - username: {user}\n    password_bcrypt: '{hash}'\n"
            ),
        )
        .unwrap();
    };
    write(&["old-token"], "old-user", "old-pw");
    let mut config = EndpointConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        auth_file: Some(file.clone()),
        ..EndpointConfig::default()
    };
    config.load_auth_file().unwrap();
    let registry = Arc::new(Registry::default());
    registry.register(Arc::new(Up));
    let server = start(&config, router(registry)).await.unwrap();
    let url = format!("http://{}/metrics", server.local_addr());
    let status = |args: &[&str]| {
        let args: Vec<&str> = args.to_vec();
        tokio::task::block_in_place(|| curl(&url, &args))
    };
    let bearer = |t: &str| format!("Authorization: Bearer {t}");
    let (old_token, new_token) = (bearer("old-token"), bearer("new-token"));
    let all = |status: &dyn Fn(&[&str]) -> i32| {
        [
            status(&["-H", &old_token]),
            status(&["-u", "old-user:old-pw"]),
            status(&["-H", &new_token]),
            status(&["-u", "new-user:new-pw"]),
        ]
    };
    // The old basic credentials are cached by now.
    assert_eq!(all(&status), [200, 200, 401, 401]);

    write(&["new-token"], "new-user", "new-pw");
    server.reload().unwrap();
    assert_eq!(all(&status), [401, 401, 200, 200]);

    // Broken files: the error names the file, the credentials stay.
    for broken in [
        "bearer_token_sha256: [not-hex]\n",
        "basic: {username: [\n",
        "unknown_field: 1\n",
        "{}\n",
    ] {
        std::fs::write(&file, broken).unwrap();
        let err = server.reload().unwrap_err();
        assert!(err.tls.is_none(), "{err}");
        assert!(
            err.to_string()
                .starts_with("credentials not reloaded, keeping the old ones"),
            "{err}"
        );
        assert_eq!(all(&status), [401, 401, 200, 200], "after {broken:?}");
    }
    std::fs::remove_file(&file).unwrap();
    let err = server.reload().unwrap_err();
    assert!(err.to_string().contains("auth.yaml"), "{err}");
    assert_eq!(all(&status), [401, 401, 200, 200]);
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// The response head curl received, lowercased.
fn curl_head(url: &str, args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", "--max-time", "10"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl is installed (apt-get install curl)");
    String::from_utf8_lossy(&out.stdout).to_ascii_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_exporter_web_config_file_gives_tls_mtls_basic_auth_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let server_ca = ca("server ca");
    let client_ca = ca("client ca");
    leaf(d, "server", &server_ca, false);
    let (client_cert, client_key) = leaf(d, "client", &client_ca, true);
    let server_ca_pem = write_ca(d, "server", &server_ca);
    write_ca(d, "client", &client_ca);
    // As htpasswd writes it for node_exporter: $2y$, which bcrypt reads as $2b$.
    let hash = bcrypt::hash("hunter2", 4)
        .unwrap()
        .replacen("$2b$", "$2y$", 1);
    // Relative paths, resolved from the file's directory as the toolkit does.
    let web = d.join("web-config.yml");
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: client-ca.pem\n  \
             min_version: TLS12\n\
             http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n\
             basic_auth_users:\n  prometheus: {hash}\n"
        ),
    )
    .unwrap();
    let config =
        EndpointConfig::from_web_config("0.0.0.0:0".parse().unwrap(), &web, Vec::new(), false)
            .expect("TLS with client certificates protects a non-loopback address");
    let config = EndpointConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..config
    };
    let registry = Arc::new(Registry::default());
    registry.register(Arc::new(Up));
    let server = start(&config, router(registry)).await.unwrap();
    let port = server.local_addr().port();
    let url = |path: &str| format!("https://localhost:{port}{path}");
    let resolve = format!("localhost:{port}:127.0.0.1");
    let ca_arg = server_ca_pem.to_str().unwrap();
    let (cc, ck) = (client_cert.to_str().unwrap(), client_key.to_str().unwrap());
    let mtls = [
        "--resolve",
        &resolve,
        "--cacert",
        ca_arg,
        "--cert",
        cc,
        "--key",
        ck,
    ];
    let status = |path: &str, extra: &[&str]| {
        let mut a = mtls.to_vec();
        a.extend_from_slice(extra);
        tokio::task::block_in_place(|| curl(&url(path), &a))
    };
    assert_eq!(status("/metrics", &["-u", "prometheus:hunter2"]), 200);
    assert_eq!(status("/metrics", &["-u", "prometheus:hunter3"]), 401);
    assert_eq!(status("/metrics", &[]), 401);
    assert_eq!(status("/-/healthy", &[]), 200, "health needs no password");
    assert_eq!(status("/-/ready", &[]), 200);
    let no_cert = [
        "--resolve",
        &resolve,
        "--cacert",
        ca_arg,
        "-u",
        "prometheus:hunter2",
    ];
    let refused = tokio::task::block_in_place(|| curl(&url("/metrics"), &no_cert));
    assert!(refused < 0, "no client certificate, no TLS: {refused}");
    let head = tokio::task::block_in_place(|| {
        let mut a = mtls.to_vec();
        a.extend_from_slice(&["-u", "prometheus:hunter2"]);
        curl_head(&url("/metrics"), &a)
    });
    assert!(head.contains("x-frame-options: deny\r\n"), "{head}");
    assert!(
        head.contains("x-content-type-options: nosniff\r\n"),
        "{head}"
    );

    // SIGHUP: new users from the same file; a broken file keeps them.
    let new_hash = bcrypt::hash("s3cond", 4).unwrap();
    let text = std::fs::read_to_string(&web).unwrap();
    std::fs::write(&web, text.replace(&hash, &new_hash)).unwrap();
    server.reload().unwrap();
    assert_eq!(status("/metrics", &["-u", "prometheus:hunter2"]), 401);
    assert_eq!(status("/metrics", &["-u", "prometheus:s3cond"]), 200);
    std::fs::write(&web, "basic_auth_users:\n  prometheus: plain\n").unwrap();
    let err = server.reload().unwrap_err().to_string();
    assert!(err.contains("web-config.yml"), "{err}");
    assert_eq!(status("/metrics", &["-u", "prometheus:s3cond"]), 200);
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

#[test]
fn web_config_files_with_unsupported_settings_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    for (text, says) in [
        ("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n", "RequireAnyClientCert"),
        ("rate_limit:\n  interval: 1s\n", "rate_limit"),
        ("basic_auth_users:\n  u: $2y$10$x\nextra: 1\n", "extra"),
    ] {
        std::fs::write(&web, text).unwrap();
        let err = EndpointConfig::from_web_config(
            "127.0.0.1:0".parse().unwrap(),
            &web,
            Vec::new(),
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("web.yml") && err.contains(says), "{text:?}: {err}");
    }
    // Basic auth alone does not protect a non-loopback address (no TLS).
    std::fs::write(
        &web,
        "basic_auth_users:\n  u: $2y$10$abcdefghijklmnopqrstuu\n",
    )
    .unwrap();
    let err =
        EndpointConfig::from_web_config("0.0.0.0:0".parse().unwrap(), &web, Vec::new(), false)
            .unwrap_err();
    assert!(err.to_string().contains("not a loopback address"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_the_tls_handshake_is_disconnected() {
    use tokio::io::AsyncReadExt;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = leaf(dir.path(), "server", &ca("server ca"), false);
    let config = EndpointConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: Some(TlsConfig {
            cert,
            key,
            client_ca: None,
        }),
        connections: onionwatch_server::ConnectionLimits {
            tls_handshake_timeout_secs: 0.5,
            ..Default::default()
        },
        ..EndpointConfig::default()
    };
    let server = start(&config, router(Arc::new(Registry::default())))
        .await
        .unwrap();
    // Connected, silent: no ClientHello ever comes.
    let mut s = tokio::net::TcpStream::connect(server.local_addr())
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(60), s.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "still open: {closed:?}"
    );
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}
