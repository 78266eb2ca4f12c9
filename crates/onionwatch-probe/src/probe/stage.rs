//! The failure stage of a probe: one of a fixed, small set of values naming
//! where on the way to the onion service a failed probe stopped. The same
//! value goes to `probe --format json` (`failure_stage`), to
//! `onionwatch_probe_failures_total{name,address,stage}` and to the
//! dashboard.
//!
//! How each stage is decided, in the order the probe runs (the first step
//! that fails decides):
//!
//! | stage | decided from |
//! | --- | --- |
//! | `descriptor_not_found` | the descriptor step: tor's `HS_DESC FAILED` event with `REASON=NOT_FOUND` or `QUERY_NO_HSDIR` for every attempt; or the connection's SOCKS reply `0xF0` (descriptor not found) |
//! | `descriptor_timeout` | the descriptor step: neither `HS_DESC RECEIVED` nor `FAILED` within `descriptor_timeout` for the last attempt |
//! | `introduction_failed` | SOCKS reply `0xF2` (every introduction point failed) or `0xF7` (introduction timed out) |
//! | `rendezvous_failed` | SOCKS reply `0xF3` (the rendezvous circuit failed) |
//! | `connect_timeout` | no stream within `http_connect_timeout`, or tor's SOCKS reply `0x06` (tor's own stream timeout) |
//! | `connection_refused` | SOCKS reply `0x01` (general failure) or `0x05` (connection refused) once the descriptor was fetched: tor reached the onion service, which ended the stream because its backend refused the connection (port closed) |
//! | `tls` | the TLS handshake failed or timed out, or the certificate does not verify with `tls_verify: true` |
//! | `http_status` | the (final) status is not in `allowed_statuses`, or the redirects go over the limit or to a `Location` that cannot be followed |
//! | `pattern` | the body does not match the path's `pattern` |
//! | `other` | anything else: other `HS_DESC FAILED` reasons (`BAD_DESC`, `QUERY_REJECTED`, …), a refused client authorization key, SOCKS `0xF1` (descriptor invalid), `0xF4`/`0xF5` (client authorization missing or refused), `0xF6` (bad address), other SOCKS replies, a SOCKS port that fails, an HTTP protocol error, `http_read_timeout` |
//!
//! The `error` key (and `onionwatch_probe_errors_total{reason}`) keeps the
//! precise reason; the stage is the coarse, always-bounded grouping of it.
//!
//! Why `0x01` means "refused": when the onion service's tor cannot connect to
//! its backend, tor 0.4.8 and 0.4.9 end the stream with a reason the client
//! turns into `0x01`, not `0x05` (seen on the private network, and the
//! testnet test relies on it). Every failure before the onion service is reached has its own
//! extended code (`0xF0`–`0xF7`), so with extended errors on, `0x01` after a
//! fetched descriptor can only come from the onion service's side.
//!
//! The `0xF0`–`0xF7` replies come only from a SocksPort with the
//! `ExtendedErrors` flag: the tor that `probe` launches has it. An external
//! tor (`launch_tor: false`) needs `SocksPort … ExtendedErrors` in its
//! torrc: without it tor answers `0x01`/`0x04`/`0x06` for onion-service
//! circuit failures too, and those would be read as `connection_refused`,
//! `other` or `connect_timeout`.

use serde::Serialize;

use onionwatch_tor::socks::SocksReply;

use crate::conn::ConnError;

/// Where a failed probe stopped. See the [module docs](self) for how each
/// one is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureStage {
    /// No descriptor for the onion service on the HSDirs.
    DescriptorNotFound,
    /// The descriptor fetch got no answer in time.
    DescriptorTimeout,
    /// No introduction point took the introduction.
    IntroductionFailed,
    /// The rendezvous circuit failed.
    RendezvousFailed,
    /// No stream in time.
    ConnectTimeout,
    /// The onion service was reached, its backend port is closed.
    ConnectionRefused,
    /// TLS handshake or certificate.
    Tls,
    /// A status outside `allowed_statuses`.
    HttpStatus,
    /// The pattern was not found.
    Pattern,
    /// Anything else (the `error` reason says what).
    Other,
}

impl FailureStage {
    /// Every stage, in probe order.
    pub const ALL: [FailureStage; 10] = [
        FailureStage::DescriptorNotFound,
        FailureStage::DescriptorTimeout,
        FailureStage::IntroductionFailed,
        FailureStage::RendezvousFailed,
        FailureStage::ConnectTimeout,
        FailureStage::ConnectionRefused,
        FailureStage::Tls,
        FailureStage::HttpStatus,
        FailureStage::Pattern,
        FailureStage::Other,
    ];

