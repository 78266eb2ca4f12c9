//! Control-port reply framing (control-spec §2.3), as a pure parser.
//!
//! A reply is a run of lines sharing a status code: `NNN-text` (mid),
//! `NNN+text` followed by a dot-terminated, dot-stuffed data block, and a
//! final `NNN text`. Asynchronous events (status `6xx`) may arrive between the
//! lines of a command's reply, so the parser keeps one reply in progress for
//! commands and one for events.
//!
//! Text is decoded lossily: invalid UTF-8 becomes U+FFFD instead of an error,
//! because tor copies some foreign bytes (descriptors, nicknames, paths) into
//! replies and one odd byte must not break the connection.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Default longest line accepted: 1 MiB plus room for the status and key.
pub const DEFAULT_MAX_LINE: usize = (1 << 20) + 1024;
/// Default largest reply (text and data of all its lines): 16 MiB.
pub const DEFAULT_MAX_REPLY: usize = 16 << 20;

/// A violation of the control protocol; the connection cannot be trusted
/// after one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// A line longer than the limit.
    #[error("reply line longer than {max} bytes")]
    LineTooLong {
        /// The limit.
        max: usize,
    },
    /// A reply larger than the limit.
    #[error("reply larger than {max} bytes")]
    ReplyTooLarge {
        /// The limit.
        max: usize,
    },
    /// A line that is not `NNN-`, `NNN+` or `NNN ` followed by text.
    #[error("not a control-port reply line: {line:?}")]
    BadLine {
        /// The start of the line, lossily decoded.
        line: String,
    },
    /// The connection ended inside a reply, a data block or a line.
    #[error("connection closed in the middle of a reply")]
    Truncated,
    /// A reply arrived that no command was waiting for.
    #[error("unsolicited reply with status {status}")]
    Unsolicited {
        /// Its status.
        status: u16,
    },
}

/// One line of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyLine {
    /// The three-digit status code.
    pub status: u16,
    /// The text after the status and separator.
    pub text: String,
    /// The data block of a `NNN+` line: its lines joined with `\n` (no final
    /// newline), dot-unstuffed.
    pub data: Option<String>,
}

/// A complete reply: a command's answer, or an asynchronous event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The status of the final line.
    pub status: u16,
    /// All lines, the final one included (never empty).
    pub lines: Vec<ReplyLine>,
}

impl Reply {
    /// 2xx.
    pub fn is_ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// 6xx: an asynchronous event.
    pub fn is_event(&self) -> bool {
        (600..700).contains(&self.status)
    }

    /// The text of the final line (e.g. `OK`, or tor's error message).
    pub fn message(&self) -> &str {
        self.lines.last().map_or("", |l| l.text.as_str())
    }
}

#[derive(Debug, Default)]
struct Partial {
    lines: Vec<ReplyLine>,
    bytes: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Command,
    Event,
}

/// Incremental reply parser: feed it lines, get replies.
#[derive(Debug)]
pub struct ReplyParser {
    max_line: usize,
    max_reply: usize,
    command: Partial,
    event: Partial,
    /// The reply whose data block is being read, and the block so far.
    data: Option<(Target, String)>,
}

impl Default for ReplyParser {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_LINE, DEFAULT_MAX_REPLY)
    }
}

impl ReplyParser {
    /// A parser refusing lines over `max_line` bytes and replies over
    /// `max_reply` bytes.
    pub fn new(max_line: usize, max_reply: usize) -> Self {
        Self {
            max_line,
            max_reply,
            command: Partial::default(),
            event: Partial::default(),
            data: None,
        }
    }

    /// True while a reply is incomplete (EOF now would truncate it).
    pub fn in_progress(&self) -> bool {
        self.data.is_some() || !self.command.lines.is_empty() || !self.event.lines.is_empty()
    }

