//! Onionprobe 1.4.1's metric families (same names, types, help and label
//! names), plus `onionwatch_*` families for what Onionprobe lacks.
//!
//! Differences in values, deliberately: counters count what they say (the
//! HTTP error counters increase, `pattern_matched` has samples), failed steps
//! overwrite their gauges instead of leaving stale values, descriptor metrics
//! use each endpoint's own name and address, `onion_service_probe_status_info`
//! carries no timestamp label (the time is in
//! `onionwatch_probe_last_tested_timestamp_seconds`), `hsdir_latency_seconds`
//! keeps the most recent [`MAX_HSDIRS`] HSDirs, and series of endpoints
//! removed from the config disappear on reload.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use onionwatch_metrics::{Collect, Family, MetricType};

/// HSDirs kept in `hsdir_latency_seconds` (most recently used first).
pub const MAX_HSDIRS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Gauge,
    Counter,
    Info,
    StateSet,
}

/// A family's fixed description.
struct Spec {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
}

const E: &[&str] = &["name", "address"];
const P: &[&str] = &["name", "address", "protocol", "port", "path"];
const T: &[&str] = &["name", "address", "port"];

macro_rules! spec {
    ($name:literal, $kind:ident, $labels:expr, $help:literal) => {
        Spec {
            name: $name,
            help: $help,
            kind: Kind::$kind,
            labels: $labels,
        }
    };
}

