//! Typed values of control-port commands and replies.

use std::collections::BTreeMap;
use std::fmt;

use super::args::{tokenize, Token};

/// A circuit's status (`CircStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CircStatus {
    /// Assigned an id, not yet extended.
    Launched,
    /// All hops built; usable.
    Built,
    /// Waiting to see whether a better guard is usable.
    GuardWait,
    /// One more hop built.
    Extended,
    /// Closed before being built.
    Failed,
    /// Closed.
    Closed,
    /// A status this crate does not know.
    Other(String),
}

impl CircStatus {
    /// Parse the keyword; unknown ones become [`CircStatus::Other`].
    pub fn parse(s: &str) -> Self {
        match s {
            "LAUNCHED" => Self::Launched,
            "BUILT" => Self::Built,
            "GUARD_WAIT" => Self::GuardWait,
            "EXTENDED" => Self::Extended,
            "FAILED" => Self::Failed,
            "CLOSED" => Self::Closed,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The keyword as tor writes it.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Launched => "LAUNCHED",
            Self::Built => "BUILT",
            Self::GuardWait => "GUARD_WAIT",
            Self::Extended => "EXTENDED",
            Self::Failed => "FAILED",
            Self::Closed => "CLOSED",
            Self::Other(s) => s,
        }
    }
}

impl fmt::Display for CircStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One circuit, from a `GETINFO circuit-status` line or a `CIRC` event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Circuit {
    /// The global circuit id (what `HiddenServiceExportCircuitID` exports).
    pub id: u32,
    /// Its status.
    pub status: CircStatus,
    /// Hops as `$FINGERPRINT~nickname`; empty before the first hop.
    pub path: Vec<String>,
    /// `BUILD_FLAGS=` (e.g. `IS_INTERNAL`, `NEED_CAPACITY`).
    pub build_flags: Vec<String>,
    /// `PURPOSE=` (e.g. `HS_SERVICE_REND`).
    pub purpose: Option<String>,
    /// `HS_STATE=` (e.g. `HSSR_JOINED`).
    pub hs_state: Option<String>,
    /// `REND_QUERY=`: the onion address (56 chars, no `.onion`); on the
    /// service side, the service's own address.
    pub rend_query: Option<String>,
    /// `TIME_CREATED=` (ISO 8601 with microseconds).
    pub time_created: Option<String>,
    /// `REASON=` (for `FAILED`/`CLOSED`).
    pub reason: Option<String>,
    /// `REMOTE_REASON=`.
    pub remote_reason: Option<String>,
    /// Every other `KEY=value` (e.g. `SOCKS_USERNAME`, `HS_POW`, `CONFLUX_ID`).
    pub other: BTreeMap<String, String>,
}