    /// Feed one line without its line end (a trailing `\r` is dropped). Returns
    /// a reply when this line completes one; use [`Reply::is_event`] to tell
    /// events from command replies.
    pub fn push(&mut self, line: &[u8]) -> Result<Option<Reply>, ProtocolError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > self.max_line {
            return Err(ProtocolError::LineTooLong { max: self.max_line });
        }
        if let Some((target, block)) = &mut self.data {
            let target = *target;
            if line == b"." {
                let (_, block) = self.data.take().expect("in a data block");
                let partial = self.partial(target);
                partial.lines.last_mut().expect("data follows a line").data = Some(block);
                return Ok(None);
            }
            let line = line
                .strip_prefix(b".")
                .filter(|l| l.starts_with(b"."))
                .unwrap_or(line);
            let partial = match target {
                Target::Command => &mut self.command,
                Target::Event => &mut self.event,
            };
            partial.bytes += line.len() + 1;
            if partial.bytes > self.max_reply {
                return Err(ProtocolError::ReplyTooLarge {
                    max: self.max_reply,
                });
            }
            if !block.is_empty() {
                block.push('\n');
            }
            block.push_str(&String::from_utf8_lossy(line));
            return Ok(None);
        }

        let (status, sep, text) = split_status(line)?;
        let target = if (600..700).contains(&status) {
            Target::Event
        } else {
            Target::Command
        };
        let max_reply = self.max_reply;
        let partial = self.partial(target);
        partial.bytes += line.len() + 1;
        if partial.bytes > max_reply {
            return Err(ProtocolError::ReplyTooLarge { max: max_reply });
        }
        partial.lines.push(ReplyLine {
            status,
            text: String::from_utf8_lossy(text).into_owned(),
            data: None,
        });
        match sep {
            b'-' => Ok(None),
            b'+' => {
                self.data = Some((target, String::new()));
                Ok(None)
            }
            _ => {
                let partial = std::mem::take(partial);
                Ok(Some(Reply {
                    status,
                    lines: partial.lines,
                }))
            }
        }
    }

    fn partial(&mut self, target: Target) -> &mut Partial {
        match target {
            Target::Command => &mut self.command,
            Target::Event => &mut self.event,
        }
    }
}

fn split_status(line: &[u8]) -> Result<(u16, u8, &[u8]), ProtocolError> {
    let bad = || ProtocolError::BadLine {
        line: String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned(),
    };
    if line.len() < 4 || !line[..3].iter().all(u8::is_ascii_digit) || line[0] == b'0' {
        return Err(bad());
    }
    let status = line[..3]
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match line[3] {
        sep @ (b'-' | b'+' | b' ') => Ok((status, sep, &line[4..])),
        _ => Err(bad()),
    }
}

/// Why [`read_line`] failed.
#[derive(Debug)]
pub(crate) enum LineError {
    Io(std::io::Error),
    Protocol(ProtocolError),
}

