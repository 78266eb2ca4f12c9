//! A Prometheus text format 0.0.4 parser that accepts what tor's
//! MetricsPort serves.
//!
//! tor's output breaks two rules strict parsers enforce, and this parser
//! accepts both:
//!
//! - with several onion services in one tor, every `tor_hs_*` family is
//!   printed once per service, each time with its own `# HELP` and
//!   `# TYPE` lines and not contiguously: repeated declarations of the same
//!   type are merged into one [`Family`] (samples in input order);
//! - some counters have no `_total` suffix (`tor_relay_traffic_bytes`,
//!   `tor_hs_rdv_error_count`): they stay counters whose samples have an
//!   empty suffix, so rendering gives back tor's names.
//!
//! Label values may contain escaped quotes, backslashes and newlines,
//! commas, braces and spaces (`type="Transparent pf/netfilter listener"`).
//! Input is bounded ([`Limits`]); every error names its line; the parser
//! never panics (it is fuzzed: `crates/onionwatch-metrics/fuzz`).
//!
//! ```
//! use onionwatch_metrics::parse::{parse, Limits};
//! use onionwatch_metrics::MetricType;
//! let text = concat!(
//!     "# TYPE tor_hs_intro_num_total counter\n",
//!     "tor_hs_intro_num_total{onion=\"a\"} 3\n",
//!     "# TYPE tor_hs_intro_num_total counter\n",
//!     "tor_hs_intro_num_total{onion=\"b\"} 4\n",
//! );
//! let families = parse(text, &Limits::default()).unwrap();
//! assert_eq!(families.len(), 1);
//! assert_eq!(families[0].name, "tor_hs_intro_num");
//! assert_eq!(families[0].kind, MetricType::Counter);
//! assert_eq!(families[0].samples.len(), 2);
//! ```

use std::collections::HashMap;

use crate::{is_valid_label_name, is_valid_metric_name, Family, MetricType, Sample};

/// Bounds on what [`parse`] accepts, so a broken or hostile endpoint cannot
/// make the caller allocate without limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest input in bytes (tor with 2 onion services prints ~36 KB).
    pub max_bytes: usize,
    /// Most samples in total.
    pub max_samples: usize,
    /// Most labels on one sample.
    pub max_labels: usize,
    /// Longest line in bytes.
    pub max_line: usize,
}

impl Default for Limits {
    /// 16 MiB, 200,000 samples, 64 labels per sample, 64 KiB per line.
    fn default() -> Self {
        Limits {
            max_bytes: 16 << 20,
            max_samples: 200_000,
            max_labels: 64,
            max_line: 64 << 10,
        }
    }
}

/// Why an exposition could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The input exceeds [`Limits::max_bytes`].
    #[error("the metrics text is {len} bytes, more than the limit of {limit} bytes (is this a metrics endpoint? raise the limit if it is)")]
    TooLarge {
        /// Input length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// More samples than [`Limits::max_samples`].
    #[error("line {line}: more than {limit} samples (raise the limit if this endpoint really serves that many)")]
    TooManySamples {
        /// Where the limit was reached.
        line: usize,
        /// The limit.
        limit: usize,
    },
    /// A line longer than [`Limits::max_line`].
    #[error("line {line}: {len} bytes long, more than the limit of {limit} bytes")]
    LineTooLong {
        /// The line number (1-based).
        line: usize,
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes are not UTF-8.
    #[error("line {line}: not valid UTF-8 (the Prometheus text format is UTF-8)")]
    NotUtf8 {
        /// The line number (1-based).
        line: usize,
    },
    /// A line that breaks the format.
    #[error("line {line}: {reason}")]
    Syntax {
        /// The line number (1-based).
        line: usize,
        /// What is wrong, in words.
        reason: String,
    },
}

impl ParseError {
    /// The 1-based line of the error, if it has one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ParseError::TooLarge { .. } => None,
            ParseError::TooManySamples { line, .. }
            | ParseError::LineTooLong { line, .. }
            | ParseError::NotUtf8 { line }
            | ParseError::Syntax { line, .. } => Some(*line),
        }
    }
}

