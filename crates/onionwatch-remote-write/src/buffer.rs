//! The bounded FIFO of batches not yet accepted by a receiver.
//!
//! On disk (one directory per receiver under `--state-dir`), each batch is
//! one segment file `<20-digit sequence>.seg`: a 16-byte header (`OWRW`,
//! version 1, three zero bytes, the sample count as u64 little-endian)
//! then the compressed body. A segment is written to a `.tmp` file,
//! fsync'd and renamed, and the directory fsync'd, so after a crash a
//! segment is either whole or absent; it is deleted once the receiver
//! accepted it (a crash before the delete sends it again, which a
//! receiver takes as a duplicate of the same values). Without a
//! directory the same queue lives in memory and dies with the process.
//! Either way the bytes are bounded: a new batch over the bound drops
//! the oldest ones first, counted.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::batch::Batch;

const MAGIC: &[u8; 8] = b"OWRW\x01\0\0\0";
const HEADER: usize = 16;

/// The buffer directory cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("remote_write buffer {}: {what}: {source} (give each onionwatch process its own --state-dir, check its permissions, or remove the directory to start empty)", dir.display())]
pub struct BufferError {
    /// The directory.
    pub dir: PathBuf,
    /// What failed.
    pub what: &'static str,
    /// The I/O error.
    pub source: std::io::Error,
}

struct Entry {
    seq: u64,
    samples: u64,
    /// Bytes it counts against the bound (the body; plus the header on disk).
    size: u64,
    /// The body, in memory mode.
    body: Option<Vec<u8>>,
}

/// What [`Buffer::push`] dropped to stay within its bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Batches dropped.
    pub batches: u64,
    /// Samples in them.
    pub samples: u64,
}

/// A bounded FIFO of batches, on disk or in memory.
pub struct Buffer {
    dir: Option<PathBuf>,
    /// Held (flock) while the buffer is open: two processes appending to
    /// and deleting from one directory would lose and repeat batches.
    _lock: Option<std::fs::File>,
    queue: VecDeque<Entry>,
    bytes: u64,
    max_bytes: u64,
    next_seq: u64,
}

impl std::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Buffer")
            .field("dir", &self.dir)
            .field("batches", &self.queue.len())
            .field("bytes", &self.bytes)
            .finish()
    }
}

fn segment_name(seq: u64) -> String {
    format!("{seq:020}.seg")
}

impl Buffer {
    /// An in-memory buffer of at most `max_bytes`.
    pub fn memory(max_bytes: u64) -> Buffer {
        Buffer {
            dir: None,
            _lock: None,
            queue: VecDeque::new(),
            bytes: 0,
            max_bytes,
            next_seq: 0,
        }
    }

