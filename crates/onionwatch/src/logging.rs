//! Log filtering: `RUST_LOG`, `-v`, and (for `probe`) Onionprobe's
//! `log_level`.
//!
//! Precedence, most specific first: `RUST_LOG` (when set and valid), then
//! `-v`/`-vv`, then `log_level` (the `--log_level` flag over the config
//! file's value), then `info`. A subcommand that reads a config file calls
//! [`apply_config_level`] once it knows the level (and again after a reload);
//! it changes nothing when `RUST_LOG` or `-v` was given.
//!
//! `--log.format` (node_exporter's flag; `ONIONWATCH_LOG_FORMAT`) picks the
//! line format: `text` (tracing's, the default), `logfmt` or `json` (one
//! object per line), the last two with the keys Prometheus exporters use:
//! `ts` (RFC 3339, UTC), `level`, `target`, `msg`, then the event's fields.

use std::io::IsTerminal;
use std::sync::OnceLock;

use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

/// How log lines are written (`--log.format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// tracing's human-readable lines.
    #[default]
    Text,
    /// `key=value` pairs (logfmt), as Prometheus exporters write by default.
    Logfmt,
    /// One JSON object per line.
    Json,
}

struct Logging {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` or `-v` chose the filter; config levels are ignored.
    explicit: bool,
}

static LOGGING: OnceLock<Logging> = OnceLock::new();

/// Install the global subscriber (stderr) writing `format`. `verbose` is
/// the `-v` count. Under journald, text lines carry no timestamp (the
/// journal adds its own).
pub fn init(verbose: u8, format: LogFormat) {
    let (filter, explicit) = match EnvFilter::try_from_default_env() {
        Ok(f) => (f, true),
        Err(_) => match verbose {
            0 => (EnvFilter::new("info"), false),
            1 => (EnvFilter::new("debug"), true),
            _ => (EnvFilter::new("trace"), true),
        },
    };
    let (layer, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text if stderr_is_journal() => fmt.without_time().with_ansi(false).boxed(),
        LogFormat::Text => fmt.with_ansi(std::io::stderr().is_terminal()).boxed(),
        LogFormat::Logfmt => fmt.event_format(Structured { json: false }).boxed(),
        LogFormat::Json => fmt.event_format(Structured { json: true }).boxed(),
    };
    tracing_subscriber::registry().with(layer).with(fmt).init();
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

/// One field's value: numbers and booleans stay such in JSON.
enum Value {
    Str(String),
    Num(String),
    Bool(bool),
}

/// The event's fields in order, `message` first as `msg`.
#[derive(Default)]
struct Fields(Vec<(String, Value)>);

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        let name = match field.name() {
            "message" => "msg",
            n => n,
        };
        self.0.push((name.to_owned(), value));
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::Str(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::Str(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::Num(value.to_string()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::Num(value.to_string()));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        match value.is_finite() {
            true => self.put(field, Value::Num(value.to_string())),
            false => self.put(field, Value::Str(value.to_string())),
        }
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
}

/// logfmt or JSON lines (see the module documentation).
struct Structured {
    json: bool,
}

impl<S, N> FormatEvent<S, N> for Structured
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut ts = String::new();
        SystemTime.format_time(&mut Writer::new(&mut ts))?;
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut pairs = vec![
            ("ts".to_owned(), Value::Str(ts)),
            (
                "level".to_owned(),
                Value::Str(meta.level().as_str().to_ascii_lowercase()),
            ),
            ("target".to_owned(), Value::Str(meta.target().to_owned())),
        ];
        let (msg, rest): (Vec<_>, Vec<_>) = fields.0.into_iter().partition(|(k, _)| k == "msg");
        pairs.extend(msg);
        pairs.extend(rest);
        let line = if self.json {
            json_line(pairs)
        } else {
            logfmt_line(pairs)
        };
        writeln!(writer, "{line}")
    }
}

fn json_line(pairs: Vec<(String, Value)>) -> String {
    let mut map = serde_json::Map::new();
    for (k, v) in pairs {
        let v = match v {
            Value::Str(s) => serde_json::Value::String(s),
            Value::Bool(b) => serde_json::Value::Bool(b),
            Value::Num(n) => serde_json::from_str(&n).unwrap_or(serde_json::Value::String(n)),
        };
        // A field named like a fixed key keeps both (the later one renamed).
        let key = if map.contains_key(&k) {
            format!("field_{k}")
        } else {
            k
        };
        map.insert(key, v);
    }
    serde_json::Value::Object(map).to_string()
}

fn logfmt_line(pairs: Vec<(String, Value)>) -> String {
    let mut out = String::new();
    for (k, v) in pairs {
        if !out.is_empty() {
            out.push(' ');
        }
        let v = match v {
            Value::Str(s) => s,
            Value::Num(n) => n,
            Value::Bool(b) => b.to_string(),
        };
        let plain = !v.is_empty()
            && v.chars()
                .all(|c| c > ' ' && c != '=' && c != '"' && c != '\\' && !c.is_control());
        if plain {
            let _ = write!(out, "{k}={v}");
        } else {
            out.push_str(&k);
            out.push_str("=\"");
            for c in v.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c.is_control() => {
                        let _ = write!(out, "\\u{{{:04x}}}", c as u32);
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// The lines `format` writes for two events.
    fn lines(json: bool) -> Vec<String> {
        let buf = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = buf.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .event_format(Structured { json })
                .with_writer(move || SinkWriter(sink.clone())),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                addr = "127.0.0.1:9925",
                tls = false,
                n = 3,
                "serving /metrics"
            );
            tracing::warn!(path = "/var/log/a b.log", "cannot read \"it\"\nat all");
        });
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        text.lines().map(str::to_owned).collect()
    }

    struct SinkWriter(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for SinkWriter {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn json_lines_have_the_exporter_keys_and_typed_fields() {
        let lines = lines(true);
        assert_eq!(lines.len(), 2, "{lines:?}");
        let first: serde_json::Value = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(first["level"], "info");
        assert_eq!(first["msg"], "serving /metrics");
        assert_eq!(first["addr"], "127.0.0.1:9925");
        assert_eq!(first["tls"], false);
        assert_eq!(first["n"], 3);
        assert!(first["target"].as_str().unwrap().starts_with("onionwatch"));
        let ts = first["ts"].as_str().unwrap();
        assert!(
            ts.len() >= 20 && ts.ends_with('Z') && ts.contains('T'),
            "{ts}"
        );
        let second: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
        assert_eq!(second["msg"], "cannot read \"it\"\nat all");
        assert_eq!(second["level"], "warn");
    }

    #[test]
    fn logfmt_quotes_what_needs_it() {
        let lines = lines(false);
        assert_eq!(lines.len(), 2, "{lines:?}");
        let first = lines[0].split_once(' ').unwrap().1;
        assert!(first.starts_with("level=info target=onionwatch"), "{first}");
        assert!(
            first.ends_with(" msg=\"serving /metrics\" addr=127.0.0.1:9925 tls=false n=3"),
            "{first}"
        );
        assert!(lines[0].starts_with("ts=2"), "{}", lines[0]);
        assert!(
            lines[1].ends_with(r#" msg="cannot read \"it\"\nat all" path="/var/log/a b.log""#),
            "{}",
            lines[1]
        );
    }

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
