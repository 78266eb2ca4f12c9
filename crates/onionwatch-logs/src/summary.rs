//! The report of an access-log stream: a serialisable [`Summary`] and its
//! Prometheus text rendering ([`Summary::to_prometheus`]).
//!
//! JSON keys (all counts are integers):
//!
//! | key | meaning |
//! | --- | --- |
//! | `project` | the project name, when given |
//! | `lines` | lines read, parsed or not |
//! | `requests` | lines parsed |
//! | `parse_errors`, `parse_errors_by_reason` | lines that did not parse, in total and by reason (`truncated`, `bad_status`, `too_long`...) |
//! | `requests_by_status` | by status code as a string: `{"200": 10}` |
//! | `requests_by_status_class` | `1xx`...`5xx` and `other` (always all six keys) |
//! | `requests_by_method` | `GET`, `POST`... and `OTHER` |
//! | `bytes` | sum of `$body_bytes_sent` (else `$bytes_sent`) |
//! | `unique_circuits`, `unique_circuits_exact` | distinct circuits (HyperLogLog estimate; exact up to 1,024, ≈0.8 % standard error above) |
//! | `requests_without_circuit` | requests whose client is not a circuit address |
//! | `unique_circuits_windows` | `{"end", "1m", "5m", "1h"}`: distinct circuits in the windows ending at the newest time seen |
//! | `first_time`, `last_time` | oldest and newest request times (RFC 3339) |
//! | `request_duration`, `upstream_response_duration` | `{count, sum_seconds, buckets: [{le, count}]}` (cumulative), when the format has the variable |
//! | `circuit_window`, `previous_circuit_window` | requests per circuit in the current and the previous complete window: `{start, end, seconds, requests, circuits, untracked_requests, late_requests, requests_per_circuit: [{le, count}], top_circuits: [{circuit, requests}]}` |
//! | `files` | per file: `{path, lines, parse_errors, bytes_read}` |
//!
//! Metric names start with `onionwatch_log_`; labels are bounded (reason,
//! status class, method, status code, window, bucket bound, project), never
//! a circuit id, an address or a path.

use std::collections::BTreeMap;

use onionwatch_metrics::{render, Family, Format, MetricType};
use serde::{Deserialize, Serialize};

use crate::access::{ErrorReason, Method};

/// Everything known about one access-log stream; see the module
/// documentation for the JSON keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// The project name, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Lines read, parsed or not.
    pub lines: u64,
    /// Lines parsed.
    pub requests: u64,
    /// Lines that did not parse.
    pub parse_errors: u64,
    /// Lines that did not parse, by reason (only reasons seen).
    pub parse_errors_by_reason: BTreeMap<String, u64>,
    /// Requests by three-digit status code.
    pub requests_by_status: BTreeMap<String, u64>,
    /// Requests by status class: `1xx`-`5xx`, `other`.
    pub requests_by_status_class: BTreeMap<String, u64>,
    /// Requests by method (only methods seen).
    pub requests_by_method: BTreeMap<String, u64>,
    /// Response body bytes.
    pub bytes: u64,
    /// Distinct circuits (estimate); with `$server_addr` in the format, the
    /// sum over listeners (an upper bound, see
    /// [`crate::analytics`]).
    pub unique_circuits: u64,
    /// Whether `unique_circuits` is exact (few enough circuits, one listener).
    pub unique_circuits_exact: bool,
    /// Distinct circuits per listener (`$server_addr` without the socket's
    /// file name: one onion service of one tor, e.g. a softmap worker),
    /// when the format has `$server_addr`. JSON only, never labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub unique_circuits_by_listener: BTreeMap<String, u64>,
    /// Requests without a circuit id.
    pub requests_without_circuit: u64,
    /// Distinct circuits in sliding windows.
    pub unique_circuits_windows: Option<WindowedUnique>,
    /// Oldest request time.
    pub first_time: Option<String>,
    /// Newest request time.
    pub last_time: Option<String>,
    /// `$request_time` histogram.
    pub request_duration: Option<DurationSummary>,
    /// `$upstream_response_time` histogram (sum of all attempts per request).
    pub upstream_response_duration: Option<DurationSummary>,
    /// Requests per circuit in the current window.
    pub circuit_window: Option<CircuitWindowSummary>,
    /// Requests per circuit in the previous complete window.
    pub previous_circuit_window: Option<CircuitWindowSummary>,
    /// Per-file counts (filled by whoever read the files).
    #[serde(default)]
    pub files: Vec<FileSummary>,
}

