//! Asynchronous events (`650` replies) as typed values.
//!
//! Parsing never fails: an event of a type this crate does not know, or a
//! known type in a shape it does not expect, becomes [`Event::Unknown`].

use std::collections::BTreeMap;

use super::args::{tokenize, Token};
use super::reply::Reply;
use super::types::Circuit;

/// An asynchronous event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `HS_DESC`: progress of an onion-service descriptor fetch or upload.
    HsDesc(HsDescEvent),
    /// `HS_DESC_CONTENT`: a fetched descriptor.
    HsDescContent(HsDescContent),
    /// `CIRC`: a circuit changed status.
    Circ(Circuit),
    /// `STATUS_GENERAL`, `STATUS_CLIENT` or `STATUS_SERVER`.
    Status(StatusEvent),
    /// Anything else.
    Unknown {
        /// The event keyword (first word), e.g. `STREAM`.
        keyword: String,
        /// The whole reply: line texts and data lines, joined with `\n`.
        raw: String,
    },
}

/// `HS_DESC` action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HsDescAction {
    /// A fetch was sent to an HSDir.
    Requested,
    /// An upload was sent to an HSDir.
    Upload,
    /// A descriptor was fetched.
    Received,
    /// An upload was accepted.
    Uploaded,
    /// A fetched descriptor was ignored.
    Ignore,
    /// A fetch or upload failed (see `reason`).
    Failed,
    /// The service built a new descriptor.
    Created,
    /// An action this crate does not know.
    Other(String),
}

impl HsDescAction {
    fn parse(s: &str) -> Self {
        match s {
            "REQUESTED" => Self::Requested,
            "UPLOAD" => Self::Upload,
            "RECEIVED" => Self::Received,
            "UPLOADED" => Self::Uploaded,
            "IGNORE" => Self::Ignore,
            "FAILED" => Self::Failed,
            "CREATED" => Self::Created,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// `650 HS_DESC Action HSAddress AuthType HsDir [DescriptorID] [REASON=..]
/// [REPLICA=..] [HSDIR_INDEX=..]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HsDescEvent {
    /// What happened.
    pub action: HsDescAction,
    /// The onion address without `.onion` (or `UNKNOWN`).
    pub address: String,
    /// `NO_AUTH` for v3 services.
    pub auth_type: String,
    /// The HSDir as `$FINGERPRINT~nickname`; `None` when tor wrote `UNKNOWN`.
    pub hsdir: Option<String>,
    /// The descriptor id (v3: the blinded key, base64).
    pub descriptor_id: Option<String>,
    /// `REASON=` for failures, e.g. `NOT_FOUND`, `UPLOAD_REJECTED`.
    pub reason: Option<String>,
    /// `REPLICA=`.
    pub replica: Option<u32>,
    /// `HSDIR_INDEX=` (hex).
    pub hsdir_index: Option<String>,
    /// Other `KEY=value` arguments.
    pub other: BTreeMap<String, String>,
}

/// `650+HS_DESC_CONTENT HSAddress DescId HsDir` with the descriptor as data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HsDescContent {
    /// The onion address without `.onion` (`UNKNOWN` after a failure).
    pub address: String,
    /// The descriptor id (blinded key).
    pub descriptor_id: String,
    /// The HSDir it came from; `None` for `UNKNOWN`.
    pub hsdir: Option<String>,
    /// The descriptor text (empty after a failure), lines joined with `\n`.
    pub content: String,
}

/// Which `STATUS_*` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusKind {
    /// `STATUS_GENERAL`.
    General,
    /// `STATUS_CLIENT` (e.g. `BOOTSTRAP`, `CIRCUIT_ESTABLISHED`).
    Client,
    /// `STATUS_SERVER`.
    Server,
}

/// `650 STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEvent {
    /// Which status event.
    pub kind: StatusKind,
    /// `NOTICE`, `WARN` or `ERR`.
    pub severity: String,
    /// e.g. `BOOTSTRAP`.
    pub action: String,
    /// The `KEY=value` arguments, quoted values unquoted.
    pub args: BTreeMap<String, String>,
}

