//! Probing: descriptor step, connection step, rounds.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use onionwatch_tor::control::{Event, HsDescAction};
use onionwatch_tor::socks::Isolation;
use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};

use crate::config::{Config, Protocol, Target, TargetPath};
use crate::conn::{self, Attempt, ConnError, TlsInfo};
use crate::descriptor::{self, DescriptorInfo};
use crate::metrics::{family, ProbeMetrics, State};
use crate::record::Recorder;
use crate::tor::Tor;

/// Settings the prober needs from the config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Extra descriptor fetches.
    pub descriptor_max_retries: u32,
    /// Per-fetch bound.
    pub descriptor_timeout: Duration,
    /// Extra connection attempts per path.
    pub http_connect_max_retries: u32,
    /// Stream open bound.
    pub connect_timeout: Duration,
    /// Per-read bound.
    pub read_timeout: Duration,
    /// TLS handshake bound.
    pub tls_timeout: Duration,
    /// Fresh circuit per attempt.
    pub new_circuit: bool,
    /// Record certificate details.
    pub get_certificate_info: bool,
    /// Body bytes kept.
    pub max_body: usize,
    /// Endpoint groups probed at once.
    pub concurrency: usize,
    /// Max wait between endpoint starts.
    pub interval: f64,
    /// Randomize waits.
    pub randomize: bool,
    /// Shuffle each round.
    pub shuffle: bool,
    /// Trust anchors for HTTPS verification: the web PKI plus `tls_ca_file`.
    pub tls_roots: Arc<rustls::RootCertStore>,
}

impl Settings {
    /// From a validated config. A `tls_ca_file` that became unreadable since
    /// validation is logged and left out.
    pub fn from_config(c: &Config) -> Self {
        let extra = c.tls_ca_certificates().unwrap_or_else(|e| {
            tracing::error!("{e}; verifying with the web PKI roots only");
            Vec::new()
        });
        let (tls_roots, refused) = conn::trust_roots(&extra);
        if refused > 0 {
            tracing::warn!(
                refused,
                "tls_ca_file: some certificates are not usable as trust anchors"
            );
        }
        Settings {
            tls_roots,
            descriptor_max_retries: c.descriptor_max_retries,
            descriptor_timeout: c.descriptor_timeout(),
            http_connect_max_retries: c.http_connect_max_retries,
            connect_timeout: c.connect_timeout(),
            read_timeout: c.read_timeout(),
            tls_timeout: c.tls_timeout(),
            new_circuit: c.new_circuit,
            get_certificate_info: c.get_certificate_info,
            max_body: c.max_body_bytes,
            concurrency: c.concurrency,
            interval: c.interval,
            randomize: c.randomize,
            shuffle: c.shuffle,
        }
    }
}

/// TLS summary in a result.
#[derive(Debug, Clone, Serialize)]
pub struct TlsSummary {
    /// `TLSv1.3`…
    pub version: String,
    /// Cipher suite.
    pub cipher: String,
    /// Chain verifies against the web PKI.
    pub certificate_valid: bool,
    /// Why not.
    pub certificate_error: Option<String>,
    /// Seconds until notAfter.
    pub certificate_expiry_seconds: Option<i64>,
    /// notAfter, POSIX seconds.
    pub certificate_not_after: Option<i64>,
    /// CN/SAN matches the host.
    pub certificate_match_hostname: Option<bool>,
}

