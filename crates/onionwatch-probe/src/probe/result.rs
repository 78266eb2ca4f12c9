//! What a probe reports: one [`ProbeResult`] per path.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::{DescriptorOutcome, FailureStage};
use crate::config::{Protocol, Target, TargetPath};
use crate::conn::TlsInfo;

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
    /// Redirects followed by the last attempt.
    pub redirects: u32,
    /// The URL of the last answer, when redirects were followed.
    pub final_url: Option<String>,
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
    /// Where the failed probe stopped (`null` when it passed): see
    /// [`FailureStage`].
    pub failure_stage: Option<FailureStage>,
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
            redirects: 0,
            final_url: None,
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
            failure_stage: None,
            timestamp: 0.0,
        }
    }
}
pub(crate) fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
