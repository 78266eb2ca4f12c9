//! A torrc reader: enough of tor's configuration syntax to find the
//! listeners, authentication and onion services of a tor instance.
//!
//! Follows man tor, "THE CONFIGURATION FILE FORMAT": one `Keyword value`
//! per line, keywords case-insensitive, `#` outside quotes starts a
//! comment, a trailing `\` continues the line, values may be quoted with C
//! escapes, `+`/`/` keyword prefixes are ignored, `%include` reads a file or
//! every file of a directory.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::Error;

/// Deepest `%include` nesting followed (tor's own limit is 31).
const MAX_INCLUDE_DEPTH: usize = 8;
/// Largest torrc file read.
const MAX_FILE: u64 = 4 << 20;

/// One `Keyword value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The keyword as written (without a `+`/`/` prefix).
    pub key: String,
    /// The value, unquoted.
    pub value: String,
    /// The file it is in.
    pub file: PathBuf,
    /// Its 1-based line number (of the first line if continued).
    pub line: usize,
}

impl Entry {
    /// `file:line`, for messages.
    pub fn location(&self) -> String {
        format!("{}:{}", self.file.display(), self.line)
    }
}

/// A parsed torrc, entries in file order (includes expanded in place).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Torrc {
    /// Every entry.
    pub entries: Vec<Entry>,
}

impl Torrc {
    /// Read and parse `path`, following `%include`.
    pub fn read(path: &Path) -> Result<Self, Error> {
        let mut t = Torrc::default();
        t.read_into(path, 0)?;
        Ok(t)
    }

    /// Parse text (no `%include`; `file` names it in locations).
    pub fn parse(text: &str, file: &Path) -> Self {
        let mut t = Torrc::default();
        for (line, key, value) in lines(text) {
            if !key.starts_with('%') {
                t.entries.push(Entry {
                    key,
                    value,
                    file: file.to_owned(),
                    line,
                });
            }
        }
        t
    }

    fn read_into(&mut self, path: &Path, depth: usize) -> Result<(), Error> {
        let text = read_bounded(path)?;
        for (line, key, value) in lines(&text) {
            if key.eq_ignore_ascii_case("%include") {
                if depth >= MAX_INCLUDE_DEPTH {
                    return Err(Error::Config {
                        path: path.to_owned(),
                        line,
                        reason: format!(
                            "%include nested more than {MAX_INCLUDE_DEPTH} deep (an include loop?)"
                        ),
                    });
                }
                let target = resolve(path, &value);
                for file in include_files(&target)? {
                    self.read_into(&file, depth + 1)?;
                }
            } else if !key.starts_with('%') {
                self.entries.push(Entry {
                    key,
                    value,
                    file: path.to_owned(),
                    line,
                });
            }
        }
        Ok(())
    }

    /// Every entry with this keyword (case-insensitive).
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.key.eq_ignore_ascii_case(key))
    }

    /// The first entry with this keyword.
    pub fn first<'a>(&'a self, key: &'a str) -> Option<&'a Entry> {
        self.all(key).next()
    }

    /// A boolean option: `Some(true)` for `1`, `Some(false)` for `0`.
    pub fn flag<'a>(&'a self, key: &'a str) -> Option<bool> {
        self.all(key).last().map(|e| e.value.trim() == "1")
    }

    /// Each `HiddenServiceDir` with the options that follow it.
    pub fn onion_services(&self) -> Vec<OnionServiceBlock> {
        let mut out: Vec<OnionServiceBlock> = Vec::new();
        for e in &self.entries {
            let k = e.key.to_ascii_lowercase();
            if k == "hiddenservicedir" {
                out.push(OnionServiceBlock {
                    dir: e.clone(),
                    options: Vec::new(),
                });
            } else if k.starts_with("hiddenservice") {
                if let Some(last) = out.last_mut() {
                    last.options.push(e.clone());
                }
            }
        }
        out
    }
}

/// One onion service of a torrc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnionServiceBlock {
    /// The `HiddenServiceDir` entry.
    pub dir: Entry,
    /// The `HiddenService*` entries after it.
    pub options: Vec<Entry>,
}