/// Parse bytes (as read from the network): [`parse`] after a UTF-8 check
/// that names the first bad line.
pub fn parse_bytes(input: &[u8], limits: &Limits) -> Result<Vec<Family>, ParseError> {
    if input.len() > limits.max_bytes {
        return Err(ParseError::TooLarge {
            len: input.len(),
            limit: limits.max_bytes,
        });
    }
    match std::str::from_utf8(input) {
        Ok(text) => parse(text, limits),
        Err(e) => {
            let line = input[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            Err(ParseError::NotUtf8 { line })
        }
    }
}

/// Parse Prometheus text 0.0.4 into families, one per name, in order of
/// first appearance. Timestamps are accepted and dropped.
pub fn parse(text: &str, limits: &Limits) -> Result<Vec<Family>, ParseError> {
    if text.len() > limits.max_bytes {
        return Err(ParseError::TooLarge {
            len: text.len(),
            limit: limits.max_bytes,
        });
    }
    let mut p = Parser::default();
    for (i, raw) in text.split('\n').enumerate() {
        let line = i + 1;
        if raw.len() > limits.max_line {
            return Err(ParseError::LineTooLong {
                line,
                len: raw.len(),
                limit: limits.max_line,
            });
        }
        let l = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = l.trim_matches(|c| c == ' ' || c == '\t');
        if trimmed.is_empty() {
            continue;
        }
        let syntax = |reason: String| ParseError::Syntax { line, reason };
        if let Some(comment) = trimmed.strip_prefix('#') {
            p.comment(comment, line).map_err(syntax)?;
        } else {
            if p.samples >= limits.max_samples {
                return Err(ParseError::TooManySamples {
                    line,
                    limit: limits.max_samples,
                });
            }
            p.sample(trimmed, limits).map_err(syntax)?;
            p.samples += 1;
        }
    }
    Ok(counters_with_total(p.families))
}

/// Give a counter declared as `x_total` the family name `x` and `_total`
/// samples (what OpenMetrics wants), unless a family `x` exists too (tor
/// has both a gauge `tor_relay_congestion_control` and a counter
/// `tor_relay_congestion_control_total`): that one keeps its full name.
fn counters_with_total(mut families: Vec<Family>) -> Vec<Family> {
    let names: std::collections::HashSet<String> =
        families.iter().map(|f| f.name.clone()).collect();
    for f in &mut families {
        if f.kind != MetricType::Counter || !f.samples.iter().all(|s| s.suffix.is_empty()) {
            continue;
        }
        if let Some(base) = f.name.strip_suffix("_total") {
            if !base.is_empty() && !names.contains(base) {
                f.name = base.to_owned();
                for s in &mut f.samples {
                    s.suffix = "_total".to_owned();
                }
            }
        }
    }
    families
}

#[derive(Default)]
struct Parser {
    families: Vec<Family>,
    /// Family name → (index, line of its first TYPE, or 0 if implicit).
    by_name: HashMap<String, (usize, usize)>,
    /// Sample name → (family index, suffix).
    by_sample: HashMap<String, (usize, &'static str)>,
    /// HELP seen before the family exists.
    pending_help: HashMap<String, String>,
    /// Name → family index, for the names a family takes when written
    /// without holding samples of that name (see [`claim`]).
    claimed: HashMap<String, usize>,
    samples: usize,
}

/// The name a `kind` family called `name` takes when rendered and read
/// again, beyond its sample names: the 0.0.4 text of a counter `x` whose
/// samples all end in `_total` says `# TYPE x_total counter`, which makes
/// `x_total_total` one of its sample names. Another family of that name
/// would make our own rendering unreadable, so it is refused.
fn claim(name: &str, kind: MetricType) -> Option<String> {
    (kind == MetricType::Counter).then(|| format!("{name}_total_total"))
}

fn type_from_str(s: &str) -> Option<MetricType> {
    Some(match s {
        "counter" => MetricType::Counter,
        "gauge" => MetricType::Gauge,
        "histogram" => MetricType::Histogram,
        "summary" => MetricType::Summary,
        "untyped" | "unknown" => MetricType::Unknown,
        _ => return None,
    })
}

/// Sample-name suffixes a `kind` family owns besides its bare name (a
/// counter `x` owns `x_total`, as in OpenMetrics).
fn suffixes(kind: MetricType) -> &'static [&'static str] {
    match kind {
        MetricType::Histogram => &["_bucket", "_sum", "_count"],
        MetricType::Summary => &["_sum", "_count"],
        MetricType::Counter => &["_total"],
        _ => &[],
    }
}

fn type_name(t: MetricType) -> &'static str {
    match t {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
        MetricType::Summary => "summary",
        MetricType::Info => "info",
        MetricType::StateSet => "stateset",
        MetricType::Unknown => "untyped",
    }
}

