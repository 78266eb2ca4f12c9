//! Prometheus text 0.0.4 and OpenMetrics 1.0 encoders.

use std::fmt::Write;

use crate::{format_value, Family, MetricType, Sample};

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4 (what Onionprobe and tor serve).
    Prometheus,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
}

impl Format {
    /// The format a scraper asks for in its `Accept` header: OpenMetrics
    /// only when it names it, as Prometheus does.
    pub fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Render `families` in `format`. Families are written in the given order;
/// merge duplicates first ([`crate::merge`]): both formats forbid a family twice.
pub fn render(families: &[Family], format: Format) -> String {
    let mut out = String::with_capacity(families.len() * 256);
    for f in families {
        match format {
            Format::Prometheus => prometheus_family(&mut out, f),
            Format::OpenMetrics => openmetrics_family(&mut out, f),
        }
    }
    if format == Format::OpenMetrics {
        out.push_str("# EOF\n");
    }
    out
}

fn prometheus_family(out: &mut String, f: &Family) {
    // 0.0.4 names the family after its samples (`x_total`, `x_info`) and has
    // no info/stateset types; `_created` samples are OpenMetrics-only.
    let all_total = f
        .samples
        .iter()
        .all(|s| s.suffix == "_total" || s.suffix == "_created");
    let (name, kind) = match f.kind {
        MetricType::Counter if all_total => (format!("{}_total", f.name), "counter"),
        MetricType::Counter => (f.name.clone(), "counter"),
        MetricType::Gauge => (f.name.clone(), "gauge"),
        MetricType::Histogram => (f.name.clone(), "histogram"),
        MetricType::Summary => (f.name.clone(), "summary"),
        MetricType::Info => (format!("{}_info", f.name), "gauge"),
        MetricType::StateSet => (f.name.clone(), "gauge"),
        MetricType::Unknown => (f.name.clone(), "untyped"),
    };
    let _ = writeln!(out, "# HELP {name} {}", escape_help(&f.help, false));
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for s in text_samples(f) {
        sample(out, &f.name, s);
    }
}

/// The samples of `family` the Prometheus text format (0.0.4) writes, in
/// order, each named the family's name plus its `suffix`: all but the
/// `_created` ones (OpenMetrics only). remote_write pushes the same series.
pub fn text_samples(family: &Family) -> impl Iterator<Item = &Sample> {
    family.samples.iter().filter(|s| s.suffix != "_created")
}

fn openmetrics_family(out: &mut String, f: &Family) {
    // A counter whose samples lack `_total` (tor has some) is not a valid
    // OpenMetrics counter: export it as unknown rather than emit bad text.
    let counter_ok = f
        .samples
        .iter()
        .all(|s| s.suffix == "_total" || s.suffix == "_created");
    let kind = match f.kind {
        MetricType::Counter if counter_ok => "counter",
        MetricType::Counter => "unknown",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
        MetricType::Summary => "summary",
        MetricType::Info => "info",
        MetricType::StateSet => "stateset",
        MetricType::Unknown => "unknown",
    };
    let _ = writeln!(out, "# TYPE {} {kind}", f.name);
    if !f.help.is_empty() {
        let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(&f.help, true));
    }
    for s in &f.samples {
        sample(out, &f.name, s);
    }
}

fn sample(out: &mut String, name: &str, s: &Sample) {
    out.push_str(name);
    out.push_str(&s.suffix);
    if !s.labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in s.labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            escape_label_into(out, v);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(&format_value(s.value));
    out.push('\n');
}

fn escape_label_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(help: &str, quotes: bool) -> String {
    let mut s = String::with_capacity(help.len());
    for c in help.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '"' if quotes => s.push_str("\\\""),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Histogram;

    fn sample_families() -> Vec<Family> {
        let mut c = Family::counter("onion_service_fetch_error", "Fetch errors");
        c.push(&[("name", "a\"b\\c\nd")], 3.0);
        let mut i = Family::info("onion_service_probe_status", "Probe status");
        i.push(&[("name", "x")], 1.0);
        let mut s = Family::new("onionprobe_state", "State", MetricType::StateSet);
        s.push(&[("onionprobe_state", "probing")], 1.0);
        let mut h = Family::histogram("lat_seconds", "Latency\nover two lines");
        let mut hist = Histogram::new(&[1.0]);
        hist.observe(0.5);
        h.push_histogram(&[], &hist);
        let mut tor = Family::counter("tor_bug_reached_count", "tor's odd counter");
        tor.push_suffixed("", &[], 0.0);
        vec![c, i, s, h, tor]
    }

    #[test]
    fn prometheus_text_is_exact() {
        let text = render(&sample_families(), Format::Prometheus);
        let want = r#"# HELP onion_service_fetch_error_total Fetch errors
# TYPE onion_service_fetch_error_total counter
onion_service_fetch_error_total{name="a\"b\\c\nd"} 3
# HELP onion_service_probe_status_info Probe status
# TYPE onion_service_probe_status_info gauge
onion_service_probe_status_info{name="x"} 1
# HELP onionprobe_state State
# TYPE onionprobe_state gauge
onionprobe_state{onionprobe_state="probing"} 1
# HELP lat_seconds Latency\nover two lines
# TYPE lat_seconds histogram
lat_seconds_bucket{le="1"} 1
lat_seconds_bucket{le="+Inf"} 1
lat_seconds_sum 0.5
lat_seconds_count 1
# HELP tor_bug_reached_count tor's odd counter
# TYPE tor_bug_reached_count counter
tor_bug_reached_count 0
"#;
        assert_eq!(text, want);
    }

    #[test]
    fn openmetrics_text_is_exact() {
        let text = render(&sample_families(), Format::OpenMetrics);
        let want = r#"# TYPE onion_service_fetch_error counter
# HELP onion_service_fetch_error Fetch errors
onion_service_fetch_error_total{name="a\"b\\c\nd"} 3
# TYPE onion_service_probe_status info
# HELP onion_service_probe_status Probe status
onion_service_probe_status_info{name="x"} 1
# TYPE onionprobe_state stateset
# HELP onionprobe_state State
onionprobe_state{onionprobe_state="probing"} 1
# TYPE lat_seconds histogram
# HELP lat_seconds Latency\nover two lines
lat_seconds_bucket{le="1"} 1
lat_seconds_bucket{le="+Inf"} 1
lat_seconds_sum 0.5
lat_seconds_count 1
# TYPE tor_bug_reached_count unknown
# HELP tor_bug_reached_count tor's odd counter
tor_bug_reached_count 0
# EOF
"#;
        assert_eq!(text, want);
    }

    #[test]
    fn accept_header_negotiation() {
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        assert_eq!(Format::from_accept(Some("text/plain")), Format::Prometheus);
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::from_accept(Some(prom)), Format::OpenMetrics);
        assert!(Format::OpenMetrics
            .content_type()
            .starts_with("application/openmetrics-text"));
    }
}
