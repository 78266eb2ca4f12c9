//! Follow log files as they grow, across rotations and restarts.
//!
//! A [`Tailer`] follows every file matched by a list of patterns (paths, or
//! paths whose last component holds `*` / `?` wildcards, re-expanded every
//! [`TailConfig::rescan_interval`] so new files are picked up) by polling
//! their metadata: no inotify, portable, and cheap at the rates logs are
//! rotated. The caller drives it: each [`Tailer::poll`] reads at most
//! [`TailConfig::batch_bytes`] and hands every complete line to a callback,
//! so the reader never runs ahead of the consumer and memory stays bounded
//! (one read buffer of [`TailConfig::max_line`] plus 64 KiB) whatever the log
//! rate. Lines longer than `max_line` are reported as [`Line::TooLong`] and
//! skipped without being buffered, as [`crate::lines::LineReader`] does.
//!
//! What happens to a followed path:
//!
//! - **rename and create** (logrotate's default, `create`): the path now
//!   names another file. The old file stays open and is drained to its end
//!   (the writer may still append to it until it reopens its log), then it
//!   is closed once it has been idle for [`TailConfig::rotate_grace`]; the
//!   new file is read from its start meanwhile. No line is lost.
//! - **copytruncate**: the file is shorter than the position reached, or its
//!   first bytes changed (its fingerprint): it is read again from 0. Lines
//!   written between logrotate's copy and its truncation are lost by
//!   copytruncate's own design.
//! - **deletion, then re-creation**: like a rename; the deleted file is
//!   drained through the open descriptor.
//! - **a partial last line** (the writer has not written the newline yet) is
//!   never handed out until its newline arrives, or until the file is
//!   finished (rotated away or deleted, and idle for the grace period).
//!
//! A file is only known once a poll has opened it: a file created *and*
//! rotated away between two polls (rotation faster than the poll interval)
//! is never read.
//!
//! **Resuming** ([`Tailer::state`], [`TailState::save`]): per path, the
//! device, inode, position and a fingerprint (a hash of the first
//! [`TailConfig::fingerprint_len`] bytes, or fewer for a shorter file). The
//! state saved after a [`Tailer::poll`] returns covers exactly the lines the
//! callback has been given, so a consumer that processes every line inside
//! the callback and saves the state after the poll resumes with no line lost
//! and none counted twice. On restart ([`Tailer::with_state`]) a file with
//! the same device, inode and fingerprint, at least as long as the saved
//! position, resumes there; a file that was rotated while we were stopped is
//! looked for by inode in the same directory and its rest drained; anything
//! else is read from 0. The state file is JSON, written to a temporary file
//! and renamed over the old one.
//!
//! ```
//! use onionwatch_logs::lines::Line;
//! use onionwatch_logs::tail::{TailConfig, Tailer};
//! # let dir = std::env::temp_dir().join(format!("tail-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let log = dir.join("access.log");
//! std::fs::write(&log, "one\ntwo\npart").unwrap();
//! let mut tailer = Tailer::new(TailConfig::default(), vec![log.clone()]);
//! let mut seen = Vec::new();
//! tailer.poll(&mut |event| {
//!     if let Line::Complete(l) = event.line {
//!         seen.push(String::from_utf8_lossy(l).into_owned());
//!     }
//! });
//! // The partial last line waits for its newline.
//! assert_eq!(seen, ["one", "two"]);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```

mod glob;
mod handle;
mod state;

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::lines::{Line, DEFAULT_MAX_LINE};
use glob::{glob_match, is_glob};
use handle::{fingerprint, Handle};
pub use state::{FilePosition, StateError, TailState};

/// The default length of the fingerprint prefix.
pub const DEFAULT_FINGERPRINT_LEN: usize = 256;

/// Tunables of a [`Tailer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailConfig {
    /// Time between two polls when no file grew (for callers that loop on
    /// [`Tailer::poll`]; the tailer itself never sleeps). Default 250 ms.
    pub poll_interval: Duration,
    /// Time between two expansions of the patterns. Default 5 s.
    pub rescan_interval: Duration,
    /// Longest line handed out whole; longer ones are [`Line::TooLong`].
    /// Default [`DEFAULT_MAX_LINE`].
    pub max_line: usize,
    /// Most bytes read by one [`Tailer::poll`]. Default 1 MiB.
    pub batch_bytes: u64,
    /// How long a rotated-away or deleted file must stay idle (no growth)
    /// before it is closed and its partial last line handed out: time for
    /// the writer to reopen its log (logrotate's postrotate reload).
    /// Default 30 s.
    pub rotate_grace: Duration,
    /// Bytes hashed into a file's fingerprint. Default 256.
    pub fingerprint_len: usize,
    /// Files found by the first scan are followed from their end rather than
    /// read from the start (files appearing later are always read from the
    /// start; files in a loaded state resume where they were). Default false.
    pub start_at_end: bool,
}