impl Circuit {
    /// Parse `CircuitID SP CircStatus [SP Path] [SP KEY=value]...`; `None`
    /// without a numeric id and a status.
    pub fn parse(line: &str) -> Option<Self> {
        let mut tokens = tokenize(line).into_iter();
        let Some(Token::Word(id)) = tokens.next() else {
            return None;
        };
        let id = parse_u32(&id)?;
        let Some(Token::Word(status)) = tokens.next() else {
            return None;
        };
        let mut c = Circuit {
            id,
            status: CircStatus::parse(&status),
            path: Vec::new(),
            build_flags: Vec::new(),
            purpose: None,
            hs_state: None,
            rend_query: None,
            time_created: None,
            reason: None,
            remote_reason: None,
            other: BTreeMap::new(),
        };
        for t in tokens {
            match t {
                Token::Word(w) if c.path.is_empty() => {
                    c.path = w
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
                Token::Word(w) => {
                    c.other.insert(w, String::new());
                }
                Token::Pair(k, v) => match k.as_str() {
                    "BUILD_FLAGS" => {
                        c.build_flags = v
                            .split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    }
                    "PURPOSE" => c.purpose = Some(v),
                    "HS_STATE" => c.hs_state = Some(v),
                    "REND_QUERY" => c.rend_query = Some(v),
                    "TIME_CREATED" => c.time_created = Some(v),
                    "REASON" => c.reason = Some(v),
                    "REMOTE_REASON" => c.remote_reason = Some(v),
                    _ => {
                        c.other.insert(k, v);
                    }
                },
            }
        }
        Some(c)
    }
}

/// Strict decimal `u32` (no sign, no spaces).
pub(crate) fn parse_u32(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `GETINFO status/bootstrap-phase`, e.g.
/// `NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapPhase {
    /// `NOTICE`, `WARN`, ...
    pub severity: String,
    /// 0 to 100.
    pub progress: u8,
    /// e.g. `done`, `conn_or`.
    pub tag: String,
    /// Human-readable summary.
    pub summary: String,
    /// Other arguments (`WARNING`, `REASON`, `COUNT`, `RECOMMENDATION`, ...).
    pub other: BTreeMap<String, String>,
}

impl BootstrapPhase {
    /// Parse the value; `None` unless it is a `BOOTSTRAP` status with a
    /// `PROGRESS` from 0 to 100.
    pub fn parse(s: &str) -> Option<Self> {
        let mut tokens = tokenize(s).into_iter();
        let Some(Token::Word(severity)) = tokens.next() else {
            return None;
        };
        if tokens.next() != Some(Token::Word("BOOTSTRAP".into())) {
            return None;
        }
        let mut other: BTreeMap<String, String> = tokens
            .filter_map(|t| match t {
                Token::Pair(k, v) => Some((k, v)),
                Token::Word(_) => None,
            })
            .collect();
        let progress = other
            .remove("PROGRESS")
            .and_then(|p| parse_u32(&p))
            .filter(|&p| p <= 100)? as u8;
        Some(BootstrapPhase {
            severity,
            progress,
            tag: other.remove("TAG").unwrap_or_default(),
            summary: other.remove("SUMMARY").unwrap_or_default(),
            other,
        })
    }
}

/// A `SIGNAL` to send to tor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Reload the configuration (SIGHUP).
    Reload,
    /// Controlled shutdown (SIGINT).
    Shutdown,
    /// Dump statistics to the log (SIGUSR1).
    Dump,
    /// Switch logs to debug level (SIGUSR2).
    Debug,
    /// Immediate shutdown (SIGTERM).
    Halt,
    /// Forget cached DNS answers.
    ClearDnsCache,
    /// New circuits for new streams.
    NewNym,
    /// Log a heartbeat now.
    Heartbeat,
    /// Become dormant.
    Dormant,
    /// Wake from dormancy.
    Active,
}

impl Signal {
    /// The keyword as tor expects it.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Reload => "RELOAD",
            Signal::Shutdown => "SHUTDOWN",
            Signal::Dump => "DUMP",
            Signal::Debug => "DEBUG",
            Signal::Halt => "HALT",
            Signal::ClearDnsCache => "CLEARDNSCACHE",
            Signal::NewNym => "NEWNYM",
            Signal::Heartbeat => "HEARTBEAT",
            Signal::Dormant => "DORMANT",
            Signal::Active => "ACTIVE",
        }
    }
}

/// Which listeners `GETINFO net/listeners/<kind>` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// ORPort.
    Or,
    /// DirPort.
    Dir,
    /// SocksPort.
    Socks,
    /// TransPort.
    Trans,
    /// NATDPort.
    Natd,
    /// DNSPort.
    Dns,
    /// ControlPort.
    Control,
    /// ExtORPort.
    ExtOr,
    /// HTTPTunnelPort.
    HttpTunnel,
    /// MetricsPort.
    Metrics,
}

impl ListenerKind {
    /// The key suffix (`socks` for `net/listeners/socks`).
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Or => "or",
            ListenerKind::Dir => "dir",
            ListenerKind::Socks => "socks",
            ListenerKind::Trans => "trans",
            ListenerKind::Natd => "natd",
            ListenerKind::Dns => "dns",
            ListenerKind::Control => "control",
            ListenerKind::ExtOr => "extor",
            ListenerKind::HttpTunnel => "httptunnel",
            ListenerKind::Metrics => "metrics",
        }
    }
}

/// The key of an `ADD_ONION` service.
#[derive(Clone, PartialEq, Eq)]
pub enum OnionKey {
    /// `NEW:ED25519-V3`: tor generates a key.
    New,
    /// `ED25519-V3:<base64 of the 64-byte expanded secret key>`.
    Ed25519V3(String),
}