/// One probe result: one per path (one per endpoint for tcp).
#[derive(Debug, Clone, Serialize)]
pub struct ProbeResult {
    /// Round number (from 1).
    pub round: u64,
    /// Endpoint name.
    pub name: String,
    /// Address as configured.
    pub address: String,
    /// http, https or tcp.
    pub protocol: Protocol,
    /// Port.
    pub port: u16,
    /// Path (`null` for tcp).
    pub path: Option<String>,
    /// The stream opened and (HTTP) an allowed status came back.
    pub reachable: bool,
    /// The whole check passed (descriptor, status, pattern).
    pub passed: bool,
    /// HTTP status of the last attempt.
    pub status_code: Option<u16>,
    /// Seconds of the successful attempt (stream, TLS, request, body).
    pub latency_seconds: Option<f64>,
    /// Seconds to open the stream (and TLS), last attempt.
    pub connect_seconds: Option<f64>,
    /// Seconds to the response head, last attempt.
    pub first_byte_seconds: Option<f64>,
    /// Connection attempts used.
    pub attempts: u32,
    /// `allowed_statuses` set and the status is not in it.
    pub unexpected_status: Option<bool>,
    /// The pattern was found (`null` without pattern or response).
    pub pattern_matched: Option<bool>,
    /// Body bytes read.
    pub body_bytes: Option<usize>,
    /// The descriptor was fetched.
    pub descriptor_reachable: bool,
    /// Seconds of the successful fetch attempt.
    pub descriptor_latency_seconds: Option<f64>,
    /// Fetch attempts used.
    pub descriptor_attempts: u32,
    /// The HSDir that answered last (`$FP~nick`).
    pub hsdir: Option<String>,
    /// Introduction points in the decrypted descriptor.
    pub introduction_points: Option<u32>,
    /// Descriptor revision counter.
    pub revision_counter: Option<u64>,
    /// PoW defences announced.
    pub pow_enabled: Option<bool>,
    /// PoW v1 suggested effort.
    pub pow_effort: Option<u64>,
    /// TLS details (https).
    pub tls: Option<TlsSummary>,
    /// `null`, or the reason of the failure.
    pub error: Option<String>,
    /// Human-readable detail of the failure.
    pub error_detail: Option<String>,
    /// When the probe finished, POSIX seconds.
    pub timestamp: f64,
}

impl From<&TlsInfo> for TlsSummary {
    fn from(tls: &TlsInfo) -> Self {
        let cert = tls.certificate.as_ref();
        TlsSummary {
            version: tls.version.clone(),
            cipher: tls.cipher.clone(),
            certificate_valid: tls.certificate_valid,
            certificate_error: tls.certificate_error.clone(),
            certificate_expiry_seconds: cert.map(|c| c.expiry_seconds),
            certificate_not_after: cert.map(|c| c.not_after),
            certificate_match_hostname: cert.map(|c| c.match_hostname),
        }
    }
}

impl ProbeResult {
    /// A failed result for one path of `t` carrying the descriptor step's
    /// facts; the connection's are filled in by the recorder.
    pub(crate) fn new(
        round: u64,
        t: &Target,
        path: Option<&TargetPath>,
        desc: &DescriptorOutcome,
    ) -> Self {
        let info = desc.info.as_ref();
        ProbeResult {
            round,
            name: t.name.clone(),
            address: t.address.host().to_owned(),
            protocol: t.protocol,
            port: t.port,
            path: path.map(|p| p.path.clone()),
            reachable: false,
            passed: false,
            status_code: None,
            latency_seconds: None,
            connect_seconds: None,
            first_byte_seconds: None,
            attempts: 0,
            unexpected_status: None,
            pattern_matched: None,
            body_bytes: None,
            descriptor_reachable: desc.ok,
            descriptor_latency_seconds: desc.latency,
            descriptor_attempts: desc.attempts,
            hsdir: desc.hsdir.clone(),
            introduction_points: info.and_then(|i| i.introduction_points),
            revision_counter: info.map(|i| i.revision_counter),
            pow_enabled: info.and_then(|i| i.pow_enabled),
            pow_effort: info.and_then(|i| i.pow_v1.as_ref()).map(|p| p.effort),
            tls: None,
            error: None,
            error_detail: None,
            timestamp: 0.0,
        }
    }
}

