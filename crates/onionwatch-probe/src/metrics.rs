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

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use onionwatch_metrics::{Collect, Family, MetricType};

use crate::shard::Shard;

/// HSDirs kept in `hsdir_latency_seconds` (most recently used first).
pub const MAX_HSDIRS: usize = 64;

/// A gauge family with `N` labels: [`ProbeMetrics::set`], [`ProbeMetrics::unset`].
#[derive(Debug, Clone, Copy)]
pub struct Gauge<const N: usize>(Id);

/// A counter family with `N` labels: [`ProbeMetrics::inc`], [`ProbeMetrics::add`].
#[derive(Debug, Clone, Copy)]
pub struct Counter<const N: usize>(Id);

/// An info family with `N` labels (plus the informative ones):
/// [`ProbeMetrics::set_info`].
#[derive(Debug, Clone, Copy)]
pub struct Info<const N: usize>(Id);

/// A family whose samples [`ProbeMetrics`] writes itself (version, state,
/// HSDir latencies): no setter.
#[derive(Debug, Clone, Copy)]
pub struct Builtin<const N: usize>(Id);

macro_rules! handle_name {
    ($($handle:ident),*) => {$(
        impl<const N: usize> $handle<N> {
            /// The family name (as in [`names`]).
            pub const fn name(self) -> &'static str {
                SPECS[self.0 as usize].name
            }
        }
    )*};
}
handle_name!(Gauge, Counter, Info, Builtin);

/// A family's fixed description.
struct Spec {
    id: Id,
    name: &'static str,
    help: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
}

macro_rules! kind {
    ($handle:ident) => {
        MetricType::$handle
    };
    ($handle:ident, $kind:ident) => {
        MetricType::$kind
    };
}