/// Every family, in Onionprobe's order, then ours.
const SPECS: &[Spec] = &[
    spec!("onionprobe_version", Info, &[], "Onionprobe version information"),
    spec!("onionprobe_state", StateSet, &[], "Onionprobe latest state"),
    spec!("onionprobe_wait_seconds", Gauge, &[], "Records how long Onionprobe waited between two probes in seconds"),
    spec!("onion_service_latency_seconds", Gauge, P, "Register Onion Service connection latency in seconds"),
    spec!("onion_service_reachable", Gauge, P, "Register if the Onion Service is reachable: value is 1 for reachability and 0 otherwise"),
    spec!("onion_service_connection_attempts", Gauge, &["name", "address", "protocol", "port", "path", "reachable"], "Register the number of attempts when trying to connect to an Onion Service in a probing round"),
    spec!("onion_service_tls_security_level", Gauge, T, "An integer representing the SSL security level for the context.See SSL_CTX_get_security_level(3) manpage for details."),
    spec!("onion_service_status_code", Gauge, P, "Register Onion Service connection HTTP status code"),
    spec!("onion_service_unexpected_status_code", Gauge, P, "Register if an Onion Service connection returned an unexpected HTTP status code: 1 for unexpected and 0 otherwise"),
    spec!("onion_service_descriptor_latency_seconds", Gauge, E, "Register Onion Service latency in seconds to get the descriptor"),
    spec!("onion_service_descriptor_reachable", Gauge, E, "Register if the Onion Service descriptor is available: value is 1 for reachability and 0 otherwise"),
    spec!("onion_service_descriptor_fetch_attempts", Gauge, &["name", "address", "reachable"], "Register the number of attempts required when trying to get an Onion Service descriptor in a probing round"),
    spec!("onion_service_descriptor_revision_counter", Gauge, E, "Register Onion Service descriptor revision counter"),
    spec!("onion_service_descriptor_lifetime_seconds", Gauge, E, "Register Onion Service descriptor lifetime in seconds"),
    spec!("onion_service_descriptor_outer_wrapper_size_bytes", Gauge, E, "Register Onion Service outer wrapper descriptor size in bytes (decrypted)"),
    spec!("onion_service_descriptor_second_layer_size_bytes", Gauge, E, "Register Onion Service second layer descriptor size in bytes (decrypted)"),
    spec!("onion_service_is_single", Gauge, E, "Indicates whether the server is using the single hop Onion Service circuit mode: value is 1 if this is a single onion service, 0 otherwise"),
    spec!("onion_service_introduction_points_number", Gauge, E, "Register the number of introduction points in the Onion Service descriptor"),
    spec!("onion_service_pow_enabled", Gauge, E, "Whether Proof of Work (PoW) defense is enabled in the Onion Service: value is 1 when PoW is enabled, 0 otherwise"),
    spec!("onion_service_pow_v1_seed", Gauge, E, "The Proof of Work (PoW) decoded seed for the v1 scheme"),
    spec!("onion_service_pow_v1_effort", Gauge, E, "The Proof of Work (PoW) suggested effort for the v1 scheme"),
    spec!("onion_service_pow_v1_expiration_seconds", Gauge, E, "The Proof of Work (PoW) seed expiration time for the v1 scheme"),
    spec!("onion_service_pattern_matched", Gauge, &["name", "address", "protocol", "port", "path", "pattern"], "Register whether a regular expression pattern is matched when connection to the Onion Service: value is 1 for matched pattern and 0 otherwise"),
    spec!("onion_service_valid_certificate", Gauge, P, "Register whether the Onion Service HTTPS certificate is valid: value is 1, 0 for invalid, 2 for untested. Only for sites reachable using HTTPS"),
    spec!("onion_service_certificate_not_valid_before_timestamp_seconds", Gauge, T, "Register the beginning of the validity period of the certificate in UTC.This does not mean necessarily that the certificate is CA-validated.Value is represented as a POSIX timestamp"),
    spec!("onion_service_certificate_not_valid_after_timestamp_seconds", Gauge, T, "Register the end of the validity period of the certificate in UTC.This does not mean necessarily that the certificate is CA-validated.Value is represented as a POSIX timestamp"),
    spec!("onion_service_certificate_expiry_seconds", Gauge, T, "Register how many seconds are left before the certificate expire.Negative values indicate how many seconds passed after the certificate already expired."),
    spec!("onion_service_certificate_match_hostname", Gauge, T, "Register whether a provided server certificate matches the server hostname in a TLS connection: value is 1 for matched hostname and 0 otherwise. Check is done both on the commonName and subjectAltName fields. A value of 1 does not mean necessarily that the certificate is CA-validated."),
    spec!("hsdir_latency_seconds", Gauge, &["name", "id"], "Register HSDir latency in seconds to fetch a descriptor"),
    spec!("onion_service_fetch_requests", Counter, P, "Counts the total number of requests to access an Onion Service"),
    spec!("onion_service_fetch_error", Counter, P, "Counts the total number of errors when fetching an Onion Service"),
    spec!("onion_service_descriptor_fetch_requests", Counter, E, "Counts the total number of requests to fetch an Onion Service descriptor"),
    spec!("onion_service_descriptor_fetch_error", Counter, E, "Counts the total number of errors when fetching an Onion Service descriptor"),
    spec!("onion_service_generic_error", Counter, T, "Counts the total number of errors not tracked by other metrics"),
    spec!("onion_service_request_exception", Counter, P, "Counts the total number of Onion Service general exception errors"),
    spec!("onion_service_connection_error", Counter, P, "Counts the total number of Onion Service connection errors"),
    spec!("onion_service_http_error", Counter, P, "Counts the total number of Onion Service HTTP errors"),
    spec!("onion_service_too_many_redirects", Counter, P, "Counts the total number of Onion Service too many HTTP redirect errors"),
    spec!("onion_service_connection_timeout", Counter, P, "Counts the total number of Onion Service connection timeouts"),
    spec!("onion_service_read_timeout", Counter, P, "Counts the total number of Onion Service read timeouts"),
    spec!("onion_service_timeout", Counter, P, "Counts the total number of Onion Service timeouts"),
    spec!("onion_service_certificate_error", Counter, P, "Counts the total number of HTTPS certificate validation errors"),
    spec!("onion_service_descriptor", Info, &["name", "address"], "Onion Service descriptor information, including state and Hidden Service Directory (HSDir) used"),
    spec!("onion_service_tls", Info, T, "Register miscellaneous TLS information for a given Onion Service, such as version and ciphers"),
    spec!("onion_service_certificate", Info, T, "Register miscellaneous TLS certificate information for a given Onion Service, such as version and fingerprints"),
    spec!("onion_service_probe_status", Info, E, "Register information about the last test made to a given Onion Service, including POSIX timestamp"),
    // onionwatch's own.
    spec!("onionwatch_probe_errors", Counter, &["name", "address", "reason"], "Probe failures by reason (tor SOCKS5 extended errors, descriptor FAILED reasons, timeouts, TLS, HTTP)"),
    spec!("onionwatch_probe_success", Gauge, E, "1 when the last probe of the endpoint passed (descriptor, every path's status and pattern), 0 otherwise"),
    spec!("onionwatch_probe_last_tested_timestamp_seconds", Gauge, E, "When the endpoint was last probed, as a POSIX timestamp (Onionprobe puts this in a label)"),
    spec!("onionwatch_probe_connect_seconds", Gauge, P, "Seconds to open the stream through tor (descriptor, introduction, rendezvous) and finish TLS, last attempt"),
    spec!("onionwatch_probe_first_byte_seconds", Gauge, P, "Seconds from the start of the attempt to the response head (time to first byte), last attempt"),
    spec!("onionwatch_probe_body_bytes", Gauge, P, "Response body bytes read (bounded by max_body_bytes), last attempt"),
    spec!("onionwatch_descriptor_attempt_latency_seconds", Gauge, &["name", "address", "attempt"], "Latency of each descriptor fetch attempt of the last probe, by attempt number"),
    spec!("onionwatch_certificate_valid", Gauge, T, "1 when the certificate chain verifies against the web PKI for the onion address, 0 otherwise, whatever tls_verify says"),
    spec!("onionwatch_round_duration_seconds", Gauge, &[], "Wall time of the last complete probing round"),
    spec!("onionwatch_rounds", Counter, &[], "Probing rounds completed"),
];

