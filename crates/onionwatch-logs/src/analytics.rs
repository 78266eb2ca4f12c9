//! Per-stream access-log analytics, fed one record (or parse error) at a time.
//!
//! An [`Analytics`] aggregates one stream (a project's access logs, or the
//! files given to `onionwatch logs --once`) in bounded memory:
//!
//! - lines, requests, parse errors by [`ErrorReason`], requests by
//!   [`Method`] (unusual methods folded into `OTHER`), by status code and
//!   class, bytes (`$body_bytes_sent`, else `$bytes_sent`), and histograms of
//!   `$request_time` and `$upstream_response_time` when the format has them;
//! - **unique circuits**: a [`Hll`] over everything seen, and sliding
//!   windows of the last 1 minute, 5 minutes and 1 hour built from a ring of
//!   60 per-minute sketches merged on read (at most ~1 MiB). A circuit id is
//!   a per-tor counter, so when the format has `$server_addr` (which names
//!   the unix socket, i.e. the onion service of one tor, a request came in
//!   on) circuits are also counted per listener directory (per address and
//!   `$server_port` for a TCP listener) ([`MAX_LISTENERS`] of them, then [`Summary::unique_circuits_by_listener`]
//!   stops growing), and the overall count is the **sum** over listeners:
//!   the same id on two softmap workers is two circuits. The sum is an
//!   upper bound: a circuit that reached two onion services of one tor (or
//!   one over both TCP and unix listeners) counts once per listener. The
//!   1m/5m/1h windows stay merged over listeners (a lower bound in softmap);
//! - **requests per circuit** in a tumbling window (60 s by default, aligned
//!   to multiples of its length since the epoch): a histogram with buckets
//!   1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, +Inf and the top-K busiest
//!   circuits (for JSON and dashboards only, never metric labels), for the
//!   current window and the previous complete one.
//!
//! **Time** is the record's own (`$time_local` / `$time_iso8601`), so
//! one-shot analysis of old files works: windows end at the newest time seen
//! (the "clock"). A tailer can move the clock with [`Analytics::advance_to`]
//! when lines stop coming. Records without a time (formats without one) count
//! in the window of the current clock, and in no window until a clock is set.
//! Records older than the current per-circuit window, or older than an hour
//! before the clock, still count in every total but not in those windows
//! (they are counted as `late_requests`).
//!
//! **The per-circuit map is capped** ([`AnalyticsConfig::max_tracked_circuits`],
//! 100,000 by default, ~2 MiB): once that many circuits are tracked in a
//! window, requests from circuits not yet tracked are counted as
//! `untracked_requests` (and still in every other total and in the unique
//! estimate) but not per circuit, until the window ends and the map is
//! cleared. Circuits already tracked keep counting, so an abusive circuit
//! that started early cannot hide behind a flood of new ones.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

use onionwatch_tor::circuit_id::CircuitId;

use crate::access::{AccessRecord, ErrorReason, LogFormat, Method, ParseError};
use crate::hll::{mix64, Hll};
use crate::lines::Line;
use crate::summary::{
    Bucket, CircuitCount, CircuitWindowSummary, DurationSummary, Summary, WindowedUnique,
};
use crate::time::format_rfc3339;

/// Upper bounds (milliseconds) of the duration histogram buckets; a last
/// `+Inf` bucket follows. Prometheus's default buckets.
pub const DURATION_BUCKETS_MS: [u64; 11] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000];

/// Upper bounds of the requests-per-circuit histogram; a last `+Inf` bucket
/// follows.
pub const PER_CIRCUIT_BUCKETS: [u64; 10] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];

/// Most listeners whose circuits are counted apart (each sketch is at most
/// ~16 KiB).
pub const MAX_LISTENERS: usize = 32;

/// The listener of a `$server_addr`: a unix socket's directory (the onion
/// service's, of one tor: `port-80.sock` and `port-443.sock` are the same
/// circuits), else the address as written.
fn listener_key(server_addr: &[u8]) -> &[u8] {
    match server_addr.strip_prefix(b"unix:") {
        Some(path) => match path.iter().rposition(|&b| b == b'/') {
            Some(i) if i > 0 => &server_addr[..5 + i],
            _ => server_addr,
        },
        None => server_addr,
    }
}

