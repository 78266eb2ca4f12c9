//! A fake systemd notification socket (`NOTIFY_SOCKET`), to check what a
//! `Type=notify` service sends and when.

use std::net::SocketAddr;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::time::Duration;

/// A bound datagram socket and the `NOTIFY_SOCKET` value naming it: a path,
/// or with `@` a name in the abstract namespace.
#[derive(Debug)]
pub struct NotifySocket {
    socket: UnixDatagram,
    env: String,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    /// A socket file in a fresh temporary directory.
    pub fn path() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let socket = UnixDatagram::bind(&path).unwrap();
        let env = path.to_str().unwrap().to_owned();
        NotifySocket::new(socket, env, dir)
    }

    /// A socket in the abstract namespace, as systemd's own.
    pub fn abstract_name() -> NotifySocket {
        let name = format!(
            "onionwatch-test-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        );
        let addr = UnixAddr::from_abstract_name(name.as_bytes()).unwrap();
        let socket = UnixDatagram::bind_addr(&addr).unwrap();
        NotifySocket::new(socket, format!("@{name}"), tempfile::tempdir().unwrap())
    }

    fn new(socket: UnixDatagram, env: String, dir: tempfile::TempDir) -> NotifySocket {
        // Generous: only reached when broken (a probe waits for its tor).
        socket
            .set_read_timeout(Some(Duration::from_secs(300)))
            .unwrap();
        NotifySocket {
            socket,
            env,
            _dir: dir,
        }
    }

    /// The value for `NOTIFY_SOCKET`.
    pub fn env(&self) -> &str {
        &self.env
    }

    /// The next message (fails after 300 s).
    #[track_caller]
    pub fn recv(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self
            .socket
            .recv(&mut buf)
            .expect("a notification within 300 s");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    /// The next message, which must be `READY=1` with a `STATUS=` naming
    /// `http://ADDR`: that address.
    #[track_caller]
    pub fn recv_ready(&self) -> SocketAddr {
        let message = self.recv();
        assert!(message.lines().any(|l| l == "READY=1"), "{message:?}");
        let status = message
            .lines()
            .find_map(|l| l.strip_prefix("STATUS="))
            .unwrap_or_else(|| panic!("no STATUS in {message:?}"));
        let rest = status
            .split("http://")
            .nth(1)
            .unwrap_or_else(|| panic!("no address in {status:?}"));
        rest.split('/').next().unwrap().parse().unwrap()
    }
}