/// Outcome of the descriptor step.
#[derive(Debug, Clone, Default)]
pub struct DescriptorOutcome {
    /// Fetched.
    pub ok: bool,
    /// Attempts made.
    pub attempts: u32,
    /// Latency of the successful attempt.
    pub latency: Option<f64>,
    /// Latency of every attempt.
    pub attempt_latencies: Vec<f64>,
    /// The HSDir of the last answer.
    pub hsdir: Option<String>,
    /// `RECEIVED`, a FAILED reason, or `TIMEOUT`.
    pub state: String,
    /// Parsed/decrypted facts.
    pub info: Option<DescriptorInfo>,
    /// Failure reason (label value).
    pub reason: Option<String>,
    /// Failure detail.
    pub detail: Option<String>,
}

/// Outcome of the connection step for one path (or the TCP port).
#[derive(Debug, Default)]
pub(crate) struct Connection {
    /// Attempts made.
    pub(crate) attempts: u32,
    /// The last attempt (the successful one, if any).
    pub(crate) last: Attempt,
    /// The stream opened and (HTTP) an allowed status came back.
    pub(crate) reachable: bool,
    /// `allowed_statuses` is set: whether the last status is not in it.
    pub(crate) unexpected_status: Option<bool>,
    /// The path has a pattern and the onion service was reachable: whether
    /// the body matched.
    pub(crate) pattern_matched: Option<bool>,
}

/// Why a path failed once the descriptor was there.
pub(crate) enum Failure<'a> {
    /// The last attempt failed.
    Connection(&'a ConnError),
    /// The last attempt got a status not in `allowed_statuses`.
    Status,
    /// The pattern is not in the body.
    Pattern,
}

impl Connection {
    /// The check passed: reachable, and the pattern (if any) matched.
    pub(crate) fn passed(&self) -> bool {
        self.reachable && self.pattern_matched != Some(false)
    }

    /// Why the check did not pass.
    pub(crate) fn failure(&self) -> Option<Failure<'_>> {
        if !self.reachable {
            return Some(match &self.last.error {
                Some(err) => Failure::Connection(err),
                None => Failure::Status,
            });
        }
        (self.pattern_matched == Some(false)).then_some(Failure::Pattern)
    }
}

impl Failure<'_> {
    /// The error reason (label value) and its human-readable detail.
    pub(crate) fn describe(&self, path: Option<&TargetPath>, last: &Attempt) -> (String, String) {
        match self {
            Failure::Connection(err) => (err.reason().to_owned(), err.to_string()),
            Failure::Status => (
                "unexpected_status".to_owned(),
                format!(
                    "the onion service answered {} (allowed: {:?})",
                    last.status.unwrap_or(0),
                    path.and_then(|p| p.allowed_statuses.clone())
                        .unwrap_or_default()
                ),
            ),
            Failure::Pattern => {
                let text = path
                    .and_then(|p| p.pattern.as_ref())
                    .map_or("", |(_, text)| text.as_str());
                (
                    "pattern_not_matched".to_owned(),
                    format!(
                        "the pattern {text:?} was not found in the first {} bytes of the body{}",
                        last.body.len(),
                        if last.truncated {
                            " (truncated at max_body_bytes)"
                        } else {
                            ""
                        }
                    ),
                )
            }
        }
    }
}

pub(crate) fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Label value for a tor HS_DESC FAILED reason.
fn failed_reason(reason: &str) -> String {
    match reason {
        "NOT_FOUND" | "QUERY_REJECTED" | "UPLOAD_REJECTED" | "BAD_DESC" | "UNEXPECTED"
        | "QUERY_NO_HSDIR" | "QUERY_RATE_LIMITED" => {
            format!("descriptor_{}", reason.to_ascii_lowercase())
        }
        _ => "descriptor_failed".into(),
    }
}

/// The prober: one tor, one metric state, any number of rounds.
pub struct Prober {
    tor: Arc<Tor>,
    metrics: Arc<ProbeMetrics>,
    settings: Mutex<Settings>,
    seq: AtomicU64,
    client_auth: Mutex<HashSet<(String, String)>>,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober").finish_non_exhaustive()
    }
}

impl Prober {
    /// A prober using `tor`, writing into `metrics`.
    pub fn new(tor: Arc<Tor>, metrics: Arc<ProbeMetrics>, settings: Settings) -> Arc<Self> {
        Arc::new(Prober {
            tor,
            metrics,
            settings: Mutex::new(settings),
            seq: AtomicU64::new(0),
            client_auth: Mutex::new(HashSet::new()),
        })
    }

