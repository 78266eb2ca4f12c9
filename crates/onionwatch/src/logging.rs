//! Log filtering: `RUST_LOG`, `-v`, and (for `probe`) Onionprobe's
//! `log_level`.
//!
//! Precedence, most specific first: `RUST_LOG` (when set and valid), then
//! `-v`/`-vv`, then `log_level` (the `--log_level` flag over the config
//! file's value), then `info`. A subcommand that reads a config file calls
//! [`apply_config_level`] once it knows the level (and again after a reload);
//! it changes nothing when `RUST_LOG` or `-v` was given.

use std::io::IsTerminal;
use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

struct Logging {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` or `-v` chose the filter; config levels are ignored.
    explicit: bool,
}

static LOGGING: OnceLock<Logging> = OnceLock::new();

/// Install the global subscriber (stderr). `verbose` is the `-v` count.
/// Under journald, lines carry no timestamp (the journal adds its own).
pub fn init(verbose: u8) {
    let (filter, explicit) = match EnvFilter::try_from_default_env() {
        Ok(f) => (f, true),
        Err(_) => match verbose {
            0 => (EnvFilter::new("info"), false),
            1 => (EnvFilter::new("debug"), true),
            _ => (EnvFilter::new("trace"), true),
        },
    };
    let (layer, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(layer);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if stderr_is_journal() {
        registry.with(fmt.without_time()).init();
    } else {
        registry.with(fmt).init();
    }
    let _ = LOGGING.set(Logging { handle, explicit });
}

/// Whether standard error is a stream to journald: systemd then sets
/// `JOURNAL_STREAM` to its `DEVICE:INODE` (checked, because a child of the
/// service inherits the variable with some other standard error).
fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// The `tracing` filter for an Onionprobe `log_level` (case-insensitive):
/// `debug`, `info`, `warning` (or `warn`), `error`; `critical` maps to
/// `error`, as tracing has no level above it. `None` for anything else.
pub fn onionprobe_filter(level: &str) -> Option<&'static str> {
    match level.trim().to_ascii_lowercase().as_str() {
        "debug" => Some("debug"),
        "info" => Some("info"),
        "warning" | "warn" => Some("warn"),
        "error" | "critical" => Some("error"),
        _ => None,
    }
}

/// Apply a config's `log_level`, unless `RUST_LOG` or `-v` decided.
/// Returns whether the filter changed.
pub fn apply_config_level(level: &str) -> bool {
    let Some(logging) = LOGGING.get() else {
        return false;
    };
    if logging.explicit {
        return false;
    }
    let Some(directive) = onionprobe_filter(level) else {
        return false;
    };
    logging.handle.reload(EnvFilter::new(directive)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onionprobe_levels_map_to_tracing() {
        assert_eq!(onionprobe_filter("debug"), Some("debug"));
        assert_eq!(onionprobe_filter("INFO"), Some("info"));
        assert_eq!(onionprobe_filter("warning"), Some("warn"));
        assert_eq!(onionprobe_filter("Warn"), Some("warn"));
        assert_eq!(onionprobe_filter("error"), Some("error"));
        assert_eq!(onionprobe_filter("critical"), Some("error"));
        assert_eq!(onionprobe_filter("verbose"), None);
    }
}
