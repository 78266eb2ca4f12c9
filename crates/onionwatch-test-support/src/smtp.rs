//! A real SMTP server on 127.0.0.1 (aiosmtpd, from PyPI) that stores
//! every message it accepts, for the e-mail notifier's tests.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::time::Duration;

use crate::http::free_port;
use crate::poll::wait_for;
use crate::process::Running;

/// How the server speaks TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain SMTP.
    None,
    /// STARTTLS, required before anything else.
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
}

/// A running SMTP sink; stopped when dropped.
#[derive(Debug)]
pub struct SmtpSink {
    /// Where it listens.
    pub addr: SocketAddr,
    // Closing its standard input stops it (see Drop).
    stdin: Option<ChildStdin>,
    process: Running,
    dir: tempfile::TempDir,
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        // Its own way out first; `Running` then interrupts it only if it
        // is still there.
        drop(self.stdin.take());
        let _ = wait_for(Duration::from_secs(10), || {
            self.process.0.try_wait().ok().flatten()
        });
    }
}

/// Whether aiosmtpd can be imported; outside CI a test without it is
/// skipped (with a note), in CI it must be there.
pub fn have_aiosmtpd() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        found || std::env::var_os("CI").is_none(),
        "aiosmtpd is missing (scripts/install-deps installs it)"
    );
    if !found {
        eprintln!("skipped: aiosmtpd is not installed");
    }
    found
}

impl SmtpSink {
    /// Start one with `tls` (then `cert_key` are the PEM certificate and
    /// key files) and, with `auth` (`user:password`), authentication
    /// required. `None` when aiosmtpd is missing outside CI.
    #[track_caller]
    pub fn start(
        tls: SmtpTls,
        cert_key: Option<(&Path, &Path)>,
        auth: Option<&str>,
    ) -> Option<SmtpSink> {
        if !have_aiosmtpd() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/smtp_sink.py");
        let mut cmd = Command::new("python3");
        cmd.arg(script)
            .args(["--port", &port.to_string()])
            .arg("--dir")
            .arg(dir.path())
            .args([
                "--tls",
                match tls {
                    SmtpTls::None => "none",
                    SmtpTls::Starttls => "starttls",
                    SmtpTls::Tls => "tls",
                },
            ]);
        if let Some((cert, key)) = cert_key {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if let Some(a) = auth {
            cmd.args(["--auth", a]);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let process = Running(child);
        // "ready" once it listens; end of file if it died (its error is on
        // our standard error).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
        assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
        Some(SmtpSink {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            stdin: Some(stdin),
            process,
            dir,
        })
    }

    /// The messages received so far, in order.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
            .collect()
    }

    /// Wait (30 s at most, then panic) until `n` messages arrived; them.
    #[track_caller]
    pub fn wait_messages(&self, n: usize) -> Vec<serde_json::Value> {
        wait_for(Duration::from_secs(30), || {
            let m = self.messages();
            (m.len() >= n).then_some(m)
        })
        .unwrap_or_else(|| panic!("fewer than {n} messages within 30 s: {:?}", self.messages()))
    }
}