    /// A buffer in `dir` (created if missing), with the segments a previous
    /// run left there, oldest first. Leftover `.tmp` files (a write cut
    /// short) are deleted; unreadable segments are deleted and counted in
    /// the returned [`Dropped`]. If they exceed `max_bytes` (a smaller
    /// bound than before), the oldest are dropped too.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<(Buffer, Dropped), BufferError> {
        let err = |what| {
            move |source| BufferError {
                dir: dir.to_owned(),
                what,
                source,
            }
        };
        std::fs::create_dir_all(dir).map_err(err("cannot create it"))?;
        let lock =
            std::fs::File::create(dir.join("lock")).map_err(err("cannot create its lock file"))?;
        // SAFETY: flock(2) on a descriptor we own.
        if unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&lock),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        } != 0
        {
            return Err(BufferError {
                dir: dir.to_owned(),
                what: "another onionwatch process pushes to the same URL from this --state-dir",
                source: std::io::Error::last_os_error(),
            });
        }
        let mut found = Vec::new();
        let mut dropped = Dropped::default();
        for e in std::fs::read_dir(dir).map_err(err("cannot list it"))? {
            let e = e.map_err(err("cannot list it"))?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
                continue;
            }
            let Some(seq) = name
                .strip_suffix(".seg")
                .filter(|s| s.len() == 20)
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            match read_header(&e.path()) {
                Some((samples, size)) => found.push(Entry {
                    seq,
                    samples,
                    size,
                    body: None,
                }),
                None => {
                    tracing::warn!(
                        "remote_write: dropping the unreadable buffer segment {}",
                        e.path().display()
                    );
                    let _ = std::fs::remove_file(e.path());
                    dropped.batches += 1;
                }
            }
        }
        found.sort_by_key(|e| e.seq);
        let mut me = Buffer {
            dir: Some(dir.to_owned()),
            _lock: Some(lock),
            next_seq: found.last().map_or(0, |e| e.seq + 1),
            bytes: found.iter().map(|e| e.size).sum(),
            queue: found.into(),
            max_bytes,
        };
        let over = me.make_room(0);
        dropped.batches += over.batches;
        dropped.samples += over.samples;
        Ok((me, dropped))
    }

    /// Bytes held (what the bound applies to).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Batches held.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Nothing held?
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Samples held.
    pub fn samples(&self) -> u64 {
        self.queue.iter().map(|e| e.samples).sum()
    }

    fn path(&self, seq: u64) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(segment_name(seq)))
    }

    /// Drop the oldest batches until `incoming` more bytes fit.
    fn make_room(&mut self, incoming: u64) -> Dropped {
        let mut dropped = Dropped::default();
        while self.bytes + incoming > self.max_bytes {
            let Some(old) = self.queue.pop_front() else {
                break;
            };
            self.forget(&old);
            dropped.batches += 1;
            dropped.samples += old.samples;
        }
        dropped
    }

    fn forget(&mut self, e: &Entry) {
        self.bytes -= e.size;
        if let Some(p) = self.path(e.seq) {
            if let Err(err) = std::fs::remove_file(&p) {
                if err.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!("remote_write: cannot delete {}: {err}", p.display());
                }
            }
        }
    }

    /// Append `batch`, dropping the oldest batches if it would not fit
    /// (the batch itself when it is larger than the whole bound, or cannot
    /// be written).
    pub fn push(&mut self, batch: &Batch) -> Dropped {
        let size = batch.body.len() as u64 + if self.dir.is_some() { HEADER as u64 } else { 0 };
        if size > self.max_bytes {
            return Dropped {
                batches: 1,
                samples: batch.samples,
            };
        }
        let mut dropped = self.make_room(size);
        let seq = self.next_seq;
        self.next_seq += 1;
        let body = match &self.dir {
            None => Some(batch.body.clone()),
            Some(dir) => {
                if let Err(e) = write_segment(dir, seq, batch) {
                    tracing::warn!(
                        "remote_write: cannot write a batch to the buffer in {}, dropping it: {e}",
                        dir.display()
                    );
                    dropped.batches += 1;
                    dropped.samples += batch.samples;
                    return dropped;
                }
                None
            }
        };
        self.bytes += size;
        self.queue.push_back(Entry {
            seq,
            samples: batch.samples,
            size,
            body,
        });
        dropped
    }

    /// The oldest batch: its id (for [`Buffer::remove`]), samples and body.
    /// A segment that cannot be read any more is dropped and counted in
    /// the second value.
    pub fn front(&mut self) -> (Option<(u64, u64, Vec<u8>)>, Dropped) {
        let mut dropped = Dropped::default();
        while let Some(e) = self.queue.front() {
            if let Some(b) = &e.body {
                return (Some((e.seq, e.samples, b.clone())), dropped);
            }
            let path = self.path(e.seq).unwrap_or_default();
            match read_segment(&path) {
                Some(body) => return (Some((e.seq, e.samples, body)), dropped),
                None => {
                    tracing::warn!(
                        "remote_write: dropping the unreadable buffer segment {}",
                        path.display()
                    );
                    if let Some(e) = self.queue.pop_front() {
                        self.forget(&e);
                        dropped.batches += 1;
                        dropped.samples += e.samples;
                    }
                }
            }
        }
        (None, dropped)
    }

    /// Remove batch `id` once the receiver took it (or refused it for good);
    /// false if it was dropped meanwhile.
    pub fn remove(&mut self, id: u64) -> bool {
        match self.queue.front() {
            Some(e) if e.seq == id => {
                if let Some(e) = self.queue.pop_front() {
                    self.forget(&e);
                }
                true
            }
            _ => false,
        }
    }
}

fn write_segment(dir: &Path, seq: u64, batch: &Batch) -> std::io::Result<()> {
    let tmp = dir.join(format!("{seq:020}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(MAGIC)?;
    f.write_all(&batch.samples.to_le_bytes())?;
    f.write_all(&batch.body)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, dir.join(segment_name(seq)))?;
    // The rename itself survives a crash only once the directory is synced.
    std::fs::File::open(dir)?.sync_all()
}

/// The sample count and size of a segment, if its header is ours.
fn read_header(path: &Path) -> Option<(u64, u64)> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let mut h = [0u8; HEADER];
    f.read_exact(&mut h).ok()?;
    if &h[..8] != MAGIC || len == HEADER as u64 {
        return None;
    }
    Some((u64::from_le_bytes(h[8..].try_into().ok()?), len))
}