/// Declares every family once: its name constant in [`names`], its typed
/// handle in [`family`] (the label count is the handle's `N`, so writing
/// with the wrong number of labels does not compile) and its [`Spec`].
macro_rules! families {
    ($( $id:ident: $handle:ident $(($kind:ident))? = $name:literal, $labels:expr, $help:literal; )*) => {
        /// Family names as rendered without type suffixes (`_total`,
        /// `_info`, `_created`), for readers of `/metrics` such as the
        /// dashboard.
        pub mod names {
            $( #[doc = $help] pub const $id: &str = $name; )*
        }

        // Spelled like the constants they index.
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Id { $($id),* }

        /// Typed handles of every family, for writing into [`ProbeMetrics`].
        pub mod family {
            use super::*;
            $( #[doc = $help] pub const $id: $handle<{ $labels.len() }> = $handle(Id::$id); )*
        }

        /// Every family, in Onionprobe's order, then ours.
        const SPECS: &[Spec] = &[
            $( Spec { id: Id::$id, name: $name, help: $help, kind: kind!($handle $(, $kind)?), labels: &$labels }, )*
        ];
    };
}

const NONE: [&str; 0] = [];
const E: [&str; 2] = ["name", "address"];
const P: [&str; 5] = ["name", "address", "protocol", "port", "path"];
const T: [&str; 3] = ["name", "address", "port"];

#[rustfmt::skip]
families! {
    VERSION: Builtin(Info) = "onionprobe_version", NONE, "Onionprobe version information";
    STATE: Builtin(StateSet) = "onionprobe_state", NONE, "Onionprobe latest state";
    WAIT_SECONDS: Gauge = "onionprobe_wait_seconds", NONE, "Records how long Onionprobe waited between two probes in seconds";
    LATENCY_SECONDS: Gauge = "onion_service_latency_seconds", P, "Register Onion Service connection latency in seconds";
    REACHABLE: Gauge = "onion_service_reachable", P, "Register if the Onion Service is reachable: value is 1 for reachability and 0 otherwise";
    CONNECTION_ATTEMPTS: Gauge = "onion_service_connection_attempts", ["name", "address", "protocol", "port", "path", "reachable"], "Register the number of attempts when trying to connect to an Onion Service in a probing round";
    TLS_SECURITY_LEVEL: Gauge = "onion_service_tls_security_level", T, "An integer representing the SSL security level for the context.See SSL_CTX_get_security_level(3) manpage for details.";
    STATUS_CODE: Gauge = "onion_service_status_code", P, "Register Onion Service connection HTTP status code";
    UNEXPECTED_STATUS_CODE: Gauge = "onion_service_unexpected_status_code", P, "Register if an Onion Service connection returned an unexpected HTTP status code: 1 for unexpected and 0 otherwise";
    DESCRIPTOR_LATENCY_SECONDS: Gauge = "onion_service_descriptor_latency_seconds", E, "Register Onion Service latency in seconds to get the descriptor";
    DESCRIPTOR_REACHABLE: Gauge = "onion_service_descriptor_reachable", E, "Register if the Onion Service descriptor is available: value is 1 for reachability and 0 otherwise";
    DESCRIPTOR_FETCH_ATTEMPTS: Gauge = "onion_service_descriptor_fetch_attempts", ["name", "address", "reachable"], "Register the number of attempts required when trying to get an Onion Service descriptor in a probing round";
    DESCRIPTOR_REVISION_COUNTER: Gauge = "onion_service_descriptor_revision_counter", E, "Register Onion Service descriptor revision counter";
    DESCRIPTOR_LIFETIME_SECONDS: Gauge = "onion_service_descriptor_lifetime_seconds", E, "Register Onion Service descriptor lifetime in seconds";
    DESCRIPTOR_OUTER_WRAPPER_SIZE_BYTES: Gauge = "onion_service_descriptor_outer_wrapper_size_bytes", E, "Register Onion Service outer wrapper descriptor size in bytes (decrypted)";
    DESCRIPTOR_SECOND_LAYER_SIZE_BYTES: Gauge = "onion_service_descriptor_second_layer_size_bytes", E, "Register Onion Service second layer descriptor size in bytes (decrypted)";
    IS_SINGLE: Gauge = "onion_service_is_single", E, "Indicates whether the server is using the single hop Onion Service circuit mode: value is 1 if this is a single onion service, 0 otherwise";
    INTRODUCTION_POINTS_NUMBER: Gauge = "onion_service_introduction_points_number", E, "Register the number of introduction points in the Onion Service descriptor";
    POW_ENABLED: Gauge = "onion_service_pow_enabled", E, "Whether Proof of Work (PoW) defense is enabled in the Onion Service: value is 1 when PoW is enabled, 0 otherwise";
    POW_V1_SEED: Gauge = "onion_service_pow_v1_seed", E, "The Proof of Work (PoW) decoded seed for the v1 scheme";
    POW_V1_EFFORT: Gauge = "onion_service_pow_v1_effort", E, "The Proof of Work (PoW) suggested effort for the v1 scheme";
    POW_V1_EXPIRATION_SECONDS: Gauge = "onion_service_pow_v1_expiration_seconds", E, "The Proof of Work (PoW) seed expiration time for the v1 scheme";
    PATTERN_MATCHED: Gauge = "onion_service_pattern_matched", ["name", "address", "protocol", "port", "path", "pattern"], "Register whether a regular expression pattern is matched when connection to the Onion Service: value is 1 for matched pattern and 0 otherwise";
    VALID_CERTIFICATE: Gauge = "onion_service_valid_certificate", P, "Register whether the Onion Service HTTPS certificate is valid: value is 1, 0 for invalid, 2 for untested. Only for sites reachable using HTTPS";
    CERTIFICATE_NOT_VALID_BEFORE_TIMESTAMP_SECONDS: Gauge = "onion_service_certificate_not_valid_before_timestamp_seconds", T, "Register the beginning of the validity period of the certificate in UTC.This does not mean necessarily that the certificate is CA-validated.Value is represented as a POSIX timestamp";
    CERTIFICATE_NOT_VALID_AFTER_TIMESTAMP_SECONDS: Gauge = "onion_service_certificate_not_valid_after_timestamp_seconds", T, "Register the end of the validity period of the certificate in UTC.This does not mean necessarily that the certificate is CA-validated.Value is represented as a POSIX timestamp";
    CERTIFICATE_EXPIRY_SECONDS: Gauge = "onion_service_certificate_expiry_seconds", T, "Register how many seconds are left before the certificate expire.Negative values indicate how many seconds passed after the certificate already expired.";
    CERTIFICATE_MATCH_HOSTNAME: Gauge = "onion_service_certificate_match_hostname", T, "Register whether a provided server certificate matches the server hostname in a TLS connection: value is 1 for matched hostname and 0 otherwise. Check is done both on the commonName and subjectAltName fields. A value of 1 does not mean necessarily that the certificate is CA-validated.";
    HSDIR_LATENCY_SECONDS: Builtin(Gauge) = "hsdir_latency_seconds", ["name", "id"], "Register HSDir latency in seconds to fetch a descriptor";
    FETCH_REQUESTS: Counter = "onion_service_fetch_requests", P, "Counts the total number of requests to access an Onion Service";
    FETCH_ERROR: Counter = "onion_service_fetch_error", P, "Counts the total number of errors when fetching an Onion Service";
    DESCRIPTOR_FETCH_REQUESTS: Counter = "onion_service_descriptor_fetch_requests", E, "Counts the total number of requests to fetch an Onion Service descriptor";
    DESCRIPTOR_FETCH_ERROR: Counter = "onion_service_descriptor_fetch_error", E, "Counts the total number of errors when fetching an Onion Service descriptor";
    GENERIC_ERROR: Counter = "onion_service_generic_error", T, "Counts the total number of errors not tracked by other metrics";
    REQUEST_EXCEPTION: Counter = "onion_service_request_exception", P, "Counts the total number of Onion Service general exception errors";
    CONNECTION_ERROR: Counter = "onion_service_connection_error", P, "Counts the total number of Onion Service connection errors";
    HTTP_ERROR: Counter = "onion_service_http_error", P, "Counts the total number of Onion Service HTTP errors";
    TOO_MANY_REDIRECTS: Counter = "onion_service_too_many_redirects", P, "Counts the total number of Onion Service too many HTTP redirect errors";
    CONNECTION_TIMEOUT: Counter = "onion_service_connection_timeout", P, "Counts the total number of Onion Service connection timeouts";
    READ_TIMEOUT: Counter = "onion_service_read_timeout", P, "Counts the total number of Onion Service read timeouts";
    TIMEOUT: Counter = "onion_service_timeout", P, "Counts the total number of Onion Service timeouts";
    CERTIFICATE_ERROR: Counter = "onion_service_certificate_error", P, "Counts the total number of HTTPS certificate validation errors";
    DESCRIPTOR: Info = "onion_service_descriptor", ["name", "address"], "Onion Service descriptor information, including state and Hidden Service Directory (HSDir) used";
    TLS: Info = "onion_service_tls", T, "Register miscellaneous TLS information for a given Onion Service, such as version and ciphers";
    CERTIFICATE: Info = "onion_service_certificate", T, "Register miscellaneous TLS certificate information for a given Onion Service, such as version and fingerprints";
    PROBE_STATUS: Info = "onion_service_probe_status", E, "Register information about the last test made to a given Onion Service, including POSIX timestamp";
    // onionwatch's own.
    PROBE_ERRORS: Counter = "onionwatch_probe_errors", ["name", "address", "reason"], "Probe failures by reason (tor SOCKS5 extended errors, descriptor FAILED reasons, timeouts, TLS, HTTP)";
    PROBE_FAILURES: Counter = "onionwatch_probe_failures", ["name", "address", "stage"], "Failed probe results (one per path) by the stage where they stopped: descriptor_not_found, descriptor_timeout, introduction_failed, rendezvous_failed, connect_timeout, connection_refused, tls, http_status, pattern, other";
    PROBE_SUCCESS: Gauge = "onionwatch_probe_success", E, "1 when the last probe of the endpoint passed (descriptor, every path's status and pattern), 0 otherwise";
    PROBE_LAST_TESTED_TIMESTAMP_SECONDS: Gauge = "onionwatch_probe_last_tested_timestamp_seconds", E, "When the endpoint was last probed, as a POSIX timestamp (Onionprobe puts this in a label)";
    PROBE_CONNECT_SECONDS: Gauge = "onionwatch_probe_connect_seconds", P, "Seconds to open the stream through tor (descriptor, introduction, rendezvous) and finish TLS, last attempt";
    PROBE_FIRST_BYTE_SECONDS: Gauge = "onionwatch_probe_first_byte_seconds", P, "Seconds from the start of the attempt to the response head (time to first byte), last attempt";
    PROBE_BODY_BYTES: Gauge = "onionwatch_probe_body_bytes", P, "Response body bytes read (bounded by max_body_bytes), last attempt";
    DESCRIPTOR_ATTEMPT_LATENCY_SECONDS: Gauge = "onionwatch_descriptor_attempt_latency_seconds", ["name", "address", "attempt"], "Latency of each descriptor fetch attempt of the last probe, by attempt number";
    CERTIFICATE_VALID: Gauge = "onionwatch_certificate_valid", T, "1 when the certificate chain verifies against the web PKI for the onion address, 0 otherwise, whatever tls_verify says";
    ROUND_DURATION_SECONDS: Gauge = "onionwatch_round_duration_seconds", NONE, "Wall time of the last complete probing round";
    ROUNDS: Counter = "onionwatch_rounds", NONE, "Probing rounds completed";
    TOR_RECONNECTS: Counter = "onionwatch_probe_tor_reconnects", ["kind"], "Recoveries from a lost tor, counted at the end of each round: kind=\"control_connection\" each control connection re-opened, kind=\"launched_tor\" each time the tor probe launched was launched again after it exited";
}

/// The states of `onionprobe_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Before the first round.
    Starting,
    /// A round runs.
    Probing,
    /// Waiting between endpoints or rounds.
    Sleeping,
    /// Shutting down.
    Stopping,
}

impl State {
    /// Every state, in the order rendered.
    pub const ALL: [State; 4] = [
        State::Starting,
        State::Probing,
        State::Sleeping,
        State::Stopping,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Probing => "probing",
            State::Sleeping => "sleeping",
            State::Stopping => "stopping",
        }
    }
}

