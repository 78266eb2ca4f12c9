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
//! | `introduction_failed` | SOCKS reply `0xF2` (every introduction point failed) or `0xF7` (introduction timed out); or failed introduction circuits ([`CircEvidence`]) |
//! | `rendezvous_failed` | SOCKS reply `0xF3` (the rendezvous circuit failed); or a failed rendezvous circuit ([`CircEvidence`]) |
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
//! **Tor's circuits.** During each connection attempt the prober collects
//! the client tor's `CIRC`/`CIRC_MINOR` events of the service's
//! introduction and rendezvous circuits ([`CircEvidence`]), its own only
//! ([`crate::tor::Subscription::is_attempt_circuit`]); they correct
//! the stage of failures that do not say where they stopped (our connect
//! timeout, SOCKS replies outside `0xF0`–`0xF7`), never an extended reply,
//! and the error detail says what they showed (see
//! [`CircEvidence::refine`]). tor sends them in no set order with the SOCKS
//! reply, so after a generic reply the prober waits up to 0.5 s for them;
//! after its own connect timeout only the events before it count.
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

use onionwatch_tor::control::Circuit;
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

    /// [`FailureStage::of_connection`], corrected by what the client tor's
    /// CIRC events said about the attempt's onion-service circuits (see
    /// [`CircEvidence::refine`]).
    pub fn of_connection_with(err: &ConnError, circ: &CircEvidence) -> Self {
        circ.refine(err, Self::of_connection(err))
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

/// Most CIRC events taken into one attempt's evidence: a hostile or very
/// busy tor cannot make a probe hold more.
pub const MAX_CIRC_EVENTS: u32 = 256;

/// What the client tor's `CIRC` events said about the onion-service
/// circuits of one connection attempt (`PURPOSE=HS_CLIENT_INTRO` and
/// `HS_CLIENT_REND` with the service's `REND_QUERY`). Bounded: a few flags
/// and the first failure reason of each kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CircEvidence {
    /// A rendezvous circuit joined the onion service (`HS_STATE=HSCR_JOINED`):
    /// the service was reached.
    pub joined: bool,
    /// An introduction was acknowledged and a rendezvous circuit waited for
    /// the onion service (`HS_STATE=HSCR_ESTABLISHED_WAITING`).
    pub rend_waiting: bool,
    /// A rendezvous circuit failed, or closed for a reason other than
    /// `FINISHED`/`REQUESTED`: its `REASON` (and `REMOTE_REASON`).
    pub rend_failed: Option<String>,
    /// An introduction circuit failed likewise: its reason.
    pub intro_failed: Option<String>,
    /// Events taken (at most [`MAX_CIRC_EVENTS`]).
    pub events: u32,
}

impl CircEvidence {
    /// Take one `CIRC` event of the onion service's circuits into account.
    pub fn observe(&mut self, c: &Circuit) {
        if self.events >= MAX_CIRC_EVENTS {
            return;
        }
        self.events += 1;
        let state = c.hs_state.as_deref().unwrap_or("");
        let failed = match c.status.as_str() {
            "FAILED" => true,
            "CLOSED" => !matches!(
                c.reason.as_deref(),
                None | Some("NONE" | "FINISHED" | "REQUESTED")
            ),
            _ => false,
        };
        let why = || match (&c.reason, &c.remote_reason) {
            (Some(r), Some(remote)) => format!("{} {r} (remote {remote})", c.status),
            (Some(r), None) => format!("{} {r}", c.status),
            (None, _) => c.status.as_str().to_owned(),
        };
        match c.purpose.as_deref() {
            Some("HS_CLIENT_REND") => {
                self.joined |= state == "HSCR_JOINED";
                self.rend_waiting |= state == "HSCR_ESTABLISHED_WAITING";
                if failed && state != "HSCR_JOINED" && self.rend_failed.is_none() {
                    self.rend_failed = Some(why());
                }
            }
            Some("HS_CLIENT_INTRO") if failed && self.intro_failed.is_none() => {
                self.intro_failed = Some(why());
            }
            _ => {}
        }
    }