impl Parser {
    fn comment(&mut self, rest: &str, line: usize) -> Result<(), String> {
        let rest = rest.trim_start_matches([' ', '\t']);
        let (keyword, rest) = split_word(rest);
        match keyword {
            "HELP" => {
                let (name, help) = split_word(rest);
                check_name(name)?;
                let help = unescape_help(help);
                match self.by_name.get(name) {
                    Some(&(i, _)) => {
                        if self.families[i].help.is_empty() {
                            self.families[i].help = help;
                        }
                    }
                    None => {
                        self.pending_help.entry(name.to_owned()).or_insert(help);
                    }
                }
                Ok(())
            }
            "TYPE" => {
                let (name, rest) = split_word(rest);
                check_name(name)?;
                let (kind, extra) = split_word(rest);
                let kind = type_from_str(kind).ok_or_else(|| {
                    format!("unknown metric type {kind:?} for {name} (expected counter, gauge, histogram, summary or untyped)")
                })?;
                if !extra.is_empty() {
                    return Err(format!(
                        "unexpected text after the type of {name}: {extra:?}"
                    ));
                }
                self.declare(name, kind, line)
            }
            // Any other comment is allowed and ignored.
            _ => Ok(()),
        }
    }

    fn declare(&mut self, name: &str, kind: MetricType, line: usize) -> Result<(), String> {
        // A family of another name cannot hold this one's samples: the
        // encoders would write two families under one name.
        if let Some((taken, &(_, first))) = suffixes(kind)
            .iter()
            .map(|s| format!("{name}{s}"))
            .find_map(|s| self.by_name.get_key_value(&s))
        {
            let at = if first == 0 {
                "by earlier samples".to_owned()
            } else {
                format!("on line {first}")
            };
            return Err(format!(
                "{name} is declared as {} here, but {taken}, one of its sample names, is a family of its own {at}",
                type_name(kind)
            ));
        }
        if let Some(&(i, first)) = self.by_name.get(name) {
            let existing = self.families[i].kind;
            if existing == kind {
                self.register_suffixes(name, kind, i);
                return Ok(());
            }
            if first == 0 {
                // Samples came before any TYPE: they were untyped so far.
                if existing == MetricType::Unknown
                    && self.families[i].samples.iter().all(|s| s.suffix.is_empty())
                {
                    self.check_claim(name, kind)?;
                    self.families[i].kind = kind;
                    self.by_name.insert(name.to_owned(), (i, line));
                    self.register_suffixes(name, kind, i);
                    return Ok(());
                }
            }
            return Err(format!(
                "{name} is declared as {} here but as {} {}",
                type_name(kind),
                type_name(existing),
                if first == 0 {
                    "by earlier samples".to_owned()
                } else {
                    format!("on line {first}")
                }
            ));
        }
        if let Some(&(j, _)) = self.by_sample.get(name) {
            return Err(format!(
                "{name} clashes with the samples of {} declared earlier",
                self.families[j].name
            ));
        }
        self.check_unclaimed(name)?;
        self.check_claim(name, kind)?;
        let help = self.pending_help.remove(name).unwrap_or_default();
        let i = self.families.len();
        self.families.push(Family::new(name, help, kind));
        self.by_name.insert(name.to_owned(), (i, line));
        self.register_suffixes(name, kind, i);
        Ok(())
    }

