//! The byte-level fast path for nginx's `combined` format:
//!
//! ```text
//! $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
//! ```
//!
//! It gives exactly the result of the general matcher compiled from that
//! format (a test checks this on many lines), only faster: fixed-width fields
//! are checked in place and every other field is found with `memchr`. Text
//! after the closing quote of the user agent (fields Onionspray or others
//! append) is accepted and ignored.

use super::{
    find_literal, parse_bytes, parse_status, split_request, AccessRecord, ParseError, Var,
};
use crate::time::parse_time_local;

/// The `combined` format string.
pub const COMBINED: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;

/// Parse one line (without its newline) in the `combined` format.
///
/// The caller ([`super::LogFormat::parse`]) has already rejected empty lines.
pub fn parse(line: &[u8]) -> Result<AccessRecord<'_>, ParseError> {
    let i = find_literal(line, b" - ", false).ok_or(ParseError::Truncated(Var::RemoteAddr))?;
    let remote_addr = &line[..i];
    if remote_addr.is_empty() {
        return Err(ParseError::Invalid(Var::RemoteAddr));
    }
    let mut pos = i + 3;

    let rest = &line[pos..];
    let i = find_literal(rest, b" [", false).ok_or(ParseError::Truncated(Var::RemoteUser))?;
    let remote_user = &rest[..i];
    pos += i + 2;

    // `11/Jan/2024:17:08:43 +0000` is 26 bytes; look further only if not.
    let rest = &line[pos..];
    let i = if rest.get(26..29) == Some(b"] \"") {
        26
    } else {
        find_literal(rest, b"] \"", false).ok_or(ParseError::Truncated(Var::TimeLocal))?
    };
    let time = parse_time_local(&rest[..i]).ok_or(ParseError::Invalid(Var::TimeLocal))?;
    pos += i + 3;

    let rest = &line[pos..];
    let i = find_literal(rest, b"\" ", true).ok_or(ParseError::Truncated(Var::Request))?;
    let (method, path, protocol) = split_request(&rest[..i]);
    pos += i + 2;

    let rest = &line[pos..];
    let i = if rest.get(3) == Some(&b' ') {
        3
    } else {
        find_literal(rest, b" ", false).ok_or(ParseError::Truncated(Var::Status))?
    };
    let status = parse_status(&rest[..i]).ok_or(ParseError::Invalid(Var::Status))?;
    pos += i + 1;

    let rest = &line[pos..];
    let i = find_literal(rest, b" \"", false).ok_or(ParseError::Truncated(Var::BodyBytesSent))?;
    let body_bytes_sent = parse_bytes(&rest[..i]).ok_or(ParseError::Invalid(Var::BodyBytesSent))?;
    pos += i + 2;

    let rest = &line[pos..];
    let i = find_literal(rest, b"\" \"", true).ok_or(ParseError::Truncated(Var::HttpReferer))?;
    let referer = &rest[..i];
    pos += i + 3;

    let rest = &line[pos..];
    let i = find_literal(rest, b"\"", true).ok_or(ParseError::Truncated(Var::HttpUserAgent))?;
    let user_agent = &rest[..i];

    Ok(AccessRecord {
        remote_addr,
        remote_user,
        time: Some(time),
        method,
        path,
        protocol,
        status: Some(status),
        body_bytes_sent: Some(body_bytes_sent),
        referer,
        user_agent,
        ..AccessRecord::default()
    })
}
