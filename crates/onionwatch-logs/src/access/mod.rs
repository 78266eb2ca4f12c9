//! nginx access logs.
//!
//! [`LogFormat`] is the entry point: [`LogFormat::combined`] for nginx's
//! (and Onionspray's) default format, or [`LogFormat::compile`] for any
//! `log_format` string. A format that tokenizes to exactly `combined` uses a
//! hand-written byte-level fast path ([`combined`]); any other format uses the
//! general matcher compiled from its variables ([`format`](mod@format)). Both return a
//! borrowed [`AccessRecord`]: slices of the line and parsed numbers, with no
//! allocation per line.
//!
//! Lines are bytes: invalid UTF-8 anywhere is carried through untouched, and
//! no input makes the parser panic. A line that does not match gives a
//! [`ParseError`] saying which field failed; the caller counts it and goes on.
//!
//! Field values are returned as nginx wrote them, still escaped: nginx writes
//! a `"` inside a value as `\x22` (the default `escape=default`) or `\"`
//! (`escape=json`); both are skipped correctly when looking for the closing
//! quote of a quoted field, and neither is unescaped.
//!
//! ```
//! use onionwatch_logs::access::LogFormat;
//! let format = LogFormat::combined();
//! let line = br#"fc00:dead:beef:4dad::0:30 - - [11/Jan/2024:17:08:43 +0000] "GET /a HTTP/1.1" 200 73936 "-" "Mozilla/5.0""#;
//! let r = format.parse(line).unwrap();
//! assert_eq!(r.method, b"GET");
//! assert_eq!(r.status, Some(200));
//! assert_eq!(r.circuit_id().unwrap().0, 48);
//! ```

pub mod combined;
pub mod format;

use std::fmt;

use onionwatch_tor::circuit_id::CircuitId;

pub use format::{FormatError, LogFormat};

/// One parsed access-log line, borrowing from it.
///
/// A field the log format does not contain is empty (slices) or `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccessRecord<'a> {
    /// `$remote_addr`: the client address (with Onionspray's
    /// `HiddenServiceExportCircuitID haproxy`, the circuit id as IPv6).
    pub remote_addr: &'a [u8],
    /// `$remote_user`, `-` when there is none.
    pub remote_user: &'a [u8],
    /// `$time_local` or `$time_iso8601` as Unix seconds (UTC).
    pub time: Option<i64>,
    /// The method from `$request` (or `$request_method`).
    pub method: &'a [u8],
    /// The target from `$request` (or `$request_uri`).
    pub path: &'a [u8],
    /// The protocol from `$request` (or `$server_protocol`), empty when the
    /// request line has none.
    pub protocol: &'a [u8],
    /// `$status`: three digits, `000`-`999`.
    pub status: Option<u16>,
    /// `$body_bytes_sent` (`-` reads as 0).
    pub body_bytes_sent: Option<u64>,
    /// `$bytes_sent` (`-` reads as 0).
    pub bytes_sent: Option<u64>,
    /// `$http_referer`, `-` when absent.
    pub referer: &'a [u8],
    /// `$http_user_agent`, `-` when absent.
    pub user_agent: &'a [u8],
    /// `$request_time` in milliseconds (nginx's resolution); `None` for `-`.
    pub request_time_ms: Option<u64>,
    /// `$upstream_response_time` in milliseconds: the **sum** of every
    /// upstream attempt nginx lists (`0.010, 0.020 : 0.030`), i.e. the total
    /// time spent waiting on upstreams; `-` entries are skipped and `None`
    /// means no entry had a time.
    pub upstream_response_time_ms: Option<u64>,
    /// `$http_x_onion_circuitid`, when it holds a decimal circuit id or a
    /// `fc00:dead:beef:4dad::/96` address.
    pub circuit_header: Option<CircuitId>,
    /// `$proxy_protocol_addr`: the PROXY protocol source address as tor
    /// wrote it.
    pub proxy_protocol_addr: &'a [u8],
    /// `$server_addr`: where the request came in; `unix:<path>` for a unix
    /// listener (Onionspray: `unix:<onion service dir>/port-443.sock`),
    /// which tells a softmap project's tor workers apart. Empty when the
    /// format has none.
    pub server_addr: &'a [u8],
    /// `$server_port`: the port of a TCP listener, which with
    /// `$server_addr` tells apart workers whose `HiddenServicePort` lines
    /// point at TCP ports; `None` when the format has none or nginx wrote
    /// none (`-` or empty, as for a unix listener).
    pub server_port: Option<u16>,
}