    /// `name` is no name an earlier family takes (see [`claim`]).
    fn check_unclaimed(&self, name: &str) -> Result<(), String> {
        match self.claimed.get(name) {
            Some(&j) => Err(format!(
                "{name} clashes with the samples of {} declared earlier (a {} written as {}_total)",
                self.families[j].name,
                type_name(self.families[j].kind),
                self.families[j].name
            )),
            None => Ok(()),
        }
    }

    /// The name a `kind` family `name` takes (see [`claim`]) is no earlier
    /// family's.
    fn check_claim(&self, name: &str, kind: MetricType) -> Result<(), String> {
        let Some(c) = claim(name, kind) else {
            return Ok(());
        };
        if self.by_sample.contains_key(&c) || self.by_name.contains_key(&c) {
            return Err(format!(
                "{name} is declared as {} here, but {c}, a name it takes when written as {name}_total, is a family of its own",
                type_name(kind)
            ));
        }
        Ok(())
    }

    fn register_suffixes(&mut self, family: &str, kind: MetricType, i: usize) {
        if let Some(c) = claim(family, kind) {
            self.claimed.entry(c).or_insert(i);
        }
        if kind != MetricType::Histogram {
            self.by_sample.entry(family.to_owned()).or_insert((i, ""));
        }
        for &suffix in suffixes(kind) {
            self.by_sample
                .entry(format!("{family}{suffix}"))
                .or_insert((i, suffix));
        }
    }

    fn sample(&mut self, line: &str, limits: &Limits) -> Result<(), String> {
        let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
        let name = &line[..name_end];
        check_name(name)?;
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(after) = rest.strip_prefix('{') {
            rest = parse_labels(after, &mut labels, limits.max_labels)?;
        }
        let rest = rest.trim_start_matches([' ', '\t']);
        if rest.is_empty() {
            return Err(format!("sample {name} has no value"));
        }
        let (value, rest) = split_word(rest);
        let value =
            parse_value(value).ok_or_else(|| format!("invalid value {value:?} for {name}"))?;
        let (timestamp, extra) = split_word(rest);
        if !timestamp.is_empty() {
            let digits = timestamp.strip_prefix('-').unwrap_or(timestamp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 19
            {
                return Err(format!("invalid timestamp {timestamp:?} for {name} (expected milliseconds as an integer)"));
            }
        }
        if !extra.is_empty() {
            return Err(format!(
                "unexpected text after the sample of {name}: {extra:?}"
            ));
        }
        let (i, suffix) = match self.by_sample.get(name) {
            Some(&found) => found,
            None if self.by_name.contains_key(name) => {
                return Err(format!(
                    "sample {name} does not fit the {} family {name}",
                    type_name(self.families[self.by_name[name].0].kind)
                ));
            }
            None => {
                // An undeclared sample: its own untyped family.
                self.check_unclaimed(name)?;
                let i = self.families.len();
                let help = self.pending_help.remove(name).unwrap_or_default();
                self.families
                    .push(Family::new(name, help, MetricType::Unknown));
                self.by_name.entry(name.to_owned()).or_insert((i, 0));
                self.by_sample.insert(name.to_owned(), (i, ""));
                (i, "")
            }
        };
        let family = &mut self.families[i];
        if family.kind == MetricType::Histogram
            && suffix == "_bucket"
            && !labels.iter().any(|(k, _)| k == "le")
        {
            return Err(format!("histogram bucket {name} has no le label"));
        }
        if family.kind == MetricType::Summary && suffix.is_empty() {
            match labels.iter().find(|(k, _)| k == "quantile") {
                None => return Err(format!("summary sample {name} has no quantile label")),
                Some((_, q)) if parse_value(q).is_none() => {
                    return Err(format!(
                        "summary sample {name} has quantile {q:?}, not a number"
                    ))
                }
                Some(_) => {}
            }
        }
        family.samples.push(Sample {
            suffix: suffix.to_owned(),
            labels,
            value,
        });
        Ok(())
    }
}

fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("missing metric name".into());
    }
    if !is_valid_metric_name(name) {
        return Err(format!("invalid metric name {:?}", truncate(name)));
    }
    Ok(())
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// First word and the rest (leading blanks of the rest removed).
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start_matches([' ', '\t']);
    match s.find([' ', '\t']) {
        Some(i) => (&s[..i], s[i..].trim_start_matches([' ', '\t'])),
        None => (s, ""),
    }
}

