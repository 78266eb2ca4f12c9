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
    tracing_subscriber::registry()
        .with(layer)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .init();
    let _ = LOGGING.set(Logging { handle, explicit });
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