impl Default for TailConfig {
    fn default() -> Self {
        TailConfig {
            poll_interval: Duration::from_millis(250),
            rescan_interval: Duration::from_secs(5),
            max_line: DEFAULT_MAX_LINE,
            batch_bytes: 1 << 20,
            rotate_grace: Duration::from_secs(30),
            fingerprint_len: DEFAULT_FINGERPRINT_LEN,
            start_at_end: false,
        }
    }
}

/// One line handed out by [`Tailer::poll`].
#[derive(Debug, Clone, Copy)]
pub struct TailEvent<'a> {
    /// Index of the pattern that matched the file (in the order given to
    /// [`Tailer::new`]).
    pub pattern: usize,
    /// The path the file was followed under.
    pub path: &'a Path,
    /// The line (without its newline), or the length of an overlong one.
    pub line: Line<'a>,
}

/// Counters of a tailer's health since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TailStats {
    /// Lines handed out (overlong ones included).
    pub lines: u64,
    /// Lines longer than the limit, skipped.
    pub lines_too_long: u64,
    /// Bytes consumed.
    pub bytes: u64,
    /// Files open now (followed, or rotated away and being drained).
    pub files: u64,
    /// Followed files that were renamed away or deleted.
    pub rotations: u64,
    /// Followed files that shrank or whose first bytes changed, read again
    /// from the start.
    pub truncations: u64,
    /// Errors opening, examining or reading a file (the file is tried again
    /// at the next poll).
    pub read_errors: u64,
}

/// A followed path: its current file and files rotated away from it that
/// are still being drained, oldest first.
#[derive(Debug)]
struct Followed {
    pattern: usize,
    current: Option<Handle>,
    retired: Vec<Handle>,
    /// Whether the last scan still matched it (globs only).
    matched: bool,
}

/// Follows files; see the [module documentation](self).
#[derive(Debug)]
pub struct Tailer {
    config: TailConfig,
    patterns: Vec<PathBuf>,
    files: BTreeMap<PathBuf, Followed>,
    /// Positions loaded from a state, used when a path is first opened.
    resume: BTreeMap<PathBuf, FilePosition>,
    last_scan: Option<Instant>,
    first_scan: bool,
    buf: Vec<u8>,
    stats: TailStats,
    cursor: usize,
    last_error: Option<String>,
}

impl Tailer {
    /// Follow the files matching `patterns`: paths, or paths whose last
    /// component has `*` (any run of characters) or `?` (one character).
    pub fn new(config: TailConfig, patterns: Vec<PathBuf>) -> Tailer {
        let chunk = config.max_line.saturating_add(1).max(64 * 1024);
        Tailer {
            config,
            patterns,
            files: BTreeMap::new(),
            resume: BTreeMap::new(),
            last_scan: None,
            first_scan: true,
            buf: vec![0; chunk],
            stats: TailStats::default(),
            cursor: 0,
            last_error: None,
        }
    }

    /// Like [`Tailer::new`], resuming from a saved state.
    pub fn with_state(config: TailConfig, patterns: Vec<PathBuf>, state: TailState) -> Tailer {
        let mut t = Tailer::new(config, patterns);
        t.resume = state
            .files
            .into_iter()
            .map(|f| (f.path.clone(), f))
            .collect();
        t
    }

    /// The configuration.
    pub fn config(&self) -> &TailConfig {
        &self.config
    }

    /// The patterns followed.
    pub fn patterns(&self) -> &[PathBuf] {
        &self.patterns
    }

    /// Replace the patterns (e.g. after a rediscovery); paths no longer
    /// matched are dropped at the next poll once drained, new ones are
    /// picked up then.
    pub fn set_patterns(&mut self, patterns: Vec<PathBuf>) {
        if patterns != self.patterns {
            self.patterns = patterns;
            self.last_scan = None;
        }
    }

