//! Count tor and onionbalance log lines by severity and keep the last
//! warnings and errors.
//!
//! Recognised shapes (the severity is the first `[word]` within the first
//! 48 bytes of the line):
//!
//! - tor: `Nov 25 09:00:00.000 [notice] Bootstrapped 100% (done): Done`
//!   with `debug`, `info`, `notice`, `warn`, `err`;
//! - onionbalance (Python logging, `%(asctime)s [%(levelname)s]: %(message)s`):
//!   `2024-01-11 17:08:43,123 [WARNING]: ...` with `DEBUG`, `INFO`,
//!   `WARNING`, `ERROR`, `CRITICAL` (counted as `err`); its interactive
//!   `[INFO]: ...` form too.
//!
//! - nginx's error log: `2026/12/01 00:00:00 [error] 12#12: *1 …` with
//!   `debug`, `info`, `notice`, `warn`, `error`, `crit`, `alert`, `emerg`
//!   (the last four counted as `err`).
//!
//! Anything else (a Python traceback's continuation lines, syslog-style
//! lines, garbage) counts as `unknown`. Lines are bytes; invalid UTF-8 is
//! replaced only in the kept copies.
//!
//! ```
//! use onionwatch_logs::severity::{Severity, SeverityCounter};
//! let mut c = SeverityCounter::new(10, 200);
//! c.observe(b"Nov 25 09:00:00.000 [notice] Bootstrapped 100% (done): Done");
//! c.observe(b"2024-01-11 17:08:43,123 [WARNING]: Introduction point set changed");
//! assert_eq!(c.count(Severity::Notice), 1);
//! assert_eq!(c.count(Severity::Warn), 1);
//! assert_eq!(c.recent().count(), 1);
//! ```

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// How far into a line the severity may start.
const SEARCH: usize = 48;

/// A log severity, tor's names (Python's `WARNING` is `Warn`, `ERROR` and
/// `CRITICAL` are `Err`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// `debug`
    Debug,
    /// `info`
    Info,
    /// `notice`
    Notice,
    /// `warn` / `WARNING`
    Warn,
    /// `err` / `ERROR` / `CRITICAL`
    Err,
}

impl Severity {
    /// Every severity, in index order.
    pub const ALL: [Severity; 5] = [
        Severity::Debug,
        Severity::Info,
        Severity::Notice,
        Severity::Warn,
        Severity::Err,
    ];

    /// tor's name (a JSON key and metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Debug => "debug",
            Severity::Info => "info",
            Severity::Notice => "notice",
            Severity::Warn => "warn",
            Severity::Err => "err",
        }
    }

    fn from_word(w: &[u8]) -> Option<Severity> {
        let mut lower = [0u8; 8];
        if w.len() > lower.len() {
            return None;
        }
        for (d, s) in lower.iter_mut().zip(w) {
            *d = s.to_ascii_lowercase();
        }
        Some(match &lower[..w.len()] {
            b"debug" => Severity::Debug,
            b"info" => Severity::Info,
            b"notice" => Severity::Notice,
            b"warn" | b"warning" => Severity::Warn,
            // nginx's error log: crit, alert and emerg are worse than error.
            b"err" | b"error" | b"critical" | b"crit" | b"alert" | b"emerg" => Severity::Err,
            _ => return None,
        })
    }
}

/// The severity of one tor or onionbalance log line, if it has one.
pub fn parse_severity(line: &[u8]) -> Option<Severity> {
    let head = &line[..line.len().min(SEARCH)];
    let open = memchr::memchr(b'[', head)?;
    let rest = &line[open + 1..];
    let close = memchr::memchr(b']', &rest[..rest.len().min(10)])?;
    Severity::from_word(&rest[..close])
}

/// A kept warning or error line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecentLine {
    /// `warn` or `err`.
    pub severity: Severity,
    /// The line, invalid UTF-8 replaced, cut to the counter's maximum length
    /// (with `…` when cut).
    pub text: String,
}