/// A segment's body: read whole, checked to be valid snappy (a torn or
/// tampered file is dropped, not sent).
fn read_segment(path: &Path) -> Option<Vec<u8>> {
    let data = std::fs::read(path).ok()?;
    if data.len() <= HEADER || &data[..8] != MAGIC {
        return None;
    }
    let body = data[HEADER..].to_vec();
    let len = snap::raw::decompress_len(&body).ok()?;
    // Bodies are small; a header claiming gigabytes is not ours.
    if len > 256 << 20 {
        return None;
    }
    snap::raw::Decoder::new().decompress_vec(&body).ok()?;
    Some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(samples: u64, fill: u8, len: usize) -> Batch {
        let raw: Vec<u8> = (0..len)
            .map(|i| fill.wrapping_add((i * 7 % 251) as u8))
            .collect();
        Batch {
            samples,
            raw_bytes: raw.len() as u64,
            body: snap::raw::Encoder::new().compress_vec(&raw).unwrap(),
        }
    }

    fn drain(b: &mut Buffer) -> Vec<u64> {
        let mut out = Vec::new();
        while let (Some((id, samples, _)), _) = b.front() {
            out.push(samples);
            assert!(b.remove(id));
        }
        out
    }

    #[test]
    fn memory_buffer_is_fifo_and_drops_oldest_first() {
        let one = batch(1, 0, 1000).body.len() as u64;
        let mut b = Buffer::memory(3 * one);
        for i in 1..=3 {
            assert_eq!(b.push(&batch(i, 0, 1000)), Dropped::default());
        }
        assert_eq!(b.bytes(), 3 * one);
        assert_eq!(
            b.push(&batch(4, 0, 1000)),
            Dropped {
                batches: 1,
                samples: 1
            }
        );
        assert!(b.bytes() <= 3 * one);
        assert_eq!(drain(&mut b), [2, 3, 4]);
        assert_eq!(b.bytes(), 0);
        // Bigger than the whole bound: the new batch itself is dropped.
        let big = batch(9, 0, 100_000);
        let mut small = Buffer::memory(10);
        assert_eq!(small.push(&big).samples, 9);
        assert!(small.is_empty());
    }

    #[test]
    fn disk_buffer_survives_a_restart_bounded_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let one = batch(1, 0, 1000).body.len() as u64 + HEADER as u64;
        {
            let (mut b, dropped) = Buffer::open(dir.path(), 4 * one).unwrap();
            assert_eq!(dropped, Dropped::default());
            for i in 1..=6 {
                b.push(&batch(i, i as u8, 1000));
            }
            assert_eq!(b.len(), 4, "two oldest dropped");
            assert!(b.bytes() <= 4 * one);
            // One sent before the "crash".
            let (Some((id, samples, body)), _) = b.front() else {
                panic!("empty")
            };
            assert_eq!(samples, 3);
            assert_eq!(body, batch(3, 3, 1000).body);
            assert!(b.remove(id));
        }
        // A write cut short, and a stranger, are not segments.
        std::fs::write(dir.path().join("00000000000000000099.tmp"), b"half").unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        let (mut b, dropped) = Buffer::open(dir.path(), 4 * one).unwrap();
        assert_eq!(dropped, Dropped::default());
        assert!(!dir.path().join("00000000000000000099.tmp").exists());
        assert_eq!(b.samples(), 4 + 5 + 6);
        b.push(&batch(7, 7, 1000));
        assert_eq!(drain(&mut b), [4, 5, 6, 7], "FIFO across the restart");
        // A smaller bound at the next start keeps the newest.
        drop(b);
        let (mut b, _) = Buffer::open(dir.path(), 4 * one).unwrap();
        for i in 10..14 {
            b.push(&batch(i, 0, 1000));
        }
        drop(b);
        let (mut b, dropped) = Buffer::open(dir.path(), 2 * one).unwrap();
        assert_eq!(dropped.samples, 10 + 11);
        assert_eq!(drain(&mut b), [12, 13]);
    }

    #[test]
    fn one_process_at_a_time_uses_a_buffer_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = Buffer::open(dir.path(), 1 << 20).unwrap();
        let err = Buffer::open(dir.path(), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("another onionwatch"), "{err}");
        drop(first);
        assert!(Buffer::open(dir.path(), 1 << 20).is_ok());
    }

    #[test]
    fn corrupt_segments_are_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (mut b, _) = Buffer::open(dir.path(), 1 << 20).unwrap();
        b.push(&batch(1, 0, 500));
        b.push(&batch(2, 0, 500));
        b.push(&batch(3, 0, 500));
        drop(b);
        // Segment 0: wrong magic (dropped at open); segment 1: torn body
        // (dropped when it is next to send).
        let seg = |n: u64| dir.path().join(segment_name(n));
        std::fs::write(seg(0), b"garbage garbage garbage").unwrap();
        let data = std::fs::read(seg(1)).unwrap();
        std::fs::write(seg(1), &data[..HEADER + 5]).unwrap();
        let (mut b, dropped) = Buffer::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(dropped.batches, 1);
        let (front, dropped) = b.front();
        assert_eq!(dropped.samples, 2);
        assert_eq!(front.map(|f| f.1), Some(3));
    }
}