    /// Replace the settings (config reload).
    pub fn set_settings(&self, s: Settings) {
        *self.settings.lock().unwrap_or_else(|e| e.into_inner()) = s;
    }

    fn settings(&self) -> Settings {
        self.settings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<ProbeMetrics> {
        &self.metrics
    }

    /// Wait up to `max` seconds (uniform in `[0, max)` with `randomize`),
    /// recording it as Onionprobe does.
    pub async fn wait(&self, max: f64, randomize: bool) {
        let secs = if randomize {
            fastrand::f64() * max
        } else {
            max
        };
        self.metrics.set(family::WAIT_SECONDS, [], secs);
        if secs <= 0.0 {
            return;
        }
        let before = self.metrics.state();
        self.metrics.set_state(State::Sleeping);
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        self.metrics.set_state(before);
    }

    /// Probe every target once. Endpoints of the same onion service run in
    /// order, one after the other; different onion services run
    /// concurrently (at most `concurrency` at a time). Results go to
    /// `results` as they come and are also returned.
    pub async fn run_round(
        self: &Arc<Self>,
        targets: &[Target],
        round: u64,
        results: Option<mpsc::UnboundedSender<ProbeResult>>,
    ) -> Vec<ProbeResult> {
        let s = self.settings();
        let started = Instant::now();
        self.metrics.set_state(State::Probing);
        let mut order: Vec<Target> = targets.to_vec();
        order.sort_by(|a, b| a.name.cmp(&b.name));
        if s.shuffle {
            fastrand::shuffle(&mut order);
        }
        let mut groups: Vec<Vec<Target>> = Vec::new();
        for t in order {
            match groups
                .iter_mut()
                .find(|g| g[0].address.service_id() == t.address.service_id())
            {
                Some(g) => g.push(t),
                None => groups.push(vec![t]),
            }
        }
        let sem = Arc::new(Semaphore::new(s.concurrency.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for (i, group) in groups.into_iter().enumerate() {
            if i > 0 && s.interval > 0.0 {
                self.wait(s.interval, s.randomize).await;
            }
            let permit = sem.clone().acquire_owned().await.expect("never closed");
            let me = self.clone();
            let tx = results.clone();
            tasks.spawn(async move {
                let mut out = Vec::new();
                for t in group {
                    for r in me.probe(&t, round).await {
                        if let Some(tx) = &tx {
                            let _ = tx.send(r.clone());
                        }
                        out.push(r);
                    }
                }
                drop(permit);
                out
            });
        }
        let mut all = Vec::new();
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(v) => all.extend(v),
                Err(e) => tracing::error!("a probe task failed: {e}"),
            }
        }
        self.metrics.set(
            family::ROUND_DURATION_SECONDS,
            [],
            started.elapsed().as_secs_f64(),
        );
        self.metrics.inc(family::ROUNDS, []);
        all
    }

    /// Probe one endpoint: descriptor, then each path (or the TCP port).
    pub async fn probe(&self, t: &Target, round: u64) -> Vec<ProbeResult> {
        let s = self.settings();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            name = t.name.as_str(),
            address = t.address.host(),
            "probing the onion service"
        );
        let rec = Recorder::new(&self.metrics, t);
        rec.started();

        let desc = match self.client_auth(t).await {
            Err(detail) => DescriptorOutcome {
                state: "CLIENT_AUTH".into(),
                reason: Some("client_auth_add_failed".into()),
                detail: Some(format!(
                    "tor refused the client authorization key for the onion service: {detail}"
                )),
                ..DescriptorOutcome::default()
            },
            Ok(()) => self.descriptor_step(t, &s, &rec).await,
        };
        rec.descriptor(&desc);

        let isolation_base = format!("onionwatch-{}-{seq}", std::process::id());
        let paths: Vec<Option<&TargetPath>> = match t.protocol {
            Protocol::Tcp => vec![None],
            _ => t.paths.iter().map(Some).collect(),
        };
        let record_tls = t.protocol == Protocol::Https && t.test_tls;
        let mut tls_recorded = false;
        let mut results = Vec::new();
        for path in paths {
            let conn = match desc.ok {
                true => Some(self.connect_step(t, path, &s, &isolation_base, &rec).await),
                false => None,
            };
            results.push(rec.connection(path, &desc, conn.as_ref(), round));
            if let Some(tls) = conn.and_then(|c| c.last.tls) {
                if record_tls && !tls_recorded {
                    rec.tls(&tls, s.get_certificate_info);
                    tls_recorded = true;
                }
            }
        }
        rec.passed(desc.ok && results.iter().all(|r| r.passed));
        results
    }

