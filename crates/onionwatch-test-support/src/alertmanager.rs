//! A real Alertmanager (Debian's `prometheus-alertmanager`) on 127.0.0.1,
//! for the notifier tests.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::http::{free_port, get};
use crate::poll::wait_for;
use crate::process::{have, Running};

/// The Alertmanager binary Debian installs.
pub const ALERTMANAGER: &str = "prometheus-alertmanager";

/// A running Alertmanager with a temporary config and storage, no
/// clustering; stopped when dropped.
#[derive(Debug)]
pub struct Alertmanager {
    /// Its web and API address.
    pub addr: SocketAddr,
    _process: Running,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Start one and wait until it is ready (30 s at most, then panic).
    /// `None` when it is not installed outside CI (see [`have`]).
    #[track_caller]
    pub fn start() -> Option<Alertmanager> {
        if !have(ALERTMANAGER) {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("alertmanager.yml");
        // Every alert goes to a receiver that sends nothing: the tests
        // read the API.
        std::fs::write(
            &config,
            "route:\n  receiver: none\nreceivers:\n  - name: none\n",
        )
        .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let child = Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            // Empty: no cluster listener, so no second port.
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut process = Running(child);
        let ready = wait_for(Duration::from_secs(30), || {
            if let Ok(Some(status)) = process.0.try_wait() {
                return Some(Err(status));
            }
            get(addr, "/-/ready")
                .starts_with("HTTP/1.0 200")
                .then_some(Ok(()))
        });
        let log = || std::fs::read_to_string(dir.path().join("log")).unwrap_or_default();
        match ready {
            Some(Ok(())) => Some(Alertmanager {
                addr,
                _process: process,
                _dir: dir,
            }),
            Some(Err(status)) => panic!("alertmanager exited ({status}):\n{}", log()),
            None => panic!("alertmanager not ready within 30 s:\n{}", log()),
        }
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}