    /// The stage of a failed attempt given tor's circuits. Only replies
    /// that do not say where the attempt stopped are corrected: our own
    /// connect timeout, and SOCKS replies other than the extended
    /// `0xF0`–`0xF7` (a tor without `ExtendedErrors`, or tor's own stream
    /// timeout `0x06`). A joined rendezvous keeps `stage` (the onion
    /// service was reached: `0x01` is its backend refusing); else a failed
    /// rendezvous circuit gives `rendezvous_failed`; else a failed
    /// introduction circuit, with no introduction acknowledged, gives
    /// `introduction_failed`. Without such events `stage` stands.
    pub fn refine(&self, err: &ConnError, stage: FailureStage) -> FailureStage {
        if !Self::may_correct(err) || self.joined {
            stage
        } else if self.rend_failed.is_some() {
            FailureStage::RendezvousFailed
        } else if self.intro_failed.is_some() && !self.rend_waiting {
            FailureStage::IntroductionFailed
        } else {
            stage
        }
    }

    /// Whether circuits may correct the stage of `err`: our connect timeout
    /// or a SOCKS reply outside the extended `0xF0`–`0xF7`.
    pub fn may_correct(err: &ConnError) -> bool {
        match err {
            ConnError::ConnectTimeout(_) => true,
            ConnError::Socks(r) => !(0xF0..=0xF7).contains(&r.code()),
            _ => false,
        }
    }

    /// Whether the circuits already say where the attempt stopped.
    pub fn decisive(&self) -> bool {
        self.joined || self.rend_failed.is_some() || self.intro_failed.is_some()
    }

