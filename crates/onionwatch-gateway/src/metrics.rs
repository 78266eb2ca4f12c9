//! The gateway's counters, collected by the shared `/metrics` endpoint.
//!
//! Everything is an atomic (or a short mutex for the unique-circuit sketch),
//! so the request path never waits on a reader. Circuit ids are never labels:
//! they are unbounded and identify users.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use onionwatch_logs::hll::Hll;
use onionwatch_metrics::{Collect, Family, MetricType};

/// Why a connection or a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// The connection did not start with `PROXY ` (plain HTTP, binary v2...).
    NoProxyHeader,
    /// A PROXY header that does not parse.
    BadProxyHeader,
    /// The PROXY header did not arrive within `header_timeout_secs`.
    HeaderTimeout,
    /// The client closed before sending a complete PROXY header.
    ClosedBeforeHeader,
    /// The circuit's token bucket was empty (429).
    RateLimited,
    /// The circuit had `max_connections_per_circuit` connections open (429).
    TooManyConnections,
    /// The circuit had `max_requests_per_circuit` requests in flight (429).
    TooManyRequests,
    /// `limits.max_circuits` busy circuits are tracked already (503).
    CircuitTableFull,
    /// A TCP connection from an address not in `trusted_proxy_sources`,
    /// closed before its PROXY header was read.
    UntrustedSource,
    /// A request body paused longer than `body_timeout_secs` (cut).
    BodyTimeout,
    /// The client left data unread longer than `send_timeout_secs` (closed).
    SendTimeout,
}

impl RejectReason {
    /// Every reason, in label order.
    pub const ALL: [RejectReason; 11] = [
        RejectReason::NoProxyHeader,
        RejectReason::BadProxyHeader,
        RejectReason::HeaderTimeout,
        RejectReason::ClosedBeforeHeader,
        RejectReason::RateLimited,
        RejectReason::TooManyConnections,
        RejectReason::TooManyRequests,
        RejectReason::CircuitTableFull,
        RejectReason::UntrustedSource,
        RejectReason::BodyTimeout,
        RejectReason::SendTimeout,
    ];

    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::NoProxyHeader => "no_proxy_header",
            RejectReason::BadProxyHeader => "bad_proxy_header",
            RejectReason::HeaderTimeout => "header_timeout",
            RejectReason::ClosedBeforeHeader => "closed_before_header",
            RejectReason::RateLimited => "rate_limited",
            RejectReason::TooManyConnections => "too_many_connections",
            RejectReason::TooManyRequests => "too_many_requests",
            RejectReason::CircuitTableFull => "circuit_table_full",
            RejectReason::UntrustedSource => "untrusted_source",
            RejectReason::BodyTimeout => "body_timeout",
            RejectReason::SendTimeout => "send_timeout",
        }
    }
}

/// What an escalation did: the circuit-closing executor's result.
pub use onionwatch_tor::control::CloseResult as EscalationResult;

/// Escalation results in the order of the `result` label.
const ESCALATION_RESULTS: [EscalationResult; 4] = [
    EscalationResult::Closed,
    EscalationResult::DryRun,
    EscalationResult::UnknownCircuit,
    EscalationResult::Failed,
];

/// Upper bounds (seconds) of the upstream latency histogram: fine below
/// 10 ms, where a loopback upstream answers.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A fixed-bucket histogram of durations.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Non-cumulative counts per bucket; the last one is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Record one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_nanos
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    /// A copy for rendering. Observations landing meanwhile may be counted
    /// in a bucket but not yet in the sum: harmless for a scrape.
    pub fn snapshot(&self) -> onionwatch_metrics::Histogram {
        let all: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let (finite, _) = all.split_at(LATENCY_BUCKETS.len());
        onionwatch_metrics::Histogram::from_parts(
            &LATENCY_BUCKETS,
            finite,
            self.sum_nanos.load(Relaxed) as f64 / 1e9,
            all.iter().sum(),
        )
    }
}

/// The gateway's counters and gauges.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Responses sent, by status class (index 0 = 1xx ... 4 = 5xx).
    responses: [AtomicU64; 5],
    rejected: [AtomicU64; RejectReason::ALL.len()],
    escalations: [AtomicU64; ESCALATION_RESULTS.len()],
    /// Client connections accepted.
    pub connections_total: AtomicU64,
    /// Client connections open now.
    pub connections_open: AtomicI64,
    /// Circuits with at least one open connection now.
    pub active_circuits: AtomicI64,
    /// Upstream connections opened.
    pub upstream_connections_total: AtomicU64,
    /// Requests that failed upstream (connect error, timeout, reset).
    pub upstream_errors_total: AtomicU64,
    /// Connections upgraded (WebSocket...) and tunnelled.
    pub upgrades_total: AtomicU64,
    /// Time from sending a request upstream to its response head.
    pub upstream_latency: Histogram,
    unique: Mutex<Hll>,
}

impl Metrics {
    /// Count a response by its status code.
    pub fn response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Relaxed);
    }

    /// Responses with status `class`xx so far (1..=5).
    pub fn responses(&self, class: u16) -> u64 {
        self.responses[usize::from(class.clamp(1, 5)) - 1].load(Relaxed)
    }

    /// Count a refusal.
    pub fn reject(&self, reason: RejectReason) {
        self.rejected[reason as usize].fetch_add(1, Relaxed);
    }

    /// Refusals for `reason` so far.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        self.rejected[reason as usize].load(Relaxed)
    }

    /// Count an escalation.
    pub fn escalation(&self, result: EscalationResult) {
        self.escalations[result as usize].fetch_add(1, Relaxed);
    }

    /// Escalations with `result` so far.
    pub fn escalations(&self, result: EscalationResult) -> u64 {
        self.escalations[result as usize].load(Relaxed)
    }

    /// Note a circuit for the unique-circuit estimate.
    pub fn saw_circuit(&self, id: u32) {
        self.unique
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(u64::from(id));
    }

    /// Distinct circuits seen since start (HyperLogLog estimate, exact below
    /// 1,024).
    pub fn unique_circuits(&self) -> u64 {
        self.unique
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .estimate()
    }
}