#[derive(Debug, Clone)]
struct Series {
    value: f64,
    created: f64,
    info: Vec<(String, String)>,
}

/// label values → series, for one family.
type SeriesMap = BTreeMap<Vec<String>, Series>;

struct Inner {
    /// One map per family, indexed by [`Id`].
    series: Vec<SeriesMap>,
    state: State,
    hsdirs: Vec<(String, String, f64)>,
    /// This prober's shard and how many endpoints it covers.
    shard: Option<(Shard, usize)>,
}

/// The prober's metric state, rendered at every scrape ([`Collect`]).
/// Written through the typed handles of [`family`].
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

fn key(labels: &[&str]) -> Vec<String> {
    labels.iter().map(|l| (*l).to_owned()).collect()
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
            inner: Mutex::new(Inner {
                series: vec![SeriesMap::new(); SPECS.len()],
                state: State::Starting,
                hsdirs: Vec::new(),
                shard: None,
            }),
            version: format!("onionwatch-{}", env!("CARGO_PKG_VERSION")),
        };
        m.set(family::WAIT_SECONDS, [], 0.0);
        m
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Set a gauge.
    pub fn set<const N: usize>(&self, family: Gauge<N>, labels: [&str; N], value: f64) {
        self.lock().series[family.0 as usize]
            .entry(key(&labels))
            .and_modify(|e| e.value = value)
            .or_insert(Series {
                value,
                created: now(),
                info: Vec::new(),
            });
    }

    /// Remove a gauge series (a value that no longer applies).
    pub fn unset<const N: usize>(&self, family: Gauge<N>, labels: [&str; N]) {
        self.lock().series[family.0 as usize].remove(&key(&labels));
    }

    /// Increase a counter by 1.
    pub fn inc<const N: usize>(&self, family: Counter<N>, labels: [&str; N]) {
        self.add(family, labels, 1.0);
    }

    /// Increase a counter.
    pub fn add<const N: usize>(&self, family: Counter<N>, labels: [&str; N], by: f64) {
        self.lock().series[family.0 as usize]
            .entry(key(&labels))
            .and_modify(|e| e.value += by)
            .or_insert(Series {
                value: by,
                created: now(),
                info: Vec::new(),
            });
    }

    /// Replace an info series: one series per `labels`, whose extra labels
    /// are `info`.
    pub fn set_info<const N: usize>(
        &self,
        family: Info<N>,
        labels: [&str; N],
        info: &[(&str, &str)],
    ) {
        let info = info
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.lock().series[family.0 as usize].insert(
            key(&labels),
            Series {
                value: 1.0,
                created: now(),
                info,
            },
        );
    }

    /// Set `onionprobe_state`.
    pub fn set_state(&self, state: State) {
        self.lock().state = state;
    }

    /// The current `onionprobe_state`.
    pub fn state(&self) -> State {
        self.lock().state
    }

    /// Record an HSDir's latency; keeps the [`MAX_HSDIRS`] most recent.
    pub fn hsdir_latency(&self, nickname: &str, fingerprint: &str, seconds: f64) {
        let mut g = self.lock();
        g.hsdirs.retain(|(_, fp, _)| fp != fingerprint);
        g.hsdirs
            .insert(0, (nickname.to_owned(), fingerprint.to_owned(), seconds));
        g.hsdirs.truncate(MAX_HSDIRS);
    }

    /// Export `onionwatch_shard_info{shard,shards}` and
    /// `onionwatch_shard_endpoints` (`endpoints` covered) for `shard`, or
    /// neither without one.
    pub fn set_shard(&self, shard: Option<Shard>, endpoints: usize) {
        self.lock().shard = shard.map(|s| (s, endpoints));
    }

    /// Drop every series of endpoints not in `keep` (name, address), e.g.
    /// after a config reload.
    pub fn retain_endpoints(&self, keep: &[(&str, &str)]) {
        let mut g = self.lock();
        for s in SPECS {
            if s.labels.first() == Some(&"name") && s.id != Id::HSDIR_LATENCY_SECONDS {
                g.series[s.id as usize]
                    .retain(|k, _| keep.iter().any(|(n, a)| k[0] == *n && k[1] == *a));
            }
        }
    }

    /// The series of the family named `family` (one of [`names`]) with
    /// these label values, if any.
    fn series(&self, family: &str, labels: &[&str]) -> Option<Series> {
        let s = SPECS.iter().find(|s| s.name == family)?;
        self.lock().series[s.id as usize].get(&key(labels)).cloned()
    }

    /// Current value of a series, by family name (one of [`names`]; tests,
    /// summaries). `None` for an unknown family or series.
    pub fn get(&self, family: &str, labels: &[&str]) -> Option<f64> {
        self.series(family, labels).map(|s| s.value)
    }

    /// The info labels of an info series, by family name (one of [`names`]).
    pub fn get_info(&self, family: &str, labels: &[&str]) -> Option<Vec<(String, String)>> {
        self.series(family, labels).map(|s| s.info)
    }
}