/// Where a record's circuit id was read, which decides whether it may be
/// acted on: see [`AccessRecord::circuit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CircuitSource {
    /// `$proxy_protocol_addr` or `$remote_addr`: the address tor wrote
    /// (`HiddenServiceExportCircuitID`), which no client can choose.
    Address,
    /// `$http_x_onion_circuitid`: a request header, which any client can
    /// send with any value unless a proxy in front of nginx replaces it
    /// (`onionwatch gateway` does).
    Header,
}

impl CircuitSource {
    /// `address` or `header`, for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitSource::Address => "address",
            CircuitSource::Header => "header",
        }
    }
}

impl AccessRecord<'_> {
    /// The onion circuit that made this request and where its id was read:
    /// the PROXY source address (`$proxy_protocol_addr`), else
    /// `$remote_addr`, and only when neither address holds a circuit id
    /// (addresses outside `fc00:dead:beef:4dad::/96` hold none) the
    /// `$http_x_onion_circuitid` header. The address tor wrote comes first
    /// because a client can send the header with any value: a forged header
    /// must neither hide a circuit's requests nor charge them to another.
    pub fn circuit(&self) -> Option<(CircuitId, CircuitSource)> {
        if !self.proxy_protocol_addr.is_empty() {
            if let Some(id) = circuit_from_addr(self.proxy_protocol_addr) {
                return Some((id, CircuitSource::Address));
            }
        }
        if let Some(id) = circuit_from_addr(self.remote_addr) {
            return Some((id, CircuitSource::Address));
        }
        self.circuit_header.map(|id| (id, CircuitSource::Header))
    }

    /// [`AccessRecord::circuit`] without its source, for counting.
    pub fn circuit_id(&self) -> Option<CircuitId> {
        self.circuit().map(|(id, _)| id)
    }
}

/// The spelling tor writes and nginx logs: this prefix, then one or two
/// groups of 1-4 hex digits.
const TOR_PREFIX: &[u8] = b"fc00:dead:beef:4dad::";

/// [`CircuitId::from_addr_bytes`] with a fast path for tor's own spellings
/// (`fc00:dead:beef:4dad::0:30`, `fc00:dead:beef:4dad::30`), which the
/// general IPv6 parser makes the most expensive step per log line. Any
/// other text goes to [`CircuitId::from_addr_bytes`], so the result is
/// always the same (a test checks this).
pub fn circuit_from_addr(b: &[u8]) -> Option<CircuitId> {
    if b.len() > TOR_PREFIX.len() && b[..TOR_PREFIX.len()].eq_ignore_ascii_case(TOR_PREFIX) {
        if let Some(id) = tor_groups(&b[TOR_PREFIX.len()..]) {
            return Some(id);
        }
    }
    CircuitId::from_addr_bytes(b)
}

/// `H:L` or `L`, each 1-4 hex digits, as the low 32 bits.
fn tor_groups(rest: &[u8]) -> Option<CircuitId> {
    let mut groups = [0u32; 2];
    let mut n = 0;
    let mut digits = 0;
    for &c in rest {
        if c == b':' {
            if digits == 0 || n == 1 {
                return None;
            }
            n = 1;
            digits = 0;
            continue;
        }
        let v = char::from(c).to_digit(16)?;
        if digits == 4 {
            return None;
        }
        digits += 1;
        groups[n] = groups[n] << 4 | v;
    }
    if digits == 0 {
        return None;
    }
    Some(CircuitId(if n == 0 {
        groups[0]
    } else {
        groups[0] << 16 | groups[1]
    }))
}