    /// The label and JSON value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureStage::DescriptorNotFound => "descriptor_not_found",
            FailureStage::DescriptorTimeout => "descriptor_timeout",
            FailureStage::IntroductionFailed => "introduction_failed",
            FailureStage::RendezvousFailed => "rendezvous_failed",
            FailureStage::ConnectTimeout => "connect_timeout",
            FailureStage::ConnectionRefused => "connection_refused",
            FailureStage::Tls => "tls",
            FailureStage::HttpStatus => "http_status",
            FailureStage::Pattern => "pattern",
            FailureStage::Other => "other",
        }
    }

    /// The stage of a failed descriptor step, from its state (the `HS_DESC
    /// FAILED` reason, `TIMEOUT`, or onionwatch's own states such as
    /// `CLIENT_AUTH` or `HSFETCH_REFUSED`).
    pub fn of_descriptor_state(state: &str) -> Self {
        match state {
            "NOT_FOUND" | "QUERY_NO_HSDIR" => FailureStage::DescriptorNotFound,
            "TIMEOUT" => FailureStage::DescriptorTimeout,
            _ => FailureStage::Other,
        }
    }

    /// The stage of a failed connection attempt.
    pub fn of_connection(err: &ConnError) -> Self {
        match err {
            ConnError::Socks(reply) => Self::of_socks(*reply),
            ConnError::ConnectTimeout(_) => FailureStage::ConnectTimeout,
            ConnError::Tls(_) | ConnError::Certificate(_) => FailureStage::Tls,
            // The service answered, with redirects that never end or cannot
            // be followed: its HTTP answer is what is wrong.
            ConnError::TooManyRedirects { .. } | ConnError::Redirect { .. } => {
                FailureStage::HttpStatus
            }
            ConnError::Proxy(_) | ConnError::Http(_) | ConnError::ReadTimeout(_) => {
                FailureStage::Other
            }
        }
    }

    /// The stage of a SOCKS5 reply from tor (extended errors included).
    pub fn of_socks(reply: SocksReply) -> Self {
        match reply {
            SocksReply::OnionDescriptorNotFound => FailureStage::DescriptorNotFound,
            SocksReply::OnionIntroFailed | SocksReply::OnionIntroTimedOut => {
                FailureStage::IntroductionFailed
            }
            SocksReply::OnionRendezvousFailed => FailureStage::RendezvousFailed,
            SocksReply::ConnectionRefused | SocksReply::GeneralFailure => {
                FailureStage::ConnectionRefused
            }
            SocksReply::TtlExpired => FailureStage::ConnectTimeout,
            _ => FailureStage::Other,
        }
    }
}

impl std::fmt::Display for FailureStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn each_extended_socks_error_has_its_stage() {
        let cases = [
            (0xF0, "descriptor_not_found"),
            (0xF1, "other"),
            (0xF2, "introduction_failed"),
            (0xF3, "rendezvous_failed"),
            (0xF4, "other"),
            (0xF5, "other"),
            (0xF6, "other"),
            (0xF7, "introduction_failed"),
            (0x05, "connection_refused"),
            (0x06, "connect_timeout"),
            (0x01, "connection_refused"),
            (0x04, "other"),
            (0x99, "other"),
        ];
        for (code, stage) in cases {
            assert_eq!(
                FailureStage::of_socks(SocksReply::from_code(code)).as_str(),
                stage,
                "0x{code:02X}"
            );
        }
    }

    #[test]
    fn descriptor_states_map_to_descriptor_stages() {
        for (state, stage) in [
            ("NOT_FOUND", FailureStage::DescriptorNotFound),
            ("QUERY_NO_HSDIR", FailureStage::DescriptorNotFound),
            ("TIMEOUT", FailureStage::DescriptorTimeout),
            ("BAD_DESC", FailureStage::Other),
            ("CLIENT_AUTH", FailureStage::Other),
            ("HSFETCH_REFUSED", FailureStage::Other),
            ("CONTROL_CLOSED", FailureStage::Other),
            ("", FailureStage::Other),
        ] {
            assert_eq!(FailureStage::of_descriptor_state(state), stage, "{state}");
        }
    }

    #[test]
    fn connection_errors_map_to_their_stage() {
        let d = Duration::from_secs(1);
        for (err, stage) in [
            (ConnError::ConnectTimeout(d), FailureStage::ConnectTimeout),
            (ConnError::ReadTimeout(d), FailureStage::Other),
            (ConnError::Tls("eof".into()), FailureStage::Tls),
            (
                ConnError::Certificate("self-signed".into()),
                FailureStage::Tls,
            ),
            (ConnError::Http("bad head".into()), FailureStage::Other),
            (ConnError::Proxy("refused".into()), FailureStage::Other),
            (
                ConnError::Socks(SocksReply::OnionIntroFailed),
                FailureStage::IntroductionFailed,
            ),
        ] {
            assert_eq!(FailureStage::of_connection(&err), stage, "{err}");
        }
    }

    #[test]
    fn the_json_value_is_the_label_value() {
        for s in FailureStage::ALL {
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", s.as_str())
            );
        }
    }
}
