//! One-shot analysis of access logs, the engine of `onionwatch logs --once`:
//! read each file (plain, gzip-compressed as logrotate's `compress` leaves
//! it, or standard input for `-`) to its end through the same per-line step
//! the follower takes ([`Analytics::ingest`]), into one [`Summary`] with a
//! [`FileSummary`] per file.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use crate::access::{LogFormat, ParseError};
use crate::analytics::{Analytics, AnalyticsConfig};
use crate::lines::LineReader;
use crate::summary::{FileSummary, Summary};

/// Read buffer per file. 64 KiB stays in the CPU cache between the kernel's
/// copy and the parser; 128 KiB and more measured slower (more system time).
const READ_BUFFER: usize = 64 * 1024;

/// Parse errors reported per file at debug level with line numbers.
const ERRORS_SHOWN: u64 = 5;

/// A file that could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum OnceError {
    /// The file could not be opened.
    #[error(
        "cannot open {}: check the path, and that this user may read it \
         (nginx logs are often readable only by root or the adm group)",
        path.display()
    )]
    Open {
        /// The path as given.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Reading (or decompressing) the file failed.
    #[error("cannot read {}", path.display())]
    Read {
        /// The path as given.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// Analyse every file in `paths` with `format` into one summary (its
/// `files` filled in, its `project` left to the caller). Every file is
/// opened first, so a wrong path fails before any long parse.
pub fn summarise(
    paths: &[PathBuf],
    format: &LogFormat,
    config: AnalyticsConfig,
    max_line: usize,
) -> Result<Summary, OnceError> {
    tracing::debug!(fast_path = format.is_fast_path(), "log format compiled");
    let mut inputs = Vec::with_capacity(paths.len());
    for path in paths {
        inputs.push((path, open(path)?));
    }
    let mut analytics = Analytics::new(config);
    let mut files = Vec::with_capacity(inputs.len());
    for (path, reader) in inputs {
        let file = analyse(path, reader, format, &mut analytics, max_line).map_err(|source| {
            OnceError::Read {
                path: path.clone(),
                source,
            }
        })?;
        files.push(file);
    }
    let mut summary = analytics.summary();
    summary.files = files;
    Ok(summary)
}

/// Open a file (or standard input for `-`), transparently decompressing gzip.
pub fn open(path: &Path) -> Result<Box<dyn BufRead>, OnceError> {
    let raw: Box<dyn Read> = if path == Path::new("-") {
        Box::new(io::stdin().lock())
    } else {
        let file = File::open(path).map_err(|source| OnceError::Open {
            path: path.to_owned(),
            source,
        })?;
        Box::new(file)
    };
    let mut reader = BufReader::with_capacity(READ_BUFFER, raw);
    let magic = reader.fill_buf().map_err(|source| OnceError::Read {
        path: path.to_owned(),
        source,
    })?;
    if magic.starts_with(&[0x1f, 0x8b]) {
        tracing::debug!(path = %path.display(), "gzip-compressed");
        return Ok(Box::new(BufReader::with_capacity(
            READ_BUFFER,
            MultiGzDecoder::new(reader),
        )));
    }
    Ok(Box::new(reader))
}

/// Feed every line of one file into `analytics`; say at warning level how
/// many lines did not parse, and where the first one is.
pub fn analyse(
    path: &Path,
    reader: impl BufRead,
    format: &LogFormat,
    analytics: &mut Analytics,
    max_line: usize,
) -> io::Result<FileSummary> {
    let (lines_before, errors_before) = (analytics.lines(), analytics.parse_errors());
    let mut lines = LineReader::new(reader, max_line);
    let mut line_no: u64 = 0;
    let mut first_error: Option<(u64, ParseError)> = None;
    while let Some(line) = lines.next_line()? {
        line_no += 1;
        if let Err(e) = analytics.ingest(format, line, max_line) {
            if analytics.parse_errors() - errors_before <= ERRORS_SHOWN {
                tracing::debug!(path = %path.display(), line = line_no, "{e}");
            }
            first_error.get_or_insert((line_no, e));
        }
    }
    let file = FileSummary {
        path: path.display().to_string(),
        lines: analytics.lines() - lines_before,
        parse_errors: analytics.parse_errors() - errors_before,
        bytes_read: lines.bytes_read(),
    };
    if let Some((at, e)) = first_error {
        let hint = if file.parse_errors == file.lines {
            "; no line parsed: is --log-format the one nginx writes this file with?"
        } else {
            ""
        };
        tracing::warn!(
            "{}: {} of {} lines did not parse (first at line {at}: {e}){hint}",
            path.display(),
            file.parse_errors,
            file.lines
        );
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const LINE: &str = r#"fc00:dead:beef:4dad::0:30 - - [11/Jan/2024:17:08:43 +0000] "GET / HTTP/1.1" 200 512 "-" "curl/8""#;

    #[test]
    fn plain_and_gzip_files_count_alike() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("access.log");
        std::fs::write(&plain, format!("{LINE}\nnot a log line\n")).unwrap();
        let gz = dir.path().join("access.log.1.gz");
        let mut enc = flate2::write::GzEncoder::new(File::create(&gz).unwrap(), Default::default());
        enc.write_all(format!("{LINE}\n").as_bytes()).unwrap();
        enc.finish().unwrap();

        let s = summarise(
            &[plain, gz],
            &LogFormat::combined(),
            AnalyticsConfig::default(),
            1024,
        )
        .unwrap();
        assert_eq!((s.lines, s.requests, s.parse_errors), (3, 2, 1));
        assert_eq!(s.files.len(), 2);
        assert_eq!((s.files[0].lines, s.files[0].parse_errors), (2, 1));
        assert_eq!(s.files[1].bytes_read, LINE.len() as u64 + 1);
    }

    #[test]
    fn a_missing_file_fails_before_any_parse() {
        let err = summarise(
            &[PathBuf::from("/nonexistent/access.log")],
            &LogFormat::combined(),
            AnalyticsConfig::default(),
            1024,
        )
        .unwrap_err();
        assert!(matches!(err, OnceError::Open { .. }), "{err}");
        assert!(err.to_string().contains("check the path"), "{err}");
    }
}
