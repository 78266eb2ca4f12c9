//! The tailer against real files: rotations, truncation, restarts.
//!
//! No sleeps as synchronisation: every test polls until a condition holds,
//! with a timeout, or polls a fixed number of times where nothing may happen.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use onionwatch_logs::lines::Line;
use onionwatch_logs::tail::{StateError, TailConfig, TailState, Tailer};
use onionwatch_test_support::append;

fn config() -> TailConfig {
    TailConfig {
        poll_interval: Duration::from_millis(10),
        rescan_interval: Duration::ZERO,
        rotate_grace: Duration::ZERO,
        ..TailConfig::default()
    }
}

/// What the consumer saw.
#[derive(Default, Debug)]
struct Seen {
    lines: Vec<String>,
    too_long: Vec<u64>,
}

impl Seen {
    fn poll(&mut self, t: &mut Tailer) -> u64 {
        t.poll(&mut |e| match e.line {
            Line::Complete(l) => self.lines.push(String::from_utf8_lossy(l).into_owned()),
            Line::TooLong { len } => self.too_long.push(len),
        })
    }

    /// Poll until `cond` holds; panics after 10 s.
    fn until(&mut self, t: &mut Tailer, what: &str, cond: impl Fn(&Seen) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            self.poll(t);
            if cond(self) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; saw {} lines, last {:?}",
                self.lines.len(),
                self.lines.last()
            );
            std::thread::sleep(t.config().poll_interval);
        }
    }

    /// Every line exactly once.
    fn assert_each_once(&self, expected: impl IntoIterator<Item = String>) {
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for l in &self.lines {
            *counts.entry(l).or_default() += 1;
        }
        let expected: Vec<String> = expected.into_iter().collect();
        for e in &expected {
            assert_eq!(
                counts.get(e.as_str()),
                Some(&1),
                "line {e:?} seen {:?} times",
                counts.get(e.as_str())
            );
        }
        assert_eq!(self.lines.len(), expected.len(), "extra lines");
    }
}

fn lines(prefix: &str, range: std::ops::Range<u32>) -> String {
    range.map(|i| format!("{prefix}-{i}\n")).collect()
}

fn names(prefix: &str, range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

#[test]
fn rename_and_create_loses_nothing_and_drains_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("nginx-access.log");
    append(&log, &lines("a", 0..100));
    let mut t = Tailer::new(config(), vec![log.clone()]);
    let mut seen = Seen::default();
    seen.until(&mut t, "the first 100 lines", |s| s.lines.len() == 100);

    // The writer keeps its descriptor across the rename, as nginx does until
    // it is told to reopen its logs.
    let mut writer = OpenOptions::new().append(true).open(&log).unwrap();
    writer.write_all(lines("a", 100..105).as_bytes()).unwrap();
    writer.write_all(b"partial").unwrap();
    fs::rename(&log, dir.path().join("nginx-access.log-2024011117")).unwrap();
    append(&log, &lines("b", 0..10));
    seen.poll(&mut t);
    // Written to the rotated file after the new one appeared.
    writer.write_all(b"-end\n").unwrap();
    writer.write_all(lines("a", 105..110).as_bytes()).unwrap();
    drop(writer);
    append(&log, &lines("b", 10..20));

    let mut want = names("a", 0..110);
    want.extend(names("b", 0..20));
    want.push("partial-end".into());
    let n = want.len();
    seen.until(&mut t, "every line of both files", |s| s.lines.len() >= n);
    // A few more polls must not hand out anything again.
    for _ in 0..5 {
        seen.poll(&mut t);
    }
    seen.assert_each_once(want);
    assert_eq!(t.stats().rotations, 1);
    assert_eq!(t.stats().truncations, 0);
    assert_eq!(t.stats().lines, 131);
}

