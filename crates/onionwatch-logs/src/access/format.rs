//! Compile an nginx `log_format` string into a parser.
//!
//! The format is split into literal text and variables (`$name` or
//! `${name}`). Matching walks the line once: a literal must appear exactly;
//! a variable captures everything up to the next occurrence of the literal
//! that follows it in the format (or to the end of the line when it is
//! last). Inside a quoted field, one whose literal before ends with `"` and
//! whose literal after starts with `"`, a backslash-escaped quote (`\"`,
//! written by `escape=json`) does not end the field; nginx's default escaping
//! writes `"` as `\x22`, which needs nothing special. Text after the last
//! item of the format is ignored, so fields appended to a known format do
//! not break it.
//!
//! Two variables with nothing between them (`$a$b`) cannot be split and are
//! refused when compiling.
//!
//! **Fields a client chooses** ([`Var::client_chosen`]: `$remote_user`,
//! headers, the request...) may hold any text nginx does not escape, such
//! as the ` [` after `$remote_user` in `combined` (a Basic-auth user name
//! `evil [x` is logged as is). What nginx always escapes is `"` (as `\x22`,
//! or `\"` with `escape=json`; only `escape=none` leaves it), so a literal
//! holding an unescaped `"` cannot come from a field: such literals are
//! *anchors*. Between two anchors, the
//! fields before the first client-chosen one are split at the first
//! occurrence of the literal after them, as above, and the fields after it
//! at the last occurrence before the anchor that ends the span (or the line
//! end, when the format ends with a variable); the client-chosen field gets
//! what lies between. A line in which the anchor is missing is matched the
//! plain way, which names the failing field. Two client-chosen fields in
//! one span (e.g. `$remote_user $http_x`, no quotes) cannot both be
//! delimited; quote them in the `log_format`.
//!
//! ```
//! use onionwatch_logs::access::LogFormat;
//! let f = LogFormat::compile(r#"$remote_addr [$time_local] "$request" $status $request_time $upstream_response_time"#).unwrap();
//! assert!(!f.is_fast_path());
//! let r = f.parse(b"::1 [11/Jan/2024:17:08:43 +0000] \"GET / HTTP/1.1\" 502 0.030 0.010, 0.020").unwrap();
//! assert_eq!(r.status, Some(502));
//! assert_eq!(r.request_time_ms, Some(30));
//! assert_eq!(r.upstream_response_time_ms, Some(30));
//! ```

use super::combined::{self, COMBINED};
use super::{
    find_literal, parse_bytes, parse_circuit_header, parse_request_time, parse_status,
    parse_upstream_time, rfind_literal, split_request, AccessRecord, ParseError, Var,
};
use crate::time::{parse_time_iso8601, parse_time_local};

/// Why a `log_format` string cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Nothing to match.
    #[error("the log format is empty")]
    Empty,
    /// Only literal text: every line would parse to nothing.
    #[error("the log format has no $variable; give nginx's log_format string, e.g. '$remote_addr - $remote_user [$time_local] \"$request\" $status ...'")]
    NoVariables,
    /// `${name` without `}`.
    #[error("the log format has an unterminated ${{ at byte {at}")]
    UnterminatedBrace {
        /// Byte offset of the `$`.
        at: usize,
    },
    /// `${}`.
    #[error("the log format has an empty ${{}} at byte {at}")]
    EmptyName {
        /// Byte offset of the `$`.
        at: usize,
    },
    /// Two variables with no text between them.
    #[error("${first} is followed directly by ${second}: with no text between them the parser cannot tell where one ends; put a separator such as a space between them")]
    Adjacent {
        /// The first variable's name.
        first: String,
        /// The second variable's name.
        second: String,
    },
}