/// Distinct circuits in the windows ending at `end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowedUnique {
    /// The window end: the newest time seen (RFC 3339).
    pub end: String,
    /// The last minute.
    #[serde(rename = "1m")]
    pub last_1m: u64,
    /// The last 5 minutes.
    #[serde(rename = "5m")]
    pub last_5m: u64,
    /// The last hour.
    #[serde(rename = "1h")]
    pub last_1h: u64,
}

/// A cumulative histogram bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Upper bound (`"0.005"`, `"+Inf"`).
    pub le: String,
    /// Observations at or below the bound.
    pub count: u64,
}

/// A duration histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DurationSummary {
    /// Observations.
    pub count: u64,
    /// Sum of all durations.
    pub sum_seconds: f64,
    /// Cumulative buckets, bounds in seconds.
    pub buckets: Vec<Bucket>,
}

/// One circuit's request count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitCount {
    /// The global circuit id (what the control port calls `CircuitID`).
    pub circuit: u32,
    /// Requests in the window.
    pub requests: u64,
}

/// Requests per circuit in one window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitWindowSummary {
    /// Window start (RFC 3339).
    pub start: String,
    /// Window end, exclusive (RFC 3339).
    pub end: String,
    /// Window length.
    pub seconds: u32,
    /// Requests with a circuit id in the window.
    pub requests: u64,
    /// Circuits counted individually.
    pub circuits: u64,
    /// Requests from circuits not tracked because the map was full.
    pub untracked_requests: u64,
    /// Requests whose time was before the window (out-of-order lines).
    pub late_requests: u64,
    /// Circuits with at most `le` requests (cumulative).
    pub requests_per_circuit: Vec<Bucket>,
    /// The busiest circuits, busiest first.
    pub top_circuits: Vec<CircuitCount>,
}

/// Counts for one input file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSummary {
    /// The path as given.
    pub path: String,
    /// Lines read.
    pub lines: u64,
    /// Lines that did not parse.
    pub parse_errors: u64,
    /// Bytes read (decompressed for `.gz`).
    pub bytes_read: u64,
}

/// Builds families whose samples all start with an optional `project` label.
struct Families<'a> {
    out: Vec<Family>,
    project: Option<&'a str>,
}

impl Families<'_> {
    fn family(&mut self, name: &str, kind: MetricType, help: &str) {
        self.out.push(Family::new(name, help, kind));
    }

    fn sample(&mut self, suffix: &str, labels: &[(&str, &str)], value: f64) {
        let mut all: Vec<(&str, &str)> = Vec::with_capacity(labels.len() + 1);
        all.extend(self.project.map(|p| ("project", p)));
        all.extend_from_slice(labels);
        let f = self.out.last_mut().expect("family() first");
        f.push_suffixed(suffix, &all, value);
    }

    fn counter(&mut self, labels: &[(&str, &str)], value: u64) {
        self.sample("_total", labels, value as f64);
    }

    fn gauge(&mut self, labels: &[(&str, &str)], value: u64) {
        self.sample("", labels, value as f64);
    }

    fn histogram(&mut self, name: &str, help: &str, h: &DurationSummary) {
        self.family(name, MetricType::Histogram, help);
        for b in &h.buckets {
            self.sample("_bucket", &[("le", &b.le)], b.count as f64);
        }
        self.sample("_sum", &[], h.sum_seconds);
        self.sample("_count", &[], h.count as f64);
    }
}