    /// Give tor the endpoint's client authorization key, once per key.
    async fn client_auth(&self, t: &Target) -> Result<(), String> {
        let Some(key) = &t.client_auth_key else {
            return Ok(());
        };
        let entry = (t.address.service_id().to_owned(), key.clone());
        let lock = || self.client_auth.lock().unwrap_or_else(|e| e.into_inner());
        if lock().contains(&entry) {
            return Ok(());
        }
        self.tor
            .control()
            .onion_client_auth_add(t.address.service_id(), key, None, false)
            .await
            .map_err(|e| e.to_string())?;
        lock().insert(entry);
        Ok(())
    }

    /// Fetch and analyse the descriptor, retrying up to
    /// `descriptor_max_retries` times.
    async fn descriptor_step(
        &self,
        t: &Target,
        s: &Settings,
        rec: &Recorder<'_>,
    ) -> DescriptorOutcome {
        let id = t.address.service_id();
        let mut out = DescriptorOutcome::default();
        for attempt in 1..=s.descriptor_max_retries.saturating_add(1) {
            out.attempts = attempt;
            rec.descriptor_attempt();
            let mut sub = self.tor.subscribe(id);
            let start = Instant::now();
            tracing::debug!(address = id, attempt, "HSFETCH");
            if let Err(err) = self.tor.control().hs_fetch(id, &[]).await {
                out.attempt_latencies.push(start.elapsed().as_secs_f64());
                rec.descriptor_attempt_failed();
                out.state = "HSFETCH_REFUSED".into();
                out.detail = Some(format!("tor refused HSFETCH for the onion service: {err}"));
                if err.is_invalid_argument() {
                    out.reason = Some("invalid_address".into());
                    return out;
                }
                out.reason = Some("control_port_error".into());
                continue;
            }
            let deadline = tokio::time::Instant::now() + s.descriptor_timeout;
            let mut received_from: Option<String> = None;
            let outcome = loop {
                let ev = match tokio::time::timeout_at(deadline, sub.recv()).await {
                    Err(_) => break Err(("TIMEOUT".to_owned(), None)),
                    Ok(None) => break Err(("CONTROL_CLOSED".to_owned(), None)),
                    Ok(Some(ev)) => ev,
                };
                match ev {
                    Event::HsDesc(d) if d.action == HsDescAction::Received => {
                        received_from = d.hsdir.clone();
                    }
                    Event::HsDesc(d) if d.action == HsDescAction::Failed => {
                        let reason = d.reason.clone().unwrap_or_else(|| "UNKNOWN".into());
                        break Err((reason, d.hsdir.clone()));
                    }
                    Event::HsDescContent(c) if !c.content.is_empty() => {
                        break Ok((c.content, c.hsdir.or(received_from.clone())));
                    }
                    _ => {}
                }
            };
            let latency = start.elapsed().as_secs_f64();
            out.attempt_latencies.push(latency);
            match outcome {
                Ok((content, hsdir)) => {
                    out.ok = true;
                    out.latency = Some(latency);
                    out.hsdir = hsdir;
                    out.state = "RECEIVED".into();
                    out.reason = None;
                    out.detail = None;
                    match descriptor::analyse(
                        &content,
                        &t.address.identity_key(),
                        t.client_auth_key.as_deref(),
                    ) {
                        Ok(info) => {
                            if let Some(err) = &info.error {
                                tracing::warn!(address = id, "descriptor: {err}");
                            }
                            out.info = Some(info);
                        }
                        Err(err) => {
                            tracing::warn!(address = id, "descriptor: {err}");
                            out.detail = Some(err.to_string());
                        }
                    }
                    return out;
                }
                Err((state, hsdir)) => {
                    rec.descriptor_attempt_failed();
                    out.reason = Some(match state.as_str() {
                        "TIMEOUT" => "descriptor_timeout".into(),
                        "CONTROL_CLOSED" => "control_port_closed".into(),
                        other => failed_reason(other),
                    });
                    out.detail = Some(match state.as_str() {
                        "TIMEOUT" => format!(
                            "no descriptor for the onion service within {:?} (descriptor_timeout)",
                            s.descriptor_timeout
                        ),
                        "CONTROL_CLOSED" => "tor's control connection closed".into(),
                        other => format!(
                            "HSDir {} answered FAILED {other} for the onion service's descriptor",
                            hsdir.as_deref().unwrap_or("(unknown)")
                        ),
                    });
                    tracing::info!(address = id, attempt, state = %state, "descriptor fetch failed");
                    out.state = state;
                    out.hsdir = hsdir;
                    if out.reason.as_deref() == Some("control_port_closed") {
                        return out;
                    }
                }
            }
        }
        out
    }