impl Collect for ProbeMetrics {
    fn collect(&self, out: &mut Vec<Family>) {
        let g = self.lock();
        for s in SPECS {
            let mut f = Family::new(s.name, s.help, s.kind);
            match s.id {
                Id::VERSION => {
                    f.push(&[("version", &self.version)], 1.0);
                }
                Id::STATE => {
                    for st in State::ALL {
                        f.push(
                            &[("onionprobe_state", st.as_str())],
                            if st == g.state { 1.0 } else { 0.0 },
                        );
                    }
                }
                Id::HSDIR_LATENCY_SECONDS => {
                    for (nick, fp, v) in &g.hsdirs {
                        f.push(&[("name", nick), ("id", fp)], *v);
                    }
                }
                _ => {}
            }
            let map = &g.series[s.id as usize];
            let mut created = (s.kind == MetricType::Counter && !map.is_empty())
                .then(|| Family::gauge(format!("{}_created", s.name), s.help));
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
            out.push(f);
            // prometheus_client exposes a counter's creation time as a
            // `<name>_created` gauge family in the 0.0.4 text format.
            if let Some(c) = created {
                out.push(c);
            }
        }
        if let Some((shard, endpoints)) = g.shard {
            let mut info = Family::info(
                SHARD_INFO,
                "The shard of the endpoint list this prober covers (shard from 1 to shards; rendezvous hashing of endpoint names)",
            );
            let (i, n) = (shard.index.to_string(), shard.count.to_string());
            info.push(&[("shard", &i), ("shards", &n)], 1.0);
            let mut count = Family::gauge(
                SHARD_ENDPOINTS,
                "Endpoints of the configuration this prober's shard covers",
            );
            count.push(&[], endpoints as f64);
            out.push(info);
            out.push(count);
        }
    }
}

