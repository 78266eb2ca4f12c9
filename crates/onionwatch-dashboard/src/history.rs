//! Bounded in-memory history, persisted to an embedded store.
//!
//! Why redb: pure Rust (no C library to build or ship), a single file,
//! ACID transactions so a crash never leaves half a write, and actively
//! maintained; the data is a few thousand small series, which needs no more.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("history");

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
#[error("dashboard history store {path}: {detail} (delete the file to start a fresh history)")]
pub struct StoreError {
    path: String,
    detail: String,
}

/// Points per series, oldest first, at most `capacity` each, and at most
/// `max_series` series (new series beyond that are not recorded until
/// [`History::expire`] forgets some).
///
/// What changed since the last save is kept as sets of series names, so
/// the bookkeeping is bounded by the number of series, with a store or
/// without one (then [`History::forget_changes`] clears it), however many
/// points are recorded.
#[derive(Debug)]
pub struct History {
    series: BTreeMap<String, VecDeque<(i64, f64)>>,
    capacity: usize,
    max_series: usize,
    /// Series with points not saved yet.
    dirty: BTreeSet<String>,
    /// Series expired since the last save, to delete from the store (at
    /// most `max_series`: beyond that a stale series stays in the file,
    /// and expires again after the next load).
    removed: BTreeSet<String>,
}

impl History {
    /// An empty history.
    pub fn new(capacity: usize, max_series: usize) -> Self {
        Self {
            series: BTreeMap::new(),
            capacity: capacity.max(2),
            max_series,
            dirty: BTreeSet::new(),
            removed: BTreeSet::new(),
        }
    }

    /// Append a point (ignored if the series is new and the limit is reached).
    pub fn record(&mut self, key: &str, ts: i64, value: f64) {
        if !self.series.contains_key(key) && self.series.len() >= self.max_series {
            return;
        }
        let points = self.series.entry(key.to_owned()).or_default();
        if points.back().is_some_and(|(t, _)| *t >= ts) {
            return; // never rewrite the past
        }
        if points.len() == self.capacity {
            points.pop_front();
        }
        points.push_back((ts, value));
        if !self.dirty.contains(key) {
            self.dirty.insert(key.to_owned());
        }
        self.removed.remove(key);
    }

    /// Forget the series whose last point is older than `before` (unix
    /// seconds): a target, probe or project that stopped reporting. They
    /// are deleted from the store at the next save. Returns how many.
    pub fn expire(&mut self, before: i64) -> usize {
        let stale: Vec<String> = self
            .series
            .iter()
            .filter(|(_, p)| p.back().is_none_or(|(t, _)| *t < before))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &stale {
            self.series.remove(key);
            self.dirty.remove(key);
            if self.removed.len() < self.max_series {
                self.removed.insert(key.clone());
            }
        }
        stale.len()
    }

    /// Drop the record of what changed since the last save: without a
    /// store there is nothing to save it to.
    pub fn forget_changes(&mut self) {
        self.dirty.clear();
        self.removed.clear();
    }

    /// Series changed or expired since the last save (or
    /// [`History::forget_changes`]).
    pub fn pending_changes(&self) -> usize {
        self.dirty.len() + self.removed.len()
    }

