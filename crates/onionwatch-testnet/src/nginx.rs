//! A real nginx (Debian's `nginx`) on loopback, for tests of what onionwatch
//! reads from it: access logs with circuit ids, `stub_status`.
//!
//! [`Nginx::start`] writes a configuration into a temporary directory (pid
//! file, error and access logs, temp paths: nothing outside it, so it runs
//! without touching `/var`), starts `nginx -g 'daemon off; master_process
//! off;'` as one foreground process on `127.0.0.1` and a free port, and
//! waits until the port accepts connections. Dropping the [`Nginx`] kills
//! the process and removes the directory. Every location answers
//! `200` with a small static body, logged in `combined` format to
//! [`Nginx::access_log`].
//!
//! With [`NginxConfig::proxy_protocol`] the listener expects tor's PROXY v1
//! line (`HiddenServiceExportCircuitID haproxy`) and takes the client
//! address from it (`set_real_ip_from 127.0.0.1; real_ip_header
//! proxy_protocol;`), so the access log's `$remote_addr` is the circuit
//! address, e.g. `fc00:dead:beef:4dad::30`.
//!
//! ```no_run
//! use onionwatch_testnet::nginx::{Nginx, NginxConfig};
//! let nginx = Nginx::start(&NginxConfig { proxy_protocol: true, ..NginxConfig::default() })?;
//! println!("{} logs to {}", nginx.addr(), nginx.access_log().display());
//! # Ok::<(), onionwatch_testnet::Error>(())
//! ```

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::node::tail;
use crate::ports::{free_port, loopback};

/// How many ports to try when the one picked was taken meanwhile.
const PORT_ATTEMPTS: usize = 3;

/// What the nginx serves.
#[derive(Debug, Clone)]
pub struct NginxConfig {
    /// Expect a PROXY v1 line on every connection and log its source
    /// address as `$remote_addr`. Default `false`.
    pub proxy_protocol: bool,
    /// Directives added inside the `server` block, e.g.
    /// `location = /stub_status { stub_status; }`. Default none.
    pub server_directives: String,
    /// The body of every answer (a newline is appended); letters, digits,
    /// spaces and `.,:_-/` only. Default `onionwatch test nginx`.
    pub body: String,
    /// The access log's `log_format` string (without quotes; no `'` or
    /// `\`). Default `None`: nginx's `combined`.
    pub log_format: Option<String>,
    /// The nginx binary. Default `nginx` (on `PATH`, or `/usr/sbin/nginx`).
    pub nginx: PathBuf,
    /// Longest wait for the port to accept connections. Default 30 s.
    pub ready_timeout: Duration,
}

impl Default for NginxConfig {
    fn default() -> Self {
        NginxConfig {
            proxy_protocol: false,
            server_directives: String::new(),
            body: "onionwatch test nginx".into(),
            log_format: None,
            nginx: PathBuf::from("nginx"),
            ready_timeout: Duration::from_secs(30),
        }
    }
}

