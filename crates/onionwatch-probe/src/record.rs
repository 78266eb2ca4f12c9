//! The one place where probe outcomes become metrics and [`ProbeResult`]s.
//!
//! The steps in [`crate::probe`] do the I/O and return typed outcomes
//! ([`DescriptorOutcome`], [`Connection`]); a [`Recorder`] writes them. The
//! only writes made while a step runs are the attempt counters, so that a
//! scrape during retries sees them grow.

use crate::config::{Protocol, Target, TargetPath};
use crate::conn::{ConnError, TlsInfo};
use crate::metrics::{family, ProbeMetrics};
use crate::probe::{
    now, Connection, DescriptorOutcome, Failure, FailureStage, ProbeResult, TlsSummary,
};

/// Gauges describing the last connection result: kept until the next result
/// is known, so that a scrape during a slow probe does not find them
/// missing.
const LAST_RESULT: [crate::metrics::Gauge<5>; 6] = [
    family::LATENCY_SECONDS,
    family::STATUS_CODE,
    family::UNEXPECTED_STATUS_CODE,
    family::PROBE_CONNECT_SECONDS,
    family::PROBE_FIRST_BYTE_SECONDS,
    family::PROBE_BODY_BYTES,
];

/// Gauges read from the descriptor: removed when a fetch brings none.
const DESCRIPTOR_GAUGES: [crate::metrics::Gauge<2>; 11] = [
    family::DESCRIPTOR_LATENCY_SECONDS,
    family::DESCRIPTOR_REVISION_COUNTER,
    family::DESCRIPTOR_LIFETIME_SECONDS,
    family::DESCRIPTOR_OUTER_WRAPPER_SIZE_BYTES,
    family::DESCRIPTOR_SECOND_LAYER_SIZE_BYTES,
    family::IS_SINGLE,
    family::INTRODUCTION_POINTS_NUMBER,
    family::POW_ENABLED,
    family::POW_V1_SEED,
    family::POW_V1_EFFORT,
    family::POW_V1_EXPIRATION_SECONDS,
];

/// Attempt numbers whose descriptor latency series may exist.
const MAX_DESCRIPTOR_ATTEMPTS: usize = 64;

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Writes one endpoint's outcomes.
pub(crate) struct Recorder<'a> {
    m: &'a ProbeMetrics,
    t: &'a Target,
    port: String,
}

impl<'a> Recorder<'a> {
    pub(crate) fn new(m: &'a ProbeMetrics, t: &'a Target) -> Self {
        Recorder {
            m,
            t,
            port: t.port.to_string(),
        }
    }

    /// Endpoint labels: name, address.
    fn e(&self) -> [&str; 2] {
        [self.t.name.as_str(), self.t.address.host()]
    }

    /// TLS labels: name, address, port.
    fn tl(&self) -> [&str; 3] {
        [self.t.name.as_str(), self.t.address.host(), &self.port]
    }