impl OnionServiceBlock {
    /// Its options with this keyword.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.options
            .iter()
            .filter(move |e| e.key.eq_ignore_ascii_case(key))
    }

    /// `HiddenServicePort` targets: (virtual port, target as written, or
    /// `127.0.0.1:VIRTPORT` when the target is omitted).
    pub fn ports(&self) -> Vec<(String, String)> {
        self.all("HiddenServicePort")
            .filter_map(|e| {
                let mut words = e.value.split_whitespace();
                let virt = words.next()?.to_owned();
                let target = words
                    .next()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("127.0.0.1:{virt}"));
                Some((virt, target))
            })
            .collect()
    }

    /// The `HiddenServiceExportCircuitID` protocol, if any.
    pub fn export_circuit_id(&self) -> Option<&Entry> {
        self.all("HiddenServiceExportCircuitID").last()
    }
}

/// A listener address from a `*Port` option.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Listen {
    /// A TCP address (a bare port means 127.0.0.1).
    Tcp(SocketAddr),
    /// A host name and port (e.g. `localhost:9035`).
    Host(String, u16),
    /// A unix socket.
    Unix(PathBuf),
    /// `auto` (tor picks a port).
    Auto,
    /// `0`: disabled.
    Disabled,
}

impl Listen {
    /// Parse the first word of a `*Port` value (tor's rules: a bare port is
    /// 127.0.0.1 for MetricsPort and ControlPort).
    pub fn parse(value: &str) -> Option<Listen> {
        let v = value.trim();
        if let Some(path) = v.strip_prefix("unix:") {
            let path = match path.strip_prefix('"') {
                Some(q) => q.split('"').next().unwrap_or(q),
                None => path.split_whitespace().next().unwrap_or(""),
            };
            return (!path.is_empty()).then(|| Listen::Unix(PathBuf::from(path)));
        }
        let word = v.split_whitespace().next()?;
        if word.eq_ignore_ascii_case("auto") {
            return Some(Listen::Auto);
        }
        if word.bytes().all(|b| b.is_ascii_digit()) {
            let port: u16 = word.parse().ok()?;
            return Some(if port == 0 {
                Listen::Disabled
            } else {
                Listen::Tcp(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
            });
        }
        if let Ok(a) = word.parse::<SocketAddr>() {
            return Some(Listen::Tcp(a));
        }
        let (host, port) = word.rsplit_once(':')?;
        let port: u16 = port.parse().ok()?;
        Some(Listen::Host(host.to_owned(), port))
    }

    /// Whether only this machine can connect (loopback or a unix socket).
    pub fn is_local(&self) -> bool {
        match self {
            Listen::Tcp(a) => a.ip().is_loopback(),
            Listen::Host(h, _) => h.eq_ignore_ascii_case("localhost"),
            Listen::Unix(_) | Listen::Disabled => true,
            // tor binds `auto` ports on 127.0.0.1.
            Listen::Auto => true,
        }
    }

    /// The TCP port, if any.
    pub fn port(&self) -> Option<u16> {
        match self {
            Listen::Tcp(a) => Some(a.port()),
            Listen::Host(_, p) => Some(*p),
            _ => None,
        }
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Host(h, p) => write!(f, "{h}:{p}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
            Listen::Auto => f.write_str("auto"),
            Listen::Disabled => f.write_str("0"),
        }
    }
}

pub(crate) fn read_bounded(path: &Path) -> Result<String, Error> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut text = String::new();
    file.take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
    if text.len() as u64 > MAX_FILE {
        return Err(Error::Config {
            path: path.to_owned(),
            line: 0,
            reason: format!("larger than {MAX_FILE} bytes: not a configuration file"),
        });
    }
    Ok(text)
}

fn resolve(from: &Path, value: &str) -> PathBuf {
    let p = PathBuf::from(value.trim());
    if p.is_absolute() {
        p
    } else {
        from.parent().unwrap_or(Path::new(".")).join(p)
    }
}

fn include_files(target: &Path) -> Result<Vec<PathBuf>, Error> {
    if target.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(target)
            .map_err(|source| Error::Read {
                path: target.to_owned(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && !p
                        .file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.'))
            })
            .collect();
        files.sort();
        Ok(files)
    } else {
        Ok(vec![target.to_owned()])
    }
}