/// One token of a format string.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(Vec<u8>),
    Var(String),
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// Split a format into literals and variable names; a `$` not followed by a
/// name is literal text.
fn tokenize(format: &str) -> Result<Vec<Token>, FormatError> {
    let b = format.as_bytes();
    let mut tokens = Vec::new();
    let mut lit = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'$' {
            lit.push(b[i]);
            i += 1;
            continue;
        }
        let at = i;
        let (name, next) = if b.get(i + 1) == Some(&b'{') {
            let close = b[i + 2..]
                .iter()
                .position(|&c| c == b'}')
                .ok_or(FormatError::UnterminatedBrace { at })?;
            let name = &format[i + 2..i + 2 + close];
            if name.is_empty() {
                return Err(FormatError::EmptyName { at });
            }
            (name, i + 3 + close)
        } else {
            let len = b[i + 1..].iter().take_while(|&&c| is_name_char(c)).count();
            if len == 0 {
                lit.push(b'$');
                i += 1;
                continue;
            }
            (&format[i + 1..i + 1 + len], i + 1 + len)
        };
        if !lit.is_empty() {
            tokens.push(Token::Literal(std::mem::take(&mut lit)));
        }
        if let Some(Token::Var(first)) = tokens.last() {
            return Err(FormatError::Adjacent {
                first: first.clone(),
                second: name.to_string(),
            });
        }
        tokens.push(Token::Var(name.to_string()));
        i = next;
    }
    if !lit.is_empty() {
        tokens.push(Token::Literal(lit));
    }
    Ok(tokens)
}

/// One step of the general matcher.
#[derive(Debug, Clone)]
enum Item {
    /// Text that must appear here; `field` names the variable after it (or
    /// before it, at the end) for truncation errors.
    Literal { text: Box<[u8]>, field: Var },
    /// A variable, captured up to `until` (the next literal) or to the end.
    Var {
        var: Var,
        until: Option<Box<[u8]>>,
        quoted: bool,
        /// For the first client-chosen variable of a span with fields after
        /// it: how to split those from the span's end.
        tail: Option<Box<Tail>>,
    },
}

/// The fields after a client-chosen variable up to the next anchor (see
/// the module documentation), matched from that anchor backwards.
#[derive(Debug, Clone)]
struct Tail {
    /// The anchor that ends the span; `None`: the line end.
    anchor: Option<Box<[u8]>>,
    /// The variables after the client-chosen one, last first, each with
    /// the literal before it.
    fields: Vec<(Box<[u8]>, Var)>,
    /// Items of the walk these take (the variables and their literals).
    items: usize,
}

/// Most fields in a [`Tail`] (a longer run is matched the plain way), so
/// that they fit an array: no allocation per line.
const MAX_TAIL: usize = 16;

/// A literal holding a `"` that no backslash in it escapes: nginx escapes
/// every `"` inside a field, so such a literal is never field text.
fn is_anchor(text: &[u8]) -> bool {
    text.iter()
        .enumerate()
        .any(|(i, &c)| c == b'"' && (i == 0 || text[i - 1] != b'\\'))
}

/// Give the first client-chosen variable of every span with fields after
/// it its [`Tail`].
fn add_tails(items: &mut [Item]) {
    let mut start = 0;
    while start < items.len() {
        let end = (start..items.len())
            .find(|&i| matches!(&items[i], Item::Literal { text, .. } if is_anchor(text)))
            .unwrap_or(items.len());
        let anchor = match items.get(end) {
            Some(Item::Literal { text, .. }) => Some(text.clone()),
            // Without an anchor the span ends at the line end only if its
            // last variable runs there.
            _ => match items.get(end.wrapping_sub(1)) {
                Some(Item::Var { until: None, .. }) => None,
                _ => {
                    start = end + 1;
                    continue;
                }
            },
        };
        let chosen = (start..end)
            .find(|&i| matches!(&items[i], Item::Var { var, .. } if var.client_chosen()));
        if let Some(u) = chosen {
            let mut fields = Vec::new();
            for i in (u + 1..end).rev() {
                if let (Item::Var { var, .. }, Some(Item::Literal { text, .. })) =
                    (&items[i], items.get(i - 1))
                {
                    fields.push((text.clone(), *var));
                }
            }
            if !fields.is_empty() && fields.len() <= MAX_TAIL {
                if let Item::Var { tail, .. } = &mut items[u] {
                    *tail = Some(Box::new(Tail {
                        anchor,
                        fields,
                        items: end - u - 1,
                    }));
                }
            }
        }
        start = end + 1;
    }
}

#[derive(Debug, Clone)]
enum Matcher {
    Combined,
    General(Vec<Item>),
}

/// A compiled nginx `log_format`.
#[derive(Debug, Clone)]
pub struct LogFormat {
    source: String,
    vars: Vec<Var>,
    matcher: Matcher,
}

impl Default for LogFormat {
    fn default() -> Self {
        LogFormat::combined()
    }
}