/// Counts lines by severity and keeps the last warnings and errors in a
/// bounded ring.
#[derive(Debug, Clone)]
pub struct SeverityCounter {
    counts: [u64; 5],
    unknown: u64,
    recent: VecDeque<RecentLine>,
    keep: usize,
    max_len: usize,
}

impl Default for SeverityCounter {
    /// Keeps the last 50 warnings/errors, each cut to 1,000 bytes.
    fn default() -> Self {
        SeverityCounter::new(50, 1000)
    }
}

impl SeverityCounter {
    /// Keep the last `keep` warn/err lines, each cut to `max_len` bytes.
    pub fn new(keep: usize, max_len: usize) -> Self {
        SeverityCounter {
            counts: [0; 5],
            unknown: 0,
            recent: VecDeque::with_capacity(keep.min(1024)),
            keep,
            max_len,
        }
    }

    /// Count one line (without its newline) and return its severity.
    pub fn observe(&mut self, line: &[u8]) -> Option<Severity> {
        let Some(sev) = parse_severity(line) else {
            self.unknown += 1;
            return None;
        };
        self.counts[sev as usize] += 1;
        if sev >= Severity::Warn && self.keep > 0 {
            if self.recent.len() == self.keep {
                self.recent.pop_front();
            }
            self.recent.push_back(RecentLine {
                severity: sev,
                text: truncate(line, self.max_len),
            });
        }
        Some(sev)
    }

    /// Lines seen with this severity.
    pub fn count(&self, sev: Severity) -> u64 {
        self.counts[sev as usize]
    }

    /// Lines with no recognisable severity.
    pub fn unknown(&self) -> u64 {
        self.unknown
    }

    /// The kept warn/err lines, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &RecentLine> {
        self.recent.iter()
    }

    /// A serialisable snapshot.
    pub fn summary(&self) -> SeveritySummary {
        SeveritySummary {
            lines: self.counts.iter().sum::<u64>() + self.unknown,
            by_severity: Severity::ALL
                .iter()
                .map(|s| (s.as_str().to_string(), self.count(*s)))
                .collect(),
            unknown: self.unknown,
            recent: self.recent.iter().cloned().collect(),
        }
    }
}

/// Counts by severity and the last warnings/errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeveritySummary {
    /// Every line seen.
    pub lines: u64,
    /// Lines per severity, keyed `debug`, `info`, `notice`, `warn`, `err`.
    pub by_severity: std::collections::BTreeMap<String, u64>,
    /// Lines with no recognisable severity.
    pub unknown: u64,
    /// The last warn/err lines, oldest first.
    pub recent: Vec<RecentLine>,
}

