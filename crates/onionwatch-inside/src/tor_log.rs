//! The last warnings and errors of a project's tor log, for the dashboard.
//!
//! This reads the end of the file at each call rather than following it:
//! cheap (64 KiB at most), and correct across rotations by construction.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use onionwatch_logs::severity::SeverityCounter;

/// Bytes read from the end of the log.
const TAIL: u64 = 64 * 1024;
/// Longest line kept.
const MAX_LINE: usize = 300;

/// The last `keep` `[warn]`/`[err]` lines among the last 64 KiB of `path`.
pub fn recent_warnings(path: &Path, keep: usize) -> std::io::Result<Vec<String>> {
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity((len - start) as usize);
    file.take(TAIL).read_to_end(&mut buf)?;
    let mut lines = buf.split(|b| *b == b'\n');
    if start > 0 {
        lines.next(); // starts mid-line
    }
    let mut counter = SeverityCounter::new(keep, MAX_LINE);
    for line in lines {
        counter.observe(line.strip_suffix(b"\r").unwrap_or(line));
    }
    Ok(counter.recent().map(|l| l.text.clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn keeps_the_last_warnings_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tor.log");
        let mut f = std::fs::File::create(&p).unwrap();
        writeln!(
            f,
            "Nov 25 10:00:00.000 [notice] Bootstrapped 100% (done): Done"
        )
        .unwrap();
        writeln!(f, "Nov 25 10:00:01.000 [warn] first warning").unwrap();
        f.write_all(b"Nov 25 10:00:02.000 [err] bad \xff bytes\n")
            .unwrap();
        writeln!(f, "Nov 25 10:00:03.000 [warn] last warning").unwrap();
        writeln!(f, "garbage without severity").unwrap();
        let got = recent_warnings(&p, 2).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[0].contains("[err] bad \u{fffd} bytes"), "{got:?}");
        assert!(got[1].ends_with("[warn] last warning"), "{got:?}");
        assert!(recent_warnings(&dir.path().join("missing.log"), 2).is_err());
    }

    #[test]
    fn a_large_log_is_read_from_its_end_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tor.log");
        let mut f = std::fs::File::create(&p).unwrap();
        writeln!(f, "Nov 25 09:00:00.000 [warn] too old to be seen").unwrap();
        for _ in 0..2000 {
            writeln!(f, "Nov 25 09:30:00.000 [notice] {}", "x".repeat(60)).unwrap();
        }
        writeln!(f, "Nov 25 10:00:00.000 [warn] recent {}", "y".repeat(1000)).unwrap();
        let got = recent_warnings(&p, 5).unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(got[0].len() <= MAX_LINE + 4, "cut to the maximum length");
    }
}