    /// What the circuits said, for the error detail; `None` without events.
    pub fn describe(&self) -> Option<String> {
        if self.events == 0 {
            return None;
        }
        let mut said = Vec::new();
        if let Some(r) = &self.intro_failed {
            said.push(format!("an introduction circuit ended {r}"));
        }
        if self.rend_waiting {
            said.push(
                "the introduction was acknowledged and the rendezvous circuit waited for the onion service"
                    .to_owned(),
            );
        }
        if let Some(r) = &self.rend_failed {
            said.push(format!("the rendezvous circuit ended {r}"));
        }
        if self.joined {
            said.push("the rendezvous circuit joined the onion service".to_owned());
        }
        if said.is_empty() {
            said.push("the onion-service circuits were being built".to_owned());
        }
        Some(format!("tor's circuits: {}", said.join("; ")))
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

    const Q: &str = "abcdefghijklmnopabcdefghijklmnopabcdefghijklmnopabcdefgh";

    /// Evidence from CIRC event lines (the part after `650 CIRC `).
    fn evidence(lines: &[&str]) -> CircEvidence {
        let mut e = CircEvidence::default();
        for l in lines {
            e.observe(&Circuit::parse(&l.replace("Q", Q)).unwrap());
        }
        e
    }

    #[test]
    fn circuits_correct_generic_failures_only() {
        let d = Duration::from_secs(5);
        let timeout = ConnError::ConnectTimeout(d);
        let general = ConnError::Socks(SocksReply::GeneralFailure);
        let ttl = ConnError::Socks(SocksReply::TtlExpired);
        let intro_nack = ConnError::Socks(SocksReply::OnionIntroFailed);
        let stage = |err: &ConnError, e: &CircEvidence| FailureStage::of_connection_with(err, e);

        // The rendezvous circuit timed out (what makes tor answer 0xF3 with
        // ExtendedErrors): rendezvous_failed for 0x01/0x06/our timeout.
        let rend_timeout = evidence(&[
            "7 EXTENDED $A~a PURPOSE=HS_CLIENT_REND HS_STATE=HSCR_CONNECTING REND_QUERY=Q",
            "7 BUILT $A~a,$B~b,$C~c PURPOSE=HS_CLIENT_REND HS_STATE=HSCR_ESTABLISHED_IDLE REND_QUERY=Q",
            "8 BUILT $D~d,$E~e,$F~f PURPOSE=HS_CLIENT_INTRO HS_STATE=HSCI_INTRO_SENT REND_QUERY=Q",
            "8 CLOSED $D~d,$E~e,$F~f PURPOSE=HS_CLIENT_INTRO HS_STATE=HSCI_DONE REND_QUERY=Q REASON=FINISHED",
            "7 CLOSED $A~a,$B~b,$C~c PURPOSE=HS_CLIENT_REND HS_STATE=HSCR_ESTABLISHED_WAITING REND_QUERY=Q REASON=TIMEOUT",
        ]);
        for err in [&timeout, &general, &ttl] {
            assert_eq!(
                stage(err, &rend_timeout),
                FailureStage::RendezvousFailed,
                "{err}"
            );
        }
        // An extended reply already says where: never overridden.
        assert_eq!(
            stage(&intro_nack, &rend_timeout),
            FailureStage::IntroductionFailed
        );
        assert!(rend_timeout
            .describe()
            .unwrap()
            .contains("rendezvous circuit ended CLOSED TIMEOUT"));

        // Introduction circuits that failed to build, none acknowledged.
        let intro = evidence(&[
            "9 FAILED $D~d PURPOSE=HS_CLIENT_INTRO HS_STATE=HSCI_CONNECTING REND_QUERY=Q REASON=DESTROYED REMOTE_REASON=CHANNEL_CLOSED",
            "10 BUILT $A~a,$B~b,$C~c PURPOSE=HS_CLIENT_REND HS_STATE=HSCR_ESTABLISHED_IDLE REND_QUERY=Q",
        ]);
        assert_eq!(stage(&general, &intro), FailureStage::IntroductionFailed);
        assert!(intro
            .describe()
            .unwrap()
            .contains("DESTROYED (remote CHANNEL_CLOSED)"));

        // Joined: the onion service was reached, so 0x01 is its backend.
        let joined = evidence(&[
            "9 FAILED $D~d PURPOSE=HS_CLIENT_INTRO HS_STATE=HSCI_CONNECTING REND_QUERY=Q REASON=TIMEOUT",
            "10 BUILT $A~a,$B~b,$C~c PURPOSE=HS_CLIENT_REND HS_STATE=HSCR_JOINED REND_QUERY=Q",
            "10 CLOSED $A~a,$B~b,$C~c PURPOSE=HS_CLIENT_REND HS_STATE=HSCR_JOINED REND_QUERY=Q REASON=DESTROYED",
        ]);
        assert_eq!(stage(&general, &joined), FailureStage::ConnectionRefused);
        assert_eq!(stage(&timeout, &joined), FailureStage::ConnectTimeout);

        // Introduced, waiting at the rendezvous point when we gave up: a
        // connect timeout, which the detail explains.
        let waiting = evidence(&[
            "7 BUILT $A~a,$B~b,$C~c PURPOSE=HS_CLIENT_REND HS_STATE=HSCR_ESTABLISHED_WAITING REND_QUERY=Q",
            "8 CLOSED $D~d,$E~e,$F~f PURPOSE=HS_CLIENT_INTRO HS_STATE=HSCI_DONE REND_QUERY=Q REASON=FINISHED",
        ]);
        assert_eq!(stage(&timeout, &waiting), FailureStage::ConnectTimeout);
        assert!(waiting
            .describe()
            .unwrap()
            .contains("waited for the onion service"));
        // No events, or others' circuits: nothing changes, nothing said.
        let none = CircEvidence::default();
        assert_eq!(stage(&general, &none), FailureStage::ConnectionRefused);
        assert_eq!(none.describe(), None);
        let other = evidence(&["3 FAILED $A~a PURPOSE=GENERAL REASON=TIMEOUT"]);
        assert_eq!(stage(&general, &other), FailureStage::ConnectionRefused);
        // Non-connection failures are never touched.
        let tls = ConnError::Tls("eof".into());
        assert_eq!(stage(&tls, &rend_timeout), FailureStage::Tls);
    }

    #[test]
    fn hostile_circuit_events_stay_bounded() {
        let mut e = CircEvidence::default();
        let long = "X".repeat(10_000);
        let line = format!(
            "1 FAILED $A~a PURPOSE=HS_CLIENT_REND HS_STATE=HSCR_CONNECTING REND_QUERY={Q} REASON={long}"
        );
        let c = Circuit::parse(&line).unwrap();
        for _ in 0..10_000 {
            e.observe(&c);
        }
        assert_eq!(e.events, MAX_CIRC_EVENTS);
        // Only the first reason is kept.
        assert!(e.rend_failed.as_ref().unwrap().len() <= long.len() + 16);
    }
}