    fn error(&mut self, path: &Path, what: &str, e: &io::Error) {
        self.stats.read_errors += 1;
        let hint = if e.kind() == io::ErrorKind::PermissionDenied {
            " (let this user read it: nginx and tor logs are often readable only by their owner or the adm group)"
        } else {
            ""
        };
        self.last_error = Some(format!("cannot {what} {}: {e}{hint}", path.display()));
    }

    /// The last error (what failed on which file, and a hint), if any; see
    /// [`TailStats::read_errors`] for how many.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// Health counters.
    pub fn stats(&self) -> TailStats {
        let mut s = self.stats;
        s.files = self
            .files
            .values()
            .map(|f| f.retired.len() as u64 + u64::from(f.current.is_some()))
            .sum();
        s
    }

    /// The position of every followed file: everything handed out by the
    /// polls that have returned. Save it after processing those lines.
    pub fn state(&self) -> TailState {
        let mut files: Vec<FilePosition> = self
            .files
            .iter()
            // A path whose file was renamed away and not yet re-created keeps
            // that file's position: a restart then finds it by inode.
            .filter_map(|(p, f)| {
                f.current
                    .as_ref()
                    .or(f.retired.last())
                    .map(|h| h.position(p))
            })
            .collect();
        // Keep positions of paths not open yet (a file briefly missing, e.g.
        // renamed and not yet re-created), so a restart in between still
        // finds the old file's rest; drop those no pattern covers any more.
        for (p, pos) in &self.resume {
            let open = self
                .files
                .get(p)
                .is_some_and(|f| f.current.is_some() || !f.retired.is_empty());
            if !open && self.covers(p) {
                files.push(pos.clone());
            }
        }
        TailState { version: 1, files }
    }

    /// Whether a pattern names or matches `path`.
    fn covers(&self, path: &Path) -> bool {
        self.patterns.iter().any(|pat| {
            if !is_glob(pat) {
                return pat == path;
            }
            let name = pat.file_name().unwrap_or_default().as_encoded_bytes();
            pat.parent() == path.parent()
                && path
                    .file_name()
                    .is_some_and(|n| glob_match(name, n.as_encoded_bytes()))
        })
    }