/// An nginx variable the parser understands (or [`Var::Other`] for any other
/// one, which is matched and ignored). Errors name the failing field with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Var {
    /// `$remote_addr`
    RemoteAddr,
    /// `$remote_user`
    RemoteUser,
    /// `$time_local`
    TimeLocal,
    /// `$time_iso8601`
    TimeIso8601,
    /// `$request`
    Request,
    /// `$request_method`
    RequestMethod,
    /// `$request_uri`
    RequestUri,
    /// `$server_protocol`
    ServerProtocol,
    /// `$status`
    Status,
    /// `$body_bytes_sent`
    BodyBytesSent,
    /// `$bytes_sent`
    BytesSent,
    /// `$http_referer`
    HttpReferer,
    /// `$http_user_agent`
    HttpUserAgent,
    /// `$request_time`
    RequestTime,
    /// `$upstream_response_time`
    UpstreamResponseTime,
    /// `$http_x_onion_circuitid`
    CircuitIdHeader,
    /// `$proxy_protocol_addr`
    ProxyProtocolAddr,
    /// `$server_addr`
    ServerAddr,
    /// `$server_port`
    ServerPort,
    /// Any other variable: captured and ignored.
    Other,
}

impl Var {
    /// The variable for an nginx variable name (without `$`).
    pub fn from_name(name: &str) -> Var {
        match name {
            "remote_addr" => Var::RemoteAddr,
            "remote_user" => Var::RemoteUser,
            "time_local" => Var::TimeLocal,
            "time_iso8601" => Var::TimeIso8601,
            "request" => Var::Request,
            "request_method" => Var::RequestMethod,
            "request_uri" => Var::RequestUri,
            "server_protocol" => Var::ServerProtocol,
            "status" => Var::Status,
            "body_bytes_sent" => Var::BodyBytesSent,
            "bytes_sent" => Var::BytesSent,
            "http_referer" => Var::HttpReferer,
            "http_user_agent" => Var::HttpUserAgent,
            "request_time" => Var::RequestTime,
            "upstream_response_time" => Var::UpstreamResponseTime,
            "http_x_onion_circuitid" => Var::CircuitIdHeader,
            "proxy_protocol_addr" => Var::ProxyProtocolAddr,
            "server_addr" => Var::ServerAddr,
            "server_port" => Var::ServerPort,
            _ => Var::Other,
        }
    }

    /// Whether a client chooses this field's text, so that it may hold
    /// anything nginx does not escape (spaces, brackets, `-`...), but never
    /// an unescaped `"`. The others are written by nginx or tor (addresses,
    /// times, numbers, the protocol, and the method, which nginx accepts
    /// only as `A`-`Z`, `_` and `-`). Unknown variables count as chosen by
    /// the client (`$http_*`, `$cookie_*`, `$arg_*`...).
    pub fn client_chosen(self) -> bool {
        match self {
            Var::RemoteUser
            | Var::Request
            | Var::RequestUri
            | Var::HttpReferer
            | Var::HttpUserAgent
            | Var::CircuitIdHeader
            | Var::Other => true,
            Var::RemoteAddr
            | Var::TimeLocal
            | Var::TimeIso8601
            | Var::RequestMethod
            | Var::ServerProtocol
            | Var::Status
            | Var::BodyBytesSent
            | Var::BytesSent
            | Var::RequestTime
            | Var::UpstreamResponseTime
            | Var::ProxyProtocolAddr
            | Var::ServerAddr
            | Var::ServerPort => false,
        }
    }