    /// The points of `key`, oldest first.
    pub fn points(&self, key: &str) -> Vec<(i64, f64)> {
        self.series
            .get(key)
            .map(|p| p.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Number of series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// `true` without series.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

fn encode(points: &VecDeque<(i64, f64)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(points.len() * 16);
    for (t, v) in points {
        out.extend_from_slice(&t.to_le_bytes());
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

fn decode(bytes: &[u8]) -> VecDeque<(i64, f64)> {
    bytes
        .chunks_exact(16)
        .map(|c| {
            let t = i64::from_le_bytes(c[..8].try_into().expect("8 bytes"));
            let v = f64::from_le_bytes(c[8..].try_into().expect("8 bytes"));
            (t, v)
        })
        .collect()
}

/// The history file.
///
/// A failed write (a full disk) leaves redb refusing every later
/// transaction ("Previous I/O error occurred") until the file is opened
/// again, so the next save after a failure re-opens it first; the changes
/// not saved are kept and go with that save.
pub struct Store {
    /// `None` after a re-open failed.
    db: Mutex<Option<Database>>,
    /// A save failed: re-open before the next.
    failed: AtomicBool,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.path.display())
    }
}

impl Store {
    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError {
            path: self.path.display().to_string(),
            detail: e.to_string(),
        }
    }

    fn create(path: &Path) -> Result<Database, StoreError> {
        Database::create(path).map_err(|e| StoreError {
            path: path.display().to_string(),
            detail: e.to_string(),
        })
    }

    /// Open or create the file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            db: Mutex::new(Some(Self::create(path)?)),
            failed: AtomicBool::new(false),
            path: path.to_owned(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Database>> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Load every stored series into `history` (trimmed to its capacity).
    pub fn load(&self, history: &mut History) -> Result<(), StoreError> {
        let guard = self.lock();
        let db = guard.as_ref().ok_or_else(|| self.err("not open"))?;
        let txn = db.begin_read().map_err(|e| self.err(e))?;
        let table = match txn.open_table(TABLE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(e) => return Err(self.err(e)),
        };
        for entry in table.iter().map_err(|e| self.err(e))? {
            let (k, v) = entry.map_err(|e| self.err(e))?;
            if history.series.len() >= history.max_series {
                break;
            }
            let mut points = decode(v.value());
            while points.len() > history.capacity {
                points.pop_front();
            }
            history.series.insert(k.value().to_owned(), points);
        }
        Ok(())
    }

    /// Write the series changed since the last save and delete the
    /// expired ones, in one transaction; after a failed save, re-open the
    /// file first. On failure the changes stay for the next save.
    pub fn save(&self, history: &mut History) -> Result<(), StoreError> {
        if history.dirty.is_empty() && history.removed.is_empty() {
            return Ok(());
        }
        let mut guard = self.lock();
        if self.failed.load(Ordering::Relaxed) || guard.is_none() {
            // redb holds a lock on the file: the old handle goes first.
            *guard = None;
            *guard = Some(Self::create(&self.path)?);
        }
        let db = guard.as_ref().expect("opened above");
        let saved = self.write(db, history);
        self.failed.store(saved.is_err(), Ordering::Relaxed);
        saved?;
        history.forget_changes();
        Ok(())
    }

    fn write(&self, db: &Database, history: &History) -> Result<(), StoreError> {
        let txn = db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = txn.open_table(TABLE).map_err(|e| self.err(e))?;
            for key in &history.removed {
                table.remove(key.as_str()).map_err(|e| self.err(e))?;
            }
            for key in &history.dirty {
                if let Some(points) = history.series.get(key) {
                    table
                        .insert(key.as_str(), encode(points).as_slice())
                        .map_err(|e| self.err(e))?;
                }
            }
        }
        txn.commit().map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_is_bounded_and_ordered() {
        let mut h = History::new(3, 2);
        for t in 0..5 {
            h.record("a", t, t as f64);
        }
        assert_eq!(h.points("a"), vec![(2, 2.0), (3, 3.0), (4, 4.0)]);
        h.record("a", 4, 9.0);
        assert_eq!(
            h.points("a").last(),
            Some(&(4, 4.0)),
            "the past is not rewritten"
        );
        h.record("b", 0, 1.0);
        h.record("c", 0, 1.0);
        assert_eq!(h.len(), 2, "series beyond the limit are dropped");
        assert!(h.points("c").is_empty());
        assert_eq!(h.expire(1), 1, "b's last point is older");
        h.record("c", 5, 1.0);
        assert_eq!(h.points("c"), vec![(5, 1.0)], "room again after expiry");
    }

    #[test]
    fn changes_are_bounded_by_the_series_without_a_save() {
        let mut h = History::new(4, 10);
        for t in 0..1000 {
            for k in ["a", "b", "c"] {
                h.record(k, t, 1.0);
            }
        }
        assert_eq!(h.pending_changes(), 3);
        h.forget_changes();
        assert_eq!(h.pending_changes(), 0);
    }

    #[test]
    fn expired_series_leave_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.redb");
        {
            let store = Store::open(&path).unwrap();
            let mut h = History::new(10, 10);
            h.record("stays", 100, 1.0);
            h.record("goes", 100, 1.0);
            store.save(&mut h).unwrap();
            h.record("stays", 200, 2.0);
            assert_eq!(h.expire(150), 1);
            store.save(&mut h).unwrap();
            assert_eq!(h.pending_changes(), 0);
        }
        let store = Store::open(&path).unwrap();
        let mut h = History::new(10, 10);
        store.load(&mut h).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h.points("stays"), vec![(100, 1.0), (200, 2.0)]);
    }

    #[test]
    fn store_round_trips_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.redb");
        {
            let store = Store::open(&path).unwrap();
            let mut h = History::new(10, 10);
            store.load(&mut h).unwrap();
            assert!(h.is_empty());
            h.record("x|1", 100, 0.5);
            h.record("x|1", 115, f64::NAN);
            h.record("x|1", 130, 2.0);
            store.save(&mut h).unwrap();
        }
        let store = Store::open(&path).unwrap();
        let mut h = History::new(2, 10);
        store.load(&mut h).unwrap();
        let p = h.points("x|1");
        assert_eq!(p.len(), 2, "trimmed to capacity on load");
        assert_eq!((p[0].0, p[1]), (115, (130, 2.0)));
        assert!(p[0].1.is_nan());
        assert_eq!(
            decode(&[1, 2, 3]).len(),
            0,
            "a torn record decodes to nothing"
        );
    }

    #[test]
    fn a_file_that_is_not_a_store_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.redb");
        std::fs::write(
            &path,
            b"this is not a redb file, just text of some length.....",
        )
        .unwrap();
        let err = Store::open(&path).unwrap_err();
        assert!(err.to_string().contains("delete the file"), "{err}");
    }
}