impl Event {
    /// Interpret a `6xx` reply.
    pub fn parse(reply: &Reply) -> Event {
        let first = reply.lines.first().map_or("", |l| l.text.as_str());
        let keyword = first.split(' ').next().unwrap_or("");
        let rest = first.get(keyword.len() + 1..).unwrap_or("");
        let parsed = match keyword {
            "HS_DESC" => parse_hs_desc(rest).map(Event::HsDesc),
            "HS_DESC_CONTENT" => parse_hs_desc_content(rest, reply).map(Event::HsDescContent),
            "CIRC" if reply.lines.len() == 1 => Circuit::parse(rest).map(Event::Circ),
            "STATUS_GENERAL" => parse_status(StatusKind::General, rest),
            "STATUS_CLIENT" => parse_status(StatusKind::Client, rest),
            "STATUS_SERVER" => parse_status(StatusKind::Server, rest),
            _ => None,
        };
        parsed.unwrap_or_else(|| Event::Unknown {
            keyword: keyword.to_owned(),
            raw: raw_text(reply),
        })
    }

    /// The event keyword, e.g. `HS_DESC`.
    pub fn keyword(&self) -> &str {
        match self {
            Event::HsDesc(_) => "HS_DESC",
            Event::HsDescContent(_) => "HS_DESC_CONTENT",
            Event::Circ(_) => "CIRC",
            Event::Status(s) => match s.kind {
                StatusKind::General => "STATUS_GENERAL",
                StatusKind::Client => "STATUS_CLIENT",
                StatusKind::Server => "STATUS_SERVER",
            },
            Event::Unknown { keyword, .. } => keyword,
        }
    }
}

fn raw_text(reply: &Reply) -> String {
    let mut out = String::new();
    for line in &reply.lines {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&line.text);
        if let Some(data) = &line.data {
            out.push('\n');
            out.push_str(data);
        }
    }
    out
}

fn hsdir(s: String) -> Option<String> {
    (s != "UNKNOWN").then_some(s)
}

fn split(rest: &str) -> (Vec<String>, BTreeMap<String, String>) {
    let mut words = Vec::new();
    let mut pairs = BTreeMap::new();
    for t in tokenize(rest) {
        match t {
            Token::Word(w) => words.push(w),
            Token::Pair(k, v) => {
                pairs.insert(k, v);
            }
        }
    }
    (words, pairs)
}

fn parse_hs_desc(rest: &str) -> Option<HsDescEvent> {
    let (words, mut other) = split(rest);
    if !(4..=5).contains(&words.len()) {
        return None;
    }
    let mut words = words.into_iter();
    let mut next = || words.next();
    let action = HsDescAction::parse(&next()?);
    let address = next()?;
    let auth_type = next()?;
    let hsdir = hsdir(next()?);
    let descriptor_id = next();
    let replica = match other.get("REPLICA").map(|r| super::types::parse_u32(r)) {
        Some(Some(n)) => {
            other.remove("REPLICA");
            Some(n)
        }
        _ => None,
    };
    Some(HsDescEvent {
        action,
        address,
        auth_type,
        hsdir,
        descriptor_id,
        reason: other.remove("REASON"),
        replica,
        hsdir_index: other.remove("HSDIR_INDEX"),
        other,
    })
}

fn parse_hs_desc_content(rest: &str, reply: &Reply) -> Option<HsDescContent> {
    let first = reply.lines.first()?;
    let (words, _) = split(rest);
    if words.len() != 3 || reply.lines.len() != 2 {
        return None;
    }
    let mut words = words.into_iter();
    Some(HsDescContent {
        address: words.next()?,
        descriptor_id: words.next()?,
        hsdir: hsdir(words.next()?),
        content: first.data.clone()?,
    })
}

