//! A real Prometheus (Debian's `prometheus`) on loopback, for tests that
//! check what onionwatch exports the way operators will consume it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::ports::{free_port, loopback};

/// A running Prometheus; dropping it kills the process and removes its data.
#[derive(Debug)]
pub struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: Option<tempfile::TempDir>,
}

/// The `prometheus.yml` of [`Prometheus::start_receiver`]: a receiver needs
/// no scrape configuration, only `--web.enable-remote-write-receiver`.
pub const RECEIVER_CONFIG: &str = "global:\n  evaluation_interval: 15s\n";

impl Prometheus {
    /// Start Prometheus scraping `targets` (job `onionwatch`) every
    /// `interval`, and wait until it is ready (60 s at most).
    pub fn start(targets: &[SocketAddr], interval: Duration) -> Result<Self> {
        Self::start_with_rules(targets, interval, &[])
    }

    /// Like [`Prometheus::start`], also loading these rule files (alerting
    /// and recording rules, evaluated every `interval`).
    pub fn start_with_rules(
        targets: &[SocketAddr],
        interval: Duration,
        rule_files: &[std::path::PathBuf],
    ) -> Result<Self> {
        let secs = interval.as_secs().max(1);
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let mut config = format!(
            "global:\n  scrape_interval: {secs}s\n  scrape_timeout: {secs}s\n  evaluation_interval: {secs}s\nscrape_configs:\n  - job_name: onionwatch\n    static_configs:\n      - targets: [{}]\n",
            list.join(", ")
        );
        if !rule_files.is_empty() {
            config.push_str("rule_files:\n");
            for f in rule_files {
                // A YAML single-quoted scalar: double any single quote.
                let quoted = f.display().to_string().replace('\'', "''");
                config.push_str(&format!("  - '{quoted}'\n"));
            }
        }
        Self::start_with_config(&config)
    }

    /// Start Prometheus with `config` as its whole `prometheus.yml` (own
    /// scrape configurations, relabeling, rule files by absolute path), and
    /// wait until it is ready (60 s at most).
    pub fn start_with_config(config: &str) -> Result<Self> {
        let dir = tempfile::tempdir().map_err(Error::io("create Prometheus' directory"))?;
        let addr = loopback(free_port().map_err(Error::io("pick a port for Prometheus"))?);
        let path = dir.path().to_owned();
        Self::spawn(config, &path, addr, &[], Some(dir))
    }

    /// A Prometheus that scrapes nothing and takes remote_write on
    /// `/api/v1/write` (`--web.enable-remote-write-receiver`), listening
    /// on `addr` and keeping its configuration and TSDB in `dir`, so
    /// [`Prometheus::stop`] and starting it again on the same `dir` and
    /// `addr` keep the samples (a receiver outage).
    pub fn start_receiver(dir: &std::path::Path, addr: SocketAddr) -> Result<Self> {
        // The configuration the README shows for a receiver.
        Self::spawn(
            RECEIVER_CONFIG,
            dir,
            addr,
            &["--web.enable-remote-write-receiver"],
            None,
        )
    }

    /// [`Prometheus::start_receiver`] behind `web_config` (Prometheus'
    /// `--web.config.file`: TLS, basic authentication). Ready once it
    /// accepts connections (its HTTP API is then behind TLS).
    pub fn start_receiver_with_web_config(
        dir: &std::path::Path,
        addr: SocketAddr,
        web_config: &std::path::Path,
    ) -> Result<Self> {
        let flag = format!("--web.config.file={}", web_config.display());
        Self::spawn(
            RECEIVER_CONFIG,
            dir,
            addr,
            &["--web.enable-remote-write-receiver", &flag],
            None,
        )
    }

    fn spawn(
        config: &str,
        dir: &std::path::Path,
        addr: SocketAddr,
        extra: &[&str],
        tempdir: Option<tempfile::TempDir>,
    ) -> Result<Self> {
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).map_err(Error::io("write prometheus.yml"))?;
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| Error::TorMissing {
                program: "prometheus".into(),
                error,
            })?;
        let mut me = Self {
            child,
            addr,
            _dir: tempdir,
        };
        let start = Instant::now();
        let behind_tls = extra.iter().any(|a| a.starts_with("--web.config.file="));
        loop {
            let ready = if behind_tls {
                TcpStream::connect(addr).is_ok()
            } else {
                get(addr, "/-/ready").is_some_and(|r| r.starts_with("HTTP/1.0 200"))
            };
            if ready {
                return Ok(me);
            }
            if let Ok(Some(status)) = me.child.try_wait() {
                return Err(Error::Command {
                    command: "prometheus".into(),
                    detail: format!("exited at start-up: {status}"),
                });
            }
            if start.elapsed() > Duration::from_secs(60) {
                return Err(Error::Command {
                    command: "prometheus".into(),
                    detail: "not ready after 60 s".into(),
                });
            }
            // Readiness poll: Prometheus offers no notification.
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stop it cleanly (SIGTERM, then wait), keeping its directory.
    pub fn stop(mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }

    /// Its HTTP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The JSON answer of an instant query (`/api/v1/query`).
    pub fn query(&self, expr: &str) -> Option<String> {
        self.api(&format!("/api/v1/query?query={}", url_encode(expr)))
    }

    /// The body of any GET on its HTTP API (e.g. `/api/v1/rules`).
    pub fn api(&self, path_and_query: &str) -> Option<String> {
        let raw = get(self.addr, path_and_query)?;
        raw.split_once("\r\n\r\n").map(|(_, body)| body.to_owned())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encode a query parameter.
pub fn url_encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_promql() {
        assert_eq!(
            url_encode("up{a=\"b\"} > 1"),
            "up%7Ba%3D%22b%22%7D%20%3E%201"
        );
    }
}