/// Parse `name="value",...}` (after the `{`); return what follows the `}`.
fn parse_labels<'a>(
    mut s: &'a str,
    labels: &mut Vec<(String, String)>,
    max: usize,
) -> Result<&'a str, String> {
    loop {
        s = s.trim_start_matches([' ', '\t']);
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        let name_end = s
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or("unterminated label set (missing `}`)")?;
        let name = &s[..name_end];
        if !is_valid_label_name(name) {
            return Err(format!("invalid label name {:?}", truncate(name)));
        }
        s = s[name_end..].trim_start_matches([' ', '\t']);
        s = s
            .strip_prefix('=')
            .ok_or_else(|| format!("label {name} has no `=`"))?
            .trim_start_matches([' ', '\t']);
        s = s
            .strip_prefix('"')
            .ok_or_else(|| format!("the value of label {name} is not quoted"))?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("the value of label {name} has no closing quote")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    // tor does not escape: keep an unknown escape as written.
                    Some((_, c)) => {
                        value.push('\\');
                        value.push(c);
                    }
                    None => return Err(format!("the value of label {name} has no closing quote")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        s = &s[end + 1..];
        if labels.iter().any(|(k, _)| k == name) {
            return Err(format!("label {name} appears twice"));
        }
        if labels.len() >= max {
            return Err(format!("more than {max} labels on one sample"));
        }
        labels.push((name.to_owned(), value));
        s = s.trim_start_matches([' ', '\t']);
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err(format!("expected `,` or `}}` after label {name}"));
        }
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => return Some(f64::INFINITY),
        "-Inf" | "-inf" => return Some(f64::NEG_INFINITY),
        "NaN" | "nan" => return Some(f64::NAN),
        _ => {}
    }
    // Rust also accepts "infinity" and the like; keep to decimal numbers.
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return None;
    }
    s.parse().ok()
}

