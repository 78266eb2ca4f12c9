//! Probing: descriptor step, connection step, rounds.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use onionwatch_tor::control::{Event, HsDescAction};
use onionwatch_tor::socks::Isolation;
use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};

use crate::config::{Config, Protocol, Target};
use crate::conn::{self, Attempt, ConnError, TlsInfo};
use crate::descriptor::{self, DescriptorInfo};
use crate::metrics::ProbeMetrics;
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

fn now() -> f64 {
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
        self.metrics.set("onionprobe_wait_seconds", &[], secs);
        if secs <= 0.0 {
            return;
        }
        let before = self.metrics.state();
        self.metrics.set_state("sleeping");
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
        self.metrics.set_state("probing");
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
            "onionwatch_round_duration_seconds",
            &[],
            started.elapsed().as_secs_f64(),
        );
        self.metrics.inc("onionwatch_rounds", &[]);
        all
    }

    /// Probe one endpoint: descriptor, then each path (or the TCP port).
    pub async fn probe(&self, t: &Target, round: u64) -> Vec<ProbeResult> {
        let s = self.settings();
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let name = t.name.as_str();
        let address = t.address.host();
        let e = [name, address];
        let port = t.port.to_string();
        tracing::info!(name, address, "probing the onion service");
        self.metrics
            .set("onionwatch_probe_last_tested_timestamp_seconds", &e, now());
        self.metrics.set_info("onion_service_probe_status", &e, &[]);

        let mut auth_error = None;
        if let Some(key) = &t.client_auth_key {
            let entry = (t.address.service_id().to_owned(), key.clone());
            let known = self
                .client_auth
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&entry);
            if !known {
                match self
                    .tor
                    .control()
                    .onion_client_auth_add(t.address.service_id(), key, None, false)
                    .await
                {
                    Ok(_) => {
                        self.client_auth
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(entry);
                    }
                    Err(err) => auth_error = Some(err.to_string()),
                }
            }
        }

        let desc = match auth_error {
            Some(detail) => DescriptorOutcome {
                state: "CLIENT_AUTH".into(),
                reason: Some("client_auth_add_failed".into()),
                detail: Some(format!(
                    "tor refused the client authorization key for the onion service: {detail}"
                )),
                ..DescriptorOutcome::default()
            },
            None => self.descriptor_step(t, &s).await,
        };
        self.record_descriptor(t, &desc);

        let isolation_base = format!("onionwatch-{}-{seq}", std::process::id());
        let mut results = Vec::new();
        if t.protocol == Protocol::Tcp {
            results.push(
                self.connect_step(t, None, &desc, &s, &isolation_base, round)
                    .await,
            );
        } else {
            let mut tls_recorded = false;
            for p in &t.paths {
                let r = self
                    .connect_step(t, Some(p), &desc, &s, &isolation_base, round)
                    .await;
                if !tls_recorded && t.protocol == Protocol::Https && t.test_tls {
                    if let Some(tls) = &r.1 {
                        self.record_tls(t, tls, s.get_certificate_info);
                        tls_recorded = true;
                    }
                }
                results.push(r);
            }
        }
        let results: Vec<ProbeResult> = results.into_iter().map(|(r, _)| r).collect();
        let passed = desc.ok && results.iter().all(|r| r.passed);
        self.metrics.set(
            "onionwatch_probe_success",
            &e,
            if passed { 1.0 } else { 0.0 },
        );
        let _ = port;
        results
    }

    async fn descriptor_step(&self, t: &Target, s: &Settings) -> DescriptorOutcome {
        let id = t.address.service_id();
        let e = [t.name.as_str(), t.address.host()];
        let mut out = DescriptorOutcome::default();
        for attempt in 1..=s.descriptor_max_retries.saturating_add(1) {
            out.attempts = attempt;
            self.metrics
                .inc("onion_service_descriptor_fetch_requests", &e);
            let mut sub = self.tor.subscribe(id);
            let start = Instant::now();
            tracing::debug!(address = id, attempt, "HSFETCH");
            if let Err(err) = self.tor.control().hs_fetch(id, &[]).await {
                out.attempt_latencies.push(start.elapsed().as_secs_f64());
                self.metrics.inc("onion_service_descriptor_fetch_error", &e);
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
                    self.metrics.inc("onion_service_descriptor_fetch_error", &e);
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

    fn record_descriptor(&self, t: &Target, d: &DescriptorOutcome) {
        let m = &self.metrics;
        let e = [t.name.as_str(), t.address.host()];
        let attempts = d.attempts as f64;
        let (yes, no) = if d.ok { ("1", "0") } else { ("0", "1") };
        m.set(
            "onion_service_descriptor_fetch_attempts",
            &[e[0], e[1], yes],
            attempts,
        );
        m.unset("onion_service_descriptor_fetch_attempts", &[e[0], e[1], no]);
        m.set(
            "onion_service_descriptor_reachable",
            &e,
            if d.ok { 1.0 } else { 0.0 },
        );
        m.set_info(
            "onion_service_descriptor",
            &e,
            &[
                ("hsdir", d.hsdir.as_deref().unwrap_or("")),
                ("state", &d.state),
            ],
        );
        for (i, l) in d.attempt_latencies.iter().enumerate() {
            m.set(
                "onionwatch_descriptor_attempt_latency_seconds",
                &[e[0], e[1], &(i + 1).to_string()],
                *l,
            );
        }
        for i in d.attempt_latencies.len() + 1..=64 {
            m.unset(
                "onionwatch_descriptor_attempt_latency_seconds",
                &[e[0], e[1], &i.to_string()],
            );
        }
        if let Some(reason) = &d.reason {
            m.inc("onionwatch_probe_errors", &[e[0], e[1], reason]);
        }
        let gauges = [
            "onion_service_descriptor_latency_seconds",
            "onion_service_descriptor_revision_counter",
            "onion_service_descriptor_lifetime_seconds",
            "onion_service_descriptor_outer_wrapper_size_bytes",
            "onion_service_descriptor_second_layer_size_bytes",
            "onion_service_is_single",
            "onion_service_introduction_points_number",
            "onion_service_pow_enabled",
            "onion_service_pow_v1_seed",
            "onion_service_pow_v1_effort",
            "onion_service_pow_v1_expiration_seconds",
        ];
        for g in gauges {
            m.unset(g, &e);
        }
        if let Some(l) = d.latency {
            m.set("onion_service_descriptor_latency_seconds", &e, l);
            if let Some(h) = &d.hsdir {
                let h = h.trim_start_matches('$');
                let (fp, nick) = h.split_once('~').unwrap_or((h, ""));
                m.hsdir_latency(nick, fp, l);
            }
        }
        if let Some(info) = &d.info {
            m.set(
                "onion_service_descriptor_revision_counter",
                &e,
                info.revision_counter as f64,
            );
            m.set(
                "onion_service_descriptor_lifetime_seconds",
                &e,
                info.lifetime_seconds as f64,
            );
            m.set(
                "onion_service_descriptor_outer_wrapper_size_bytes",
                &e,
                info.outer_size as f64,
            );
            if let Some(v) = info.second_layer_size {
                m.set(
                    "onion_service_descriptor_second_layer_size_bytes",
                    &e,
                    v as f64,
                );
            }
            if let Some(v) = info.single_onion {
                m.set("onion_service_is_single", &e, f64::from(u8::from(v)));
            }
            if let Some(v) = info.introduction_points {
                m.set("onion_service_introduction_points_number", &e, f64::from(v));
            }
            if let Some(v) = info.pow_enabled {
                m.set("onion_service_pow_enabled", &e, f64::from(u8::from(v)));
            }
            if let Some(p) = &info.pow_v1 {
                m.set("onion_service_pow_v1_seed", &e, p.seed);
                m.set("onion_service_pow_v1_effort", &e, p.effort as f64);
                if let Some(x) = p.expiration {
                    m.set("onion_service_pow_v1_expiration_seconds", &e, x);
                }
            }
        }
    }

    async fn connect_step(
        &self,
        t: &Target,
        path: Option<&crate::config::TargetPath>,
        desc: &DescriptorOutcome,
        s: &Settings,
        isolation_base: &str,
        round: u64,
    ) -> (ProbeResult, Option<TlsInfo>) {
        let m = &self.metrics;
        let port = t.port.to_string();
        let path_label = path.map(|p| p.path.as_str()).unwrap_or("");
        let p = [
            t.name.as_str(),
            t.address.host(),
            t.protocol.as_str(),
            port.as_str(),
            path_label,
        ];
        let mut r = ProbeResult {
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
            introduction_points: desc.info.as_ref().and_then(|i| i.introduction_points),
            revision_counter: desc.info.as_ref().map(|i| i.revision_counter),
            pow_enabled: desc.info.as_ref().and_then(|i| i.pow_enabled),
            pow_effort: desc
                .info
                .as_ref()
                .and_then(|i| i.pow_v1.as_ref())
                .map(|p| p.effort),
            tls: None,
            error: None,
            error_detail: None,
            timestamp: 0.0,
        };
        // The last result's gauges stay until this one is known: a scrape
        // during a slow probe must not find them missing.
        let clear_last_result = || {
            for g in [
                "onion_service_latency_seconds",
                "onion_service_status_code",
                "onion_service_unexpected_status_code",
                "onionwatch_probe_connect_seconds",
                "onionwatch_probe_first_byte_seconds",
                "onionwatch_probe_body_bytes",
            ] {
                m.unset(g, &p);
            }
        };
        if !desc.ok {
            clear_last_result();
            // Written, not left stale: the onion service is not reachable.
            m.set("onion_service_reachable", &p, 0.0);
            if t.protocol == Protocol::Https {
                m.set("onion_service_valid_certificate", &p, 2.0);
            }
            if let Some((_, text)) = path.and_then(|p| p.pattern.as_ref()) {
                m.unset(
                    "onion_service_pattern_matched",
                    &[p[0], p[1], p[2], p[3], p[4], text],
                );
            }
            r.error = desc
                .reason
                .clone()
                .or(Some("descriptor_unavailable".into()));
            r.error_detail = desc.detail.clone();
            r.timestamp = now();
            return (r, None);
        }

        let max = s.http_connect_max_retries.saturating_add(1);
        let mut last: Attempt = Attempt::default();
        let mut good = false;
        for attempt in 1..=max {
            r.attempts = attempt;
            m.inc("onion_service_fetch_requests", &p);
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
            last = conn::attempt(&req).await;
            let status_ok = match (last.status, path.and_then(|p| p.allowed_statuses.as_ref())) {
                (Some(st), Some(list)) => list.contains(&st),
                (Some(_), None) => true,
                (None, _) => path.is_none() && last.error.is_none(),
            };
            if last.error.is_none() && status_ok {
                good = true;
                break;
            }
            tracing::info!(
                name = %t.name,
                attempt,
                error = last.error.as_ref().map(|e| e.to_string()).unwrap_or_else(|| format!("status {:?}", last.status)),
                "connection attempt failed"
            );
        }

        clear_last_result();
        r.status_code = last.status;
        r.connect_seconds = last.connect.map(|d| d.as_secs_f64());
        r.first_byte_seconds = last.first_byte.map(|d| d.as_secs_f64());
        r.reachable = good;
        if let Some(c) = r.connect_seconds {
            m.set("onionwatch_probe_connect_seconds", &p, c);
        }
        if let Some(c) = r.first_byte_seconds {
            m.set("onionwatch_probe_first_byte_seconds", &p, c);
        }
        let (yes, no) = if good { ("1", "0") } else { ("0", "1") };
        m.set(
            "onion_service_connection_attempts",
            &[p[0], p[1], p[2], p[3], p[4], yes],
            f64::from(r.attempts),
        );
        m.unset(
            "onion_service_connection_attempts",
            &[p[0], p[1], p[2], p[3], p[4], no],
        );
        m.set("onion_service_reachable", &p, if good { 1.0 } else { 0.0 });
        if let Some(st) = last.status {
            m.set("onion_service_status_code", &p, f64::from(st));
            r.body_bytes = Some(last.body.len());
            m.set("onionwatch_probe_body_bytes", &p, last.body.len() as f64);
        }
        if let (Some(st), Some(list)) =
            (last.status, path.and_then(|p| p.allowed_statuses.as_ref()))
        {
            let unexpected = !list.contains(&st);
            r.unexpected_status = Some(unexpected);
            m.set(
                "onion_service_unexpected_status_code",
                &p,
                if unexpected { 1.0 } else { 0.0 },
            );
        }
        if good {
            r.latency_seconds = Some(last.total.as_secs_f64());
            m.set(
                "onion_service_latency_seconds",
                &p,
                last.total.as_secs_f64(),
            );
        }
        let mut passed = good;
        if let Some((re, text)) = path.and_then(|p| p.pattern.as_ref()) {
            let labels = [p[0], p[1], p[2], p[3], p[4], text.as_str()];
            if good {
                let body = String::from_utf8_lossy(&last.body);
                let matched = re.is_match(&body);
                r.pattern_matched = Some(matched);
                m.set(
                    "onion_service_pattern_matched",
                    &labels,
                    if matched { 1.0 } else { 0.0 },
                );
                passed = matched;
                if !matched {
                    r.error = Some("pattern_not_matched".into());
                    r.error_detail =
                        Some(format!(
                        "the pattern {text:?} was not found in the first {} bytes of the body{}",
                        last.body.len(),
                        if last.truncated { " (truncated at max_body_bytes)" } else { "" }
                    ));
                }
            } else {
                m.unset("onion_service_pattern_matched", &labels);
            }
        }
        if t.protocol == Protocol::Https {
            let v = match &last.tls {
                Some(tls) if tls.certificate_valid => 1.0,
                Some(_) => 0.0,
                None => 2.0,
            };
            m.set("onion_service_valid_certificate", &p, v);
            r.tls = last.tls.as_ref().map(|tls| TlsSummary {
                version: tls.version.clone(),
                cipher: tls.cipher.clone(),
                certificate_valid: tls.certificate_valid,
                certificate_error: tls.certificate_error.clone(),
                certificate_expiry_seconds: tls.certificate.as_ref().map(|c| c.expiry_seconds),
                certificate_not_after: tls.certificate.as_ref().map(|c| c.not_after),
                certificate_match_hostname: tls.certificate.as_ref().map(|c| c.match_hostname),
            });
        }
        if !good {
            let (reason, detail) = match &last.error {
                Some(err) => (err.reason().to_owned(), err.to_string()),
                None => (
                    "unexpected_status".to_owned(),
                    format!(
                        "the onion service answered {} (allowed: {:?})",
                        last.status.unwrap_or(0),
                        path.and_then(|p| p.allowed_statuses.clone())
                            .unwrap_or_default()
                    ),
                ),
            };
            if let Some(err) = &last.error {
                m.inc("onion_service_fetch_error", &p);
                m.inc("onion_service_request_exception", &p);
                match err {
                    ConnError::ConnectTimeout(_) => {
                        m.inc("onion_service_connection_timeout", &p);
                        m.inc("onion_service_timeout", &p);
                    }
                    ConnError::ReadTimeout(_) => {
                        m.inc("onion_service_read_timeout", &p);
                        m.inc("onion_service_timeout", &p);
                    }
                    ConnError::Socks(_) | ConnError::Proxy(_) => {
                        m.inc("onion_service_connection_error", &p);
                    }
                    ConnError::Certificate(_) => {
                        m.inc("onion_service_certificate_error", &p);
                    }
                    ConnError::Http(_) => m.inc("onion_service_http_error", &p),
                    ConnError::Tls(_) => {
                        m.inc("onion_service_generic_error", &[p[0], p[1], p[3]]);
                    }
                }
            }
            r.error = Some(reason);
            r.error_detail = Some(detail);
        }
        if let Some(reason) = &r.error {
            m.inc("onionwatch_probe_errors", &[p[0], p[1], reason]);
        }
        r.passed = passed;
        r.timestamp = now();
        (r, last.tls)
    }

    fn record_tls(&self, t: &Target, tls: &TlsInfo, cert_info: bool) {
        let m = &self.metrics;
        let port = t.port.to_string();
        let tl = [t.name.as_str(), t.address.host(), port.as_str()];
        if !tls.version.is_empty() {
            m.set_info(
                "onion_service_tls",
                &tl,
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
        m.set(
            "onionwatch_certificate_valid",
            &tl,
            if tls.certificate_valid { 1.0 } else { 0.0 },
        );
        let Some(c) = tls.certificate.as_ref().filter(|_| cert_info) else {
            return;
        };
        let version = c.version.to_string();
        m.set_info(
            "onion_service_certificate",
            &tl,
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
            "onion_service_certificate_not_valid_before_timestamp_seconds",
            &tl,
            c.not_before as f64,
        );
        m.set(
            "onion_service_certificate_not_valid_after_timestamp_seconds",
            &tl,
            c.not_after as f64,
        );
        m.set(
            "onion_service_certificate_expiry_seconds",
            &tl,
            c.expiry_seconds as f64,
        );
        m.set(
            "onion_service_certificate_match_hostname",
            &tl,
            if c.match_hostname { 1.0 } else { 0.0 },
        );
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
