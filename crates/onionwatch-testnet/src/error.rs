//! Errors of the test network.

use std::path::PathBuf;
use std::time::Duration;

/// Why the test network could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A program (`tor`, `tor-gencert`, `prometheus`, `nginx`) is not installed.
    // `error` is shown in the message and deliberately not a `source()`:
    // printing the chain (`{:#}`) would repeat it.
    #[error("cannot run `{program}`: {error}. Install it first (Debian/Ubuntu, as root): `apt-get install -y {}`, or run onionwatch's `scripts/install-deps`", debian_package(program))]
    TorMissing {
        /// The program that could not be run.
        program: String,
        /// The I/O error from exec.
        error: std::io::Error,
    },
    /// A helper command (key generation, fingerprint) failed.
    #[error("`{command}` failed: {detail}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr/stdout or the reason.
        detail: String,
    },
    /// A tor node exited while the network was starting or running.
    #[error("tor node {node} exited ({status}); last lines of {log}:\n{tail}")]
    NodeDied {
        /// Node nickname.
        node: String,
        /// Exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of that log.
        tail: String,
    },
    /// A tor could not bind its ports, on fresh ones the second time too.
    #[error("tor node {node} could not bind its ports, twice (a port picked free was taken by another process before tor bound it); retry, and look for programs binding random loopback ports (`ss -ltnp`) if it keeps happening; last lines of {log}:\n{tail}")]
    PortClash {
        /// Node nickname.
        node: String,
        /// Its log file.
        log: PathBuf,
        /// The last lines of that log.
        tail: String,
    },
    /// The test nginx exited (bad configuration, port taken...).
    #[error("nginx exited ({status}); last lines of {log}:\n{tail}")]
    NginxDied {
        /// Exit status.
        status: String,
        /// Its error log.
        log: PathBuf,
        /// The last lines of that log.
        tail: String,
    },
    /// A readiness wait ran out of time.
    #[error("timed out after {waited:?} waiting for {what}; last lines of {log}:\n{tail}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long.
        waited: Duration,
        /// The most relevant log file.
        log: PathBuf,
        /// The last lines of that log.
        tail: String,
    },
    /// The network configuration is invalid.
    #[error("invalid test network configuration: {0}")]
    Config(String),
    /// File-system or socket I/O failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether a tor exited because a port it was to bind was taken.
    pub(crate) fn is_port_clash(&self) -> bool {
        matches!(self, Error::NodeDied { tail, .. } if tail.contains("Address already in use"))
    }

    /// A port clash seen again after the retry: [`Error::PortClash`].
    pub(crate) fn clash_again(self) -> Error {
        match self {
            Error::NodeDied {
                node, log, tail, ..
            } if self.is_port_clash() => Error::PortClash { node, log, tail },
            other => other,
        }
    }

    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }
}

/// The Debian package that ships `program`.
fn debian_package(program: &str) -> &'static str {
    if program.ends_with("prometheus") {
        "prometheus"
    } else if program.ends_with("nginx") {
        "nginx"
    } else {
        "tor"
    }
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
