//! Errors of the gateway library.

use std::path::PathBuf;

/// A failure to configure or start the gateway. Per-connection problems are
/// logged and counted in [`crate::Metrics`], never returned.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration file could not be read.
    #[error("cannot read the gateway configuration {}: {source}", path.display())]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The configuration is invalid.
    #[error("invalid gateway configuration{}: {message}", path.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    Config {
        /// The file, if the configuration came from one.
        path: Option<PathBuf>,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A listening socket could not be opened.
    #[error("cannot listen on {addr}: {source} (is another process using it? for unix sockets, may this user create files in that directory?)")]
    Listen {
        /// The address.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A live reload asked for something only a restart can change.
    #[error("{0} cannot change on reload; restart the gateway to apply it")]
    NeedsRestart(&'static str),
}