    /// The nginx name, with `$` (`$other` for unknown variables).
    pub fn name(self) -> &'static str {
        match self {
            Var::RemoteAddr => "$remote_addr",
            Var::RemoteUser => "$remote_user",
            Var::TimeLocal => "$time_local",
            Var::TimeIso8601 => "$time_iso8601",
            Var::Request => "$request",
            Var::RequestMethod => "$request_method",
            Var::RequestUri => "$request_uri",
            Var::ServerProtocol => "$server_protocol",
            Var::Status => "$status",
            Var::BodyBytesSent => "$body_bytes_sent",
            Var::BytesSent => "$bytes_sent",
            Var::HttpReferer => "$http_referer",
            Var::HttpUserAgent => "$http_user_agent",
            Var::RequestTime => "$request_time",
            Var::UpstreamResponseTime => "$upstream_response_time",
            Var::CircuitIdHeader => "$http_x_onion_circuitid",
            Var::ProxyProtocolAddr => "$proxy_protocol_addr",
            Var::ServerAddr => "$server_addr",
            Var::ServerPort => "$server_port",
            Var::Other => "$other",
        }
    }
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a line was not parsed. Never fatal: count it
/// ([`ParseError::reason`]) and go on with the next line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The line is empty or only whitespace.
    #[error("empty line")]
    Empty,
    /// The line is longer than the reader's limit (reported by the reader,
    /// see [`crate::lines`]).
    #[error("line longer than {limit} bytes")]
    TooLong {
        /// The limit in bytes.
        limit: usize,
    },
    /// The line ends before or inside this field.
    #[error("line ends before the end of the {0} field")]
    Truncated(Var),
    /// The start of the line is not the literal text the log format begins
    /// with (`None`); the matcher searches for every later literal, so a
    /// wrong one reads as [`ParseError::Truncated`].
    #[error("the text after {} does not match the log format", match .0 { Some(v) => v.name(), None => "the line start" })]
    Mismatch(Option<Var>),
    /// This field's value is malformed (a status that is not three digits,
    /// a byte count that is not a number or overflows, a bad timestamp...).
    #[error("the {0} field is not valid")]
    Invalid(Var),
}

/// A bounded set of reasons for counting parse errors (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorReason {
    /// [`ParseError::Empty`]
    Empty,
    /// [`ParseError::TooLong`]
    TooLong,
    /// [`ParseError::Truncated`]
    Truncated,
    /// [`ParseError::Mismatch`]
    Mismatch,
    /// [`ParseError::Invalid`] of an address field.
    BadAddr,
    /// [`ParseError::Invalid`] of `$time_local` or `$time_iso8601`.
    BadTime,
    /// [`ParseError::Invalid`] of `$status`.
    BadStatus,
    /// [`ParseError::Invalid`] of `$body_bytes_sent` or `$bytes_sent`.
    BadBytes,
    /// [`ParseError::Invalid`] of `$request_time` or
    /// `$upstream_response_time`.
    BadDuration,
    /// [`ParseError::Invalid`] of any other field.
    BadField,
}

impl ErrorReason {
    /// Every reason, in index order.
    pub const ALL: [ErrorReason; 10] = [
        ErrorReason::Empty,
        ErrorReason::TooLong,
        ErrorReason::Truncated,
        ErrorReason::Mismatch,
        ErrorReason::BadAddr,
        ErrorReason::BadTime,
        ErrorReason::BadStatus,
        ErrorReason::BadBytes,
        ErrorReason::BadDuration,
        ErrorReason::BadField,
    ];

    /// The stable name used in JSON keys and as the `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorReason::Empty => "empty",
            ErrorReason::TooLong => "too_long",
            ErrorReason::Truncated => "truncated",
            ErrorReason::Mismatch => "mismatch",
            ErrorReason::BadAddr => "bad_addr",
            ErrorReason::BadTime => "bad_time",
            ErrorReason::BadStatus => "bad_status",
            ErrorReason::BadBytes => "bad_bytes",
            ErrorReason::BadDuration => "bad_duration",
            ErrorReason::BadField => "bad_field",
        }
    }

    /// Position in [`ErrorReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl ParseError {
    /// The counting reason.
    pub fn reason(&self) -> ErrorReason {
        match self {
            ParseError::Empty => ErrorReason::Empty,
            ParseError::TooLong { .. } => ErrorReason::TooLong,
            ParseError::Truncated(_) => ErrorReason::Truncated,
            ParseError::Mismatch(_) => ErrorReason::Mismatch,
            ParseError::Invalid(v) => match v {
                Var::RemoteAddr | Var::ProxyProtocolAddr => ErrorReason::BadAddr,
                Var::TimeLocal | Var::TimeIso8601 => ErrorReason::BadTime,
                Var::Status => ErrorReason::BadStatus,
                Var::BodyBytesSent | Var::BytesSent => ErrorReason::BadBytes,
                Var::RequestTime | Var::UpstreamResponseTime => ErrorReason::BadDuration,
                _ => ErrorReason::BadField,
            },
        }
    }
}