impl LogFormat {
    /// nginx's predefined `combined` format (the fast path).
    pub fn combined() -> LogFormat {
        LogFormat {
            source: COMBINED.to_string(),
            vars: vars_of(&tokenize(COMBINED).unwrap_or_default()),
            matcher: Matcher::Combined,
        }
    }

    /// Compile a `log_format` string (the text nginx's `log_format NAME`
    /// directive takes, with the config file's quotes removed and its parts
    /// joined). `combined`, or a format that is `combined` token for token,
    /// uses the fast path.
    pub fn compile(format: &str) -> Result<LogFormat, FormatError> {
        if format.trim() == "combined" {
            return Ok(LogFormat::combined());
        }
        let tokens = tokenize(format)?;
        if Some(&tokens) == tokenize(COMBINED).ok().as_ref() {
            return Ok(LogFormat::combined());
        }
        Self::from_tokens(format, tokens)
    }

    /// Compile with the general matcher even for `combined` (for tests and
    /// benchmarks of the fallback path).
    pub fn compile_general(format: &str) -> Result<LogFormat, FormatError> {
        let format = if format.trim() == "combined" {
            COMBINED
        } else {
            format
        };
        Self::from_tokens(format, tokenize(format)?)
    }

    fn from_tokens(source: &str, tokens: Vec<Token>) -> Result<LogFormat, FormatError> {
        if tokens.is_empty() {
            return Err(FormatError::Empty);
        }
        if !tokens.iter().any(|t| matches!(t, Token::Var(_))) {
            return Err(FormatError::NoVariables);
        }
        let mut items = Vec::with_capacity(tokens.len());
        for (i, t) in tokens.iter().enumerate() {
            match t {
                Token::Literal(text) => {
                    let field = match (tokens.get(i + 1), i.checked_sub(1).map(|j| &tokens[j])) {
                        (Some(Token::Var(n)), _) | (None, Some(Token::Var(n))) => Var::from_name(n),
                        _ => Var::Other,
                    };
                    items.push(Item::Literal {
                        text: text.clone().into_boxed_slice(),
                        field,
                    });
                }
                Token::Var(name) => {
                    let before = i.checked_sub(1).map(|j| &tokens[j]);
                    let after = tokens.get(i + 1);
                    let quoted = matches!(before, Some(Token::Literal(l)) if l.ends_with(b"\""))
                        && matches!(after, Some(Token::Literal(l)) if l.starts_with(b"\""));
                    let until = match after {
                        Some(Token::Literal(l)) => Some(l.clone().into_boxed_slice()),
                        _ => None,
                    };
                    items.push(Item::Var {
                        var: Var::from_name(name),
                        until,
                        quoted,
                        tail: None,
                    });
                }
            }
        }
        add_tails(&mut items);
        Ok(LogFormat {
            source: source.to_string(),
            vars: vars_of(&tokens),
            matcher: Matcher::General(items),
        })
    }

    /// The format string this was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether lines go through the `combined` fast path.
    pub fn is_fast_path(&self) -> bool {
        matches!(self.matcher, Matcher::Combined)
    }

    /// Whether the format has the variable.
    pub fn has(&self, var: Var) -> bool {
        self.vars.contains(&var)
    }

    /// Parse one line (without its newline; a trailing `\r` is ignored).
    pub fn parse<'a>(&self, line: &'a [u8]) -> Result<AccessRecord<'a>, ParseError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.trim_ascii().is_empty() {
            return Err(ParseError::Empty);
        }
        match &self.matcher {
            Matcher::Combined => combined::parse(line),
            Matcher::General(items) => parse_general(items, line),
        }
    }
}

fn vars_of(tokens: &[Token]) -> Vec<Var> {
    tokens
        .iter()
        .filter_map(|t| match t {
            Token::Var(n) => Some(Var::from_name(n)),
            Token::Literal(_) => None,
        })
        .collect()
}

