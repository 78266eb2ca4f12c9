//! The descriptor and connection steps: I/O and retries, returning typed
//! outcomes that the recorder turns into metrics and results.

use std::time::Instant;

use onionwatch_tor::control::{Event, HsDescAction};
use onionwatch_tor::socks::Isolation;

use super::stage::CircEvidence;
use super::{Prober, Settings};
use crate::config::{Protocol, Target, TargetPath};
use crate::conn::{self, Attempt, ConnError};
use crate::descriptor::{self, DescriptorInfo};
use crate::record::Recorder;
use crate::tor::TorError;

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
    /// What tor's CIRC events said about the last attempt's circuits.
    pub(crate) circ: CircEvidence,
}

/// Why a path failed once the descriptor was there.
pub(crate) enum Failure<'a> {
    /// The last attempt failed, and what tor's circuits said about it.
    Connection(&'a ConnError, &'a CircEvidence),
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
                Some(err) => Failure::Connection(err, &self.circ),
                None => Failure::Status,
            });
        }
        (self.pattern_matched == Some(false)).then_some(Failure::Pattern)
    }
}

impl Failure<'_> {
    /// Where the probe stopped.
    pub(crate) fn stage(&self) -> super::FailureStage {
        match self {
            Failure::Connection(err, circ) => super::FailureStage::of_connection_with(err, circ),
            Failure::Status => super::FailureStage::HttpStatus,
            Failure::Pattern => super::FailureStage::Pattern,
        }
    }

    /// The error reason (label value) and its human-readable detail.
    pub(crate) fn describe(&self, path: Option<&TargetPath>, last: &Attempt) -> (String, String) {
        match self {
            Failure::Connection(err, circ) => (
                err.reason().to_owned(),
                match circ.describe() {
                    Some(said) => format!("{err} ({said})"),
                    None => err.to_string(),
                },
            ),
            Failure::Status => (
                "unexpected_status".to_owned(),
                format!(
                    "the onion service answered {} (allowed: {:?}){}",
                    last.status.unwrap_or(0),
                    path.and_then(|p| p.allowed_statuses.clone())
                        .unwrap_or_default(),
                    match &last.redirect_not_followed {
                        Some(url) => format!(
                            "; its redirect to {url} was not followed, as it leaves the onion \
                             service (set follow_redirects_elsewhere: true to follow it)"
                        ),
                        None => String::new(),
                    }
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
impl Prober {
    /// Fetch and analyse the descriptor, retrying up to
    /// `descriptor_max_retries` times.
    pub(super) async fn descriptor_step(
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
            let start = Instant::now();
            tracing::debug!(address = id, attempt, "HSFETCH");
            // The client first: a closed connection is re-opened, and the
            // subscription belongs to the connection HSFETCH goes through.
            let fetched = match self.tor.control().await {
                Ok(control) => {
                    let sub = self.tor.subscribe(id);
                    control
                        .hs_fetch(id, &[])
                        .await
                        .map(|()| sub)
                        .map_err(TorError::from)
                }
                Err(e) => Err(e),
            };
            let mut sub = match fetched {
                Ok(sub) => sub,
                Err(err) => {
                    out.attempt_latencies.push(start.elapsed().as_secs_f64());
                    rec.descriptor_attempt_failed();
                    out.state = "HSFETCH_REFUSED".into();
                    out.detail = Some(format!("tor refused HSFETCH for the onion service: {err}"));
                    if matches!(&err, TorError::Control(e) if e.is_invalid_argument()) {
                        out.reason = Some("invalid_address".into());
                        return out;
                    }
                    out.reason = Some("control_port_error".into());
                    continue;
                }
            };
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
    pub(super) async fn connect_step(
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
                redirects: path.map(|_| conn::Redirects {
                    max: conn::MAX_REDIRECTS,
                    elsewhere: s.follow_redirects_elsewhere,
                }),
            };
            // Tor's CIRC events of this service's circuits during the
            // attempt: where a generic failure really stopped.
            let mut events = self.tor.subscribe(t.address.service_id());
            c.last = conn::attempt(&req).await;
            c.circ = match &c.last.error {
                Some(err) => circuit_evidence(&mut events, err, req.isolation.username()).await,
                None => CircEvidence::default(),
            };
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

/// How long to wait, after a generic SOCKS reply, for CIRC events that
/// tor may send after it (it gives no order between the two).
const CIRC_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// The CIRC events routed to `events` so far and, after a SOCKS reply
/// that they may correct (see [`CircEvidence::refine`]) while they say
/// nothing decisive yet, those arriving within [`CIRC_GRACE`]. After our
/// own connect timeout only what happened before it counts: the probe
/// gave up then. Only the attempt's circuits count (see
/// [`crate::tor::Subscription::is_attempt_circuit`]): an earlier probe's
/// rendezvous circuit closing now says nothing about this one.
async fn circuit_evidence(
    events: &mut crate::tor::Subscription,
    err: &ConnError,
    username: &str,
) -> CircEvidence {
    let mut circ = CircEvidence::default();
    let take = |circ: &mut CircEvidence, events: &crate::tor::Subscription, ev: Event| {
        if let Event::Circ(c) = ev {
            if events.is_attempt_circuit(&c, username) {
                circ.observe(&c);
            }
        }
    };
    while let Some(ev) = events.try_recv() {
        take(&mut circ, events, ev);
    }
    let socks_reply = matches!(err, ConnError::Socks(_));
    if socks_reply && CircEvidence::may_correct(err) && !circ.decisive() {
        let deadline = tokio::time::Instant::now() + CIRC_GRACE;
        while !circ.decisive() && circ.events < super::stage::MAX_CIRC_EVENTS {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(ev)) => take(&mut circ, events, ev),
                _ => break,
            }
        }
    }
    circ
}

impl Prober {
    /// Onionprobe's TLS probe, for an https endpoint none of whose paths
    /// completed a TLS handshake: a TLS connection that records the
    /// certificate without enforcing it, up to 1 + `tls_connect_max_retries`
    /// times. Its outcome is not part of the probe's pass/fail.
    pub(super) async fn tls_step(
        &self,
        t: &Target,
        s: &Settings,
        isolation_base: &str,
    ) -> Option<conn::TlsInfo> {
        for attempt in 1..=s.tls_connect_max_retries.saturating_add(1) {
            let req = conn::Request {
                socks: self.tor.socks(),
                host: t.address.host(),
                port: t.port,
                path: None,
                tls: true,
                tls_verify: false,
                roots: s.tls_roots.clone(),
                isolation: Isolation::new(if s.new_circuit {
                    format!("{isolation_base}-tls-{attempt}")
                } else {
                    isolation_base.to_owned()
                }),
                connect_timeout: s.connect_timeout,
                tls_timeout: s.tls_timeout,
                read_timeout: s.read_timeout,
                max_body: 0,
                redirects: None,
            };
            let a = conn::attempt(&req).await;
            match a.tls {
                Some(tls) if !tls.version.is_empty() => return Some(tls),
                _ => tracing::info!(
                    name = %t.name,
                    attempt,
                    error = a.error.map(|e| e.to_string()).unwrap_or_default(),
                    "TLS attempt failed"
                ),
            }
        }
        None
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