/// An HTTP method, with everything unusual folded into [`Method::Other`] so
/// that counters stay bounded whatever clients send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `OPTIONS`
    Options,
    /// `PATCH`
    Patch,
    /// `CONNECT`
    Connect,
    /// `TRACE`
    Trace,
    /// Anything else, including lower-case spellings, garbage and an empty
    /// request (`"-"`).
    Other,
}

impl Method {
    /// Every method, in index order.
    pub const ALL: [Method; 10] = [
        Method::Get,
        Method::Head,
        Method::Post,
        Method::Put,
        Method::Delete,
        Method::Options,
        Method::Patch,
        Method::Connect,
        Method::Trace,
        Method::Other,
    ];

    /// Classify a method token (case-sensitive, as HTTP is).
    pub fn from_bytes(b: &[u8]) -> Method {
        match b {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"PATCH" => Method::Patch,
            b"CONNECT" => Method::Connect,
            b"TRACE" => Method::Trace,
            _ => Method::Other,
        }
    }

    /// The name used in JSON keys and as the `method` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
            Method::Connect => "CONNECT",
            Method::Trace => "TRACE",
            Method::Other => "OTHER",
        }
    }

    /// Position in [`Method::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Split a request line into method, target and protocol.
///
/// `GET /a HTTP/1.1` gives all three; `GET /` (HTTP/0.9) has no protocol;
/// the protocol is only split off when the last word starts with `HTTP/`, so
/// a target containing spaces stays whole. `-`, empty and garbage request
/// lines (TLS handshakes to a plain-HTTP port) give a method that
/// [`Method::from_bytes`] folds into `OTHER`; they are never an error.
pub fn split_request(req: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let Some(sp) = find_byte(req, b' ') else {
        return (req, b"", b"");
    };
    let method = &req[..sp];
    let rest = &req[sp + 1..];
    if let Some(last) = memchr::memrchr(b' ', rest) {
        let proto = &rest[last + 1..];
        if proto.starts_with(b"HTTP/") {
            return (method, &rest[..last], proto);
        }
    }
    (method, rest, b"")
}

/// A decimal `u64`; `None` for empty, non-digits, a sign or overflow.
pub(crate) fn parse_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(n)
}

/// A byte count where `-` means 0.
pub(crate) fn parse_bytes(b: &[u8]) -> Option<u64> {
    if b == b"-" {
        Some(0)
    } else {
        parse_u64(b)
    }
}