    fn scan(&mut self) {
        let mut found: Vec<(PathBuf, usize)> = Vec::new();
        for (i, pat) in self.patterns.iter().enumerate() {
            if !is_glob(pat) {
                found.push((pat.clone(), i));
                continue;
            }
            let dir = match pat.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            let name = pat.file_name().unwrap_or_default().as_encoded_bytes();
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for e in entries.flatten() {
                if glob_match(name, e.file_name().as_encoded_bytes())
                    && e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink())
                {
                    found.push((dir.join(e.file_name()), i));
                }
            }
        }
        for f in self.files.values_mut() {
            f.matched = false;
        }
        for (path, pattern) in found {
            let f = self.files.entry(path).or_insert(Followed {
                pattern,
                current: None,
                retired: Vec::new(),
                matched: true,
            });
            f.matched = true;
            f.pattern = pattern;
        }
        // A path that still exists but no pattern covers any more (the
        // patterns changed): stop following it. A path that vanished keeps
        // its entry until its files are drained.
        self.files
            .retain(|p, f| f.matched || std::fs::symlink_metadata(p).is_err());
    }

    /// Open `path` for the first time, resuming from the loaded state.
    fn open_new(&mut self, path: &Path, first: bool) -> io::Result<(Handle, Option<Handle>)> {
        let fp_len = self.config.fingerprint_len;
        let mut h = Handle::open(path, 0, fp_len)?;
        let Some(saved) = self.resume.remove(path) else {
            if first && self.config.start_at_end {
                h.offset = h.seen.0;
                h.scan = h.offset;
            }
            return Ok((h, None));
        };
        let matches = |h: &Handle| -> io::Result<bool> {
            let (fp, _) = fingerprint(&h.file, saved.fingerprint_len as usize)?;
            Ok(format!("{fp:016x}") == saved.fingerprint && h.seen.0 >= saved.offset)
        };
        if h.dev == saved.dev && h.ino == saved.ino {
            if matches(&h)? {
                h.offset = saved.offset;
                h.scan = saved.offset;
            } else {
                self.stats.truncations += 1;
            }
            return Ok((h, None));
        }
        // Rotated while we were stopped: drain the rest of the old file if
        // it is still in the same directory.
        let mut old = None;
        if let Some(dir) = path.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            for e in std::fs::read_dir(dir)?.flatten() {
                let Ok(meta) = e.metadata() else { continue };
                if meta.dev() == saved.dev && meta.ino() == saved.ino && meta.is_file() {
                    let mut o = Handle::open(&e.path(), 0, fp_len)?;
                    if o.same_file(&meta) && matches(&o)? {
                        o.offset = saved.offset;
                        o.scan = saved.offset;
                        o.idle_since = Some(Instant::now());
                        old = Some(o);
                    }
                    break;
                }
            }
        }
        // Without the old file (compressed or deleted while we were stopped)
        // its unread rest is lost; counted as a rotation all the same.
        self.stats.rotations += 1;
        Ok((h, old))
    }

    /// Read what is new, handing each complete line to `on_line`, at most
    /// [`TailConfig::batch_bytes`] in all; returns the bytes consumed (0 when
    /// nothing was new: wait [`TailConfig::poll_interval`] before the next
    /// poll). Errors are counted in [`TailStats::read_errors`] and retried at
    /// the next poll.
    pub fn poll(&mut self, on_line: &mut dyn FnMut(TailEvent<'_>)) -> u64 {
        let now = Instant::now();
        let first = self.first_scan;
        if self
            .last_scan
            .is_none_or(|t| now.duration_since(t) >= self.config.rescan_interval)
        {
            self.scan();
            self.last_scan = Some(now);
            self.first_scan = false;
        }
        let mut budget = self.config.batch_bytes;
        let mut paths: Vec<PathBuf> = self.files.keys().cloned().collect();
        // Start with another file each time, so a busy one cannot starve the
        // others when the budget runs out.
        if !paths.is_empty() {
            let k = self.cursor % paths.len();
            paths.rotate_left(k);
            self.cursor = self.cursor.wrapping_add(1);
        }
        let mut consumed = 0;
        for path in paths {
            if budget == 0 {
                break;
            }
            let n = self.poll_path(&path, first, budget, on_line);
            budget = budget.saturating_sub(n);
            consumed += n;
        }
        self.stats.bytes += consumed;
        // Forget paths that vanished and are fully drained.
        self.files
            .retain(|_, f| f.matched || f.current.is_some() || !f.retired.is_empty());
        consumed
    }

    fn poll_path(
        &mut self,
        path: &Path,
        first: bool,
        mut budget: u64,
        on_line: &mut dyn FnMut(TailEvent<'_>),
    ) -> u64 {
        let mut consumed = 0;
        let Some(mut f) = self.files.remove(path) else {
            return 0;
        };
        let pattern = f.pattern;
        // Rotated-away files first: their lines are older.
        let mut keep = Vec::new();
        for mut h in std::mem::take(&mut f.retired) {
            match self.read(&mut h, path, pattern, budget, on_line) {
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    consumed += n;
                    let idle = h.idle_since.get_or_insert(Instant::now());
                    if n > 0 {
                        *idle = Instant::now();
                    }
                    if n == 0 && idle.elapsed() >= self.config.rotate_grace {
                        self.finish(&mut h, path, pattern, on_line);
                        continue;
                    }
                }
                Err(e) => self.error(path, "read", &e),
            }
            keep.push(h);
        }
        f.retired = keep;

        // Does the path still name the file we follow?
        match std::fs::metadata(path) {
            Ok(meta) => {
                let replaced = f.current.as_ref().is_some_and(|h| !h.same_file(&meta));
                if replaced {
                    let mut old = f.current.take().expect("checked");
                    old.idle_since = Some(Instant::now());
                    self.stats.rotations += 1;
                    f.retired.push(old);
                    // Drain the old file first, in this same poll.
                    let h = f.retired.last_mut().expect("pushed");
                    match self.read(h, path, pattern, budget, on_line) {
                        Ok(n) => {
                            budget = budget.saturating_sub(n);
                            consumed += n;
                        }
                        Err(e) => self.error(path, "read", &e),
                    }
                }
                if f.current.is_none() && meta.is_file() {
                    match self.open_new(path, first) {
                        Ok((h, old)) => {
                            f.retired.extend(old);
                            f.current = Some(h);
                        }
                        Err(e) => self.error(path, "open", &e),
                    }
                }
            }
            Err(e) => {
                if let Some(mut old) = f.current.take() {
                    // Renamed away or deleted: drain it as a retired file.
                    old.idle_since = Some(Instant::now());
                    self.stats.rotations += 1;
                    f.retired.push(old);
                }
                if e.kind() != io::ErrorKind::NotFound {
                    self.error(path, "examine", &e);
                }
            }
        }
        if let Some(mut h) = f.current.take() {
            match h.check_truncation(self.config.fingerprint_len) {
                Ok(true) => self.stats.truncations += 1,
                Ok(false) => {}
                Err(e) => self.error(path, "examine", &e),
            }
            match self.read(&mut h, path, pattern, budget, on_line) {
                Ok(n) => consumed += n,
                Err(e) => self.error(path, "read", &e),
            }
            f.current = Some(h);
        }
        self.files.insert(path.to_owned(), f);
        consumed
    }

    /// Hand out the complete lines of `h` past its offset, up to `budget`
    /// bytes; returns the bytes consumed.
    fn read(
        &mut self,
        h: &mut Handle,
        path: &Path,
        pattern: usize,
        budget: u64,
        on_line: &mut dyn FnMut(TailEvent<'_>),
    ) -> io::Result<u64> {
        let max = self.config.max_line;
        let start_offset = h.offset;
        while h.offset - start_offset < budget {
            let n = loop {
                match h.file.read_at(&mut self.buf, h.scan) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            if n == 0 {
                break;
            }
            let data = &self.buf[..n];
            if h.scan > h.offset {
                // Skipping an overlong line: look for its end.
                match memchr::memchr(b'\n', data) {
                    Some(i) => {
                        let len = h.scan + i as u64 - h.offset;
                        self.stats.lines += 1;
                        self.stats.lines_too_long += 1;
                        on_line(TailEvent {
                            pattern,
                            path,
                            line: Line::TooLong { len },
                        });
                        h.offset = h.scan + i as u64 + 1;
                        h.scan = h.offset;
                    }
                    None => h.scan += n as u64,
                }
                continue;
            }
            let mut pos = 0;
            let mut full = false;
            while let Some(i) = memchr::memchr(b'\n', &data[pos..]) {
                let raw = &data[pos..pos + i];
                let line = if raw.len() > max {
                    self.stats.lines_too_long += 1;
                    Line::TooLong {
                        len: raw.len() as u64,
                    }
                } else {
                    Line::Complete(raw.strip_suffix(b"\r").unwrap_or(raw))
                };
                self.stats.lines += 1;
                on_line(TailEvent {
                    pattern,
                    path,
                    line,
                });
                pos += i + 1;
                if (h.offset + pos as u64) - start_offset >= budget {
                    full = true;
                    break;
                }
            }
            h.offset += pos as u64;
            h.scan = h.offset;
            if full {
                break;
            }
            let rest = n - pos;
            if rest > max {
                // An overlong line without its end in this chunk.
                h.scan = h.offset + rest as u64;
            } else if pos == 0 || n < self.buf.len() {
                // A partial line at the end of the file (or nothing new).
                break;
            }
        }
        Ok(h.offset - start_offset)
    }

    /// A rotated-away file is done: hand out its unterminated last line.
    fn finish(
        &mut self,
        h: &mut Handle,
        path: &Path,
        pattern: usize,
        on_line: &mut dyn FnMut(TailEvent<'_>),
    ) {
        let meta = match h.file.metadata() {
            Ok(m) => m,
            Err(e) => return self.error(path, "examine", &e),
        };
        let end = meta.len();
        if end <= h.offset {
            return;
        }
        let len = end - h.offset;
        if h.scan > h.offset || len > self.config.max_line as u64 {
            self.stats.lines += 1;
            self.stats.lines_too_long += 1;
            on_line(TailEvent {
                pattern,
                path,
                line: Line::TooLong { len },
            });
        } else {
            let mut rest = vec![0; len as usize];
            if let Err(e) = h.file.read_exact_at(&mut rest, h.offset) {
                return self.error(path, "read", &e);
            }
            self.stats.lines += 1;
            let line = rest.strip_suffix(b"\r").unwrap_or(&rest);
            on_line(TailEvent {
                pattern,
                path,
                line: Line::Complete(line),
            });
        }
        self.stats.bytes += len;
        h.offset = end;
        h.scan = end;
    }
}
