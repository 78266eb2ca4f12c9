//! One open file: its identity, the position reached and the fingerprint
//! that tells a rewritten file from a grown one.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::Instant;

use super::FilePosition;

/// FNV-1a 64: stable across Rust versions and platforms, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The hash of the first `len` bytes of `file` (fewer if it is shorter) and
/// how many bytes it covers.
pub(super) fn fingerprint(file: &File, len: usize) -> io::Result<(u64, u64)> {
    let mut buf = vec![0u8; len];
    let mut n = 0;
    while n < len {
        match file.read_at(&mut buf[n..], n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok((fnv1a(&buf[..n]), n as u64))
}

/// One open file.
#[derive(Debug)]
pub(super) struct Handle {
    pub(super) file: File,
    pub(super) dev: u64,
    pub(super) ino: u64,
    /// Start of the first byte not handed out.
    pub(super) offset: u64,
    /// Where the search for a newline continues: past `offset` only while
    /// skipping an overlong line.
    pub(super) scan: u64,
    /// Size and mtime at the last look, to skip the fingerprint check when
    /// nothing changed.
    pub(super) seen: (u64, i64, i64),
    pub(super) fp: u64,
    pub(super) fp_len: u64,
    /// For rotated-away files: when it last grew.
    pub(super) idle_since: Option<Instant>,
}

impl Handle {
    pub(super) fn open(path: &Path, offset: u64, fp_len: usize) -> io::Result<Handle> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let (fp, len) = fingerprint(&file, fp_len)?;
        let offset = offset.min(meta.len());
        Ok(Handle {
            file,
            dev: meta.dev(),
            ino: meta.ino(),
            offset,
            scan: offset,
            seen: (meta.len(), meta.mtime(), meta.mtime_nsec()),
            fp,
            fp_len: len,
            idle_since: None,
        })
    }

    pub(super) fn same_file(&self, meta: &Metadata) -> bool {
        self.dev == meta.dev() && self.ino == meta.ino()
    }

    pub(super) fn position(&self, path: &Path) -> FilePosition {
        FilePosition {
            path: path.to_owned(),
            dev: self.dev,
            ino: self.ino,
            offset: self.offset,
            fingerprint_len: self.fp_len,
            fingerprint: format!("{:016x}", self.fp),
        }
    }

    /// Check for truncation or rewriting; `true` if the file was reset to 0.
    pub(super) fn check_truncation(&mut self, want_fp: usize) -> io::Result<bool> {
        let meta = self.file.metadata()?;
        let seen = (meta.len(), meta.mtime(), meta.mtime_nsec());
        if seen == self.seen {
            return Ok(false);
        }
        self.seen = seen;
        let (old, _) = fingerprint(&self.file, self.fp_len as usize)?;
        if meta.len() < self.offset || old != self.fp {
            self.offset = 0;
            self.scan = 0;
            (self.fp, self.fp_len) = fingerprint(&self.file, want_fp)?;
            return Ok(true);
        }
        if (self.fp_len as usize) < want_fp && meta.len() > self.fp_len {
            (self.fp, self.fp_len) = fingerprint(&self.file, want_fp)?;
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