/// Exactly three digits.
pub(crate) fn parse_status(b: &[u8]) -> Option<u16> {
    match *b {
        [a, b, c] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

/// Seconds with up to millisecond resolution (`0.005`, `12`, `1.5`) to
/// milliseconds; digits past the third decimal are truncated. `None` for
/// anything else (signs, exponents, empty parts, overflow).
pub(crate) fn parse_seconds_ms(b: &[u8]) -> Option<u64> {
    let (int, frac) = match memchr::memchr(b'.', b) {
        Some(i) => (&b[..i], Some(&b[i + 1..])),
        None => (b, None),
    };
    let secs = parse_u64(int)?;
    let mut ms = 0u64;
    if let Some(frac) = frac {
        if frac.is_empty() || !frac.iter().all(u8::is_ascii_digit) {
            return None;
        }
        for i in 0..3 {
            ms = ms * 10 + frac.get(i).map_or(0, |c| u64::from(c - b'0'));
        }
    }
    secs.checked_mul(1000)?.checked_add(ms)
}

/// `$request_time`: `-` is `Ok(None)`.
pub(crate) fn parse_request_time(b: &[u8]) -> Result<Option<u64>, ()> {
    if b == b"-" {
        return Ok(None);
    }
    parse_seconds_ms(b).map(Some).ok_or(())
}

/// `$upstream_response_time`: a list separated by `, ` (attempts) and ` : `
/// (internal redirects) whose entries are seconds or `-`. Returns the sum of
/// all times, `Ok(None)` if no entry had a time.
pub(crate) fn parse_upstream_time(b: &[u8]) -> Result<Option<u64>, ()> {
    let mut sum: Option<u64> = None;
    for part in b.split(|&c| c == b',' || c == b':') {
        let part = part.trim_ascii();
        if part == b"-" {
            continue;
        }
        let ms = parse_seconds_ms(part).ok_or(())?;
        sum = Some(sum.unwrap_or(0).checked_add(ms).ok_or(())?);
    }
    Ok(sum)
}

/// `$http_x_onion_circuitid`: a decimal id or an exported IPv6 address.
/// Anything else (`-`, garbage a client sent) is no circuit id, not an error:
/// the header may come from the client, whose request still counts.
pub(crate) fn parse_circuit_header(b: &[u8]) -> Option<CircuitId> {
    if b.len() <= 10 && !b.is_empty() && b.iter().all(u8::is_ascii_digit) {
        return parse_u64(b)
            .and_then(|n| u32::try_from(n).ok())
            .map(CircuitId);
    }
    circuit_from_addr(b)
}

/// Whether the quote at `i` is escaped by an odd number of backslashes.
pub(crate) fn is_escaped(hay: &[u8], i: usize) -> bool {
    let mut n = 0;
    while n < i && hay[i - 1 - n] == b'\\' {
        n += 1;
    }
    n % 2 == 1
}

/// The first position where `lit` occurs in `hay`. In a quoted field
/// (`quoted`), a literal whose first byte is a backslash-escaped quote does
/// not count.
pub(crate) fn find_literal(hay: &[u8], lit: &[u8], quoted: bool) -> Option<usize> {
    let first = *lit.first()?;
    let mut from = 0;
    loop {
        let i = from + find_byte(&hay[from..], first)?;
        if !(quoted && first == b'"' && is_escaped(hay, i)) && starts_with_short(&hay[i..], lit) {
            return Some(i);
        }
        from = i + 1;
    }
}

/// The last position where `lit` occurs in `hay`.
pub(crate) fn rfind_literal(hay: &[u8], lit: &[u8]) -> Option<usize> {
    let (&last, _) = lit.split_last()?;
    let mut end = hay.len();
    loop {
        let i = memchr::memrchr(last, &hay[..end])?;
        if i + 1 >= lit.len() && hay[i + 1 - lit.len()..=i] == *lit {
            return Some(i + 1 - lit.len());
        }
        end = i;
    }
}

/// Bytes scanned one by one before handing over to `memchr`, whose set-up
/// costs more than scanning a short field (`-`, a status, a byte count);
/// 32 measured slower, as long fields then pay for both.
const SCALAR_SCAN: usize = 8;

/// The first `b` in `hay`.
#[inline]
fn find_byte(hay: &[u8], b: u8) -> Option<usize> {
    let head = &hay[..hay.len().min(SCALAR_SCAN)];
    if let Some(i) = head.iter().position(|&c| c == b) {
        return Some(i);
    }
    if hay.len() <= SCALAR_SCAN {
        return None;
    }
    memchr::memchr(b, &hay[SCALAR_SCAN..]).map(|i| i + SCALAR_SCAN)
}

/// `hay.starts_with(lit)` without a `memcmp` call for the 1-3 byte
/// literals of log formats.
#[inline]
fn starts_with_short(hay: &[u8], lit: &[u8]) -> bool {
    hay.len() >= lit.len() && hay.iter().zip(lit).all(|(a, b)| a == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_split() {
        assert_eq!(
            split_request(b"GET /a?b=c HTTP/1.1"),
            (&b"GET"[..], &b"/a?b=c"[..], &b"HTTP/1.1"[..])
        );
        assert_eq!(split_request(b"GET /"), (&b"GET"[..], &b"/"[..], &b""[..]));
        assert_eq!(
            split_request(b"GET /a b HTTP/2.0"),
            (&b"GET"[..], &b"/a b"[..], &b"HTTP/2.0"[..])
        );
        assert_eq!(split_request(b"-"), (&b"-"[..], &b""[..], &b""[..]));
        assert_eq!(split_request(b""), (&b""[..], &b""[..], &b""[..]));
        assert_eq!(
            split_request(b"\\x16\\x03\\x01\\x00 \xff\xfe"),
            (&b"\\x16\\x03\\x01\\x00"[..], &b"\xff\xfe"[..], &b""[..])
        );
        assert_eq!(Method::from_bytes(b"GET"), Method::Get);
        assert_eq!(Method::from_bytes(b"get"), Method::Other);
        assert_eq!(Method::from_bytes(b"\xff"), Method::Other);
        assert_eq!(Method::from_bytes(b""), Method::Other);
        for (i, m) in Method::ALL.iter().enumerate() {
            assert_eq!(m.index(), i);
            assert_eq!(Method::from_bytes(m.as_str().as_bytes()), *m);
        }
        for (i, r) in ErrorReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn numbers_are_strict() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b"99999999999999999999999"), None);
        for bad in [
            &b""[..],
            b"-1",
            b"+1",
            b"1.0",
            b"abc",
            b" 1",
            b"1 ",
            b"\xff",
        ] {
            assert_eq!(parse_u64(bad), None);
        }
        assert_eq!(parse_bytes(b"-"), Some(0));
        assert_eq!(parse_bytes(b"--"), None);
        assert_eq!(parse_status(b"200"), Some(200));
        assert_eq!(parse_status(b"000"), Some(0));
        assert_eq!(parse_status(b"999"), Some(999));
        for bad in [
            &b""[..],
            b"20",
            b"2000",
            b"abc",
            b"-20",
            b"2 0",
            b"\xff\xff\xff",
        ] {
            assert_eq!(parse_status(bad), None);
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_seconds_ms(b"0.005"), Some(5));
        assert_eq!(parse_seconds_ms(b"1.5"), Some(1500));
        assert_eq!(parse_seconds_ms(b"12"), Some(12_000));
        assert_eq!(parse_seconds_ms(b"0.12345"), Some(123));
        for bad in [
            &b""[..],
            b".",
            b"1.",
            b".5",
            b"-0.1",
            b"1e3",
            b"1.2.3",
            b"abc",
        ] {
            assert_eq!(parse_seconds_ms(bad), None, "{bad:?}");
        }
        assert_eq!(parse_seconds_ms(b"99999999999999999999"), None);
        assert_eq!(parse_request_time(b"-"), Ok(None));
        assert_eq!(parse_request_time(b"0.250"), Ok(Some(250)));
        assert_eq!(parse_request_time(b"x"), Err(()));
        assert_eq!(parse_upstream_time(b"-"), Ok(None));
        assert_eq!(parse_upstream_time(b"0.100"), Ok(Some(100)));
        assert_eq!(parse_upstream_time(b"0.1, 0.2"), Ok(Some(300)));
        assert_eq!(parse_upstream_time(b"0.1, - : 0.030"), Ok(Some(130)));
        assert_eq!(parse_upstream_time(b"-, -"), Ok(None));
        assert_eq!(parse_upstream_time(b"0.1,,0.2"), Err(()));
        assert_eq!(parse_upstream_time(b"abc"), Err(()));
        assert_eq!(
            parse_upstream_time(b"18446744073709551, 18446744073709551"),
            Err(())
        );
    }

    #[test]
    fn circuit_header_is_lenient() {
        assert_eq!(parse_circuit_header(b"48"), Some(CircuitId(48)));
        assert_eq!(
            parse_circuit_header(b"4294967295"),
            Some(CircuitId(u32::MAX))
        );
        assert_eq!(parse_circuit_header(b"4294967296"), None);
        assert_eq!(
            parse_circuit_header(b"fc00:dead:beef:4dad::0:30"),
            Some(CircuitId(48))
        );
        for bad in [
            &b""[..],
            b"-",
            b"-1",
            b"x",
            b"\xff",
            b"99999999999999999999999",
        ] {
            assert_eq!(parse_circuit_header(bad), None);
        }
    }

    #[test]
    fn fast_circuit_decoding_equals_the_codec() {
        let mut cases: Vec<Vec<u8>> = [
            "fc00:dead:beef:4dad::0:30",
            "fc00:dead:beef:4dad::30",
            "FC00:DEAD:BEEF:4DAD::ffff:FFFF",
            "fc00:dead:beef:4dad::0030",
            "fc00:dead:beef:4dad::1:0",
            "fc00:dead:beef:4dad::",
            "fc00:dead:beef:4dad::1:",
            "fc00:dead:beef:4dad:::1",
            "fc00:dead:beef:4dad::1::2",
            "fc00:dead:beef:4dad::1:2:3",
            "fc00:dead:beef:4dad::10000",
            "fc00:dead:beef:4dad::0:10000",
            "fc00:dead:beef:4dad::0.0.0.48",
            "fc00:dead:beef:4dad:0:0:0:30",
            "[fc00:dead:beef:4dad::0:30]",
            "fc00:dead:beef:4dad::g",
            "fc00:dead:beef:4dad::0:30 ",
            "127.0.0.1",
            "::1",
            "",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        cases.push(b"fc00:dead:beef:4dad::\xff".to_vec());
        cases.push(b"fc00:dead:beef:4dad::1:\xc3\xa9".to_vec());
        for hi in [0u32, 1, 0xa, 0xff, 0x1234, 0xffff] {
            for lo in [0u32, 0x30, 0xabc, 0xffff] {
                cases.push(format!("fc00:dead:beef:4dad::{hi:x}:{lo:x}").into_bytes());
                cases.push(format!("fc00:dead:beef:4dad::{hi:04X}:{lo:04x}").into_bytes());
            }
        }
        for c in &cases {
            assert_eq!(
                circuit_from_addr(c),
                CircuitId::from_addr_bytes(c),
                "{:?}",
                String::from_utf8_lossy(c)
            );
        }
        assert_eq!(
            circuit_from_addr(b"fc00:dead:beef:4dad::1:30"),
            Some(CircuitId(0x1_0030))
        );
    }

    #[test]
    fn literal_search_skips_escaped_quotes() {
        assert_eq!(find_literal(br#"a\" b" c"#, b"\" ", true), Some(5));
        assert_eq!(find_literal(br#"a\" b" c"#, b"\" ", false), Some(2));
        assert_eq!(find_literal(br#"a\\" b"#, b"\" ", true), Some(3));
        assert_eq!(find_literal(b"abc", b"\"", true), None);
        assert_eq!(find_literal(b"", b"\"", true), None);
        assert_eq!(find_literal(b"abc", b"", true), None);
        assert_eq!(find_literal(b"x - y - z", b" - ", false), Some(1));
        assert!(!is_escaped(b"\"", 0));
    }

    #[test]
    fn errors_have_reasons_and_messages() {
        assert_eq!(
            ParseError::Invalid(Var::Status).reason().as_str(),
            "bad_status"
        );
        assert_eq!(
            ParseError::Invalid(Var::TimeLocal).to_string(),
            "the $time_local field is not valid"
        );
        assert_eq!(
            ParseError::Mismatch(None).to_string(),
            "the text after the line start does not match the log format"
        );
        assert_eq!(
            ParseError::TooLong { limit: 10 }.reason().as_str(),
            "too_long"
        );
    }
}