    /// Connect to one path (or the TCP port), retrying up to
    /// `http_connect_max_retries` times, and check the answer.
    async fn connect_step(
        &self,
        t: &Target,
        path: Option<&TargetPath>,
        s: &Settings,
        isolation_base: &str,
        rec: &Recorder<'_>,
    ) -> Connection {
        let allowed = path.and_then(|p| p.allowed_statuses.as_ref());
        let mut c = Connection::default();
        for attempt in 1..=s.http_connect_max_retries.saturating_add(1) {
            c.attempts = attempt;
            rec.connection_attempt(path);
            let token = if s.new_circuit {
                format!("{isolation_base}-{attempt}")
            } else {
                isolation_base.to_owned()
            };
            let req = conn::Request {
                socks: self.tor.socks(),
                host: t.address.host(),
                port: t.port,
                path: path.map(|p| p.path.as_str()),
                tls: t.protocol == Protocol::Https,
                tls_verify: t.tls_verify,
                roots: s.tls_roots.clone(),
                isolation: Isolation::new(token),
                connect_timeout: s.connect_timeout,
                tls_timeout: s.tls_timeout,
                read_timeout: s.read_timeout,
                max_body: s.max_body,
            };
            c.last = conn::attempt(&req).await;
            let status_ok = match (c.last.status, allowed) {
                (Some(st), Some(list)) => list.contains(&st),
                (Some(_), None) => true,
                (None, _) => path.is_none() && c.last.error.is_none(),
            };
            if c.last.error.is_none() && status_ok {
                c.reachable = true;
                break;
            }
            tracing::info!(
                name = %t.name,
                attempt,
                error = c.last.error.as_ref().map(|e| e.to_string()).unwrap_or_else(|| format!("status {:?}", c.last.status)),
                "connection attempt failed"
            );
        }
        if let (Some(st), Some(list)) = (c.last.status, allowed) {
            c.unexpected_status = Some(!list.contains(&st));
        }
        if let Some((re, _)) = path.and_then(|p| p.pattern.as_ref()) {
            if c.reachable {
                let matched = re.is_match(&String::from_utf8_lossy(&c.last.body));
                c.pattern_matched = Some(matched);
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_reasons_are_bounded() {
        assert_eq!(failed_reason("NOT_FOUND"), "descriptor_not_found");
        assert_eq!(
            failed_reason("QUERY_RATE_LIMITED"),
            "descriptor_query_rate_limited"
        );
        assert_eq!(failed_reason("anything else"), "descriptor_failed");
    }
}