#[test]
fn copytruncate_rereads_from_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &lines("a", 0..50));
    let mut t = Tailer::new(config(), vec![log.clone()]);
    let mut seen = Seen::default();
    seen.until(&mut t, "50 lines", |s| s.lines.len() == 50);

    // logrotate copytruncate: copy, then truncate in place.
    fs::copy(&log, dir.path().join("access.log.1")).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, &lines("b", 0..3));
    seen.until(&mut t, "3 lines after the truncation", |s| {
        s.lines.len() == 53
    });
    assert_eq!(t.stats().truncations, 1);

    // Truncated and rewritten past our position between two polls: only
    // the fingerprint tells.
    OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&log, &lines("c", 0..40));
    seen.until(&mut t, "40 lines of the rewritten file", |s| {
        s.lines.len() == 93
    });
    let mut want = names("a", 0..50);
    want.extend(names("b", 0..3));
    want.extend(names("c", 0..40));
    seen.assert_each_once(want);
    assert_eq!(t.stats().truncations, 2);
    assert_eq!(t.stats().rotations, 0);
}

#[test]
fn delete_and_recreate() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tor.log");
    let mut t = Tailer::new(config(), vec![log.clone()]);
    let mut seen = Seen::default();
    // Not there yet: nothing, no error.
    for _ in 0..3 {
        assert_eq!(seen.poll(&mut t), 0);
    }
    assert_eq!(t.stats().read_errors, 0);
    append(&log, &lines("a", 0..10));
    seen.until(&mut t, "10 lines", |s| s.lines.len() == 10);
    fs::remove_file(&log).unwrap();
    seen.poll(&mut t);
    append(&log, &lines("b", 0..5));
    seen.until(&mut t, "5 lines of the new file", |s| s.lines.len() == 15);
    let mut want = names("a", 0..10);
    want.extend(names("b", 0..5));
    seen.assert_each_once(want);
    assert_eq!(t.stats().rotations, 1);
    // The deleted file is closed once drained.
    assert_eq!(t.stats().files, 1);
}

#[test]
fn a_partial_line_waits_for_its_newline_or_the_end_of_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, "one\ntw");
    let mut t = Tailer::new(config(), vec![log.clone()]);
    let mut seen = Seen::default();
    seen.until(&mut t, "the first line", |s| !s.lines.is_empty());
    for _ in 0..5 {
        seen.poll(&mut t);
    }
    assert_eq!(seen.lines, ["one"]);
    append(&log, "o\r\nthr");
    seen.until(&mut t, "the completed line", |s| s.lines.len() == 2);
    assert_eq!(seen.lines, ["one", "two"]);
    // The state points at the start of the partial line.
    assert_eq!(t.state().files[0].offset, 9);
    // Rotated away with its partial line: handed out once the old file is
    // done (grace 0 here).
    fs::rename(&log, dir.path().join("access.log.1")).unwrap();
    seen.until(&mut t, "the final partial line", |s| s.lines.len() == 3);
    for _ in 0..3 {
        seen.poll(&mut t);
    }
    assert_eq!(seen.lines, ["one", "two", "thr"]);
}

#[test]
fn a_rotated_file_is_kept_open_during_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, "a\npart");
    let cfg = TailConfig {
        rotate_grace: Duration::from_secs(3600),
        ..config()
    };
    let mut t = Tailer::new(cfg, vec![log.clone()]);
    let mut seen = Seen::default();
    seen.until(&mut t, "a", |s| s.lines.len() == 1);
    fs::rename(&log, dir.path().join("access.log.1")).unwrap();
    append(&log, "b\n");
    seen.until(&mut t, "b", |s| s.lines.len() == 2);
    assert_eq!(t.stats().files, 2, "the old file stays open");
    append(&dir.path().join("access.log.1"), "ial\n");
    seen.until(&mut t, "the rest of the old file", |s| s.lines.len() == 3);
    assert_eq!(seen.lines, ["a", "b", "partial"]);
}