/// (line number, keyword, value) for each non-empty logical line.
fn lines(text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        let (start, mut acc) = pending.take().unwrap_or((i + 1, String::new()));
        // A comment line inside a continuation is skipped (tor does the same).
        if !acc.is_empty() && raw.trim_start().starts_with('#') {
            pending = Some((start, acc));
            continue;
        }
        if let Some(cont) = raw.strip_suffix('\\') {
            acc.push_str(cont);
            pending = Some((start, acc));
            continue;
        }
        acc.push_str(raw);
        if let Some((k, v)) = split_line(&acc) {
            out.push((start, k, v));
        }
    }
    if let Some((start, acc)) = pending {
        if let Some((k, v)) = split_line(&acc) {
            out.push((start, k, v));
        }
    }
    out
}

fn split_line(line: &str) -> Option<(String, String)> {
    let line = strip_comment(line);
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    let (key, value) = match line.find(char::is_whitespace) {
        Some(i) => (&line[..i], line[i..].trim()),
        None => (line, ""),
    };
    let key = key.trim_start_matches(['+', '/']);
    let value = match value.strip_prefix('"') {
        Some(q) if value.len() >= 2 && value.ends_with('"') => unescape(&q[..q.len() - 1]),
        _ => value.to_owned(),
    };
    Some((key.to_owned(), value))
}

fn strip_comment(line: &str) -> &str {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '#' if !in_quotes => return &line[..i],
            _ => {}
        }
    }
    line
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(c) => out.push(c),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_keywords_comments_quotes_and_continuations() {
        let text = "# comment\n\
            MetricsPort 127.0.0.1:9035 # trailing\n\
            metricsportpolicy accept 127.0.0.1,\\\n\
            # skipped inside a continuation\n\
            \x20reject *\n\
            +ControlPort \"unix:/a b/c.sock\"\n\
            HiddenServiceDir /x/hs\n\
            HiddenServicePort 80 unix:/x/hs/port-80.sock\n\
            HiddenServiceExportCircuitID haproxy\n\
            HiddenServiceDir /x/hs2\n\
            HiddenServicePort 443\n";
        let t = Torrc::parse(text, Path::new("torrc"));
        assert_eq!(t.first("metricsport").unwrap().value, "127.0.0.1:9035");
        let policy = t.first("MetricsPortPolicy").unwrap();
        assert_eq!(policy.value, "accept 127.0.0.1, reject *");
        assert_eq!(policy.line, 3);
        assert_eq!(t.first("ControlPort").unwrap().value, "unix:/a b/c.sock");
        let hs = t.onion_services();
        assert_eq!(hs.len(), 2);
        assert_eq!(
            hs[0].ports(),
            vec![("80".into(), "unix:/x/hs/port-80.sock".into())]
        );
        assert!(hs[0].export_circuit_id().is_some());
        assert_eq!(hs[1].ports(), vec![("443".into(), "127.0.0.1:443".into())]);
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            Listen::parse("9035"),
            Some(Listen::Tcp("127.0.0.1:9035".parse().unwrap()))
        );
        assert!(Listen::parse("9035").unwrap().is_local());
        assert!(!Listen::parse("0.0.0.0:9035 prometheus").unwrap().is_local());
        assert!(!Listen::parse("[::]:9035").unwrap().is_local());
        assert!(Listen::parse("[::1]:9035").unwrap().is_local());
        assert_eq!(
            Listen::parse("unix:/p/tor-control.sock GroupWritable"),
            Some(Listen::Unix("/p/tor-control.sock".into()))
        );
        assert_eq!(Listen::parse("0"), Some(Listen::Disabled));
        assert_eq!(
            Listen::parse("localhost:9035"),
            Some(Listen::Host("localhost".into(), 9035))
        );
        assert!(Listen::parse("").is_none());
        assert!(Listen::parse("nonsense").is_none());
    }

    #[test]
    fn include_reads_files_and_directories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(
            dir.path().join("d/b.conf"),
            "MetricsPortPolicy accept 127.0.0.1\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("d/.hidden"), "MetricsPort 1.2.3.4:1\n").unwrap();
        std::fs::write(dir.path().join("torrc"), "MetricsPort 9035\n%include d\n").unwrap();
        let t = Torrc::read(&dir.path().join("torrc")).unwrap();
        assert_eq!(t.entries.len(), 2);
        std::fs::write(dir.path().join("loop"), "%include loop\n").unwrap();
        assert!(Torrc::read(&dir.path().join("loop"))
            .unwrap_err()
            .to_string()
            .contains("%include"));
    }
}