/// A running nginx; dropping it kills the process and removes its
/// directory (logs included).
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Nginx {
    /// Write the configuration, start nginx and wait until it accepts
    /// connections. An nginx that exits is reported with its error log.
    pub fn start(config: &NginxConfig) -> Result<Nginx> {
        if !config
            .body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " .,:_-/".contains(c))
        {
            return Err(Error::Config(format!(
                "nginx body {:?}: use letters, digits, spaces and .,:_-/ only",
                config.body
            )));
        }
        if let Some(f) = &config.log_format {
            if f.contains(['\'', '\\']) {
                return Err(Error::Config(format!(
                    "nginx log_format {f:?}: no ' or \\ (it is written between single quotes)"
                )));
            }
        }
        let dir = tempfile::Builder::new()
            .prefix("onionwatch-nginx-")
            .tempdir()
            .map_err(Error::io("create nginx's directory"))?;
        let mut last_error = None;
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port().map_err(Error::io("pick a port for nginx"))?;
            let addr = loopback(port);
            std::fs::write(
                dir.path().join("nginx.conf"),
                render(config, dir.path(), addr),
            )
            .map_err(Error::io("write nginx.conf"))?;
            // A fresh error log per attempt, so a report shows this attempt.
            let _ = std::fs::remove_file(dir.path().join("error.log"));
            let mut child = spawn(&config.nginx, dir.path())?;
            match wait_ready(&mut child, addr, dir.path(), config.ready_timeout) {
                Ok(()) => return Ok(Nginx { child, addr, dir }),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    if !tail(&dir.path().join("error.log"), 15).contains("Address already in use") {
                        return Err(e);
                    }
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| Error::Config("nginx did not start".into())))
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its directory (configuration, pid file, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The access log (`combined` format, or [`NginxConfig::log_format`]).
    pub fn access_log(&self) -> PathBuf {
        self.dir.path().join("access.log")
    }

    /// The error log (level `info`).
    pub fn error_log(&self) -> PathBuf {
        self.dir.path().join("error.log")
    }

    /// `Err` with the end of the error log if nginx has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        check_alive(&mut self.child, self.dir.path())
    }
}

fn check_alive(child: &mut Child, dir: &Path) -> Result<()> {
    let status = match child.try_wait() {
        Ok(None) => return Ok(()),
        Ok(Some(status)) => status.to_string(),
        Err(e) => format!("cannot wait: {e}"),
    };
    let log = dir.join("error.log");
    Err(Error::NginxDied {
        status,
        tail: tail(&log, 15),
        log,
    })
}

fn wait_ready(child: &mut Child, addr: SocketAddr, dir: &Path, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        check_alive(child, dir)?;
        if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            let log = dir.join("error.log");
            return Err(Error::Timeout {
                what: format!("nginx to accept connections on {addr}"),
                waited: timeout,
                tail: tail(&log, 15),
                log,
            });
        }
        // Readiness poll: nginx offers no notification in the foreground.
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(nginx: &Path, dir: &Path) -> Result<Child> {
    let run = |program: &Path| {
        Command::new(program)
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            // Start-up errors go here too, not to /var/log/nginx.
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
    };
    match run(nginx) {
        // Debian puts nginx in /usr/sbin, which a user's PATH may lack.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && nginx == Path::new("nginx") => {
            run(Path::new("/usr/sbin/nginx"))
        }
        other => other,
    }
    .map_err(|error| Error::TorMissing {
        program: "nginx".into(),
        error,
    })
}

