//! What onionwatch knows of tor and Onionspray configurations, read from
//! files only (nothing here connects to anything):
//!
//! - [`torrc`]: enough of tor's configuration syntax (`%include`,
//!   continuations, quoting) to find a tor's listeners (`MetricsPort`,
//!   `ControlPort` as a [`torrc::Listen`]), authentication, logs and onion
//!   services.
//! - [`tree`]: an Onionspray (or EOTK) installation: its projects, each
//!   project's tors (softmap workers included), `nginx.conf` and logs, and
//!   its onion services (address from each `HiddenServiceDir`'s `hostname`,
//!   virtual ports).
//! - [`config`]: Onionspray project configurations (`set tor_metrics_port …`).
//! - [`nginx_conf`]: the `listen` directives and `stub_status` locations
//!   of an nginx configuration.
//! - [`access`]: why a file cannot be read (owner, mode, this process's
//!   user and groups) and the fix.
//! - [`audit`]: `onionwatch audit`, the rules for unsafe or broken
//!   monitoring settings in all of the above, and `--suggest-ports`.
//!
//! `onionwatch-inside` builds its scrape targets and followed logs from a
//! [`tree::Installation`]; audit lives here because it reads the same
//! things discovery reads.

use std::path::PathBuf;

pub mod access;
pub mod audit;
pub mod config;
pub mod nginx_conf;
pub mod torrc;
pub mod tree;

/// A file or directory that cannot be read as a tor or Onionspray
/// configuration.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read.
    #[error("{}", access::read_error_text(path, source))]
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
}