/// `onionwatch_shard_info` (rendered with `_info`), exported with a shard.
pub const SHARD_INFO: &str = "onionwatch_shard";
/// `onionwatch_shard_endpoints`, exported with a shard.
pub const SHARD_ENDPOINTS: &str = "onionwatch_shard_endpoints";

#[cfg(test)]
mod tests {
    use super::*;
    use onionwatch_metrics::{render, Format};

    #[test]
    fn renders_onionprobe_shapes() {
        let m = ProbeMetrics::new();
        m.set_state(State::Probing);
        let p = ["n", "a.onion", "http", "80", "/"];
        m.inc(family::FETCH_REQUESTS, p);
        m.inc(family::FETCH_REQUESTS, p);
        m.set(family::REACHABLE, p, 1.0);
        m.set_info(
            family::DESCRIPTOR,
            ["n", "a.onion"],
            &[("hsdir", "$AB~x"), ("state", "RECEIVED")],
        );
        m.set_info(
            family::DESCRIPTOR,
            ["n", "a.onion"],
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
        assert_eq!(m.get(names::REACHABLE, &p), None);
        assert!(m.get_info(names::DESCRIPTOR, &["n", "a.onion"]).is_none());
    }

    #[test]
    fn the_shard_families_appear_with_a_shard() {
        let m = ProbeMetrics::new();
        let render_all = |m: &ProbeMetrics| {
            let mut fams = Vec::new();
            m.collect(&mut fams);
            render(&fams, Format::Prometheus)
        };
        assert!(!render_all(&m).contains("onionwatch_shard"));
        m.set_shard(Some(Shard { index: 2, count: 3 }), 7);
        let text = render_all(&m);
        assert!(
            text.contains("onionwatch_shard_info{shard=\"2\",shards=\"3\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("onionwatch_shard_endpoints 7\n"), "{text}");
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
        for (i, s) in SPECS.iter().enumerate() {
            assert_eq!(s.id as usize, i, "{}", s.name);
        }
        assert_eq!(names::REACHABLE, "onion_service_reachable");
        assert_eq!(family::REACHABLE.name(), names::REACHABLE);
        assert_eq!(family::STATE.name(), names::STATE);
    }
}
