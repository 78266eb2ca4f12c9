//! Helpers shared by the binary's integration tests.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// Stops the command if the test fails half-way: SIGINT (it then kills its
/// tors), and SIGKILL if it is still there after 10 s.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while let Ok(None) = self.0.try_wait() {
                if Instant::now() > deadline {
                    let _ = self.0.kill();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.wait();
        }
    }
}

/// `GET path` over HTTP/1.0; empty on any failure.
#[allow(dead_code)] // not every test binary uses every helper
pub fn get(addr: SocketAddr, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// A free loopback port (for a child process to bind).
#[allow(dead_code)]
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET path` until every needle is in the answer (30 s at most).
#[allow(dead_code)]
pub fn get_until(addr: SocketAddr, path: &str, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = get(addr, path);
        if needles.iter().all(|n| body.contains(n)) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {needles:?} in {path}:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET path` until its JSON body satisfies `done` (30 s at most); that body.
#[allow(dead_code)]
pub fn json_until(
    addr: SocketAddr,
    path: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = get(addr, path);
        let json = answer
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok());
        if let Some(json) = json.filter(&done) {
            return json;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting on {path}:\n{answer}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of the first sample line starting with `prefix`.
#[allow(dead_code)]
pub fn value(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Append `text` to `path` (created if missing).
#[allow(dead_code)]
pub fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// Copy a directory tree (a fixture to a temporary directory).
#[allow(dead_code)]
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// A loopback HTTP/1.0 server answering every request with `200` and
/// `body` (a fake MetricsPort or stub_status), on a thread of its own.
#[allow(dead_code)]
pub fn serve(body: &'static str) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req);
            let _ = write!(
                s,
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// A loopback address whose connections are refused while this lives.
#[allow(dead_code)]
pub struct DeadAddr {
    pub addr: SocketAddr,
    /// Bound but not listening (and without SO_REUSEADDR): it holds the
    /// port, so no other process can listen there, and refuses connections.
    _socket: tokio::net::TcpSocket,
}

#[allow(dead_code)]
pub fn dead_addr() -> DeadAddr {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    DeadAddr {
        addr: socket.local_addr().unwrap(),
        _socket: socket,
    }
}

/// Wait for `child` to exit (30 s at most, then kill it and fail).
#[allow(dead_code)]
pub fn wait_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the command did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