/// The names of the families [`Summary::to_families`] exports (without
/// `_total`): readers such as the dashboard import them, so a rename
/// cannot silently empty their columns.
pub mod family {
    /// Access-log lines read (counter).
    pub const LINES: &str = "onionwatch_log_lines";
    /// Lines that did not parse, by `reason` (counter).
    pub const PARSE_ERRORS: &str = "onionwatch_log_parse_errors";
    /// Requests by `status_class` (counter).
    pub const REQUESTS: &str = "onionwatch_log_requests";
    /// Requests by `method` (counter).
    pub const REQUESTS_BY_METHOD: &str = "onionwatch_log_requests_by_method";
    /// Requests by status `code` (counter).
    pub const REQUESTS_BY_CODE: &str = "onionwatch_log_requests_by_code";
    /// Response body bytes (counter).
    pub const RESPONSE_BYTES: &str = "onionwatch_log_response_bytes";
    /// Requests without a circuit id (counter).
    pub const REQUESTS_WITHOUT_CIRCUIT: &str = "onionwatch_log_requests_without_circuit";
    /// Distinct circuits by `window` (gauge).
    pub const UNIQUE_CIRCUITS: &str = "onionwatch_log_unique_circuits";
    /// `$request_time` (histogram).
    pub const REQUEST_DURATION: &str = "onionwatch_log_request_duration_seconds";
    /// `$upstream_response_time` (histogram).
    pub const UPSTREAM_RESPONSE_DURATION: &str =
        "onionwatch_log_upstream_response_duration_seconds";
    /// Circuits by requests in the window, `le` (gauge).
    pub const WINDOW_CIRCUITS: &str = "onionwatch_log_window_circuits";
    /// Requests with a circuit id in the window (gauge).
    pub const WINDOW_REQUESTS: &str = "onionwatch_log_window_requests";
    /// Requests of untracked circuits in the window (gauge).
    pub const WINDOW_UNTRACKED_REQUESTS: &str = "onionwatch_log_window_untracked_requests";
}

impl Summary {
    /// The summary as Prometheus text exposition format (version 0.0.4):
    /// [`Summary::to_families`] rendered.
    pub fn to_prometheus(&self) -> String {
        render(&self.to_families(), Format::Prometheus)
    }

    /// The summary as metric families (names without `_total`), every
    /// sample labelled `project` first when the summary has a project.
    pub fn to_families(&self) -> Vec<Family> {
        let mut p = Families {
            out: Vec::new(),
            project: self.project.as_deref(),
        };
        p.family(
            family::LINES,
            MetricType::Counter,
            "Access-log lines read, parsed or not.",
        );
        p.counter(&[], self.lines);

        p.family(
            family::PARSE_ERRORS,
            MetricType::Counter,
            "Access-log lines that did not parse, by reason.",
        );
        for r in ErrorReason::ALL {
            let n = self
                .parse_errors_by_reason
                .get(r.as_str())
                .copied()
                .unwrap_or(0);
            p.counter(&[("reason", r.as_str())], n);
        }

        p.family(
            family::REQUESTS,
            MetricType::Counter,
            "Requests by status class (1xx-5xx, other).",
        );
        for (class, n) in &self.requests_by_status_class {
            p.counter(&[("status_class", class)], *n);
        }

        p.family(
            family::REQUESTS_BY_METHOD,
            MetricType::Counter,
            "Requests by HTTP method (unusual methods as OTHER).",
        );
        for m in Method::ALL {
            let n = self
                .requests_by_method
                .get(m.as_str())
                .copied()
                .unwrap_or(0);
            p.counter(&[("method", m.as_str())], n);
        }

        p.family(
            family::REQUESTS_BY_CODE,
            MetricType::Counter,
            "Requests by HTTP status code.",
        );
        for (code, n) in &self.requests_by_status {
            p.counter(&[("code", code)], *n);
        }

        p.family(
            family::RESPONSE_BYTES,
            MetricType::Counter,
            "Response body bytes sent ($body_bytes_sent).",
        );
        p.counter(&[], self.bytes);

        p.family(
            family::REQUESTS_WITHOUT_CIRCUIT,
            MetricType::Counter,
            "Requests whose client address carries no onion circuit id.",
        );
        p.counter(&[], self.requests_without_circuit);

        p.family(
            family::UNIQUE_CIRCUITS,
            MetricType::Gauge,
            "Distinct onion circuits (HyperLogLog estimate, ~0.8% standard error) in the last 1m, 5m, 1h up to the newest log time, and overall.",
        );
        if let Some(w) = &self.unique_circuits_windows {
            for (window, n) in [("1m", w.last_1m), ("5m", w.last_5m), ("1h", w.last_1h)] {
                p.gauge(&[("window", window)], n);
            }
        }
        p.gauge(&[("window", "all")], self.unique_circuits);

        if let Some(h) = &self.request_duration {
            p.histogram(
                family::REQUEST_DURATION,
                "Request processing time ($request_time).",
                h,
            );
        }
        if let Some(h) = &self.upstream_response_duration {
            p.histogram(
                family::UPSTREAM_RESPONSE_DURATION,
                "Time spent waiting on upstreams per request ($upstream_response_time, all attempts summed).",
                h,
            );
        }

        if let Some(w) = &self.circuit_window {
            p.family(
                family::WINDOW_CIRCUITS,
                MetricType::Gauge,
                "Circuits with at most `le` requests in the current per-circuit window.",
            );
            for b in &w.requests_per_circuit {
                p.gauge(&[("le", &b.le)], b.count);
            }
            p.family(
                family::WINDOW_REQUESTS,
                MetricType::Gauge,
                "Requests with a circuit id in the current per-circuit window.",
            );
            p.gauge(&[], w.requests);
            p.family(
                family::WINDOW_UNTRACKED_REQUESTS,
                MetricType::Gauge,
                "Requests in the current window from circuits not tracked because the per-circuit map was full.",
            );
            p.gauge(&[], w.untracked_requests);
        }
        p.out
    }
}