fn parse_status(kind: StatusKind, rest: &str) -> Option<Event> {
    let (words, args) = split(rest);
    let [severity, action]: [String; 2] = words.try_into().ok()?;
    Some(Event::Status(StatusEvent {
        kind,
        severity,
        action,
        args,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::reply::ReplyParser;
    use crate::control::types::CircStatus;

    fn ev(text: &str) -> Event {
        let mut p = ReplyParser::default();
        let mut last = None;
        for line in text.split_terminator('\n') {
            if let Some(r) = p.push(line.as_bytes()).unwrap() {
                last = Some(r);
            }
        }
        Event::parse(&last.expect("a complete reply"))
    }

    const ADDR: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid";

    #[test]
    fn hs_desc_received_and_failed() {
        let e = ev(&format!(
            "650 HS_DESC RECEIVED {ADDR} NO_AUTH $ABCDEF0123456789ABCDEF0123456789ABCDEF01~relay2 B3nR3Qm0rXv5C6dKZ3Ue1s9f1cdB+Ukwz1T5cBuCf3E\r"
        ));
        let Event::HsDesc(d) = e.clone() else {
            panic!("{e:?}")
        };
        assert_eq!(d.action, HsDescAction::Received);
        assert_eq!(d.address, ADDR);
        assert_eq!(d.auth_type, "NO_AUTH");
        assert_eq!(
            d.hsdir.as_deref(),
            Some("$ABCDEF0123456789ABCDEF0123456789ABCDEF01~relay2")
        );
        assert_eq!(
            d.descriptor_id.as_deref(),
            Some("B3nR3Qm0rXv5C6dKZ3Ue1s9f1cdB+Ukwz1T5cBuCf3E")
        );
        assert_eq!(e.keyword(), "HS_DESC");

        let Event::HsDesc(d) = ev(&format!(
            "650 HS_DESC FAILED {ADDR} NO_AUTH $FP~nick blinded REASON=NOT_FOUND"
        )) else {
            panic!()
        };
        assert_eq!(d.action, HsDescAction::Failed);
        assert_eq!(d.reason.as_deref(), Some("NOT_FOUND"));

        let Event::HsDesc(d) = ev(&format!(
            "650 HS_DESC FAILED {ADDR} NO_AUTH UNKNOWN REASON=QUERY_NO_HSDIR"
        )) else {
            panic!()
        };
        assert_eq!(d.hsdir, None);
        assert_eq!(d.descriptor_id, None);

        let Event::HsDesc(d) = ev(&format!(
            "650 HS_DESC REQUESTED {ADDR} NO_AUTH $FP~n id HSDIR_INDEX=00FF REPLICA=1 NEWKEY=\"x y\""
        )) else {
            panic!()
        };
        assert_eq!(d.action, HsDescAction::Requested);
        assert_eq!(d.replica, Some(1));
        assert_eq!(d.hsdir_index.as_deref(), Some("00FF"));
        assert_eq!(d.other["NEWKEY"], "x y");

        let Event::HsDesc(d) = ev(&format!(
            "650 HS_DESC SOMETHING {ADDR} NO_AUTH UNKNOWN id REPLICA=x"
        )) else {
            panic!()
        };
        assert_eq!(d.action, HsDescAction::Other("SOMETHING".into()));
        assert_eq!(d.replica, None);
        assert_eq!(d.other["REPLICA"], "x");
    }

    #[test]
    fn hs_desc_service_side_actions() {
        // The shapes tor's own tests (test_hs_control.c) expect.
        let fp = "$ABCDEF0123456789ABCDEF0123456789ABCDEF01~relay2";
        let blinded = "B3nR3Qm0rXv5C6dKZ3Ue1s9f1cdB+Ukwz1T5cBuCf3E";
        let index = "4444444444444444444444444444444444444444444444444444444444444444";
        let d = |line: String| match ev(&line) {
            Event::HsDesc(d) => d,
            other => panic!("{line}: {other:?}"),
        };

        let c = d(format!(
            "650 HS_DESC CREATED {ADDR} UNKNOWN UNKNOWN {blinded}"
        ));
        assert_eq!(c.action, HsDescAction::Created);
        assert_eq!(
            (c.address.as_str(), c.auth_type.as_str()),
            (ADDR, "UNKNOWN")
        );
        assert_eq!(c.hsdir, None);
        assert_eq!(c.descriptor_id.as_deref(), Some(blinded));

        let u = d(format!(
            "650 HS_DESC UPLOAD {ADDR} UNKNOWN {fp} {blinded} HSDIR_INDEX={index}"
        ));
        assert_eq!(u.action, HsDescAction::Upload);
        assert_eq!(u.hsdir.as_deref(), Some(fp));
        assert_eq!(u.descriptor_id.as_deref(), Some(blinded));
        assert_eq!(u.hsdir_index.as_deref(), Some(index));
        assert!(u.other.is_empty(), "{u:?}");

        let up = d(format!("650 HS_DESC UPLOADED {ADDR} UNKNOWN {fp}"));
        assert_eq!(up.action, HsDescAction::Uploaded);
        assert_eq!(up.hsdir.as_deref(), Some(fp));
        assert_eq!((up.descriptor_id, up.reason), (None, None));

        let f = d(format!(
            "650 HS_DESC FAILED {ADDR} UNKNOWN {fp} {blinded} REASON=UPLOAD_REJECTED"
        ));
        assert_eq!(f.action, HsDescAction::Failed);
        assert_eq!(f.reason.as_deref(), Some("UPLOAD_REJECTED"));

        // control-spec's IGNORE: a fetched descriptor tor did not use.
        let i = d(format!("650 HS_DESC IGNORE {ADDR} NO_AUTH {fp} {blinded}"));
        assert_eq!(i.action, HsDescAction::Ignore);
        assert_eq!(i.hsdir.as_deref(), Some(fp));
    }

    #[test]
    fn status_client_with_tors_double_quotes() {
        let e = ev(r#"650 STATUS_CLIENT WARN SOCKS_UNKNOWN_PROTOCOL DATA=""PROTOCOL"""#);
        let Event::Status(s) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(
            (s.kind, s.severity.as_str(), s.action.as_str()),
            (StatusKind::Client, "WARN", "SOCKS_UNKNOWN_PROTOCOL")
        );
        assert_eq!(s.args["DATA"], "PROTOCOL");
    }

    #[test]
    fn hs_desc_content_data_block() {
        let e = ev(&format!(
            "650+HS_DESC_CONTENT {ADDR} blinded $FP~nick\r\nhs-descriptor 3\r\n..dot\r\nsignature x\r\n.\r\n650 OK\r\n"
        ));
        let Event::HsDescContent(c) = e else {
            panic!("{e:?}")
        };
        assert_eq!(c.address, ADDR);
        assert_eq!(c.descriptor_id, "blinded");
        assert_eq!(c.hsdir.as_deref(), Some("$FP~nick"));
        assert_eq!(c.content, "hs-descriptor 3\n.dot\nsignature x");

        let e = ev("650+HS_DESC_CONTENT UNKNOWN id UNKNOWN\n.\n650 OK\n");
        let Event::HsDescContent(c) = e else {
            panic!("{e:?}")
        };
        assert_eq!(
            (c.address.as_str(), c.hsdir, c.content.as_str()),
            ("UNKNOWN", None, "")
        );

        // Without the data block it is not understood, but not lost.
        let e = ev("650 HS_DESC_CONTENT a b c");
        assert!(
            matches!(e, Event::Unknown { ref keyword, .. } if keyword == "HS_DESC_CONTENT"),
            "{e:?}"
        );
    }

    #[test]
    fn circ_and_status() {
        let Event::Circ(c) =
            ev("650 CIRC 54 CLOSED $A~a,$B~b PURPOSE=HS_SERVICE_REND REASON=DESTROYED")
        else {
            panic!()
        };
        assert_eq!((c.id, c.status), (54, CircStatus::Closed));
        assert_eq!(c.reason.as_deref(), Some("DESTROYED"));

        let e = ev(r#"650 STATUS_CLIENT NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done""#);
        let Event::Status(s) = &e else {
            panic!("{e:?}")
        };
        assert_eq!(
            (s.kind, s.severity.as_str(), s.action.as_str()),
            (StatusKind::Client, "NOTICE", "BOOTSTRAP")
        );
        assert_eq!(s.args["SUMMARY"], "Done");
        assert_eq!(e.keyword(), "STATUS_CLIENT");
        let Event::Status(s) = ev("650 STATUS_GENERAL WARN CLOCK_SKEW SKEW=3") else {
            panic!()
        };
        assert_eq!(s.kind, StatusKind::General);
        let Event::Status(s) = ev("650 STATUS_SERVER NOTICE GOOD_SERVER_DESCRIPTOR") else {
            panic!()
        };
        assert!(s.args.is_empty());
    }

    #[test]
    fn unknown_and_malformed_events() {
        let e = ev("650 STREAM 1 NEW 0 x.onion:80");
        assert_eq!(
            e,
            Event::Unknown {
                keyword: "STREAM".into(),
                raw: "STREAM 1 NEW 0 x.onion:80".into()
            }
        );
        let e = ev("650-CONF_CHANGED\n650-SocksPort=9050\n650 OK");
        let Event::Unknown { keyword, raw } = &e else {
            panic!()
        };
        assert_eq!(keyword, "CONF_CHANGED");
        assert_eq!(raw, "CONF_CHANGED\nSocksPort=9050\nOK");
        for bad in [
            "650 CIRC x BUILT",
            "650 CIRC",
            "650 HS_DESC RECEIVED",
            "650 HS_DESC A B C D E F G",
            "650 STATUS_CLIENT NOTICE",
            "650 ",
            "650 \u{fffd}\u{fffd}",
        ] {
            assert!(matches!(ev(bad), Event::Unknown { .. }), "{bad:?}");
        }
        assert_eq!(ev("650 ").keyword(), "");
    }
}
