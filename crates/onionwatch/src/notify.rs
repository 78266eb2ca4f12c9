//! systemd readiness notification (`Type=notify`): one datagram to the
//! socket systemd names in `NOTIFY_SOCKET`, the whole of `sd_notify(3)` that
//! onionwatch needs, without linking libsystemd.
//!
//! Long-running commands call [`ready`] once their endpoint listens (so a
//! unit ordered `After=` them starts when it can be scraped) and
//! [`stopping`] when a stop signal arrives. Outside systemd both do nothing.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;

static SOCKET: OnceLock<Option<OsString>> = OnceLock::new();

/// Take `NOTIFY_SOCKET` out of the environment and keep it. Called at the
/// start of `main`, before any thread exists (changing the environment
/// later would race with other threads reading it): children such as the
/// tors that `probe` and `testnet` launch must not inherit it, or Debian's
/// tor, built with systemd support, would tell systemd it is ready.
pub fn init() {
    SOCKET.get_or_init(|| {
        let socket = std::env::var_os("NOTIFY_SOCKET");
        if socket.is_some() {
            // Sound only because `main` calls this before it starts the
            // runtime or any other thread.
            std::env::remove_var("NOTIFY_SOCKET");
        }
        socket
    });
}

/// Tell systemd that the service is up; `status` is what `systemctl status`
/// shows (e.g. the address it serves).
pub fn ready(status: &str) {
    send(&format!("READY=1\nSTATUS={status}"));
}

/// Tell systemd that the service is stopping on request.
pub fn stopping() {
    send("STOPPING=1");
}

fn send(message: &str) {
    let Some(Some(path)) = SOCKET.get() else {
        return;
    };
    // Not fatal: the service works, only its state in systemd is wrong
    // (and systemd says so when the start times out).
    if let Err(e) = send_to(path, message) {
        tracing::warn!(
            "cannot notify systemd through NOTIFY_SOCKET={}: {e}",
            path.to_string_lossy()
        );
    }
}

fn send_to(path: &OsString, message: &str) -> std::io::Result<()> {
    let bytes = path.as_bytes();
    // "@name" is a socket in Linux's abstract namespace.
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        }
        None => SocketAddr::from_pathname(path)?,
    };
    UnixDatagram::unbound()?.send_to_addr(message.as_bytes(), &addr)?;
    Ok(())
}