/// The whole configuration: one foreground process (no workers to orphan,
/// so killing it stops nginx completely), every path inside `dir`.
fn render(config: &NginxConfig, dir: &Path, addr: SocketAddr) -> String {
    let d = dir.display();
    let (listen, realip) = if config.proxy_protocol {
        (
            format!("listen {addr} proxy_protocol;"),
            "set_real_ip_from 127.0.0.1;\n    real_ip_header proxy_protocol;\n    ",
        )
    } else {
        (format!("listen {addr};"), "")
    };
    let log_format = match &config.log_format {
        Some(f) => format!("log_format test '{f}';\n  "),
        None => String::new(),
    };
    let log_name = if config.log_format.is_some() {
        "test"
    } else {
        "combined"
    };
    format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\nevents {{ worker_connections 256; }}\n\
         http {{\n  {log_format}access_log {d}/access.log {log_name};\n  client_body_temp_path {d}/body;\n  \
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  \
         scgi_temp_path {d}/scgi;\n  server {{\n    {listen}\n    {realip}\
         location / {{ default_type text/plain; return 200 \"{body}\\n\"; }}\n    {extra}\n  }}\n}}\n",
        body = config.body,
        extra = config.server_directives,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_keeps_everything_in_its_directory() {
        let c = NginxConfig {
            proxy_protocol: true,
            ..NginxConfig::default()
        };
        let text = render(&c, Path::new("/tmp/x"), loopback(8080));
        assert!(text.contains("listen 127.0.0.1:8080 proxy_protocol;"));
        assert!(text.contains("set_real_ip_from 127.0.0.1;"));
        assert!(text.contains("real_ip_header proxy_protocol;"));
        for line in text
            .lines()
            .filter(|l| l.contains('/') && !l.contains("location"))
        {
            assert!(line.contains("/tmp/x/"), "{line}");
        }
        let plain = render(&NginxConfig::default(), Path::new("/d"), loopback(1));
        assert!(plain.contains("listen 127.0.0.1:1;") && !plain.contains("real_ip"));
    }

    #[test]
    fn a_log_format_is_declared_and_used() {
        let c = NginxConfig {
            log_format: Some("$remote_addr \"$http_x_onion_circuitid\"".into()),
            ..NginxConfig::default()
        };
        let text = render(&c, Path::new("/d"), loopback(1));
        assert!(text.contains("log_format test '$remote_addr \"$http_x_onion_circuitid\"';"));
        assert!(text.contains("access_log /d/access.log test;"));
        let bad = NginxConfig {
            log_format: Some("$status'; evil".into()),
            ..NginxConfig::default()
        };
        assert!(matches!(Nginx::start(&bad), Err(Error::Config(_))));
    }

    #[test]
    fn bodies_that_would_break_the_configuration_are_refused() {
        let c = NginxConfig {
            body: "a\"; }".into(),
            ..NginxConfig::default()
        };
        assert!(matches!(Nginx::start(&c), Err(Error::Config(_))));
    }

    fn exchange(addr: SocketAddr, data: &str) -> String {
        use std::io::{Read, Write};
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(data.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// Poll the access log until it has `n` lines (nginx writes it after
    /// the response).
    fn access_lines(nginx: &Nginx, n: usize) -> Vec<String> {
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(nginx.access_log()).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines.len() >= n || start.elapsed() > Duration::from_secs(10) {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn serves_and_logs_plain_requests() {
        let nginx = Nginx::start(&NginxConfig {
            body: "hello".into(),
            server_directives: "location = /stub_status { stub_status; }".into(),
            ..NginxConfig::default()
        })
        .unwrap();
        let r = exchange(nginx.addr(), "GET /x HTTP/1.0\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 200") && r.ends_with("\r\n\r\nhello\n"),
            "{r}"
        );
        let r = exchange(nginx.addr(), "GET /stub_status HTTP/1.0\r\n\r\n");
        assert!(r.contains("Active connections"), "{r}");
        let lines = access_lines(&nginx, 2);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].starts_with("127.0.0.1 - - ["), "{lines:?}");
        assert!(lines[0].contains("\"GET /x HTTP/1.0\" 200 6 "), "{lines:?}");
    }

    #[test]
    fn takes_the_client_address_from_the_proxy_line() {
        let nginx = Nginx::start(&NginxConfig {
            proxy_protocol: true,
            ..NginxConfig::default()
        })
        .unwrap();
        let r = exchange(
            nginx.addr(),
            "PROXY TCP6 fc00:dead:beef:4dad::0:30 ::1 48 80\r\nGET / HTTP/1.0\r\n\r\n",
        );
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        // Without the PROXY line nginx refuses the request.
        let r = exchange(nginx.addr(), "GET / HTTP/1.0\r\n\r\n");
        assert!(!r.contains("200 OK"), "{r}");
        let lines = access_lines(&nginx, 1);
        assert!(
            lines[0].starts_with("fc00:dead:beef:4dad::30 - - ["),
            "{lines:?}"
        );
    }

    #[test]
    fn a_broken_configuration_is_reported_with_the_error_log() {
        let err = Nginx::start(&NginxConfig {
            server_directives: "no_such_directive on;".into(),
            ..NginxConfig::default()
        })
        .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::NginxDied { .. }), "{text}");
        assert!(text.contains("no_such_directive"), "{text}");
    }

    #[test]
    fn dropping_it_kills_nginx() {
        let nginx = Nginx::start(&NginxConfig::default()).unwrap();
        let addr = nginx.addr();
        let pid = nginx.child.id();
        drop(nginx);
        assert!(TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err());
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