fn unescape_help(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('\\') => out.push('\\'),
                Some(c) => {
                    out.push('\\');
                    out.push(c);
                }
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{render, Format};

    fn p(text: &str) -> Result<Vec<Family>, ParseError> {
        parse(text, &Limits::default())
    }

    #[test]
    fn repeated_declarations_merge_and_counters_keep_their_names() {
        let text = "# HELP tor_hs_rdv_error_count Total number of rendezvous errors\n\
# TYPE tor_hs_rdv_error_count counter\n\
tor_hs_rdv_error_count{onion=\"a\",reason=\"retry\"} 1\n\
# HELP tor_relay_traffic_bytes Traffic related counters\n\
# TYPE tor_relay_traffic_bytes counter\n\
tor_relay_traffic_bytes{direction=\"read\"} 10\n\
# HELP tor_hs_rdv_error_count Total number of rendezvous errors\n\
# TYPE tor_hs_rdv_error_count counter\n\
tor_hs_rdv_error_count{onion=\"b\",reason=\"retry\"} 2\n";
        let fams = p(text).unwrap();
        assert_eq!(fams.len(), 2);
        assert_eq!(fams[0].name, "tor_hs_rdv_error_count");
        assert_eq!(fams[0].samples.len(), 2);
        assert_eq!(fams[0].samples[1].labels[0], ("onion".into(), "b".into()));
        let out = render(&fams, Format::Prometheus);
        assert_eq!(
            out.matches("# TYPE tor_hs_rdv_error_count counter").count(),
            1
        );
        assert!(
            out.contains("tor_relay_traffic_bytes{direction=\"read\"} 10\n"),
            "{out}"
        );
    }

    #[test]
    fn histograms_keep_their_structure() {
        let text = "# TYPE tor_hs_intro_circ_build_time histogram\n\
tor_hs_intro_circ_build_time_bucket{onion=\"a\",le=\"1000.00\"} 6\n\
tor_hs_intro_circ_build_time_bucket{onion=\"a\",le=\"+Inf\"} 6\n\
tor_hs_intro_circ_build_time_sum{onion=\"a\"} 768\n\
tor_hs_intro_circ_build_time_count{onion=\"a\"} 6\n";
        let fams = p(text).unwrap();
        assert_eq!(fams.len(), 1);
        let f = &fams[0];
        assert_eq!(f.kind, MetricType::Histogram);
        let suffixes: Vec<&str> = f.samples.iter().map(|s| s.suffix.as_str()).collect();
        assert_eq!(suffixes, ["_bucket", "_bucket", "_sum", "_count"]);
        assert_eq!(
            render(&fams, Format::Prometheus),
            format!("# HELP tor_hs_intro_circ_build_time \n{text}")
        );
    }

    #[test]
    fn summaries_keep_quantiles_sum_and_count() {
        let text = "# HELP rpc_seconds RPC latency.\n\
# TYPE rpc_seconds summary\n\
rpc_seconds{service=\"a\",quantile=\"0.5\"} 0.25\n\
rpc_seconds{service=\"a\",quantile=\"0.99\"} 1.5\n\
rpc_seconds_sum{service=\"a\"} 12.75\n\
rpc_seconds_count{service=\"a\"} 30\n\
# TYPE other gauge\n\
other 1\n\
# HELP rpc_seconds RPC latency.\n\
# TYPE rpc_seconds summary\n\
rpc_seconds{service=\"b\",quantile=\"NaN\"} NaN\n\
rpc_seconds_sum{service=\"b\"} 0\n\
rpc_seconds_count{service=\"b\"} 0\n";
        let fams = p(text).unwrap();
        assert_eq!(fams.len(), 2);
        let f = &fams[0];
        assert_eq!(
            (f.name.as_str(), f.kind),
            ("rpc_seconds", MetricType::Summary)
        );
        let suffixes: Vec<&str> = f.samples.iter().map(|s| s.suffix.as_str()).collect();
        assert_eq!(suffixes, ["", "", "_sum", "_count", "", "_sum", "_count"]);
        assert_eq!(f.samples[1].labels[1], ("quantile".into(), "0.99".into()));
        let out = render(&fams, Format::Prometheus);
        assert_eq!(out.matches("# TYPE rpc_seconds summary\n").count(), 1);
        assert!(out.contains("rpc_seconds{service=\"a\",quantile=\"0.99\"} 1.5\nrpc_seconds_sum{service=\"a\"} 12.75\nrpc_seconds_count{service=\"a\"} 30\nrpc_seconds{service=\"b\""), "{out}");
        // Parsed again, it renders the same (NaN != NaN rules out comparing families).
        assert_eq!(render(&p(&out).unwrap(), Format::Prometheus), out);
    }

    #[test]
    fn label_values_with_quotes_commas_backslashes_and_braces() {
        let text = "m{a=\"x,y\",b=\"q\\\"uote\",c=\"back\\\\slash\",d=\"n\\nl\",e=\"}{ =\",f=\"Transparent pf/netfilter listener\",} 1 1700000000000\n";
        let fams = p(text).unwrap();
        let labels = &fams[0].samples[0].labels;
        let values: Vec<&str> = labels.iter().map(|(_, v)| v.as_str()).collect();
        assert_eq!(
            values,
            [
                "x,y",
                "q\"uote",
                "back\\slash",
                "n\nl",
                "}{ =",
                "Transparent pf/netfilter listener"
            ]
        );
        // Re-rendered and parsed again: the same values.
        let again = p(&render(&fams, Format::Prometheus)).unwrap();
        assert_eq!(again[0].samples[0].labels, *labels);
    }

    #[test]
    fn untyped_help_and_values() {
        let fams =
            p("# HELP up Whether it is up.\nup 1\nx NaN\ny +Inf\nz -1.5e3\n# a free comment\n\n")
                .unwrap();
        assert_eq!(fams.len(), 4);
        assert_eq!(fams[0].help, "Whether it is up.");
        assert_eq!(fams[0].kind, MetricType::Unknown);
        assert!(fams[1].samples[0].value.is_nan());
        assert_eq!(fams[2].samples[0].value, f64::INFINITY);
        assert_eq!(fams[3].samples[0].value, -1500.0);
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&str, usize, &str)] = &[
            ("ok 1\nbad{ 1\n", 2, "label"),
            ("a 1\n\n9x 1\n", 3, "invalid metric name"),
            ("m{a=\"b} 1\n", 1, "closing quote"),
            ("m{a=b} 1\n", 1, "not quoted"),
            ("m{a=\"1\",a=\"2\"} 1\n", 1, "twice"),
            ("m 1 2 3\n", 1, "unexpected text"),
            ("m one\n", 1, "invalid value"),
            ("m infinity\n", 1, "invalid value"),
            ("m\n", 1, "no value"),
            ("# TYPE m bogus\n", 1, "unknown metric type"),
            ("# TYPE m gauge\n# TYPE m counter\n", 2, "line 1"),
            ("# TYPE h histogram\nh_bucket 1\n", 2, "no le"),
            ("m{9=\"x\"} 1\n", 1, "invalid label name"),
            ("m 1 12ab\n", 1, "timestamp"),
            (
                "# TYPE s summary\ns_sum 1\ns{a=\"b\"} 1\n",
                3,
                "no quantile",
            ),
            (
                "# TYPE s summary\ns{quantile=\"high\"} 1\n",
                2,
                "not a number",
            ),
            ("# TYPE s summary\ns{quantile=\"\"} 1\n", 2, "not a number"),
            ("# TYPE s summary\ns 1\n", 2, "no quantile"),
            ("# TYPE s summary\n# TYPE s_count gauge\n", 2, "clashes"),
            // Found by the exposition fuzz target: a counter s is written
            // `# TYPE s_total counter`, so s_total_total is its name too.
            ("#TYPE s counter\ns_total_total\t2\n", 2, "clashes"),
            (
                "# TYPE s counter\n# TYPE s_total_total gauge\n",
                2,
                "clashes",
            ),
            (
                "s_total_total 2\n# TYPE s counter\n",
                2,
                "family of its own",
            ),
            (
                "s_total_total 2\ns 1\n# TYPE s counter\n",
                3,
                "family of its own",
            ),
            ("# TYPE s summary\n# TYPE s histogram\n", 2, "line 1"),
        ];
        for (text, line, needle) in cases {
            let err = p(text).unwrap_err();
            assert_eq!(err.line(), Some(*line), "{text:?}: {err}");
            assert!(err.to_string().contains(needle), "{text:?}: {err}");
            assert!(
                err.to_string().starts_with(&format!("line {line}:")),
                "{err}"
            );
        }
    }

    #[test]
    fn limits_are_enforced() {
        let small = Limits {
            max_bytes: 10,
            ..Limits::default()
        };
        assert!(matches!(
            parse("a 1\nb 2\nc 3\n", &small),
            Err(ParseError::TooLarge { .. })
        ));
        let few = Limits {
            max_samples: 2,
            ..Limits::default()
        };
        assert_eq!(parse("a 1\nb 2\nc 3\n", &few).unwrap_err().line(), Some(3));
        let short = Limits {
            max_line: 5,
            ..Limits::default()
        };
        assert!(matches!(
            parse("a 1\nabcdef 1\n", &short),
            Err(ParseError::LineTooLong { line: 2, .. })
        ));
        let labels = Limits {
            max_labels: 1,
            ..Limits::default()
        };
        assert!(parse("m{a=\"1\",b=\"2\"} 1\n", &labels).is_err());
        assert_eq!(
            parse_bytes(b"a 1\nb \xff\n", &Limits::default()).unwrap_err(),
            ParseError::NotUtf8 { line: 2 }
        );
    }

    #[test]
    fn hostile_inputs_never_panic() {
        let mut inputs: Vec<String> = vec![
            "{".into(),
            "}".into(),
            "#".into(),
            "# TYPE".into(),
            "# HELP".into(),
            "# TYPE  ".into(),
            "m{".into(),
            "m{a".into(),
            "m{a=".into(),
            "m{a=\"".into(),
            "m{a=\"\\".into(),
            "m{a=\"é\\é\"} 1".into(),
            "é 1".into(),
            "m{,} 1".into(),
            "m{} 1".into(),
            "m{}1".into(),
            "\r\n\r\n".into(),
            "# TYPE x_total counter\n# TYPE x counter\nx_total 1\nx 2".into(),
            "# TYPE h histogram\n# TYPE h_count gauge\nh_count 1".into(),
            "# TYPE _total counter\n_total 1".into(),
            "m 1e999999".into(),
            "m --1".into(),
            "m 1 -".into(),
            "# TYPE s summary\ns{quantile=\"0.5\",quantile=\"0.9\"} 1".into(),
            "# TYPE s summary\ns_bucket{le=\"1\"} 1\ns_sum{quantile=\"x\"} 1".into(),
            "s_sum 1\n# TYPE s summary\ns{quantile=\"1e999\"} 1".into(),
            "# TYPE s summary\ns{quantile=\"0.5\"".into(),
        ];
        inputs.push("m{".to_owned() + &"a=\"b\",".repeat(1000) + "} 1");
        inputs.push("x".repeat(100_000));
        for text in &inputs {
            let _ = p(text);
            for cut in 0..text.len().min(64) {
                if text.is_char_boundary(cut) {
                    let _ = p(&text[..cut]);
                }
            }
        }
    }

    #[test]
    fn counter_declared_with_and_without_total() {
        let fams = p("# HELP x_total Things.\n# TYPE x_total counter\nx_total 1\n# TYPE x_total counter\nx_total 2\n").unwrap();
        assert_eq!(fams[0].name, "x");
        assert_eq!(fams[0].help, "Things.");
        assert!(fams[0].samples.iter().all(|s| s.suffix == "_total"));
        let out = render(&fams, Format::OpenMetrics);
        assert!(out.contains("# TYPE x counter\n"), "{out}");
        assert!(out.contains("x_total 2\n"), "{out}");
    }

    /// Found by the `exposition` fuzz target: these parsed, but rendered
    /// two families under one name, which did not parse again.
    #[test]
    fn a_family_cannot_take_another_familys_sample_names() {
        for (text, taken) in [
            ("x_total 1\n#TYPE x counter\n", "x_total"),
            (
                "# TYPE x_total gauge\nx_total 1\n# TYPE x counter\n",
                "x_total",
            ),
            ("h_bucket 1\n# TYPE h histogram\n", "h_bucket"),
            ("s_sum 1\n# TYPE s summary\n", "s_sum"),
        ] {
            let e = p(text).unwrap_err();
            assert!(e.to_string().contains(taken), "{text:?}: {e}");
        }
        // A counter x declared first owns x_total samples, and renders and
        // parses back to the same family.
        let fams = p("# TYPE x counter\nx_total 1\n").unwrap();
        assert_eq!(fams.len(), 1);
        assert_eq!(
            (fams[0].name.as_str(), fams[0].kind),
            ("x", MetricType::Counter)
        );
        assert_eq!(fams[0].samples[0].suffix, "_total");
        let again = p(&render(&fams, Format::Prometheus)).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].name, "x");
        assert_eq!(again[0].samples, fams[0].samples);
    }

    #[test]
    fn samples_before_type_become_typed() {
        let fams = p("m 1\n# TYPE m gauge\nm 2\n").unwrap();
        assert_eq!(fams.len(), 1);
        assert_eq!(fams[0].kind, MetricType::Gauge);
        assert_eq!(fams[0].samples.len(), 2);
    }
}
