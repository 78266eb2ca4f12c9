//! The state file: where each followed file was left, saved between runs.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A problem with the state file.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// Reading or writing failed.
    #[error("cannot {action} the tail state file {}: {source} (check the path and that this user may write its directory)", path.display())]
    Io {
        /// `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is not a state this version wrote.
    #[error("the tail state file {} is corrupt ({reason}); delete it to start afresh (every log file is then read again from its start)", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Where one file was left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePosition {
    /// The path it was followed under.
    pub path: PathBuf,
    /// Its device.
    pub dev: u64,
    /// Its inode.
    pub ino: u64,
    /// Bytes consumed: the start of the first line not handed out.
    pub offset: u64,
    /// How many leading bytes the fingerprint covers.
    pub fingerprint_len: u64,
    /// FNV-1a 64 of those bytes, 16 hex digits.
    pub fingerprint: String,
}

/// The positions of every followed file, as saved between runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TailState {
    /// Format version, 1.
    pub version: u32,
    /// One entry per followed path.
    pub files: Vec<FilePosition>,
}

impl Default for TailState {
    /// An empty state of the current version.
    fn default() -> Self {
        TailState {
            version: 1,
            files: Vec::new(),
        }
    }
}

impl TailState {
    /// Read a state file; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<TailState, StateError> {
        let text = match std::fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(TailState::default()),
            Err(source) => {
                return Err(StateError::Io {
                    action: "read",
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let state: TailState = serde_json::from_slice(&text).map_err(|e| StateError::Corrupt {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        if state.version != 1 {
            return Err(StateError::Corrupt {
                path: path.to_owned(),
                reason: format!("unknown version {}", state.version),
            });
        }
        Ok(state)
    }

    /// Write the state atomically and durably: a temporary file in the same
    /// directory, synced, renamed over `path`, and the directory synced
    /// ([`onionwatch_tor::persist::write_atomic`]), so a crash leaves the
    /// previous state or this one. Mode 0600: it names the log files.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let io_err = |source| StateError::Io {
            action: "write",
            path: path.to_owned(),
            source,
        };
        let text = serde_json::to_vec(self).map_err(|e| io_err(io::Error::other(e)))?;
        onionwatch_tor::persist::write_atomic(path, &text, 0o600).map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onionwatch_test_support::file_names as names;

    #[test]
    fn saves_replace_the_file_and_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tail.json");
        let mut state = TailState::default();
        state.save(&path).unwrap();
        state.files.push(FilePosition {
            path: "/var/log/nginx/access.log".into(),
            dev: 1,
            ino: 2,
            offset: 3,
            fingerprint_len: 4,
            fingerprint: "0123456789abcdef".into(),
        });
        state.save(&path).unwrap();
        assert_eq!(TailState::load(&path).unwrap(), state);
        assert_eq!(names(dir.path()), ["tail.json"]);

        // A save that fails (the path is a directory) reports it and leaves
        // no half-written temporary file behind.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        let e = state.save(&blocked).unwrap_err();
        assert!(e.to_string().contains("blocked"), "{e}");
        assert_eq!(names(dir.path()), ["blocked", "tail.json"]);
    }
}