fn truncate(line: &[u8], max: usize) -> String {
    let cut = line.len() > max;
    let mut s = String::from_utf8_lossy(&line[..line.len().min(max)]).into_owned();
    if cut {
        // A multi-byte character cut in half became U+FFFD; drop it.
        if s.ends_with('\u{FFFD}') {
            s.pop();
        }
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tor_and_onionbalance_lines() {
        let cases: &[(&[u8], Option<Severity>)] = &[
            (
                b"Nov 25 09:00:00.000 [notice] Tor 0.4.9.11 opening log file.",
                Some(Severity::Notice),
            ),
            (
                b"Nov 25 09:00:00.000 [debug] conn_read_callback(): socket 7 wants to read.",
                Some(Severity::Debug),
            ),
            (
                b"Nov 25 09:00:00.000 [info] circuit_build_no_more_hops(): circuit built!",
                Some(Severity::Info),
            ),
            (
                b"Nov 25 09:00:01.000 [warn] Your system clock just jumped 100 seconds forward",
                Some(Severity::Warn),
            ),
            (
                b"Nov 25 09:00:02.000 [err] Reading config failed--see warnings above.",
                Some(Severity::Err),
            ),
            (
                b"Nov 25 09:00:02.000 [warn] {BUG} tor_bug_occurred_(): Bug: x",
                Some(Severity::Warn),
            ),
            (
                b"2024-01-11 17:08:43,123 [DEBUG]: Fetching descriptor",
                Some(Severity::Debug),
            ),
            (
                b"2026/12/01 00:00:00 [error] 12#12: *1 connect() failed (111: Connection refused) while connecting to upstream",
                Some(Severity::Err),
            ),
            (
                b"2026/12/01 00:00:00 [crit] 12#12: *3 SSL_do_handshake() failed",
                Some(Severity::Err),
            ),
            (
                b"2026/12/01 00:00:00 [emerg] 12#12: bind() to unix:/p/port-80.sock failed (98: Address already in use)",
                Some(Severity::Err),
            ),
            (
                b"2026/12/01 00:00:00 [warn] 12#12: *2 an upstream response is buffered to a temporary file",
                Some(Severity::Warn),
            ),
            (
                b"2024-01-11 17:08:43,123 [INFO]: Publishing descriptor",
                Some(Severity::Info),
            ),
            (
                b"2024-01-11 17:08:43,123 [WARNING]: Could not connect to the Tor control port",
                Some(Severity::Warn),
            ),
            (
                b"2024-01-11 17:08:43,123 [ERROR]: Unable to load the key",
                Some(Severity::Err),
            ),
            (
                b"2024-01-11 17:08:43,123 [CRITICAL]: giving up",
                Some(Severity::Err),
            ),
            (b"[INFO]: Wrote master key", Some(Severity::Info)),
            (b"Traceback (most recent call last):", None),
            (b"  File \"x.py\", line 1, in <module>", None),
            (b"Nov 25 09:00:00 host Tor[123]: message", None),
            (b"", None),
            (b"[", None),
            (b"[]", None),
            (b"[warn", None),
            (b"[warningwarning]", None),
            (b"\xff\xfe[\xff]", None),
            (
                b"a very long prefix before the bracket goes past the window [warn] x",
                None,
            ),
        ];
        for (line, want) in cases {
            assert_eq!(
                parse_severity(line),
                *want,
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn ring_is_bounded_and_lines_are_cut() {
        let mut c = SeverityCounter::new(3, 60);
        for i in 0..10 {
            c.observe(format!("Nov 25 09:00:0{i}.000 [warn] problem number {i}").as_bytes());
            c.observe(b"Nov 25 09:00:00.000 [notice] fine");
        }
        c.observe(b"garbage");
        let mut long = b"Nov 25 09:00:00.000 [err] ".to_vec();
        long.extend(vec![b'x'; 1 << 20]);
        c.observe(&long);
        let mut utf8 = b"Nov 25 09:00:00.000 [err] x".to_vec();
        utf8.extend("ééééééééééééééééééé".as_bytes());
        c.observe(&utf8);
        let recent: Vec<_> = c.recent().collect();
        assert_eq!(recent.len(), 3);
        assert!(recent[0].text.ends_with("problem number 9"));
        assert_eq!(recent[1].text.chars().count(), 61);
        assert!(recent[1].text.ends_with('…'));
        assert!(!recent[2].text.contains('\u{FFFD}'), "{}", recent[2].text);
        assert!(recent[2].text.ends_with("é…"), "{}", recent[2].text);
        assert_eq!(c.count(Severity::Warn), 10);
        assert_eq!(c.count(Severity::Notice), 10);
        assert_eq!(c.count(Severity::Err), 2);
        assert_eq!(c.unknown(), 1);
        let s = c.summary();
        assert_eq!(s.lines, 23);
        assert_eq!(s.by_severity["warn"], 10);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["recent"][2]["severity"], "err");
        let mut none = SeverityCounter::new(0, 10);
        none.observe(b"x [err] y");
        assert_eq!(none.recent().count(), 0);
    }
}