/// The states of `onionprobe_state`.
pub const STATES: [&str; 4] = ["starting", "probing", "sleeping", "stopping"];

#[derive(Debug, Clone)]
struct Series {
    value: f64,
    created: f64,
    info: Vec<(String, String)>,
}

#[derive(Default)]
struct Inner {
    /// family name → label values → series.
    series: HashMap<&'static str, BTreeMap<Vec<String>, Series>>,
    state: usize,
    hsdirs: Vec<(String, String, f64)>,
}

/// The prober's metric state, rendered at every scrape ([`Collect`]).
pub struct ProbeMetrics {
    inner: Mutex<Inner>,
    version: String,
}

impl std::fmt::Debug for ProbeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeMetrics").finish_non_exhaustive()
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn spec(name: &str) -> &'static Spec {
    SPECS
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("unknown metric family {name}"))
}

impl Default for ProbeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ProbeMetrics {
    /// Fresh state: `onionprobe_state` is `starting`, wait 0.
    pub fn new() -> Self {
        let m = ProbeMetrics {
            inner: Mutex::new(Inner::default()),
            version: format!("onionwatch-{}", env!("CARGO_PKG_VERSION")),
        };
        m.set("onionprobe_wait_seconds", &[], 0.0);
        m
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Set a gauge.
    pub fn set(&self, family: &'static str, labels: &[&str], value: f64) {
        let s = spec(family);
        debug_assert_eq!(s.labels.len(), labels.len(), "{family}");
        debug_assert!(matches!(s.kind, Kind::Gauge));
        let key: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        let mut g = self.lock();
        let entry = g.series.entry(s.name).or_default();
        entry
            .entry(key)
            .and_modify(|e| e.value = value)
            .or_insert(Series {
                value,
                created: now(),
                info: Vec::new(),
            });
    }

    /// Remove a gauge series (a value that no longer applies).
    pub fn unset(&self, family: &'static str, labels: &[&str]) {
        let key: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        if let Some(m) = self.lock().series.get_mut(spec(family).name) {
            m.remove(&key);
        }
    }

    /// Increase a counter by 1.
    pub fn inc(&self, family: &'static str, labels: &[&str]) {
        self.add(family, labels, 1.0);
    }

    /// Increase a counter.
    pub fn add(&self, family: &'static str, labels: &[&str], by: f64) {
        let s = spec(family);
        debug_assert_eq!(s.labels.len(), labels.len(), "{family}");
        debug_assert!(matches!(s.kind, Kind::Counter));
        let key: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        let mut g = self.lock();
        g.series
            .entry(s.name)
            .or_default()
            .entry(key)
            .and_modify(|e| e.value += by)
            .or_insert(Series {
                value: by,
                created: now(),
                info: Vec::new(),
            });
    }

    /// Replace an info series: one series per `labels`, whose extra labels
    /// are `info`.
    pub fn set_info(&self, family: &'static str, labels: &[&str], info: &[(&str, &str)]) {
        let s = spec(family);
        debug_assert!(matches!(s.kind, Kind::Info));
        let key: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        let info = info
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.lock().series.entry(s.name).or_default().insert(
            key,
            Series {
                value: 1.0,
                created: now(),
                info,
            },
        );
    }

    /// Set `onionprobe_state` (one of [`STATES`]).
    pub fn set_state(&self, state: &str) {
        if let Some(i) = STATES.iter().position(|s| *s == state) {
            self.lock().state = i;
        }
    }

    /// The current `onionprobe_state`.
    pub fn state(&self) -> &'static str {
        STATES[self.lock().state]
    }