impl Collect for Metrics {
    fn collect(&self, out: &mut Vec<Family>) {
        let name = |n: &str| format!("onionwatch_gateway_{n}");
        let mut requests = Family::counter(
            name("requests"),
            "Responses sent to clients, by status class (429s from limits included).",
        );
        for (i, c) in self.responses.iter().enumerate() {
            requests.push(
                &[("status", &format!("{}xx", i + 1))],
                c.load(Relaxed) as f64,
            );
        }
        let mut rejected = Family::counter(
            name("rejected"),
            "Connections or requests refused, by reason.",
        );
        for r in RejectReason::ALL {
            rejected.push(&[("reason", r.as_str())], self.rejected(r) as f64);
        }
        out.extend([requests, rejected]);
        let simple: [(&str, MetricType, &str, f64); 7] = [
            (
                "connections",
                MetricType::Counter,
                "Client connections accepted.",
                self.connections_total.load(Relaxed) as f64,
            ),
            (
                "connections_open",
                MetricType::Gauge,
                "Client connections open now.",
                self.connections_open.load(Relaxed) as f64,
            ),
            (
                "active_circuits",
                MetricType::Gauge,
                "Circuits with at least one open connection.",
                self.active_circuits.load(Relaxed) as f64,
            ),
            (
                "unique_circuits",
                MetricType::Gauge,
                "Distinct circuits seen since start (HyperLogLog estimate, exact below 1024).",
                self.unique_circuits() as f64,
            ),
            (
                "upstream_connections",
                MetricType::Counter,
                "Connections opened to the upstream.",
                self.upstream_connections_total.load(Relaxed) as f64,
            ),
            (
                "upstream_errors",
                MetricType::Counter,
                "Requests that failed upstream (connect error, timeout, reset).",
                self.upstream_errors_total.load(Relaxed) as f64,
            ),
            (
                "upgrades",
                MetricType::Counter,
                "Connections upgraded (e.g. WebSocket) and tunnelled.",
                self.upgrades_total.load(Relaxed) as f64,
            ),
        ];
        for (n, kind, help, value) in simple {
            let mut f = Family::new(name(n), help, kind);
            f.push(&[], value);
            out.push(f);
        }
        let mut escalations = Family::counter(
            name("escalations"),
            "Abusive circuits acted on through the control port, by result.",
        );
        for r in ESCALATION_RESULTS {
            escalations.push(&[("result", r.as_str())], self.escalations(r) as f64);
        }
        let mut latency = Family::histogram(
            name("upstream_latency_seconds"),
            "Time from sending a request upstream to its response head.",
        );
        latency.push_histogram(&[], &self.upstream_latency.snapshot());
        out.extend([escalations, latency]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.response(200);
        m.response(429);
        m.response(101);
        m.reject(RejectReason::RateLimited);
        m.saw_circuit(7);
        m.saw_circuit(7);
        m.saw_circuit(8);
        m.upstream_latency.observe(Duration::from_micros(300));
        m.upstream_latency.observe(Duration::from_millis(20));
        m.upstream_latency.observe(Duration::from_secs(60));
        m.escalation(EscalationResult::Closed);
        let mut families = Vec::new();
        m.collect(&mut families);
        let t = onionwatch_metrics::render(&families, onionwatch_metrics::Format::Prometheus);
        for want in [
            "onionwatch_gateway_requests_total{status=\"2xx\"} 1\n",
            "onionwatch_gateway_requests_total{status=\"4xx\"} 1\n",
            "onionwatch_gateway_requests_total{status=\"1xx\"} 1\n",
            "onionwatch_gateway_rejected_total{reason=\"rate_limited\"} 1\n",
            "onionwatch_gateway_rejected_total{reason=\"no_proxy_header\"} 0\n",
            "onionwatch_gateway_unique_circuits 2\n",
            "onionwatch_gateway_escalations_total{result=\"closed\"} 1\n",
            "onionwatch_gateway_upstream_latency_seconds_bucket{le=\"0.0005\"} 1\n",
            "onionwatch_gateway_upstream_latency_seconds_bucket{le=\"0.025\"} 2\n",
            "onionwatch_gateway_upstream_latency_seconds_bucket{le=\"10\"} 2\n",
            "onionwatch_gateway_upstream_latency_seconds_bucket{le=\"+Inf\"} 3\n",
            "onionwatch_gateway_upstream_latency_seconds_count 3\n",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
        // Every sample line belongs to a family declared before it, and
        // every family is declared once.
        let mut declared = std::collections::HashSet::new();
        for line in t.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(declared.insert(name.to_owned()), "{name} twice");
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let base = name
                    .trim_end_matches("_bucket")
                    .trim_end_matches("_sum")
                    .trim_end_matches("_count");
                assert!(declared.contains(name) || declared.contains(base), "{line}");
                assert!(name.starts_with("onionwatch_gateway_"));
            }
        }
    }
}