/// Longest `address:port` key built on the stack.
const TCP_KEY_MAX: usize = 72;

/// The listener of a TCP `$server_addr` with its `$server_port`,
/// `address:port` in `buf` (workers whose `HiddenServicePort` lines point
/// at ports of one address are told apart by the port); the address alone
/// when it is too long to be one.
fn tcp_listener_key<'a>(buf: &'a mut [u8; TCP_KEY_MAX], addr: &'a [u8], port: u16) -> &'a [u8] {
    // The port's digits without allocating (this runs per log line).
    let (mut digits, mut n, mut i) = ([0u8; 5], port, 5);
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let port = &digits[i..];
    let len = addr.len() + 1 + port.len();
    if len > buf.len() {
        return addr;
    }
    buf[..addr.len()].copy_from_slice(addr);
    buf[addr.len()] = b':';
    buf[addr.len() + 1..len].copy_from_slice(port);
    &buf[..len]
}

/// Minutes kept for the sliding unique-circuit windows.
const RING_MINUTES: i64 = 60;

/// Tunables of [`Analytics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnalyticsConfig {
    /// Length of the per-circuit window in seconds (at least 1).
    pub circuit_window_secs: u32,
    /// Most circuits counted individually per window.
    pub max_tracked_circuits: usize,
    /// How many of the busiest circuits to report.
    pub top_k: usize,
}

impl Default for AnalyticsConfig {
    /// 60 s windows, 100,000 circuits tracked, top 10.
    fn default() -> Self {
        AnalyticsConfig {
            circuit_window_secs: 60,
            max_tracked_circuits: 100_000,
            top_k: 10,
        }
    }
}

/// A histogram of durations in milliseconds.
#[derive(Debug, Clone, Default)]
struct DurationHistogram {
    counts: [u64; DURATION_BUCKETS_MS.len() + 1],
    sum_ms: u64,
    count: u64,
}

impl DurationHistogram {
    fn observe(&mut self, ms: u64) {
        let i = DURATION_BUCKETS_MS.partition_point(|&b| b < ms);
        self.counts[i] += 1;
        self.sum_ms = self.sum_ms.saturating_add(ms);
        self.count += 1;
    }

    fn summary(&self) -> Option<DurationSummary> {
        if self.count == 0 {
            return None;
        }
        let mut cumulative = 0;
        let buckets = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, c)| {
                cumulative += c;
                Bucket {
                    le: DURATION_BUCKETS_MS
                        .get(i)
                        .map_or_else(|| "+Inf".to_string(), |ms| ms_to_seconds(*ms)),
                    count: cumulative,
                }
            })
            .collect();
        Some(DurationSummary {
            count: self.count,
            sum_seconds: self.sum_ms as f64 / 1000.0,
            buckets,
        })
    }
}