    /// Record an HSDir's latency; keeps the [`MAX_HSDIRS`] most recent.
    pub fn hsdir_latency(&self, nickname: &str, fingerprint: &str, seconds: f64) {
        let mut g = self.lock();
        g.hsdirs.retain(|(_, fp, _)| fp != fingerprint);
        g.hsdirs
            .insert(0, (nickname.to_owned(), fingerprint.to_owned(), seconds));
        g.hsdirs.truncate(MAX_HSDIRS);
    }

    /// Drop every series of endpoints not in `keep` (name, address), e.g.
    /// after a config reload.
    pub fn retain_endpoints(&self, keep: &[(&str, &str)]) {
        let mut g = self.lock();
        for (family, map) in g.series.iter_mut() {
            let s = spec(family);
            if s.labels.first() == Some(&"name") && s.name != "hsdir_latency_seconds" {
                map.retain(|k, _| keep.iter().any(|(n, a)| k[0] == *n && k[1] == *a));
            }
        }
    }

    /// Current value of a series (tests, summaries).
    pub fn get(&self, family: &str, labels: &[&str]) -> Option<f64> {
        let key: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        self.lock()
            .series
            .get(spec(family).name)
            .and_then(|m| m.get(&key))
            .map(|s| s.value)
    }

    /// The info labels of an info series.
    pub fn get_info(&self, family: &str, labels: &[&str]) -> Option<Vec<(String, String)>> {
        let key: Vec<String> = labels.iter().map(|l| (*l).to_owned()).collect();
        self.lock()
            .series
            .get(spec(family).name)
            .and_then(|m| m.get(&key))
            .map(|s| s.info.clone())
    }
}

