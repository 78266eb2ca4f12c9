//! One tor process of the network.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// What a node does in the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Directory authority (also a relay).
    Authority,
    /// Relay (guard, exit, HSDir).
    Relay,
    /// Hosts one or more onion services.
    OnionService,
    /// Client with a SocksPort.
    Client,
}

/// A running tor process. Dropping it kills the process.
#[derive(Debug)]
pub struct TorNode {
    /// Nickname, e.g. `auth0`, `relay1`, `hs0`, `client`.
    pub nickname: String,
    /// Its role.
    pub role: Role,
    /// Its DataDirectory (holds `torrc`, `notice.log`, `control_auth_cookie`).
    pub dir: PathBuf,
    tor: PathBuf,
    child: Option<Child>,
}

/// Create `path` with mode 0700, as tor requires of data and onion-service directories.
pub(crate) fn private_dir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(Error::io(format!("create {}", path.display())))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o700))
        .map_err(Error::io(format!("chmod 700 {}", path.display())))
}

impl TorNode {
    /// Write `torrc` into `dir` and start `tor -f` on it.
    ///
    /// Every node gets `__OwningControllerProcess` set to our pid, so tor exits
    /// by itself if this process dies without running destructors (SIGKILL).
    pub(crate) fn spawn(
        tor: &Path,
        nickname: &str,
        role: Role,
        dir: &Path,
        torrc: &str,
    ) -> Result<Self> {
        let torrc_path = dir.join("torrc");
        let torrc = format!("{torrc}__OwningControllerProcess {}\n", std::process::id());
        fs::write(&torrc_path, torrc)
            .map_err(Error::io(format!("write {}", torrc_path.display())))?;
        let child = start(tor, nickname, dir, false)?;
        Ok(Self {
            nickname: nickname.to_owned(),
            role,
            dir: dir.to_owned(),
            tor: tor.to_owned(),
            child: Some(child),
        })
    }

    /// Kill the process (if it runs) and start tor again on the same torrc:
    /// same ports, keys and onion addresses.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.child = Some(start(&self.tor, &self.nickname, &self.dir, true)?);
        Ok(())
    }

    /// Wait until tor has written its pid file, which it does only after
    /// binding every listener: a port taken by another process shows as
    /// [`Error::NodeDied`] (its log tail says "Address already in use").
    /// Normally a few tens of milliseconds; [`Error::Timeout`] after `deadline`.
    pub(crate) async fn wait_started(&mut self, deadline: Instant) -> Result<()> {
        let start = Instant::now();
        let pid = self.pid().map(|p| p.to_string());
        let pid_file = self.dir.join("pid");
        loop {
            if fs::read_to_string(&pid_file).is_ok_and(|p| Some(p.trim().to_owned()) == pid) {
                return Ok(());
            }
            self.check_alive()?;
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: format!("tor node {} to bind its ports", self.nickname),
                    waited: start.elapsed(),
                    log: self.log_path(),
                    tail: self.log_tail(15),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The node's notice-level log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("notice.log")
    }

    /// The last `n` lines of the node's log (empty if there is none yet).
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log_path(), n)
    }

    /// `Err(NodeDied)` if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Err(self.died("killed".into()));
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(self.died(status.to_string())),
            Err(e) => Err(self.died(format!("cannot wait: {e}"))),
        }
    }

    fn died(&self, status: String) -> Error {
        // A tor that never parsed its torrc has only its stdout to show.
        let log = match fs::metadata(self.log_path()) {
            Ok(m) if m.len() > 0 => self.log_path(),
            _ => self.dir.join("stdout.log"),
        };
        Error::NodeDied {
            node: self.nickname.clone(),
            status,
            tail: tail(&log, 15),
            log,
        }
    }

    /// Kill the process and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGKILL: the network is disposable and this must never hang.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for TorNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Start `tor -f DIR/torrc`, its output going to `DIR/stdout.log`. A
/// restart (`append`) keeps both logs; a first start begins them afresh.
fn start(tor: &Path, nickname: &str, dir: &Path, append: bool) -> Result<Child> {
    let torrc_path = dir.join("torrc");
    // A pid file left by an earlier run (a reused --dir) would pass
    // `wait_started` too early, and its log would hide this run's errors.
    let _ = fs::remove_file(dir.join("pid"));
    if !append {
        let _ = fs::remove_file(dir.join("notice.log"));
    }
    // Errors in the torrc are printed before `Log` takes effect: keep them.
    let out_path = dir.join("stdout.log");
    let out = fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(&out_path)
        .map_err(Error::io(format!("create {}", out_path.display())))?;
    let err = out
        .try_clone()
        .map_err(Error::io(format!("dup {}", out_path.display())))?;
    let child = Command::new(tor)
        .arg("-f")
        .arg(&torrc_path)
        .arg("--ignore-missing-torrc")
        // Fewer malloc arenas halve the RSS of a 7-tor network.
        .env("MALLOC_ARENA_MAX", "1")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|error| Error::TorMissing {
            program: tor.display().to_string(),
            error,
        })?;
    tracing::debug!(node = nickname, pid = child.id(), "started tor");
    Ok(child)
}

/// The last `n` lines of a file, reading at most its last 64 KiB.
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let Ok(mut file) = fs::File::open(path) else {
        return format!("(no log at {})", path.display());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = file.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_returns_last_lines_or_a_note() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log");
        assert!(tail(&p, 3).contains("no log"));
        fs::write(&p, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail(&p, 2), "c\nd");
        assert_eq!(tail(&p, 10), "a\nb\nc\nd");
    }

    #[test]
    fn missing_tor_binary_says_how_to_install() {
        let dir = tempfile::tempdir().unwrap();
        let err = TorNode::spawn(
            Path::new("/nonexistent/tor"),
            "x",
            Role::Client,
            dir.path(),
            "",
        )
        .unwrap_err();
        assert!(err.to_string().contains("apt-get install"), "{err}");
    }
}