/// `2500` → `"2.5"`, `5` → `"0.005"`.
fn ms_to_seconds(ms: u64) -> String {
    let s = format!("{}.{:03}", ms / 1000, ms % 1000);
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A seeded hasher for circuit ids (`u32` keys): cheap, and not predictable
/// by whoever picks the ids.
#[derive(Debug, Clone, Copy)]
struct SeededBuild(u64);

impl Default for SeededBuild {
    fn default() -> Self {
        SeededBuild(RandomState::new().hash_one(0x6f6e_696f_6e77_6174_u64))
    }
}

impl BuildHasher for SeededBuild {
    type Hasher = SeededHasher;
    fn build_hasher(&self) -> SeededHasher {
        SeededHasher(self.0)
    }
}

/// See [`SeededBuild`].
#[derive(Debug, Clone, Copy)]
struct SeededHasher(u64);

impl Hasher for SeededHasher {
    fn finish(&self) -> u64 {
        mix64(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 ^= u64::from(n);
    }
}

/// One tumbling window of per-circuit request counts.
#[derive(Debug, Clone, Default)]
struct CircuitWindow {
    start: Option<i64>,
    counts: HashMap<u32, u32, SeededBuild>,
    requests: u64,
    untracked: u64,
    late: u64,
}

impl CircuitWindow {
    fn summary(&self, config: &AnalyticsConfig) -> Option<CircuitWindowSummary> {
        let start = self.start?;
        let mut hist = [0u64; PER_CIRCUIT_BUCKETS.len() + 1];
        for &c in self.counts.values() {
            hist[PER_CIRCUIT_BUCKETS.partition_point(|&b| b < u64::from(c))] += 1;
        }
        let mut cumulative = 0;
        let requests_per_circuit = hist
            .iter()
            .enumerate()
            .map(|(i, c)| {
                cumulative += c;
                Bucket {
                    le: PER_CIRCUIT_BUCKETS
                        .get(i)
                        .map_or_else(|| "+Inf".to_string(), u64::to_string),
                    count: cumulative,
                }
            })
            .collect();
        let mut top: Vec<(u32, u32)> = self.counts.iter().map(|(&k, &v)| (k, v)).collect();
        let by_busiest = |a: &(u32, u32), b: &(u32, u32)| b.1.cmp(&a.1).then(a.0.cmp(&b.0));
        let k = config.top_k.min(top.len());
        if k > 0 && k < top.len() {
            top.select_nth_unstable_by(k - 1, by_busiest);
        }
        top.truncate(k);
        top.sort_unstable_by(by_busiest);
        Some(CircuitWindowSummary {
            start: format_rfc3339(start),
            end: format_rfc3339(start + i64::from(config.circuit_window_secs.max(1))),
            seconds: config.circuit_window_secs.max(1),
            requests: self.requests,
            circuits: self.counts.len() as u64,
            untracked_requests: self.untracked,
            late_requests: self.late,
            requests_per_circuit,
            top_circuits: top
                .into_iter()
                .map(|(circuit, requests)| CircuitCount {
                    circuit,
                    requests: u64::from(requests),
                })
                .collect(),
        })
    }
}

/// Aggregates of one access-log stream; see the module documentation.
#[derive(Debug, Clone)]
pub struct Analytics {
    config: AnalyticsConfig,
    lines: u64,
    requests: u64,
    errors: [u64; ErrorReason::ALL.len()],
    status: Box<[u64; 1000]>,
    methods: [u64; Method::ALL.len()],
    bytes: u64,
    request_time: DurationHistogram,
    upstream_time: DurationHistogram,
    without_circuit: u64,
    circuits: Hll,
    /// Distinct circuits per listener (`$server_addr` without the socket's
    /// file name), when the format says.
    per_listener: std::collections::BTreeMap<Box<[u8]>, Hll>,
    /// Slot `m mod 60` holds minute `m` (minutes since the epoch).
    minutes: Vec<(i64, Hll)>,
    clock: Option<i64>,
    first_time: Option<i64>,
    last_time: Option<i64>,
    window: CircuitWindow,
    previous_window: Option<CircuitWindowSummary>,
}

impl Default for Analytics {
    fn default() -> Self {
        Analytics::new(AnalyticsConfig::default())
    }
}

impl Analytics {
    /// Empty aggregates.
    pub fn new(config: AnalyticsConfig) -> Self {
        Analytics {
            config,
            lines: 0,
            requests: 0,
            errors: [0; ErrorReason::ALL.len()],
            status: Box::new([0; 1000]),
            methods: [0; Method::ALL.len()],
            bytes: 0,
            request_time: DurationHistogram::default(),
            upstream_time: DurationHistogram::default(),
            without_circuit: 0,
            circuits: Hll::new(),
            per_listener: std::collections::BTreeMap::new(),
            minutes: (0..RING_MINUTES).map(|_| (i64::MIN, Hll::new())).collect(),
            clock: None,
            first_time: None,
            last_time: None,
            window: CircuitWindow::default(),
            previous_window: None,
        }
    }

    /// Lines seen (records and parse errors).
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Lines that did not parse.
    pub fn parse_errors(&self) -> u64 {
        self.errors.iter().sum()
    }

    /// The newest time seen (Unix seconds): windows end here.
    pub fn clock(&self) -> Option<i64> {
        self.clock
    }

    /// Parse one access-log line with `format` and count it: a record, or a
    /// parse error by its reason (a line over `max_line` bytes is a
    /// `too_long` error). The one per-line step of the one-shot analyser
    /// ([`crate::once`]) and the follower ([`crate::follow`]); the record or
    /// the error is returned for the caller's hook or message.
    pub fn ingest<'a>(
        &mut self,
        format: &LogFormat,
        line: Line<'a>,
        max_line: usize,
    ) -> Result<AccessRecord<'a>, ParseError> {
        let parsed = match line {
            Line::Complete(bytes) => format.parse(bytes),
            Line::TooLong { .. } => Err(ParseError::TooLong { limit: max_line }),
        };
        match &parsed {
            Ok(record) => self.record(record),
            Err(e) => self.error(e),
        }
        parsed
    }

    /// Count a line that did not parse.
    pub fn error(&mut self, e: &ParseError) {
        self.lines += 1;
        self.errors[e.reason().index()] += 1;
    }

    /// Count a parsed line.
    pub fn record(&mut self, rec: &AccessRecord<'_>) {
        self.lines += 1;
        self.requests += 1;
        if let Some(s) = rec.status.and_then(|s| self.status.get_mut(usize::from(s))) {
            *s += 1;
        }
        self.methods[Method::from_bytes(rec.method).index()] += 1;
        let bytes = rec.body_bytes_sent.or(rec.bytes_sent).unwrap_or(0);
        self.bytes = self.bytes.saturating_add(bytes);
        if let Some(ms) = rec.request_time_ms {
            self.request_time.observe(ms);
        }
        if let Some(ms) = rec.upstream_response_time_ms {
            self.upstream_time.observe(ms);
        }
        if let Some(t) = rec.time {
            self.first_time = Some(self.first_time.map_or(t, |f| f.min(t)));
            self.last_time = Some(self.last_time.map_or(t, |l| l.max(t)));
            self.advance_to(t);
        }
        let Some(id) = rec.circuit_id() else {
            self.without_circuit += 1;
            return;
        };
        let hash = mix64(u64::from(id.0));
        self.circuits.insert_hash(hash);
        if !rec.server_addr.is_empty() {
            let mut buf = [0u8; TCP_KEY_MAX];
            let key = match rec.server_port {
                Some(port) if !rec.server_addr.starts_with(b"unix:") => {
                    tcp_listener_key(&mut buf, rec.server_addr, port)
                }
                _ => listener_key(rec.server_addr),
            };
            if let Some(h) = self.per_listener.get_mut(key) {
                h.insert_hash(hash);
            } else if self.per_listener.len() < MAX_LISTENERS {
                let mut h = Hll::new();
                h.insert_hash(hash);
                self.per_listener.insert(key.into(), h);
            }
        }
        if let Some(t) = rec.time.or(self.clock) {
            self.count_minute(hash, t);
            self.count_window(id, t);
        }
    }

    /// Move the clock forward to `now` (Unix seconds; never backwards):
    /// windows then end at `now`, and a per-circuit window that `now` is
    /// past is closed. For tailers when no line arrives.
    pub fn advance_to(&mut self, now: i64) {
        if self.clock.is_some_and(|c| c >= now) {
            return;
        }
        self.clock = Some(now);
        let len = i64::from(self.config.circuit_window_secs.max(1));
        let ws = now - now.rem_euclid(len);
        if let Some(start) = self.window.start {
            if ws > start {
                self.previous_window = self.window.summary(&self.config);
                self.window.counts.clear();
                if self.window.counts.capacity() > 4 * self.config.max_tracked_circuits.max(1024) {
                    self.window.counts.shrink_to_fit();
                }
                self.window.requests = 0;
                self.window.untracked = 0;
                self.window.late = 0;
                self.window.start = Some(ws);
            }
        }
    }

    fn count_minute(&mut self, hash: u64, t: i64) {
        let m = t.div_euclid(60);
        let now = self.clock.map_or(m, |c| c.div_euclid(60));
        if m <= now - RING_MINUTES {
            return;
        }
        let slot = &mut self.minutes[m.rem_euclid(RING_MINUTES) as usize];
        if slot.0 != m {
            slot.0 = m;
            slot.1.clear();
        }
        slot.1.insert_hash(hash);
    }

    fn count_window(&mut self, id: CircuitId, t: i64) {
        let len = i64::from(self.config.circuit_window_secs.max(1));
        let ws = t - t.rem_euclid(len);
        let w = &mut self.window;
        match w.start {
            None => w.start = Some(ws),
            Some(s) if ws < s => {
                w.late += 1;
                return;
            }
            // advance_to has already closed older windows.
            Some(_) => {}
        }
        w.requests += 1;
        if let Some(c) = w.counts.get_mut(&id.0) {
            *c = c.saturating_add(1);
        } else if w.counts.len() < self.config.max_tracked_circuits {
            w.counts.insert(id.0, 1);
        } else {
            w.untracked += 1;
        }
    }

    /// Unique circuits in the last `minutes` minutes up to the clock
    /// (`minutes` ≤ 60).
    pub fn unique_in_last(&self, minutes: i64) -> u64 {
        let Some(clock) = self.clock else {
            return 0;
        };
        let now = clock.div_euclid(60);
        let mut merged = Hll::new();
        for (m, h) in &self.minutes {
            if *m <= now && *m > now - minutes.min(RING_MINUTES) {
                merged.merge(h);
            }
        }
        merged.estimate()
    }

    /// A snapshot of everything (merges the window sketches: call it when
    /// reporting, not per line). `files` and `project` are left empty for
    /// the caller.
    pub fn summary(&self) -> Summary {
        let nonzero =
            |pairs: Vec<(String, u64)>| pairs.into_iter().filter(|(_, n)| *n > 0).collect();
        let mut classes = std::collections::BTreeMap::new();
        for class in ["1xx", "2xx", "3xx", "4xx", "5xx", "other"] {
            classes.insert(class.to_string(), 0);
        }
        let mut by_status = Vec::new();
        for (code, &n) in self.status.iter().enumerate() {
            if n == 0 {
                continue;
            }
            by_status.push((format!("{code:03}"), n));
            let class = match code / 100 {
                c @ 1..=5 => format!("{c}xx"),
                _ => "other".to_string(),
            };
            *classes.entry(class).or_insert(0) += n;
        }
        Summary {
            project: None,
            lines: self.lines,
            requests: self.requests,
            parse_errors: self.parse_errors(),
            parse_errors_by_reason: nonzero(
                ErrorReason::ALL
                    .iter()
                    .map(|r| (r.as_str().to_string(), self.errors[r.index()]))
                    .collect(),
            ),
            requests_by_status: by_status.into_iter().collect(),
            requests_by_status_class: classes,
            requests_by_method: nonzero(
                Method::ALL
                    .iter()
                    .map(|m| (m.as_str().to_string(), self.methods[m.index()]))
                    .collect(),
            ),
            bytes: self.bytes,
            unique_circuits: self
                .circuits
                .estimate()
                .max(self.per_listener.values().map(Hll::estimate).sum()),
            unique_circuits_exact: self.circuits.is_exact() && self.per_listener.len() <= 1,
            unique_circuits_by_listener: self
                .per_listener
                .iter()
                .map(|(k, h)| (String::from_utf8_lossy(k).into_owned(), h.estimate()))
                .collect(),
            requests_without_circuit: self.without_circuit,
            unique_circuits_windows: self.clock.map(|c| WindowedUnique {
                end: format_rfc3339(c),
                last_1m: self.unique_in_last(1),
                last_5m: self.unique_in_last(5),
                last_1h: self.unique_in_last(60),
            }),
            first_time: self.first_time.map(format_rfc3339),
            last_time: self.last_time.map(format_rfc3339),
            request_duration: self.request_time.summary(),
            upstream_response_duration: self.upstream_time.summary(),
            circuit_window: self.window.summary(&self.config),
            previous_circuit_window: self.previous_window.clone(),
            files: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests;
