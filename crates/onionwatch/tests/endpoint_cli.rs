//! The endpoint's safety rules as a user meets them on the command line.

use std::process::Command;

#[test]
fn watch_refuses_a_public_address_without_tls_and_auth() {
    let out = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .args([
            "watch",
            "--metrics-port",
            "p=127.0.0.1:9",
            "--listen",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a loopback address") && err.contains("TLS"),
        "{err}"
    );
}

#[test]
fn tls_needs_both_certificate_and_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .args([
            "watch",
            "--metrics-port",
            "p=127.0.0.1:9",
            "--tls-cert",
            "c.pem",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "a usage error");
}

#[test]
fn allowed_host_names_reach_the_endpoint_and_are_checked() {
    let out = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .args([
            "watch",
            "--metrics-port",
            "p=127.0.0.1:9",
            "--listen",
            "127.0.0.1:0",
            "--allowed-host",
            "metrics.example.org",
            "--allowed-host",
            "metrics.example.org:443",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid allowed host \"metrics.example.org:443\""),
        "{err}"
    );
}

/// `GET /metrics` with this `Authorization`: the status code (0 if none).
fn metrics_status(addr: std::net::SocketAddr, authorization: &str) -> u16 {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {authorization}\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// Write an auth file accepting `token` (`old-token` or `new-token`).
fn token_file(path: &std::path::Path, token: &str) {
    // `printf %s TOKEN | sha256sum`
    let hex = match token {
        "old-token" => "9bdf10a691a1cfda89d9ff66629d1609ab176cec9b6a3146a8929f28937a9fce",
        "new-token" => "348e9df2a42bd6e3c6356ca9c95c5f1fe9a6b3e5cd25f4ae58df0f09049c3209",
        _ => unreachable!("{token}"),
    };
    std::fs::write(path, format!("bearer_token_sha256: [{hex}]\n")).unwrap();
}

#[test]
fn sighup_rereads_the_auth_file_and_a_broken_one_keeps_the_old_credentials() {
    use std::ffi::OsStr;
    use std::time::Duration;

    use onionwatch_test_support as support;

    let dir = tempfile::tempdir().unwrap();
    let auth = dir.path().join("auth.yaml");
    let log = dir.path().join("access.log");
    std::fs::write(&log, "").unwrap();
    token_file(&auth, "old-token");
    let (running, addr, rx) = support::start_logs(
        env!("CARGO_BIN_EXE_onionwatch"),
        &[
            OsStr::new("--project"),
            "shop".as_ref(),
            "--auth-file".as_ref(),
            auth.as_os_str(),
            log.as_os_str(),
        ],
    );
    let pid = running.0.id() as i32;
    let hup = || {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    };
    assert_eq!(metrics_status(addr, "Bearer old-token"), 200);
    assert_eq!(metrics_status(addr, "Bearer new-token"), 401);

    token_file(&auth, "new-token");
    hup();
    // The reload happens when the process gets to the signal.
    support::wait_for(Duration::from_secs(30), || {
        (metrics_status(addr, "Bearer new-token") == 200).then_some(())
    })
    .expect("the new token is accepted after SIGHUP");
    assert_eq!(metrics_status(addr, "Bearer old-token"), 401);

    std::fs::write(&auth, "bearer_token_sha256: [not-hex]\n").unwrap();
    hup();
    let logged = loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.contains("credentials not reloaded") => break line,
            Ok(_) => {}
            Err(e) => panic!("no reload error logged ({e})"),
        }
    };
    assert!(logged.contains("auth.yaml"), "{logged}");
    assert_eq!(metrics_status(addr, "Bearer new-token"), 200);
    assert_eq!(metrics_status(addr, "Bearer old-token"), 401);
    drop(running);
}

#[test]
fn connection_limits_reach_the_endpoint_and_are_checked() {
    for (flag, value, want) in [
        (
            "--endpoint-max-connections",
            "0",
            "endpoint setting max_connections = 0 is unusable",
        ),
        (
            "--endpoint-header-timeout",
            "0",
            "endpoint setting header_timeout_secs = 0 is unusable",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
            .args([
                "watch",
                "--metrics-port",
                "p=127.0.0.1:9",
                "--listen",
                "127.0.0.1:0",
                flag,
                value,
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{flag}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{flag}: {err}");
    }
}