impl fmt::Debug for OnionKey {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OnionKey::New => f.write_str("New"),
            OnionKey::Ed25519V3(_) => f.write_str("Ed25519V3(<secret>)"),
        }
    }
}

/// An `ADD_ONION` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnionFlag {
    /// Do not return the generated private key.
    DiscardPk,
    /// Keep the service after this control connection closes.
    Detach,
    /// Require client authorization (`ClientAuthV3=` keys).
    V3Auth,
    /// Single onion service (needs a non-anonymous tor).
    NonAnonymous,
    /// Close the circuit when `MaxStreams` is exceeded.
    MaxStreamsCloseCircuit,
}

impl OnionFlag {
    /// The flag as tor expects it.
    pub fn as_str(self) -> &'static str {
        match self {
            OnionFlag::DiscardPk => "DiscardPK",
            OnionFlag::Detach => "Detach",
            OnionFlag::V3Auth => "V3Auth",
            OnionFlag::NonAnonymous => "NonAnonymous",
            OnionFlag::MaxStreamsCloseCircuit => "MaxStreamsCloseCircuit",
        }
    }
}

/// An `ADD_ONION` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddOnion {
    /// The key.
    pub key: OnionKey,
    /// `(virtual port, target)`; target `None` means the same port on
    /// localhost, else `addr:port`, `port` or `unix:/path`.
    pub ports: Vec<(u16, Option<String>)>,
    /// Flags.
    pub flags: Vec<OnionFlag>,
    /// `MaxStreams=`.
    pub max_streams: Option<u16>,
    /// `ClientAuthV3=` base32 x25519 public keys.
    pub client_auth_v3: Vec<String>,
    /// `PoWDefensesEnabled=` (tor 0.4.9.2-alpha and later).
    pub pow_defenses: Option<bool>,
}

impl AddOnion {
    /// A new-key service with one port mapping.
    pub fn new(virt_port: u16, target: Option<&str>) -> Self {
        AddOnion {
            key: OnionKey::New,
            ports: vec![(virt_port, target.map(str::to_owned))],
            flags: Vec::new(),
            max_streams: None,
            client_auth_v3: Vec::new(),
            pow_defenses: None,
        }
    }

    /// The command line, or why it cannot be sent (an argument with spaces
    /// or control characters would break or inject into the command).
    pub fn to_command(&self) -> Result<String, String> {
        let mut cmd = String::from("ADD_ONION ");
        match &self.key {
            OnionKey::New => cmd.push_str("NEW:ED25519-V3"),
            OnionKey::Ed25519V3(k) => {
                if k.is_empty()
                    || !k
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
                {
                    return Err("the ED25519-V3 key is not base64".into());
                }
                cmd.push_str("ED25519-V3:");
                cmd.push_str(k);
            }
        }
        let mut flags: Vec<_> = self.flags.iter().map(|f| f.as_str()).collect();
        // tor refuses ClientAuthV3 keys without this flag ("512 No auth type specified").
        if !self.client_auth_v3.is_empty() && !self.flags.contains(&OnionFlag::V3Auth) {
            flags.push(OnionFlag::V3Auth.as_str());
        }
        if !flags.is_empty() {
            cmd.push_str(&format!(" Flags={}", flags.join(",")));
        }
        if let Some(n) = self.max_streams {
            cmd.push_str(&format!(" MaxStreams={n}"));
        }
        if self.ports.is_empty() {
            return Err("ADD_ONION needs at least one port".into());
        }
        for (virt, target) in &self.ports {
            cmd.push_str(&format!(" Port={virt}"));
            if let Some(t) = target {
                if !is_word(t) || t.contains(',') {
                    return Err(format!(
                        "port target {t:?} is empty or has spaces, commas or control characters"
                    ));
                }
                cmd.push(',');
                cmd.push_str(t);
            }
        }
        for key in &self.client_auth_v3 {
            if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!("ClientAuthV3 key {key:?} is not base32"));
            }
            cmd.push_str(&format!(" ClientAuthV3={key}"));
        }
        if let Some(pow) = self.pow_defenses {
            cmd.push_str(&format!(" PoWDefensesEnabled={}", u8::from(pow)));
        }
        Ok(cmd)
    }
}