/// Read one line into `buf` (cleared first, line end stripped), holding at
/// most `max` bytes plus one buffer's worth. `Ok(false)` at a clean EOF.
pub(crate) async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<bool, LineError> {
    buf.clear();
    loop {
        let avail = r.fill_buf().await.map_err(LineError::Io)?;
        if avail.is_empty() {
            return if buf.is_empty() {
                Ok(false)
            } else {
                Err(LineError::Protocol(ProtocolError::Truncated))
            };
        }
        let (chunk, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (&avail[..i], true),
            None => (avail, false),
        };
        // +1 allows the `\r` before the `\n`.
        if buf.len() + chunk.len() > max + 1 {
            return Err(LineError::Protocol(ProtocolError::LineTooLong { max }));
        }
        buf.extend_from_slice(chunk);
        let used = chunk.len() + usize::from(done);
        r.consume(used);
        if done {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed text (lines separated by `\n`) and collect replies.
    fn feed(p: &mut ReplyParser, text: &str) -> Result<Vec<Reply>, ProtocolError> {
        let mut out = Vec::new();
        for line in text.split_terminator('\n') {
            if let Some(r) = p.push(line.as_bytes())? {
                out.push(r);
            }
        }
        Ok(out)
    }

    #[test]
    fn single_and_multi_line_replies() {
        let mut p = ReplyParser::default();
        let r = feed(&mut p, "250 OK\r\n").unwrap();
        assert_eq!(r.len(), 1);
        assert!(r[0].is_ok());
        assert_eq!(r[0].message(), "OK");
        let r = feed(
            &mut p,
            "250-PROTOCOLINFO 1\r\n250-AUTH METHODS=NULL\r\n250-VERSION Tor=\"0.4.9.11\"\r\n250 OK\r\n",
        )
        .unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].lines.len(), 4);
        assert_eq!(r[0].lines[1].text, "AUTH METHODS=NULL");
        assert!(!p.in_progress());
        let r = feed(&mut p, "552 Unknown circuit \"48\"\n").unwrap();
        assert_eq!(r[0].status, 552);
        assert!(!r[0].is_ok());
    }

    #[test]
    fn data_block_with_dot_stuffing() {
        let mut p = ReplyParser::default();
        let r = feed(
            &mut p,
            "250+circuit-status=\r\n1 BUILT $A~a\r\n..hidden\r\n...\r\n\r\n.\r\n250 OK\r\n",
        )
        .unwrap();
        assert_eq!(r.len(), 1);
        let line = &r[0].lines[0];
        assert_eq!(line.text, "circuit-status=");
        // `..hidden` -> `.hidden`, `...` -> `..`, empty line kept.
        assert_eq!(line.data.as_deref(), Some("1 BUILT $A~a\n.hidden\n..\n"));
        // An empty data block.
        let r = feed(&mut p, "250+x=\n.\n250 OK\n").unwrap();
        assert_eq!(r[0].lines[0].data.as_deref(), Some(""));
    }

    #[test]
    fn events_between_reply_lines_are_separated() {
        let mut p = ReplyParser::default();
        let r = feed(
            &mut p,
            "250-a=1\n650 CIRC 1 LAUNCHED\n250-b=2\n650+HS_DESC_CONTENT x y z\ndesc\n.\n250 c=3\n650 OK\n",
        )
        .unwrap();
        assert_eq!(r.len(), 3);
        assert!(r[0].is_event());
        assert_eq!(r[0].message(), "CIRC 1 LAUNCHED");
        assert!(!r[1].is_event());
        assert_eq!(r[1].lines.len(), 3);
        assert!(r[2].is_event());
        assert_eq!(r[2].lines[0].data.as_deref(), Some("desc"));
    }

    #[test]
    fn hostile_lines_are_refused() {
        for bad in [
            "",
            "2",
            "250",
            "25x OK",
            "250xOK",
            "HTTP/1.0 400 Bad Request",
            "<html>",
            "-250 x",
            "000 OK",
        ] {
            let mut p = ReplyParser::default();
            assert!(
                matches!(p.push(bad.as_bytes()), Err(ProtocolError::BadLine { .. })),
                "{bad:?}"
            );
        }
        let mut p = ReplyParser::default();
        let e = p.push(&[b'9'; 4000]).unwrap_err();
        assert!(e.to_string().len() < 200, "error message is bounded: {e}");
    }

    #[test]
    fn invalid_utf8_is_lossy() {
        let mut p = ReplyParser::default();
        assert!(p.push(b"250+x=").unwrap().is_none());
        p.push(b"\xff\xfe ok").unwrap();
        p.push(b".").unwrap();
        let r = p.push(b"250 \xc3\x28").unwrap().unwrap();
        assert_eq!(r.lines[0].data.as_deref(), Some("\u{fffd}\u{fffd} ok"));
        assert_eq!(r.lines[1].text, "\u{fffd}(");
    }

    #[test]
    fn limits_are_enforced() {
        let mut p = ReplyParser::new(100, 1000);
        let long = format!("250 {}", "a".repeat(200));
        assert_eq!(
            p.push(long.as_bytes()),
            Err(ProtocolError::LineTooLong { max: 100 })
        );
        let mut p = ReplyParser::new(100, 1000);
        p.push(b"250+x=").unwrap();
        let res = (0..100).try_for_each(|_| p.push(&[b'a'; 50]).map(|_| ()));
        assert_eq!(res, Err(ProtocolError::ReplyTooLarge { max: 1000 }));
        let mut p = ReplyParser::new(100, 1000);
        let res = (0..100).try_for_each(|_| p.push(b"650-0123456789012345").map(|_| ()));
        assert_eq!(res, Err(ProtocolError::ReplyTooLarge { max: 1000 }));
    }

    #[test]
    fn lines_at_the_limit_are_accepted() {
        let mut p = ReplyParser::new(100, 1000);
        let at = format!("250 {}", "a".repeat(96));
        assert_eq!(
            p.push(at.as_bytes()).unwrap().unwrap().lines[0].text.len(),
            96
        );
        // The `\r` of the line end does not count.
        assert!(p.push(format!("{at}\r").as_bytes()).unwrap().is_some());
        let over = format!("{at}a");
        assert_eq!(
            p.push(over.as_bytes()),
            Err(ProtocolError::LineTooLong { max: 100 })
        );

        // With the defaults, a 1 MiB value (e.g. a big GETINFO) fits.
        let mut p = ReplyParser::default();
        let big = format!("250 x={}", "v".repeat(1 << 20));
        assert!(p.push(big.as_bytes()).unwrap().is_some());
        let edge = format!("250 {}", "v".repeat(DEFAULT_MAX_LINE - 4));
        assert!(p.push(edge.as_bytes()).unwrap().is_some());
        assert!(p.push(format!("{edge}v").as_bytes()).is_err());
    }

    #[tokio::test]
    async fn read_line_accepts_a_line_at_the_limit() {
        let line = [b'a'; 100];
        for end in [&b"\r\n"[..], b"\n"] {
            let data = [&line[..], end, b"x\n"].concat();
            let mut r = tokio::io::BufReader::with_capacity(16, &data[..]);
            let mut buf = Vec::new();
            assert!(read_line(&mut r, &mut buf, 100).await.unwrap());
            assert_eq!(buf, line);
            assert!(read_line(&mut r, &mut buf, 100).await.unwrap());
            assert_eq!(buf, b"x");
        }
        let data = [&line[..], b"a\r\n"].concat();
        let mut r = tokio::io::BufReader::with_capacity(16, &data[..]);
        assert!(matches!(
            read_line(&mut r, &mut Vec::new(), 100).await,
            Err(LineError::Protocol(ProtocolError::LineTooLong { max: 100 }))
        ));
    }

    #[test]
    fn truncated_reply_is_in_progress() {
        let mut p = ReplyParser::default();
        p.push(b"250-a").unwrap();
        assert!(p.in_progress());
        let mut p = ReplyParser::default();
        p.push(b"250+a=").unwrap();
        p.push(b"data").unwrap();
        assert!(p.in_progress());
    }

    #[tokio::test]
    async fn read_line_bounds_memory() {
        let mut data = b"250 OK\r\nbare\n".to_vec();
        data.extend(std::iter::repeat_n(b'a', 3 << 20));
        let mut r = tokio::io::BufReader::with_capacity(4096, &data[..]);
        let mut buf = Vec::new();
        assert!(read_line(&mut r, &mut buf, 1 << 20).await.unwrap());
        assert_eq!(buf, b"250 OK");
        assert!(read_line(&mut r, &mut buf, 1 << 20).await.unwrap());
        assert_eq!(buf, b"bare");
        let e = read_line(&mut r, &mut buf, 1 << 20).await.unwrap_err();
        assert!(matches!(
            e,
            LineError::Protocol(ProtocolError::LineTooLong { .. })
        ));
        assert!(buf.capacity() <= (1 << 21), "{}", buf.capacity());

        let mut r = tokio::io::BufReader::new(&b"250 OK"[..]);
        assert!(matches!(
            read_line(&mut r, &mut buf, 100).await,
            Err(LineError::Protocol(ProtocolError::Truncated))
        ));
        let mut r = tokio::io::BufReader::new(&b""[..]);
        assert!(!read_line(&mut r, &mut buf, 100).await.unwrap());
    }
}