fn parse_general<'a>(items: &[Item], line: &'a [u8]) -> Result<AccessRecord<'a>, ParseError> {
    let mut rec = AccessRecord::default();
    let mut pos = 0;
    let mut prev: Option<Var> = None;
    let mut k = 0;
    while let Some(item) = items.get(k) {
        k += 1;
        let rest = &line[pos..];
        match item {
            Item::Literal { text, field } => {
                if rest.starts_with(text) {
                    pos += text.len();
                } else if text.starts_with(rest) {
                    return Err(ParseError::Truncated(*field));
                } else {
                    return Err(ParseError::Mismatch(prev));
                }
            }
            Item::Var {
                var,
                until,
                quoted,
                tail,
            } => {
                if let Some(tail) = tail {
                    if let Some(end) = match_tail(&mut rec, *var, tail, line, pos)? {
                        pos = end;
                        k += tail.items;
                        prev = tail.fields.first().map(|&(_, v)| v);
                        continue;
                    }
                }
                let value = match until {
                    Some(lit) => {
                        let i =
                            find_literal(rest, lit, *quoted).ok_or(ParseError::Truncated(*var))?;
                        &rest[..i]
                    }
                    None => rest,
                };
                pos += value.len();
                assign(&mut rec, *var, value)?;
                prev = Some(*var);
            }
        }
    }
    Ok(rec)
}

/// Match a client-chosen variable at `pos` and the [`Tail`] after it
/// backwards from the span's anchor, assigning them in line order; the
/// position of the anchor, or `None` (nothing assigned) when the anchor or
/// a literal is missing.
fn match_tail<'a>(
    rec: &mut AccessRecord<'a>,
    var: Var,
    tail: &Tail,
    line: &'a [u8],
    pos: usize,
) -> Result<Option<usize>, ParseError> {
    let rest = &line[pos..];
    let span_end = match &tail.anchor {
        Some(anchor) => match find_literal(rest, anchor, true) {
            Some(i) => i,
            None => return Ok(None),
        },
        None => rest.len(),
    };
    let mut values: [&[u8]; MAX_TAIL] = [&[]; MAX_TAIL];
    let mut end = span_end;
    for (n, (lit, _)) in tail.fields.iter().enumerate() {
        let Some(i) = rfind_literal(&rest[..end], lit) else {
            return Ok(None);
        };
        values[n] = &rest[i + lit.len()..end];
        end = i;
    }
    assign(rec, var, &rest[..end])?;
    for n in (0..tail.fields.len()).rev() {
        assign(rec, tail.fields[n].1, values[n])?;
    }
    Ok(Some(pos + span_end))
}

fn assign<'a>(rec: &mut AccessRecord<'a>, var: Var, v: &'a [u8]) -> Result<(), ParseError> {
    let invalid = ParseError::Invalid(var);
    match var {
        Var::RemoteAddr => {
            if v.is_empty() {
                return Err(invalid);
            }
            rec.remote_addr = v;
        }
        Var::RemoteUser => rec.remote_user = v,
        Var::TimeLocal => rec.time = Some(parse_time_local(v).ok_or(invalid)?),
        Var::TimeIso8601 => rec.time = Some(parse_time_iso8601(v).ok_or(invalid)?),
        Var::Request => (rec.method, rec.path, rec.protocol) = split_request(v),
        Var::RequestMethod => rec.method = v,
        Var::RequestUri => rec.path = v,
        Var::ServerProtocol => rec.protocol = v,
        Var::Status => rec.status = Some(parse_status(v).ok_or(invalid)?),
        Var::BodyBytesSent => rec.body_bytes_sent = Some(parse_bytes(v).ok_or(invalid)?),
        Var::BytesSent => rec.bytes_sent = Some(parse_bytes(v).ok_or(invalid)?),
        Var::HttpReferer => rec.referer = v,
        Var::HttpUserAgent => rec.user_agent = v,
        Var::RequestTime => rec.request_time_ms = parse_request_time(v).map_err(|()| invalid)?,
        Var::UpstreamResponseTime => {
            rec.upstream_response_time_ms = parse_upstream_time(v).map_err(|()| invalid)?
        }
        Var::CircuitIdHeader => rec.circuit_header = parse_circuit_header(v),
        Var::ProxyProtocolAddr => rec.proxy_protocol_addr = v,
        Var::ServerAddr => rec.server_addr = v,
        Var::ServerPort => {
            rec.server_port = match v {
                b"" | b"-" => None,
                _ => Some(
                    std::str::from_utf8(v)
                        .ok()
                        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
                        .and_then(|s| s.parse().ok())
                        .ok_or(invalid)?,
                ),
            }
        }
        Var::Other => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests;