#[test]
fn garbage_and_overlong_lines_are_counted_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let cfg = TailConfig {
        max_line: 1000,
        ..config()
    };
    let mut t = Tailer::new(cfg, vec![log.clone()]);
    let mut seen = Seen::default();
    let mut f = File::create(&log).unwrap();
    f.write_all(b"ok-1\n\xff\xfe\x00garbage\n").unwrap();
    f.write_all(&vec![b'x'; 1 << 20]).unwrap();
    f.write_all(b"\nok-2\n").unwrap();
    // Exactly at the limit is fine, one more byte is not.
    f.write_all(&vec![b'y'; 1000]).unwrap();
    f.write_all(b"\n").unwrap();
    f.write_all(&vec![b'z'; 1001]).unwrap();
    f.write_all(b"\n").unwrap();
    // An overlong line whose end arrives in a later poll.
    f.write_all(&vec![b'w'; 300_000]).unwrap();
    seen.until(&mut t, "the lines before the open overlong one", |s| {
        s.lines.len() == 4 && s.too_long.len() == 2
    });
    for _ in 0..3 {
        seen.poll(&mut t);
    }
    assert_eq!(seen.too_long, [1 << 20, 1001]);
    f.write_all(&vec![b'w'; 200_000]).unwrap();
    f.write_all(b"\nok-3\n").unwrap();
    seen.until(&mut t, "the end of the overlong line", |s| {
        s.lines.len() == 5
    });
    assert_eq!(seen.too_long, [1 << 20, 1001, 500_000]);
    assert_eq!(seen.lines[0], "ok-1");
    assert_eq!(seen.lines[1], "\u{FFFD}\u{FFFD}\u{0}garbage");
    assert_eq!(seen.lines[2], "ok-2");
    assert_eq!(seen.lines[3].len(), 1000);
    assert_eq!(seen.lines[4], "ok-3");
    let stats = t.stats();
    assert_eq!(stats.lines, 8);
    assert_eq!(stats.lines_too_long, 3);
    assert_eq!(stats.bytes, fs::metadata(&log).unwrap().len());
}

#[test]
fn a_poll_reads_a_bounded_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &lines("line", 0..20_000));
    let cfg = TailConfig {
        batch_bytes: 4096,
        ..config()
    };
    let mut t = Tailer::new(cfg, vec![log.clone()]);
    let mut seen = Seen::default();
    let mut polls = 0;
    while seen.lines.len() < 20_000 {
        let n = seen.poll(&mut t);
        assert!(n > 0, "stalled at {} lines", seen.lines.len());
        assert!(n <= 4096 + 16, "a poll read {n} bytes");
        polls += 1;
    }
    assert!(polls > 40, "{polls} polls");
    seen.assert_each_once(names("line", 0..20_000));
}

/// Drop the tailer mid-file (as a kill would, after the last saved state)
/// and start another from the state file: every line exactly once.
#[test]
fn restart_from_the_state_file_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let other = dir.path().join("tor.log");
    let state_file = dir.path().join("state.json");
    append(&log, &lines("a", 0..5000));
    append(&other, &lines("t", 0..100));
    let cfg = TailConfig {
        batch_bytes: 2048,
        ..config()
    };
    let patterns = vec![log.clone(), other.clone()];
    let mut seen = Seen::default();
    {
        let mut t =
            Tailer::with_state(cfg, patterns.clone(), TailState::load(&state_file).unwrap());
        for _ in 0..10 {
            seen.poll(&mut t);
            t.state().save(&state_file).unwrap();
        }
        assert!(seen.lines.len() > 100 && seen.lines.len() < 5000);
        // Lines read by a poll whose state is never saved are "lost" with
        // the process: the consumer did not commit them either.
        let mut uncommitted = Seen::default();
        uncommitted.poll(&mut t);
        assert!(!uncommitted.lines.is_empty());
    }
    let before = seen.lines.len();
    append(&log, &lines("a", 5000..6000));

    // Restarted: continues exactly where the saved state stopped.
    let mut t = Tailer::with_state(cfg, patterns.clone(), TailState::load(&state_file).unwrap());
    seen.until(&mut t, "every line", |s| s.lines.len() >= 6100);
    for _ in 0..3 {
        seen.poll(&mut t);
    }
    let mut want = names("a", 0..6000);
    want.extend(names("t", 0..100));
    seen.assert_each_once(want);
    assert!(seen.lines.len() > before);
    t.state().save(&state_file).unwrap();
    drop(t);

    // Rotated while stopped: the rest of the old file is found by inode in
    // the same directory and drained, then the new file is read.
    append(&log, &lines("a", 6000..6010));
    fs::rename(&log, dir.path().join("access.log-2024011118")).unwrap();
    append(&log, &lines("n", 0..7));
    // And the other file replaced by one with different content of the
    // same length and inode: the fingerprint says read it again.
    let text = fs::read_to_string(&other).unwrap().replace('t', "T");
    fs::write(&other, &text).unwrap();
    let mut t = Tailer::with_state(cfg, patterns, TailState::load(&state_file).unwrap());
    seen.until(
        &mut t,
        "the rotated rest, the new file and the rewritten one",
        |s| s.lines.len() >= 6100 + 10 + 7 + 100,
    );
    for _ in 0..3 {
        seen.poll(&mut t);
    }
    let mut want = names("a", 0..6010);
    want.extend(names("t", 0..100));
    want.extend(names("n", 0..7));
    want.extend(names("T", 0..100));
    seen.assert_each_once(want);
    assert_eq!(t.stats().rotations, 1);
    assert_eq!(t.stats().truncations, 1);
}

