//! Read lines of bounded length from any [`BufRead`].
//!
//! A line longer than the limit is reported as [`Line::TooLong`] with its
//! length and skipped without ever being held in memory whole: memory stays
//! bounded by the limit plus the reader's buffer whatever the input. The
//! newline (and a `\r` before it) is not part of the line. The last line of
//! the input counts even without a final newline (a tailer that must wait for
//! the rest of a partial line handles that itself).
//!
//! ```
//! use onionwatch_logs::lines::{Line, LineReader};
//! let mut r = LineReader::new(&b"a\r\nxxxxxxxx\nb"[..], 4);
//! assert_eq!(r.next_line().unwrap(), Some(Line::Complete(&b"a"[..])));
//! assert_eq!(r.next_line().unwrap(), Some(Line::TooLong { len: 8 }));
//! assert_eq!(r.next_line().unwrap(), Some(Line::Complete(&b"b"[..])));
//! assert_eq!(r.next_line().unwrap(), None);
//! ```

use std::io::{self, BufRead};

/// The default line limit: 64 KiB, far above any sane access-log line.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

/// One line from [`LineReader::next_line`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// A line within the limit, without its line ending.
    Complete(&'a [u8]),
    /// A line over the limit, skipped; `len` is its length in bytes.
    TooLong {
        /// Length of the skipped line, without its newline.
        len: u64,
    },
}

/// Splits a reader into lines of at most `max_len` bytes, reusing one buffer.
#[derive(Debug)]
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    max_len: usize,
    bytes_read: u64,
    /// Bytes of the last line returned straight from `inner`'s buffer, to
    /// consume on the next call.
    pending: usize,
}

impl<R: BufRead> LineReader<R> {
    /// Read from `inner`; lines longer than `max_len` bytes are skipped.
    pub fn new(inner: R, max_len: usize) -> Self {
        LineReader {
            inner,
            buf: Vec::new(),
            max_len,
            bytes_read: 0,
            pending: 0,
        }
    }

    /// Bytes consumed from the reader so far (line endings included).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// The next line, or `None` at the end of the input.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.inner.consume(std::mem::take(&mut self.pending));
        self.buf.clear();
        // Fast path: a whole line in the reader's buffer is returned from
        // there, without copying.
        let found = loop {
            match self.inner.fill_buf() {
                Ok(avail) => {
                    break memchr::memchr(b'\n', avail).filter(|&i| i <= self.max_len);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        if let Some(i) = found {
            // The buffer is not empty, so this does no I/O.
            let avail = self.inner.fill_buf()?;
            self.pending = i + 1;
            self.bytes_read += i as u64 + 1;
            let line = &avail[..i];
            return Ok(Some(Line::Complete(
                line.strip_suffix(b"\r").unwrap_or(line),
            )));
        }
        let mut len: u64 = 0;
        let mut too_long = false;
        let mut any = false;
        loop {
            let avail = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if avail.is_empty() {
                if !any {
                    return Ok(None);
                }
                break;
            }
            any = true;
            let (chunk, used, done) = match memchr::memchr(b'\n', avail) {
                Some(i) => (&avail[..i], i + 1, true),
                None => (avail, avail.len(), false),
            };
            len += chunk.len() as u64;
            if !too_long {
                if self.buf.len() + chunk.len() > self.max_len {
                    too_long = true;
                    self.buf = Vec::new();
                } else {
                    self.buf.extend_from_slice(chunk);
                }
            }
            self.inner.consume(used);
            self.bytes_read += used as u64;
            if done {
                break;
            }
        }
        if too_long {
            return Ok(Some(Line::TooLong { len }));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(Some(Line::Complete(&self.buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    fn collect(input: &[u8], max: usize, cap: usize) -> Vec<Result<Vec<u8>, u64>> {
        let mut r = LineReader::new(BufReader::with_capacity(cap, input), max);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push(match l {
                Line::Complete(b) => Ok(b.to_vec()),
                Line::TooLong { len } => Err(len),
            });
        }
        assert_eq!(r.bytes_read(), input.len() as u64);
        out
    }

    #[test]
    fn splits_on_newlines_across_buffer_boundaries() {
        for cap in [1, 2, 3, 7, 8192] {
            assert_eq!(
                collect(b"ab\n\ncd\r\nef", 10, cap),
                vec![
                    Ok(b"ab".to_vec()),
                    Ok(vec![]),
                    Ok(b"cd".to_vec()),
                    Ok(b"ef".to_vec())
                ]
            );
            assert_eq!(collect(b"", 10, cap), vec![]);
            assert_eq!(collect(b"\n", 10, cap), vec![Ok(vec![])]);
            assert_eq!(
                collect(b"\xff\xfe\n", 10, cap),
                vec![Ok(b"\xff\xfe".to_vec())]
            );
        }
    }

    #[test]
    fn overlong_lines_are_skipped_not_buffered() {
        for cap in [3, 64, 8192] {
            let mut input = vec![b'x'; 1 << 20];
            input.extend_from_slice(b"\nok\n");
            input.extend(vec![b'y'; 11]);
            assert_eq!(
                collect(&input, 10, cap),
                vec![Err(1 << 20), Ok(b"ok".to_vec()), Err(11)]
            );
            // Exactly at the limit is fine.
            assert_eq!(
                collect(b"0123456789\n", 10, cap),
                vec![Ok(b"0123456789".to_vec())]
            );
        }
        let mut input = vec![b'x'; 1 << 20];
        input.push(b'\n');
        let mut r = LineReader::new(BufReader::with_capacity(4096, &input[..]), 100);
        assert_eq!(r.next_line().unwrap(), Some(Line::TooLong { len: 1 << 20 }));
        assert!(r.buf.capacity() <= 4096 + 100);
    }

    #[test]
    fn read_errors_surface() {
        struct Failing;
        impl io::Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let mut r = LineReader::new(BufReader::new(Failing), 10);
        assert_eq!(r.next_line().unwrap_err().to_string(), "disk on fire");
    }
}
