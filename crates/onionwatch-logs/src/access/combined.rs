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
//!
//! `$remote_user` is the one unquoted field a client chooses (the user name
//! of any `Authorization: Basic` header), and nginx escapes neither spaces
//! nor brackets in it: `evil [x` is logged as is. It does escape `"` (as
//! `\x22`), so the first `] "` after the address can only be the end of
//! `$time_local`, and the last ` [` before it its start; the user is what
//! lies between the address and that ` [`.

use super::{
    find_literal, parse_bytes, parse_status, rfind_literal, split_request, AccessRecord,
    ParseError, Var,
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

    let (remote_user, time_local, len) = user_and_time(&line[pos..])?;
    let time = parse_time_local(time_local).ok_or(ParseError::Invalid(Var::TimeLocal))?;
    pos += len;

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

/// `$remote_user [$time_local] "`: the user, the time and the length of
/// the whole, anchored on the `] "` nginx's escaping keeps out of the user
/// (see the module documentation). A line without that anchor is broken
/// anyway; it is split at the first ` [` so that the error names the same
/// field as the general matcher's.
fn user_and_time(rest: &[u8]) -> Result<(&[u8], &[u8], usize), ParseError> {
    if let Some(end) = find_literal(rest, b"] \"", true) {
        if let Some(start) = rfind_literal(&rest[..end], b" [") {
            return Ok((&rest[..start], &rest[start + 2..end], end + 3));
        }
    }
    let i = find_literal(rest, b" [", false).ok_or(ParseError::Truncated(Var::RemoteUser))?;
    let after = &rest[i + 2..];
    let j = find_literal(after, b"] \"", false).ok_or(ParseError::Truncated(Var::TimeLocal))?;
    Ok((&rest[..i], &after[..j], i + 2 + j + 3))
}