#[test]
fn globs_pick_up_new_files() {
    let dir = tempfile::tempdir().unwrap();
    let pattern: PathBuf = dir.path().join("nginx-access*.log");
    append(&dir.path().join("nginx-access.log"), "a\n");
    append(&dir.path().join("nginx-error.log"), "not me\n");
    let mut t = Tailer::new(config(), vec![pattern]);
    let mut seen = Seen::default();
    seen.until(&mut t, "a", |s| s.lines.len() == 1);
    append(&dir.path().join("nginx-access-shop.example.log"), "b\n");
    append(
        &dir.path().join("nginx-access.log-2024011118"),
        "rotated, not matched\n",
    );
    seen.until(&mut t, "b", |s| s.lines.len() == 2);
    for _ in 0..3 {
        seen.poll(&mut t);
    }
    seen.lines.sort();
    assert_eq!(seen.lines, ["a", "b"]);
    assert_eq!(t.stats().files, 2);
}

#[test]
fn start_at_end_skips_what_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &lines("old", 0..10));
    let cfg = TailConfig {
        start_at_end: true,
        ..config()
    };
    let mut t = Tailer::new(cfg, vec![log.clone()]);
    let mut seen = Seen::default();
    seen.poll(&mut t);
    append(&log, "new\n");
    seen.until(&mut t, "new", |s| !s.lines.is_empty());
    assert_eq!(seen.lines, ["new"]);
}

#[test]
fn a_corrupt_state_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    assert_eq!(TailState::load(&state).unwrap(), TailState::default());
    fs::write(&state, "{\"version\":1,\"files\":[{\"path\":").unwrap();
    let err = TailState::load(&state).unwrap_err();
    assert!(matches!(err, StateError::Corrupt { .. }));
    let msg = err.to_string();
    assert!(msg.contains("state.json"), "{msg}");
    assert!(msg.contains("delete it"), "{msg}");
    fs::write(&state, "{\"version\":7,\"files\":[]}").unwrap();
    assert!(TailState::load(&state)
        .unwrap_err()
        .to_string()
        .contains("unknown version 7"));
    // Saving replaces it atomically and leaves no temporary file.
    TailState::default().save(&state).unwrap();
    assert_eq!(TailState::load(&state).unwrap().files, vec![]);
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn unreadable_paths_are_counted_and_explained() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    fs::write(&file, "x\n").unwrap();
    let bad = file.join("access.log");
    let good = dir.path().join("access.log");
    append(&good, "ok\n");
    let mut t = Tailer::new(config(), vec![bad.clone(), good]);
    let mut seen = Seen::default();
    seen.until(&mut t, "the good file", |s| s.lines.len() == 1);
    assert!(t.stats().read_errors >= 1);
    let err = t.last_error().unwrap();
    assert!(
        err.contains("cannot examine") && err.contains("not-a-dir/access.log"),
        "{err}"
    );
}