/// What `ADD_ONION` returned.
#[derive(Clone, PartialEq, Eq)]
pub struct AddOnionReply {
    /// The 56-character address without `.onion`.
    pub service_id: String,
    /// `ED25519-V3:<base64>` when tor generated the key and `DiscardPK` was
    /// not set.
    pub private_key: Option<String>,
    /// `ClientAuthV3=` lines echoed by tor.
    pub client_auth_v3: Vec<String>,
}

impl fmt::Debug for AddOnionReply {
    /// Never prints the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddOnionReply")
            .field("service_id", &self.service_id)
            .field(
                "private_key",
                &self.private_key.as_ref().map(|_| "<secret>"),
            )
            .field("client_auth_v3", &self.client_auth_v3)
            .finish()
    }
}

/// How `ONION_CLIENT_AUTH_ADD` succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthAdded {
    /// 250: added.
    Added,
    /// 251: replaced an existing entry.
    Replaced,
    /// 252: added, and a cached descriptor could now be decrypted.
    AddedAndDecrypted,
}

/// A bare word safe to put in a command: non-empty, no spaces, quotes or
/// control characters.
pub(crate) fn is_word(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| !c.is_control() && c != ' ' && c != '"')
}

/// Normalise a v3 onion address: strip `.onion`, lower-case, and check
/// that 56 base32 characters are left. Checksums are left to tor (so a
/// command can show tor's own refusal); [`crate::onion::OnionAddress`]
/// checks them.
pub fn onion_service_id(address: &str) -> Option<String> {
    let lower = address.to_ascii_lowercase();
    let id = lower.strip_suffix(".onion").unwrap_or(&lower);
    crate::onion::is_service_id(id).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circuit_lines() {
        let c = Circuit::parse(
            "35 BUILT $AAAA~relay1,$BBBB~relay2 BUILD_FLAGS=IS_INTERNAL,NEED_CAPACITY PURPOSE=HS_SERVICE_REND \
             HS_STATE=HSSR_JOINED REND_QUERY=abcd TIME_CREATED=2026-11-25T01:12:39.857888 \
             SOCKS_USERNAME=\"a b\" HS_POW=v1,5",
        )
        .unwrap();
        assert_eq!(c.id, 35);
        assert_eq!(c.status, CircStatus::Built);
        assert_eq!(c.path, ["$AAAA~relay1", "$BBBB~relay2"]);
        assert_eq!(c.build_flags, ["IS_INTERNAL", "NEED_CAPACITY"]);
        assert_eq!(c.purpose.as_deref(), Some("HS_SERVICE_REND"));
        assert_eq!(c.hs_state.as_deref(), Some("HSSR_JOINED"));
        assert_eq!(c.rend_query.as_deref(), Some("abcd"));
        assert_eq!(
            c.time_created.as_deref(),
            Some("2026-11-25T01:12:39.857888")
        );
        assert_eq!(c.other["SOCKS_USERNAME"], "a b");
        assert_eq!(c.other["HS_POW"], "v1,5");

        let c = Circuit::parse("7 LAUNCHED BUILD_FLAGS=NEED_CAPACITY PURPOSE=GENERAL").unwrap();
        assert!(c.path.is_empty());
        assert_eq!(c.purpose.as_deref(), Some("GENERAL"));
        let c =
            Circuit::parse("8 CLOSED $A~a REASON=CHANNEL_CLOSED REMOTE_REASON=DESTROYED").unwrap();
        assert_eq!(c.reason.as_deref(), Some("CHANNEL_CLOSED"));
        assert_eq!(c.remote_reason.as_deref(), Some("DESTROYED"));
        let c = Circuit::parse("9 NEWSTATUS").unwrap();
        assert_eq!(c.status, CircStatus::Other("NEWSTATUS".into()));
        assert_eq!(c.status.to_string(), "NEWSTATUS");

        for bad in [
            "",
            "x BUILT",
            "-1 BUILT",
            "4294967296 BUILT",
            "5",
            "5\t BUILT",
            "5 K=V",
        ] {
            assert_eq!(Circuit::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bootstrap_phase() {
        let b = BootstrapPhase::parse(r#"NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done""#)
            .unwrap();
        assert_eq!(
            (b.progress, b.tag.as_str(), b.summary.as_str()),
            (100, "done", "Done")
        );
        assert_eq!(b.severity, "NOTICE");
        let b = BootstrapPhase::parse(
            r#"WARN BOOTSTRAP PROGRESS=5 TAG=conn SUMMARY="Connecting to a relay" WARNING="Connection refused" REASON=CONNECTREFUSED COUNT=3"#,
        )
        .unwrap();
        assert_eq!(b.other["WARNING"], "Connection refused");
        assert_eq!(b.other["COUNT"], "3");
        for bad in [
            "",
            "NOTICE",
            "NOTICE OTHER PROGRESS=1",
            "NOTICE BOOTSTRAP",
            "NOTICE BOOTSTRAP PROGRESS=101",
            "NOTICE BOOTSTRAP PROGRESS=x",
        ] {
            assert_eq!(BootstrapPhase::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn add_onion_commands() {
        let mut req = AddOnion::new(80, Some("127.0.0.1:8080"));
        assert_eq!(
            req.to_command().unwrap(),
            "ADD_ONION NEW:ED25519-V3 Port=80,127.0.0.1:8080"
        );
        req.flags = vec![OnionFlag::DiscardPk, OnionFlag::Detach, OnionFlag::V3Auth];
        req.client_auth_v3 = vec!["ABCDEF234567".into()];
        req.max_streams = Some(10);
        req.pow_defenses = Some(true);
        req.ports.push((443, None));
        assert_eq!(
            req.to_command().unwrap(),
            "ADD_ONION NEW:ED25519-V3 Flags=DiscardPK,Detach,V3Auth MaxStreams=10 Port=80,127.0.0.1:8080 \
             Port=443 ClientAuthV3=ABCDEF234567 PoWDefensesEnabled=1"
        );
        // Client keys imply V3Auth, which tor requires with them.
        let mut auth = AddOnion::new(80, None);
        auth.client_auth_v3 = vec!["ABCDEF234567".into()];
        assert_eq!(
            auth.to_command().unwrap(),
            "ADD_ONION NEW:ED25519-V3 Flags=V3Auth Port=80 ClientAuthV3=ABCDEF234567"
        );
        req.key = OnionKey::Ed25519V3("abc+/=".into());
        assert!(req
            .to_command()
            .unwrap()
            .starts_with("ADD_ONION ED25519-V3:abc+/= "));
        assert_eq!(format!("{:?}", req.key), "Ed25519V3(<secret>)");

        let inject = AddOnion::new(80, Some("127.0.0.1:80\r\nSIGNAL HALT"));
        assert!(inject.to_command().is_err());
        let mut bad = AddOnion::new(80, None);
        bad.key = OnionKey::Ed25519V3("x y".into());
        assert!(bad.to_command().is_err());
        let mut bad = AddOnion::new(80, None);
        bad.client_auth_v3 = vec!["a b".into()];
        assert!(bad.to_command().is_err());
        let mut bad = AddOnion::new(80, None);
        bad.ports.clear();
        assert!(bad.to_command().is_err());
        assert!(AddOnion::new(80, Some("")).to_command().is_err());
        assert!(AddOnion::new(80, Some("a,b")).to_command().is_err());
    }

    #[test]
    fn onion_ids() {
        let id = "a".repeat(55) + "d";
        assert_eq!(onion_service_id(&id), Some(id.clone()));
        assert_eq!(onion_service_id(&format!("{id}.onion")), Some(id.clone()));
        assert_eq!(
            onion_service_id(&format!("{}.ONION", id.to_uppercase())),
            Some(id.clone())
        );
        for bad in [
            "",
            ".onion",
            "abc.onion",
            &"a".repeat(57),
            &("1".repeat(56)),
            &format!("{id} "),
        ] {
            assert_eq!(onion_service_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn words_and_names() {
        assert!(is_word("$FP~nick"));
        assert!(!is_word(""));
        assert!(!is_word("a b"));
        assert!(!is_word("a\r\nb"));
        assert!(!is_word("a\"b"));
        assert_eq!(Signal::NewNym.as_str(), "NEWNYM");
        assert_eq!(ListenerKind::Socks.as_str(), "socks");
        let r = AddOnionReply {
            service_id: "x".into(),
            private_key: Some("ED25519-V3:secret".into()),
            client_auth_v3: vec![],
        };
        assert!(!format!("{r:?}").contains("ED25519-V3:secret"), "{r:?}");
    }
}