impl Collect for ProbeMetrics {
    fn collect(&self, out: &mut Vec<Family>) {
        let g = self.lock();
        for s in SPECS {
            let kind = match s.kind {
                Kind::Gauge => MetricType::Gauge,
                Kind::Counter => MetricType::Counter,
                Kind::Info => MetricType::Info,
                Kind::StateSet => MetricType::StateSet,
            };
            let mut f = Family::new(s.name, s.help, kind);
            match s.name {
                "onionprobe_version" => {
                    f.push(&[("version", &self.version)], 1.0);
                }
                "onionprobe_state" => {
                    for (i, st) in STATES.iter().enumerate() {
                        f.push(
                            &[("onionprobe_state", st)],
                            if i == g.state { 1.0 } else { 0.0 },
                        );
                    }
                }
                "hsdir_latency_seconds" => {
                    for (nick, fp, v) in &g.hsdirs {
                        f.push(&[("name", nick), ("id", fp)], *v);
                    }
                }
                _ => {}
            }
            let mut created = None;
            if let Some(map) = g.series.get(s.name) {
                if s.kind == Kind::Counter && !map.is_empty() {
                    created = Some(Family::gauge(format!("{}_created", s.name), s.help));
                }
                for (key, series) in map {
                    let mut labels: Vec<(&str, &str)> = s
                        .labels
                        .iter()
                        .zip(key)
                        .map(|(k, v)| (*k, v.as_str()))
                        .collect();
                    labels.extend(series.info.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                    f.push(&labels, series.value);
                    if let Some(c) = created.as_mut() {
                        c.push(&labels, series.created);
                    }
                }
            }
            out.push(f);
            // prometheus_client exposes a counter's creation time as a
            // `<name>_created` gauge family in the 0.0.4 text format.
            if let Some(c) = created {
                out.push(c);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onionwatch_metrics::{render, Format};

    #[test]
    fn renders_onionprobe_shapes() {
        let m = ProbeMetrics::new();
        m.set_state("probing");
        let p = ["n", "a.onion", "http", "80", "/"];
        m.inc("onion_service_fetch_requests", &p);
        m.inc("onion_service_fetch_requests", &p);
        m.set("onion_service_reachable", &p, 1.0);
        m.set_info(
            "onion_service_descriptor",
            &["n", "a.onion"],
            &[("hsdir", "$AB~x"), ("state", "RECEIVED")],
        );
        m.set_info(
            "onion_service_descriptor",
            &["n", "a.onion"],
            &[("hsdir", "$CD~y"), ("state", "NOT_FOUND")],
        );
        m.hsdir_latency("x", "AB", 0.5);
        let mut fams = Vec::new();
        m.collect(&mut fams);
        let text = render(&fams, Format::Prometheus);
        assert!(text.contains("# TYPE onion_service_fetch_requests_total counter\n"));
        assert!(text.contains("onion_service_fetch_requests_total{name=\"n\",address=\"a.onion\",protocol=\"http\",port=\"80\",path=\"/\"} 2\n"), "{text}");
        assert!(text.contains("# TYPE onion_service_fetch_requests_created gauge\n"));
        assert!(
            !text.contains("onion_service_fetch_error_created"),
            "no _created without samples"
        );
        assert!(text.contains("onionprobe_state{onionprobe_state=\"probing\"} 1\n"));
        assert!(text.contains("onionprobe_state{onionprobe_state=\"starting\"} 0\n"));
        assert!(text.contains("# TYPE onion_service_probe_status_info gauge\n"));
        assert_eq!(
            text.matches("onion_service_descriptor_info{").count(),
            1,
            "one series per endpoint"
        );
        assert!(text.contains("state=\"NOT_FOUND\""));
        assert!(text.contains("hsdir_latency_seconds{name=\"x\",id=\"AB\"} 0.5\n"));
        assert!(text.contains("onionprobe_wait_seconds 0\n"));

        m.retain_endpoints(&[]);
        assert_eq!(m.get("onion_service_reachable", &p), None);
        assert!(m
            .get_info("onion_service_descriptor", &["n", "a.onion"])
            .is_none());
    }

    #[test]
    fn hsdirs_are_bounded() {
        let m = ProbeMetrics::new();
        for i in 0..(MAX_HSDIRS + 10) {
            m.hsdir_latency(&format!("n{i}"), &format!("F{i}"), 1.0);
        }
        m.hsdir_latency("n0", "F0", 2.0);
        let mut fams = Vec::new();
        m.collect(&mut fams);
        let f = fams
            .iter()
            .find(|f| f.name == "hsdir_latency_seconds")
            .unwrap();
        assert_eq!(f.samples.len(), MAX_HSDIRS);
        assert_eq!(f.samples[0].value, 2.0);
    }

    #[test]
    fn every_family_name_is_valid_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for s in SPECS {
            assert!(onionwatch_metrics::is_valid_metric_name(s.name));
            assert!(seen.insert(s.name), "{}", s.name);
        }
    }
}