/// A writer rotating under a reader that is behind (small batches): every
/// line once, each file's lines in order.
#[test]
fn concurrent_writer_with_rotations_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    File::create(&log).unwrap();
    let cfg = TailConfig {
        batch_bytes: 512,
        rotate_grace: Duration::from_secs(2),
        ..config()
    };
    let mut t = Tailer::new(cfg, vec![log.clone()]);
    // How many lines the reader has seen. A file created and rotated away
    // between two polls is never opened (see the module documentation), so
    // the writer rotates only once the reader has read from the current
    // file; within a file the reader stays far behind (512-byte batches).
    let progress = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let writer = {
        let log = log.clone();
        let dir = dir.path().to_owned();
        let progress = progress.clone();
        std::thread::spawn(move || {
            let mut f = OpenOptions::new().append(true).open(&log).unwrap();
            for i in 0..20_000u32 {
                if i > 0 && i % 3000 == 0 {
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while progress.load(std::sync::atomic::Ordering::SeqCst) <= (i - 3000) as usize
                        && Instant::now() < deadline
                    {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    // logrotate renames and creates; the writer keeps the old
                    // descriptor for a few more lines before it reopens.
                    fs::rename(&log, dir.join(format!("access.log.{i}"))).unwrap();
                    File::create(&log).unwrap();
                    for j in 0..3 {
                        f.write_all(format!("w-{}\n", i + j).as_bytes()).unwrap();
                    }
                    f = OpenOptions::new().append(true).open(&log).unwrap();
                    for j in 3..10 {
                        f.write_all(format!("w-{}\n", i + j).as_bytes()).unwrap();
                    }
                }
                if i % 3000 >= 10 || i < 3000 {
                    f.write_all(format!("w-{i}\n").as_bytes()).unwrap();
                }
            }
        })
    };
    let mut seen = Seen::default();
    seen.until(&mut t, "20,000 lines", |s| {
        progress.store(s.lines.len(), std::sync::atomic::Ordering::SeqCst);
        s.lines.len() >= 20_000
    });
    writer.join().unwrap();
    for _ in 0..5 {
        seen.poll(&mut t);
    }
    seen.assert_each_once(names("w", 0..20_000));
    // Order within the stream: lines of the same file come in order, and
    // a rotated file's lines before its successor's.
    let pos: Vec<u32> = seen.lines.iter().map(|l| l[2..].parse().unwrap()).collect();
    // The reader is ~3000 lines behind at each rotation: reading the new
    // file before draining the old one would hand out thousands of lines
    // late. Only the 3 lines written to the old file after the new one
    // appeared may come a batch (~60 lines) late.
    let mut max = 0;
    let mut late = Vec::new();
    for &v in &pos {
        if v + 100 < max {
            late.push(v);
        }
        max = max.max(v);
    }
    assert!(
        late.is_empty(),
        "{} lines late: {:?}",
        late.len(),
        &late[..late.len().min(10)]
    );
    assert_eq!(t.stats().rotations, 6);
}

#[test]
fn the_state_keeps_only_positions_the_patterns_cover() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.log");
    let b = dir.path().join("b.log");
    append(&a, "1\n");
    append(&b, "2\n");
    let mut t = Tailer::new(config(), vec![a.clone(), b.clone()]);
    let mut seen = Seen::default();
    seen.until(&mut t, "both lines", |s| s.lines.len() == 2);
    let state = t.state();
    assert_eq!(state.files.len(), 2);
    // Restarted with one pattern gone and the other file missing: the
    // missing one is kept (it may be re-created), the uncovered one dropped.
    fs::remove_file(&a).unwrap();
    let mut t = Tailer::with_state(config(), vec![a.clone()], state);
    seen.poll(&mut t);
    let kept: Vec<PathBuf> = t.state().files.into_iter().map(|f| f.path).collect();
    assert_eq!(kept, [a]);
}

/// Stopped while the log is renamed away and not yet re-created: the
/// restart finds the renamed file by inode and reads its rest.
#[test]
fn restart_between_rename_and_create() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append(&log, &lines("a", 0..3));
    let cfg = TailConfig {
        rotate_grace: Duration::from_secs(3600),
        ..config()
    };
    let mut t = Tailer::new(cfg, vec![log.clone()]);
    let mut seen = Seen::default();
    seen.until(&mut t, "3 lines", |s| s.lines.len() == 3);
    let rotated = dir.path().join("access.log.1");
    fs::rename(&log, &rotated).unwrap();
    seen.poll(&mut t);
    let state = t.state();
    drop(t);
    assert_eq!(state.files.len(), 1);
    append(&rotated, &lines("a", 3..5));
    append(&log, &lines("b", 0..2));
    let mut t = Tailer::with_state(cfg, vec![log], state);
    seen.until(&mut t, "the rest and the new file", |s| s.lines.len() == 7);
    let mut want = names("a", 0..5);
    want.extend(names("b", 0..2));
    seen.assert_each_once(want);
}
