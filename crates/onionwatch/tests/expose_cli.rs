//! `onionwatch expose-onion` as a process against a real tor (alone, with
//! `DisableNetwork 1`: `ADD_ONION` needs no network): the client key is
//! printed when it is created and not on later starts (journald keeps what
//! a service prints), and the key directory is private.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use onionwatch_test_support::{self as support, wait_for, Running};

const BIN: &str = env!("CARGO_BIN_EXE_onionwatch");

/// A tor with a control port (cookie authentication) and no network.
fn lone_tor(dir: &Path) -> Option<(Running, SocketAddr)> {
    if Command::new("tor").arg("--version").output().is_err() {
        eprintln!("SKIPPED: tor is not installed");
        return None;
    }
    let data = dir.join("tor");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let torrc = dir.join("torrc");
    std::fs::write(&torrc, "").unwrap();
    let port = support::free_port();
    let tor = Running(
        Command::new("tor")
            .args(["-f", torrc.to_str().unwrap()])
            .args(["--DataDirectory", data.to_str().unwrap()])
            .args(["--ControlPort", &format!("127.0.0.1:{port}")])
            .args(["--CookieAuthentication", "1"])
            .args(["--SocksPort", "0", "--DisableNetwork", "1"])
            .args(["--Log", "warn stderr"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Readiness: the control port accepts and the cookie is written.
    wait_for(Duration::from_secs(30), || {
        (TcpStream::connect(addr).is_ok() && data.join("control_auth_cookie").exists())
            .then_some(())
    })
    .expect("tor opens its control port");
    Some((tor, addr))
}

/// Run `expose-onion` until it says the service is up; its standard output.
fn expose(control: SocketAddr, key_dir: &Path, extra: &[&str]) -> String {
    let mut child = Running(
        Command::new(BIN)
            .args(["expose-onion", "--control-port", &control.to_string()])
            .args(["--target", "127.0.0.1:9", "--key-dir"])
            .arg(key_dir)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = String::new();
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    // Ends with the command's last line, or at its exit (then the assertions
    // below show what it printed).
    while let Some(Ok(line)) = lines.next() {
        out.push_str(&line);
        out.push('\n');
        if line.contains("Ctrl-C removes it") {
            break;
        }
    }
    drop(child);
    out
}

#[test]
fn the_client_key_is_printed_when_created_and_not_on_later_starts() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_tor, control)) = lone_tor(dir.path()) else {
        return;
    };
    let keys = dir.path().join("keys");
    let first = expose(control, &keys, &[]);
    assert!(first.contains("onion service: "), "{first}");
    let line = std::fs::read_to_string(keys.join("client.auth_private")).unwrap();
    let secret = line.rsplit(':').next().unwrap();
    assert_eq!(secret.len(), 52, "{line}");
    assert!(
        first.contains(&line),
        "the new key is printed once:\n{first}"
    );
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&keys), 0o700);
    assert_eq!(mode(&keys.join("client.auth_private")), 0o600);
    assert_eq!(mode(&keys.join("onion_service.key")), 0o600);

    // A restart: same service, the key stays out of the output (and logs).
    let second = expose(control, &keys, &[]);
    assert!(second.contains("onion service: "), "{second}");
    assert!(
        !second.contains(secret),
        "the key is printed again:\n{second}"
    );
    assert!(
        second.contains(keys.join("client.auth_private").to_str().unwrap()),
        "the file is named instead:\n{second}"
    );

    // Unless asked for.
    let third = expose(control, &keys, &["--print-client-key"]);
    assert!(third.contains(&line), "{third}");
}
