//! The inside monitor of onionwatch: what runs next to the tor daemons and
//! web servers of onion services (Onionspray projects, or any torrc).
//!
//! - [`audit`]: check torrc files and Onionspray configurations for unsafe
//!   or broken monitoring settings (`onionwatch audit`).
//! - [`watch`]: scrape every project's tor MetricsPort, tor control port and
//!   nginx `stub_status` concurrently and re-export them on one endpoint
//!   (`onionwatch watch`), with targets from [`targets`] (YAML and flags)
//!   and [`discovery`] (an Onionspray tree).
//!
//! The access-log policy's actions (closing abusive circuits) are executed
//! by `onionwatch_logs::guard`, not here: this crate only tells it each
//! project's control ports ([`watch::Watcher::control_ports`]).
//!
//! Audit lives here rather than in a crate of its own because it reads the
//! same things discovery reads: the torrc syntax ([`torrc`]) and
//! Onionspray's layout and settings ([`onionspray`]).

use std::path::PathBuf;

pub mod audit;
pub mod discovery;
pub mod http;
pub mod nginx;
pub mod onionspray;
pub mod targets;
pub mod tor_control;
pub mod tor_metrics;
pub mod torrc;
pub mod watch;

/// A configuration or layout problem.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read.
    #[error("cannot read {}: {source} (check the path and that this user may read it)", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A configuration file is invalid.
    #[error("{}:{line}: {reason}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// The 1-based line (0 when the whole file is at fault).
        line: usize,
        /// What is wrong and what to do.
        reason: String,
    },
    /// A directory is not what was expected.
    #[error("{} is not an Onionspray installation or project: {reason}", path.display())]
    NotOnionspray {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An invalid watch target or setting.
    #[error("{0}")]
    Invalid(String),
}
