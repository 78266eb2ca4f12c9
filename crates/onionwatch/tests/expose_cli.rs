//! `onionwatch expose-onion` as a process against a real tor (alone, with
//! `DisableNetwork 1`: `ADD_ONION` needs no network): the client key is
//! printed when it is created and not on later starts (journald keeps what
//! a service prints), and the key directory is private; the control
//! password comes from a file or the environment, and one given in argv is
//! warned about.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use onionwatch_test_support::{self as support, wait_for, Running};

const BIN: &str = env!("CARGO_BIN_EXE_onionwatch");

/// A tor with a control port (`auth`: torrc options) and no network.
fn lone_tor(dir: &Path, auth: &[&str]) -> Option<(Running, SocketAddr)> {
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
            .args(auth)
            .args(["--SocksPort", "0", "--DisableNetwork", "1"])
            .args(["--Log", "warn stderr"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Readiness: the control port accepts (and the cookie is written).
    let cookie = auth.contains(&"--CookieAuthentication");
    wait_for(Duration::from_secs(30), || {
        (TcpStream::connect(addr).is_ok() && (!cookie || data.join("control_auth_cookie").exists()))
            .then_some(())
    })
    .expect("tor opens its control port");
    Some((tor, addr))
}

/// Run `expose-onion` until it says the service is up; its standard output.
fn expose(control: SocketAddr, key_dir: &Path, extra: &[&str]) -> String {
    expose_with(control, key_dir, extra, None).0
}

/// [`expose`] with `env` as ONIONWATCH_CONTROL_PASSWORD; (stdout, stderr).
fn expose_with(
    control: SocketAddr,
    key_dir: &Path,
    extra: &[&str],
    env: Option<&str>,
) -> (String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["expose-onion", "--control-port", &control.to_string()])
        .args(["--target", "127.0.0.1:9", "--key-dir"])
        .arg(key_dir)
        .args(extra)
        .env_remove("ONIONWATCH_CONTROL_PASSWORD")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(v) = env {
        cmd.env("ONIONWATCH_CONTROL_PASSWORD", v);
    }
    let mut child = Running(cmd.spawn().unwrap());
    let mut stderr = child.0.stderr.take().unwrap();
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
    let mut err = String::new();
    stderr.read_to_string(&mut err).unwrap();
    (out, err)
}

#[test]
fn the_client_key_is_printed_when_created_and_not_on_later_starts() {
    let dir = tempfile::tempdir().unwrap();
    let Some((_tor, control)) = lone_tor(dir.path(), &["--CookieAuthentication", "1"]) else {
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

#[test]
fn the_control_password_comes_from_a_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    if Command::new("tor").arg("--version").output().is_err() {
        eprintln!("SKIPPED: tor is not installed");
        return;
    }
    let password = "correct horse battery";
    let hashed = Command::new("tor")
        .args(["--quiet", "--hash-password", password])
        .output()
        .unwrap();
    let hashed = String::from_utf8(hashed.stdout).unwrap();
    let hashed = hashed.lines().last().unwrap().trim().to_owned();
    assert!(hashed.starts_with("16:"), "{hashed}");
    let Some((_tor, control)) = lone_tor(dir.path(), &["--HashedControlPassword", &hashed]) else {
        return;
    };
    let keys = dir.path().join("keys");
    let up = |(out, err): &(String, String)| {
        assert!(out.contains("onion service: "), "{out}\n{err}");
    };

    // Without it tor refuses: the ones below really are used.
    let (out, err) = expose_with(control, &keys, &[], None);
    assert!(!out.contains("onion service: "), "{out}");
    assert!(err.contains("password"), "{err}");

    let file = dir.path().join("control.password");
    std::fs::write(&file, format!("{password}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let from_file = expose_with(
        control,
        &keys,
        &["--control-password-file", file.to_str().unwrap()],
        None,
    );
    up(&from_file);
    assert!(!from_file.1.contains("WARN"), "{}", from_file.1);

    let from_env = expose_with(control, &keys, &[], Some(password));
    up(&from_env);
    assert!(!from_env.1.contains("WARN"), "{}", from_env.1);

    // In argv it still works, with a warning that does not repeat it.
    let from_argv = expose_with(control, &keys, &["--control-password", password], None);
    up(&from_argv);
    assert!(from_argv.1.contains("process list"), "{}", from_argv.1);
    assert!(!from_argv.1.contains(password), "{}", from_argv.1);
}