    /// Path labels: name, address, protocol, port, path.
    fn p<'b>(&'b self, path: &'b str) -> [&'b str; 5] {
        [
            self.t.name.as_str(),
            self.t.address.host(),
            self.t.protocol.as_str(),
            &self.port,
            path,
        ]
    }

    /// The probe of the endpoint starts.
    pub(crate) fn started(&self) {
        self.m
            .set(family::PROBE_LAST_TESTED_TIMESTAMP_SECONDS, self.e(), now());
        self.m.set_info(family::PROBE_STATUS, self.e(), &[]);
    }

    /// A descriptor fetch is sent.
    pub(crate) fn descriptor_attempt(&self) {
        self.m.inc(family::DESCRIPTOR_FETCH_REQUESTS, self.e());
    }

    /// A descriptor fetch failed.
    pub(crate) fn descriptor_attempt_failed(&self) {
        self.m.inc(family::DESCRIPTOR_FETCH_ERROR, self.e());
    }

    /// A connection attempt starts.
    pub(crate) fn connection_attempt(&self, path: Option<&TargetPath>) {
        let path = path.map_or("", |p| p.path.as_str());
        self.m.inc(family::FETCH_REQUESTS, self.p(path));
    }

    /// The descriptor step's outcome.
    pub(crate) fn descriptor(&self, d: &DescriptorOutcome) {
        let m = self.m;
        let [name, address] = self.e();
        let (yes, no) = if d.ok { ("1", "0") } else { ("0", "1") };
        m.set(
            family::DESCRIPTOR_FETCH_ATTEMPTS,
            [name, address, yes],
            f64::from(d.attempts),
        );
        m.unset(family::DESCRIPTOR_FETCH_ATTEMPTS, [name, address, no]);
        m.set(family::DESCRIPTOR_REACHABLE, self.e(), flag(d.ok));
        m.set_info(
            family::DESCRIPTOR,
            self.e(),
            &[
                ("hsdir", d.hsdir.as_deref().unwrap_or("")),
                ("state", &d.state),
            ],
        );
        for (i, l) in d.attempt_latencies.iter().enumerate() {
            m.set(
                family::DESCRIPTOR_ATTEMPT_LATENCY_SECONDS,
                [name, address, &(i + 1).to_string()],
                *l,
            );
        }
        for i in d.attempt_latencies.len() + 1..=MAX_DESCRIPTOR_ATTEMPTS {
            m.unset(
                family::DESCRIPTOR_ATTEMPT_LATENCY_SECONDS,
                [name, address, &i.to_string()],
            );
        }
        if let Some(reason) = &d.reason {
            m.inc(family::PROBE_ERRORS, [name, address, reason]);
        }
        for g in DESCRIPTOR_GAUGES {
            m.unset(g, self.e());
        }
        if let Some(l) = d.latency {
            m.set(family::DESCRIPTOR_LATENCY_SECONDS, self.e(), l);
            if let Some(h) = &d.hsdir {
                let h = h.trim_start_matches('$');
                let (fp, nick) = h.split_once('~').unwrap_or((h, ""));
                m.hsdir_latency(nick, fp, l);
            }
        }
        let Some(info) = &d.info else {
            return;
        };
        let e = self.e();
        m.set(
            family::DESCRIPTOR_REVISION_COUNTER,
            e,
            info.revision_counter as f64,
        );
        m.set(
            family::DESCRIPTOR_LIFETIME_SECONDS,
            e,
            info.lifetime_seconds as f64,
        );
        m.set(
            family::DESCRIPTOR_OUTER_WRAPPER_SIZE_BYTES,
            e,
            info.outer_size as f64,
        );
        if let Some(v) = info.second_layer_size {
            m.set(family::DESCRIPTOR_SECOND_LAYER_SIZE_BYTES, e, v as f64);
        }
        if let Some(v) = info.single_onion {
            m.set(family::IS_SINGLE, e, flag(v));
        }
        if let Some(v) = info.introduction_points {
            m.set(family::INTRODUCTION_POINTS_NUMBER, e, f64::from(v));
        }
        if let Some(v) = info.pow_enabled {
            m.set(family::POW_ENABLED, e, flag(v));
        }
        if let Some(p) = &info.pow_v1 {
            m.set(family::POW_V1_SEED, e, p.seed);
            m.set(family::POW_V1_EFFORT, e, p.effort as f64);
            if let Some(x) = p.expiration {
                m.set(family::POW_V1_EXPIRATION_SECONDS, e, x);
            }
        }
    }

    /// One path's (or the TCP port's) result: `conn` is `None` when the
    /// descriptor step failed and nothing was attempted.
    pub(crate) fn connection(
        &self,
        path: Option<&TargetPath>,
        desc: &DescriptorOutcome,
        conn: Option<&Connection>,
        round: u64,
    ) -> ProbeResult {
        let m = self.m;
        let p = self.p(path.map_or("", |p| p.path.as_str()));
        let pattern = path.and_then(|p| p.pattern.as_ref()).map(|(_, text)| {
            let [a, b, c, d, e] = p;
            [a, b, c, d, e, text.as_str()]
        });
        let https = self.t.protocol == Protocol::Https;
        let mut r = ProbeResult::new(round, self.t, path, desc);
        for g in LAST_RESULT {
            m.unset(g, p);
        }
        let Some(c) = conn else {
            // Written, not left stale: the onion service is not reachable.
            m.set(family::REACHABLE, p, 0.0);
            if https {
                m.set(family::VALID_CERTIFICATE, p, 2.0);
            }
            if let Some(labels) = pattern {
                m.unset(family::PATTERN_MATCHED, labels);
            }
            r.error = desc
                .reason
                .clone()
                .or(Some("descriptor_unavailable".into()));
            r.error_detail = desc.detail.clone();
            self.failed(&mut r, FailureStage::of_descriptor_state(&desc.state));
            r.timestamp = now();
            return r;
        };

        let last = &c.last;
        r.attempts = c.attempts;
        r.reachable = c.reachable;
        r.redirects = last.redirects;
        r.final_url = last.url.clone();
        r.status_code = last.status;
        r.connect_seconds = last.connect.map(|d| d.as_secs_f64());
        r.first_byte_seconds = last.first_byte.map(|d| d.as_secs_f64());
        r.unexpected_status = c.unexpected_status;
        r.pattern_matched = c.pattern_matched;
        if let Some(v) = r.connect_seconds {
            m.set(family::PROBE_CONNECT_SECONDS, p, v);
        }
        if let Some(v) = r.first_byte_seconds {
            m.set(family::PROBE_FIRST_BYTE_SECONDS, p, v);
        }
        let [a, b, cc, d, e] = p;
        let (yes, no) = if c.reachable { ("1", "0") } else { ("0", "1") };
        m.set(
            family::CONNECTION_ATTEMPTS,
            [a, b, cc, d, e, yes],
            f64::from(c.attempts),
        );
        m.unset(family::CONNECTION_ATTEMPTS, [a, b, cc, d, e, no]);
        m.set(family::REACHABLE, p, flag(c.reachable));
        if let Some(st) = last.status {
            m.set(family::STATUS_CODE, p, f64::from(st));
            r.body_bytes = Some(last.body.len());
            m.set(family::PROBE_BODY_BYTES, p, last.body.len() as f64);
        }
        if let Some(unexpected) = c.unexpected_status {
            m.set(family::UNEXPECTED_STATUS_CODE, p, flag(unexpected));
        }
        if c.reachable {
            r.latency_seconds = Some(last.total.as_secs_f64());
            m.set(family::LATENCY_SECONDS, p, last.total.as_secs_f64());
        }
        if let Some(labels) = pattern {
            match c.pattern_matched {
                Some(matched) => m.set(family::PATTERN_MATCHED, labels, flag(matched)),
                None => m.unset(family::PATTERN_MATCHED, labels),
            }
        }
        if https {
            let v = match &last.tls {
                Some(tls) if tls.certificate_valid => 1.0,
                Some(_) => 0.0,
                None => 2.0,
            };
            m.set(family::VALID_CERTIFICATE, p, v);
            r.tls = last.tls.as_ref().map(TlsSummary::from);
        }
        if let Some(failure) = c.failure() {
            if let Failure::Connection(err, _) = &failure {
                self.connection_error(p, err);
            }
            let (reason, detail) = failure.describe(path, last);
            m.inc(family::PROBE_ERRORS, [a, b, &reason]);
            r.error = Some(reason);
            r.error_detail = Some(detail);
            self.failed(&mut r, failure.stage());
        }
        r.passed = c.passed();
        r.timestamp = now();
        r
    }

    /// A failed result: its stage, counted.
    fn failed(&self, r: &mut ProbeResult, stage: FailureStage) {
        let [name, address] = self.e();
        self.m
            .inc(family::PROBE_FAILURES, [name, address, stage.as_str()]);
        r.failure_stage = Some(stage);
    }

    /// Onionprobe's error counters for a failed connection.
    fn connection_error(&self, p: [&str; 5], err: &ConnError) {
        let m = self.m;
        m.inc(family::FETCH_ERROR, p);
        m.inc(family::REQUEST_EXCEPTION, p);
        match err {
            ConnError::ConnectTimeout(_) => {
                m.inc(family::CONNECTION_TIMEOUT, p);
                m.inc(family::TIMEOUT, p);
            }
            ConnError::ReadTimeout(_) => {
                m.inc(family::READ_TIMEOUT, p);
                m.inc(family::TIMEOUT, p);
            }
            ConnError::Socks(_) | ConnError::Proxy(_) => m.inc(family::CONNECTION_ERROR, p),
            ConnError::Certificate(_) => m.inc(family::CERTIFICATE_ERROR, p),
            ConnError::Http(_) => m.inc(family::HTTP_ERROR, p),
            ConnError::Tls(_) => m.inc(family::GENERIC_ERROR, self.tl()),
            ConnError::TooManyRedirects { .. } => m.inc(family::TOO_MANY_REDIRECTS, p),
            // Python requests' InvalidSchema/InvalidURL: a request exception only.
            ConnError::Redirect { .. } => {}
        }
    }

    /// TLS and certificate details of the endpoint (`cert_info`:
    /// `get_certificate_info`).
    pub(crate) fn tls(&self, tls: &TlsInfo, cert_info: bool) {
        let m = self.m;
        let tl = self.tl();
        if !tls.version.is_empty() {
            m.set_info(
                family::TLS,
                tl,
                &[
                    ("version", &tls.version),
                    ("cipher", &tls.cipher),
                    ("compression", "None"),
                    ("alpn", ""),
                    ("npn", ""),
                    ("session_accept", "0"),
                    ("session_accept_good", "0"),
                    ("session_accept_renegotiate", "0"),
                    ("session_cache_full", "0"),
                    ("session_connect", "1"),
                    ("session_connect_good", "1"),
                    ("session_connect_renegotiate", "0"),
                    ("session_hits", "0"),
                    ("session_misses", "0"),
                    ("session_number", "0"),
                    ("session_timeouts", "0"),
                ],
            );
        }
        m.set(family::CERTIFICATE_VALID, tl, flag(tls.certificate_valid));
        let Some(c) = tls.certificate.as_ref().filter(|_| cert_info) else {
            return;
        };
        let version = c.version.to_string();
        m.set_info(
            family::CERTIFICATE,
            tl,
            &[
                ("issuer", &c.issuer),
                ("subject", &c.subject),
                ("subjectAltName", &c.subject_alt_names.join(" ")),
                ("notAfter", &c.not_after_text),
                ("notBefore", &c.not_before_text),
                ("serialNumber", &c.serial),
                ("version", &version),
                ("fingerprintSHA1", &c.sha1),
                ("fingerprintSHA256", &c.sha256),
            ],
        );
        m.set(
            family::CERTIFICATE_NOT_VALID_BEFORE_TIMESTAMP_SECONDS,
            tl,
            c.not_before as f64,
        );
        m.set(
            family::CERTIFICATE_NOT_VALID_AFTER_TIMESTAMP_SECONDS,
            tl,
            c.not_after as f64,
        );
        m.set(
            family::CERTIFICATE_EXPIRY_SECONDS,
            tl,
            c.expiry_seconds as f64,
        );
        m.set(
            family::CERTIFICATE_MATCH_HOSTNAME,
            tl,
            flag(c.match_hostname),
        );
    }

    /// The whole endpoint passed (descriptor and every path) or not.
    pub(crate) fn passed(&self, passed: bool) {
        self.m.set(family::PROBE_SUCCESS, self.e(), flag(passed));
    }
}