#[cfg(test)]
mod tests {
    use crate::analytics::Analytics;

    #[test]
    fn prometheus_text_is_well_formed_and_has_no_circuit_labels() {
        let mut a = Analytics::default();
        let f = crate::access::LogFormat::compile(
            r#"$remote_addr [$time_local] "$request" $status $body_bytes_sent $request_time"#,
        )
        .unwrap();
        for line in [
            &br#"fc00:dead:beef:4dad::0:30 [11/Jan/2024:17:08:43 +0000] "GET /secret HTTP/1.1" 200 10 0.004"#[..],
            br#"fc00:dead:beef:4dad::0:31 [11/Jan/2024:17:08:44 +0000] "POST /x HTTP/1.1" 503 5 1.5"#,
            br#"10.1.2.3 [11/Jan/2024:17:08:45 +0000] "BREW /pot HTTP/1.1" 418 0 0.000"#,
        ] {
            a.record(&f.parse(line).unwrap());
        }
        a.error(&crate::access::ParseError::Empty);
        let mut s = a.summary();
        s.project = Some("a\"b\\c\nd".into());
        let text = s.to_prometheus();
        for needle in [
            "onionwatch_log_lines_total{project=\"a\\\"b\\\\c\\nd\"} 4\n",
            "onionwatch_log_parse_errors_total{project=\"a\\\"b\\\\c\\nd\",reason=\"empty\"} 1\n",
            "status_class=\"2xx\"} 1\n",
            "status_class=\"4xx\"} 1\n",
            "method=\"OTHER\"} 1\n",
            "code=\"503\"} 1\n",
            "onionwatch_log_response_bytes_total{project=\"a\\\"b\\\\c\\nd\"} 15\n",
            "window=\"all\"} 2\n",
            "window=\"1m\"} 2\n",
            "onionwatch_log_request_duration_seconds_bucket{project=\"a\\\"b\\\\c\\nd\",le=\"0.005\"} 2\n",
            "le=\"+Inf\"} 3\n",
            "onionwatch_log_request_duration_seconds_sum{project=\"a\\\"b\\\\c\\nd\"} 1.504\n",
            "onionwatch_log_window_circuits{project=\"a\\\"b\\\\c\\nd\",le=\"1\"} 2\n",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        for forbidden in ["fc00", "10.1.2.3", "/secret", "\"48\"", "\"49\""] {
            assert!(!text.contains(forbidden), "{forbidden} leaked into\n{text}");
        }
        // Every sample line: name{labels} value, and every name has a TYPE.
        let mut typed = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.insert(rest.split(' ').next().unwrap().to_string());
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap();
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|b| typed.contains(*b)))
                .unwrap_or(name);
            assert!(typed.contains(base), "no TYPE for {name}");
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        // The dashboard reads these families by name.
        let families = s.to_families();
        let requests = families
            .iter()
            .find(|f| f.name == "onionwatch_log_requests")
            .unwrap();
        assert_eq!(requests.kind, onionwatch_metrics::MetricType::Counter);
        assert_eq!(requests.samples[0].suffix, "_total");
        assert_eq!(requests.samples[0].labels[0].0, "project");
        assert!(families
            .iter()
            .any(|f| f.name == "onionwatch_log_unique_circuits"));
        let no_project = a.summary().to_prometheus();
        assert!(no_project.contains("onionwatch_log_lines_total 4\n"));
        assert!(no_project.contains("onionwatch_log_parse_errors_total{reason=\"empty\"} 1\n"));
    }
}
