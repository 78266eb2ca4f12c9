//! Bounded in-memory history, downsampled with age, persisted to an
//! embedded store.
//!
//! Each series keeps its last `raw` points at full resolution and, for
//! older times, one mean per `step` seconds (a bucket) up to `buckets`
//! buckets; at most `max_series` series. So a series holds at most
//! `raw + buckets` points of 16 bytes, and the whole history at most
//! `max_series × (raw + buckets)` points, whatever the sources send (see
//! [`History::max_points`]). Each onion service also keeps its last
//! [`MAX_EVENTS`] failures.
//!
//! Why redb: pure Rust (no C library to build or ship), a single file,
//! ACID transactions so a crash never leaves half a write, and actively
//! maintained; the data is a few thousand small series, which needs no more.
//! Full-resolution points and buckets are separate records, so the larger
//! bucket record is rewritten only when a bucket closes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};

/// `r:<key>` full-resolution points, `b:<key>` buckets, `e:<name>` failure
/// events. (Version 1 kept one record per series in the `history` table;
/// it is ignored, and dropped at the first save.)
const TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("history_v2");
const OLD_TABLE: TableDefinition<&str, &[u8]> = TableDefinition::new("history");

/// Failures kept per onion service.
pub const MAX_EVENTS: usize = 20;
/// Bytes of a stage or reason kept in a failure event.
const MAX_TEXT: usize = 200;

/// Why the store could not be used.
#[derive(Debug, thiserror::Error)]
#[error("dashboard history store {path}: {detail} (delete the file to start a fresh history)")]
pub struct StoreError {
    path: String,
    detail: String,
}

/// One failed probe as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureEvent {
    /// When it was seen (sample time), unix seconds.
    pub timestamp: i64,
    /// The probed address.
    pub address: String,
    /// The failure stage (`descriptor_not_found`, …).
    pub stage: String,
    /// The error reasons counted at the same time (`connection_refused`, …).
    pub reason: String,
}

#[derive(Debug, Default)]
struct Series {
    raw: VecDeque<(i64, f64)>,
    buckets: VecDeque<(i64, f64)>,
    /// The open bucket: start, sum and count of its finite points.
    open: Option<(i64, f64, u32)>,
}

/// The bounded history (see the [module docs](self)).
///
/// What changed since the last save is kept as sets of names, so the
/// bookkeeping is bounded by the number of series, with a store or without
/// one (then [`History::forget_changes`] clears it), however many points
/// are recorded.
#[derive(Debug)]
pub struct History {
    series: BTreeMap<String, Series>,
    events: BTreeMap<String, VecDeque<FailureEvent>>,
    raw: usize,
    step: i64,
    buckets: usize,
    max_series: usize,
    /// Series with full-resolution points not saved yet.
    dirty: BTreeSet<String>,
    /// Series with a bucket closed since the last save.
    dirty_buckets: BTreeSet<String>,
    /// Event lists changed since the last save.
    dirty_events: BTreeSet<String>,
    /// Series (and event lists) expired since the last save, to delete from
    /// the store (at most `max_series` each: beyond that a stale one stays
    /// in the file, and expires again after the next load).
    removed: BTreeSet<String>,
    removed_events: BTreeSet<String>,
}

impl History {
    /// An empty history: `raw` full-resolution points per series, then
    /// `buckets` means of `step` seconds, at most `max_series` series (and
    /// as many event lists).
    pub fn new(raw: usize, step: i64, buckets: usize, max_series: usize) -> Self {
        Self {
            series: BTreeMap::new(),
            events: BTreeMap::new(),
            raw: raw.max(2),
            step: step.max(1),
            buckets,
            max_series,
            dirty: BTreeSet::new(),
            dirty_buckets: BTreeSet::new(),
            dirty_events: BTreeSet::new(),
            removed: BTreeSet::new(),
            removed_events: BTreeSet::new(),
        }
    }

    /// Points kept at most, all series together.
    pub fn max_points(&self) -> usize {
        self.max_series.saturating_mul(self.raw + self.buckets)
    }

    /// Points held now, all series together.
    pub fn total_points(&self) -> usize {
        self.series
            .values()
            .map(|s| s.raw.len() + s.buckets.len())
            .sum()
    }

    /// Append a point (ignored if the series is new and the limit is
    /// reached, or if it is not newer than the last one).
    pub fn record(&mut self, key: &str, ts: i64, value: f64) {
        if !self.series.contains_key(key) && self.series.len() >= self.max_series {
            return;
        }
        let (step, raw, max_buckets) = (self.step, self.raw, self.buckets);
        let s = self.series.entry(key.to_owned()).or_default();
        if s.raw.back().is_some_and(|(t, _)| *t >= ts) {
            return; // never rewrite the past
        }
        if s.raw.len() == raw {
            s.raw.pop_front();
        }
        s.raw.push_back((ts, value));
        let start = ts - ts.rem_euclid(step);
        let closed = match &mut s.open {
            Some((b, sum, n)) if *b == start => {
                if value.is_finite() {
                    *sum += value;
                    *n += 1;
                }
                None
            }
            open => open.replace((
                start,
                if value.is_finite() { value } else { 0.0 },
                u32::from(value.is_finite()),
            )),
        };
        if let Some((b, sum, n)) = closed {
            if n > 0 && max_buckets > 0 {
                if s.buckets.len() == max_buckets {
                    s.buckets.pop_front();
                }
                s.buckets.push_back((b, sum / f64::from(n)));
                if !self.dirty_buckets.contains(key) {
                    self.dirty_buckets.insert(key.to_owned());
                }
            }
        }
        if !self.dirty.contains(key) {
            self.dirty.insert(key.to_owned());
        }
        self.removed.remove(key);
    }

    /// Add a failure for `name` (the oldest beyond [`MAX_EVENTS`] go; a new
    /// name beyond `max_series` names is not recorded).
    pub fn record_event(&mut self, name: &str, mut event: FailureEvent) {
        if !self.events.contains_key(name) && self.events.len() >= self.max_series {
            return;
        }
        for s in [&mut event.stage, &mut event.reason, &mut event.address] {
            if s.len() > MAX_TEXT {
                let mut end = MAX_TEXT;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                s.truncate(end);
            }
        }
        let list = self.events.entry(name.to_owned()).or_default();
        if list.len() == MAX_EVENTS {
            list.pop_front();
        }
        list.push_back(event);
        self.dirty_events.insert(name.to_owned());
        self.removed_events.remove(name);
    }

    /// The failures of `name`, oldest first.
    pub fn events(&self, name: &str) -> Vec<FailureEvent> {
        self.events
            .get(name)
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Forget the series whose last point is older than `before` (unix
    /// seconds), and the failures of names whose last failure is: a target,
    /// probe or project that stopped reporting. They are deleted from the
    /// store at the next save. Returns how many series.
    pub fn expire(&mut self, before: i64) -> usize {
        let stale: Vec<String> = self
            .series
            .iter()
            .filter(|(_, s)| s.raw.back().is_none_or(|(t, _)| *t < before))
            .map(|(k, _)| k.clone())
            .collect();
        for key in &stale {
            self.series.remove(key);
            self.dirty.remove(key);
            self.dirty_buckets.remove(key);
            if self.removed.len() < self.max_series {
                self.removed.insert(key.clone());
            }
        }
        let old: Vec<String> = self
            .events
            .iter()
            .filter(|(_, l)| l.back().is_none_or(|e| e.timestamp < before))
            .map(|(k, _)| k.clone())
            .collect();
        for name in old {
            self.events.remove(&name);
            self.dirty_events.remove(&name);
            if self.removed_events.len() < self.max_series {
                self.removed_events.insert(name);
            }
        }
        stale.len()
    }

    /// Drop the record of what changed since the last save: without a
    /// store there is nothing to save it to.
    pub fn forget_changes(&mut self) {
        self.dirty.clear();
        self.dirty_buckets.clear();
        self.dirty_events.clear();
        self.removed.clear();
        self.removed_events.clear();
    }

    /// Series changed or expired since the last save (or
    /// [`History::forget_changes`]).
    pub fn pending_changes(&self) -> usize {
        self.dirty.len()
            + self.dirty_buckets.len()
            + self.dirty_events.len()
            + self.removed.len()
            + self.removed_events.len()
    }

    /// The points of `key` from `since` (unix seconds) on, oldest first:
    /// bucket means (timed at the bucket's start) before the oldest
    /// full-resolution point, then the full-resolution points.
    pub fn points_since(&self, key: &str, since: i64) -> Vec<(i64, f64)> {
        let Some(s) = self.series.get(key) else {
            return Vec::new();
        };
        let first_raw = s.raw.front().map_or(i64::MAX, |p| p.0);
        s.buckets
            .iter()
            .filter(|(t, _)| *t >= since && t.saturating_add(self.step) <= first_raw)
            .chain(s.raw.iter().filter(|(t, _)| *t >= since))
            .copied()
            .collect()
    }

    /// Every point of `key`, oldest first.
    pub fn points(&self, key: &str) -> Vec<(i64, f64)> {
        self.points_since(key, i64::MIN)
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

/// The share of time `points` (0/1 reachability, or bucket means of it)
/// were up between `since` and `now`: each point counts until the next one
/// (the last until `now`), at most `max_gap` seconds, so a time without
/// samples (the monitor was stopped) counts neither way. `None` without
/// points in the window.
pub fn uptime_ratio(points: &[(i64, f64)], since: i64, now: i64, max_gap: i64) -> Option<f64> {
    let inside: Vec<&(i64, f64)> = points
        .iter()
        .filter(|(t, v)| *t >= since && *t <= now && v.is_finite())
        .collect();
    let (mut up, mut total) = (0.0, 0.0);
    for (i, (t, v)) in inside.iter().map(|p| (p.0, p.1)).enumerate() {
        let next = inside.get(i + 1).map_or(now, |p| p.0);
        let w = (next - t).clamp(1, max_gap.max(1)) as f64;
        up += w * v.clamp(0.0, 1.0);
        total += w;
    }
    (total > 0.0).then(|| up / total)
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

    /// Load every stored series and event list into `history` (trimmed to
    /// its bounds). The open bucket is rebuilt from the full-resolution
    /// points newer than the last stored bucket.
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
            let k = k.value();
            if let Some(name) = k.strip_prefix("e:") {
                if history.events.len() >= history.max_series {
                    continue;
                }
                let Ok(list) = serde_json::from_slice::<VecDeque<FailureEvent>>(v.value()) else {
                    continue; // a torn or foreign record: the history goes on without it
                };
                let skip = list.len().saturating_sub(MAX_EVENTS);
                history
                    .events
                    .insert(name.to_owned(), list.into_iter().skip(skip).collect());
                continue;
            }
            let (buckets, key) = match (k.strip_prefix("r:"), k.strip_prefix("b:")) {
                (Some(key), _) => (false, key),
                (_, Some(key)) => (true, key),
                _ => continue,
            };
            if !history.series.contains_key(key) && history.series.len() >= history.max_series {
                continue;
            }
            let mut points = decode(v.value());
            let cap = if buckets {
                history.buckets
            } else {
                history.raw
            };
            while points.len() > cap {
                points.pop_front();
            }
            let s = history.series.entry(key.to_owned()).or_default();
            if buckets {
                s.buckets = points;
            } else {
                s.raw = points;
            }
        }
        let step = history.step;
        for s in history.series.values_mut() {
            let after = s.buckets.back().map_or(i64::MIN, |b| b.0 + step);
            for &(t, v) in s.raw.iter().filter(|(t, v)| *t >= after && v.is_finite()) {
                let start = t - t.rem_euclid(step);
                match &mut s.open {
                    Some((b, sum, n)) if *b == start => {
                        *sum += v;
                        *n += 1;
                    }
                    open => {
                        if let Some((b, sum, n)) = open.replace((start, v, 1)) {
                            if s.buckets.len() == history.buckets && history.buckets > 0 {
                                s.buckets.pop_front();
                            }
                            if history.buckets > 0 {
                                s.buckets.push_back((b, sum / f64::from(n)));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Records in the file (full-resolution, bucket and failure records):
    /// at most three per series of the history that saves into it.
    pub fn records(&self) -> Result<u64, StoreError> {
        let guard = self.lock();
        let db = guard.as_ref().ok_or_else(|| self.err("not open"))?;
        let txn = db.begin_read().map_err(|e| self.err(e))?;
        match txn.open_table(TABLE) {
            Ok(t) => t.len().map_err(|e| self.err(e)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(0),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Write what changed since the last save and delete what expired, in
    /// one transaction; after a failed save, re-open the file first. On
    /// failure the changes stay for the next save.
    pub fn save(&self, history: &mut History) -> Result<(), StoreError> {
        if history.pending_changes() == 0 {
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
            // Version 1's table: nothing reads it any more.
            let _ = txn.delete_table(OLD_TABLE);
            let mut table = txn.open_table(TABLE).map_err(|e| self.err(e))?;
            for key in &history.removed {
                table
                    .remove(format!("r:{key}").as_str())
                    .map_err(|e| self.err(e))?;
                table
                    .remove(format!("b:{key}").as_str())
                    .map_err(|e| self.err(e))?;
            }
            for name in &history.removed_events {
                table
                    .remove(format!("e:{name}").as_str())
                    .map_err(|e| self.err(e))?;
            }
            for key in &history.dirty {
                if let Some(s) = history.series.get(key) {
                    table
                        .insert(format!("r:{key}").as_str(), encode(&s.raw).as_slice())
                        .map_err(|e| self.err(e))?;
                }
            }
            for key in &history.dirty_buckets {
                if let Some(s) = history.series.get(key) {
                    table
                        .insert(format!("b:{key}").as_str(), encode(&s.buckets).as_slice())
                        .map_err(|e| self.err(e))?;
                }
            }
            for name in &history.dirty_events {
                if let Some(list) = history.events.get(name) {
                    let bytes = serde_json::to_vec(list).map_err(|e| self.err(e))?;
                    table
                        .insert(format!("e:{name}").as_str(), bytes.as_slice())
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
        let mut h = History::new(3, 1, 0, 2);
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
    fn older_points_are_downsampled_to_bucket_means() {
        // 4 points at full resolution, then 60 s buckets, at most 3.
        let mut h = History::new(4, 60, 3, 10);
        for i in 0..40 {
            h.record("x", i * 15, (i % 4) as f64);
        }
        let p = h.points("x");
        // Raw: 540…585; the last three closed buckets before them.
        assert_eq!(
            p,
            vec![
                (360, 1.5),
                (420, 1.5),
                (480, 1.5),
                (540, 0.0),
                (555, 1.0),
                (570, 2.0),
                (585, 3.0)
            ]
        );
        assert_eq!(h.total_points(), 7);
        assert_eq!(h.points_since("x", 400), p[1..].to_vec());
        // NaN does not poison a mean.
        let mut h = History::new(2, 10, 5, 1);
        for (t, v) in [
            (0, 1.0),
            (1, f64::NAN),
            (2, 0.0),
            (10, 5.0),
            (20, 1.0),
            (30, 1.0),
        ] {
            h.record("n", t, v);
        }
        assert_eq!(h.points("n")[0], (0, 0.5));
    }

    #[test]
    fn the_bound_holds_whatever_is_recorded() {
        let mut h = History::new(8, 60, 16, 50);
        for t in 0..2_000 {
            for k in 0..(t % 97) {
                h.record(&format!("s{}", (k * 7919 + t) % 400), t * 15, 1.0);
            }
        }
        assert_eq!(h.len(), 50);
        assert!(h.total_points() <= h.max_points(), "{}", h.total_points());
        assert_eq!(h.max_points(), 50 * 24);
        for i in 0..200 {
            h.record_event(
                &format!("svc{i}"),
                FailureEvent {
                    timestamp: i,
                    address: "x".repeat(10_000),
                    stage: "pattern".into(),
                    reason: "r".into(),
                },
            );
        }
        assert_eq!(h.events.len(), 50);
        for _ in 0..100 {
            h.record_event("svc0", h.events("svc0")[0].clone());
        }
        assert_eq!(h.events("svc0").len(), MAX_EVENTS);
        assert_eq!(h.events("svc0")[0].address.len(), MAX_TEXT);
    }

    #[test]
    fn the_store_stays_bounded_whatever_is_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.redb");
        let store = Store::open(&path).unwrap();
        let mut h = History::new(8, 60, 16, 50);
        // 400 names come and go; at most 50 are kept, the others expire.
        for round in 0..200i64 {
            let ts = round * 15;
            for k in 0..40 {
                let name = format!("s{}", (round / 10 * 7 + k) % 400);
                h.record(&name, ts, 1.0);
                h.record_event(
                    &name,
                    FailureEvent {
                        timestamp: ts,
                        address: "a".repeat(300),
                        stage: "other".into(),
                        reason: "r".repeat(300),
                    },
                );
            }
            h.expire(ts - 3_000);
            store.save(&mut h).unwrap();
            let records = store.records().unwrap();
            assert!(records <= 3 * 50, "round {round}: {records} records");
        }
        // Each record is bounded too: 24 points, 20 events of bounded text.
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size < 8 * 1024 * 1024, "{size} bytes");
    }

    #[test]
    fn uptime_is_the_share_of_time_up() {
        // Up for 45 s, down for 15 s: 75 %.
        let p = [(0, 1.0), (15, 1.0), (30, 1.0), (45, 0.0)];
        assert_eq!(uptime_ratio(&p, 0, 60, 300), Some(0.75));
        // Only the window counts.
        assert_eq!(uptime_ratio(&p, 45, 60, 300), Some(0.0));
        assert_eq!(uptime_ratio(&p, 100, 200, 300), None);
        // A gap (monitor stopped) counts at most max_gap.
        let gap = [(0, 1.0), (10_000, 0.0)];
        assert_eq!(uptime_ratio(&gap, 0, 10_300, 300), Some(0.5));
        // Bucket means count as partial uptime.
        assert_eq!(uptime_ratio(&[(0, 0.25)], 0, 300, 300), Some(0.25));
        assert_eq!(uptime_ratio(&[(0, f64::NAN)], 0, 300, 300), None);
    }

    #[test]
    fn changes_are_bounded_by_the_series_without_a_save() {
        let mut h = History::new(4, 15, 10, 10);
        for t in 0..1000 {
            for k in ["a", "b", "c"] {
                h.record(k, t, 1.0);
            }
        }
        assert_eq!(h.pending_changes(), 6, "3 series, with closed buckets");
        h.forget_changes();
        assert_eq!(h.pending_changes(), 0);
    }

    #[test]
    fn expired_series_leave_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.redb");
        let event = |t| FailureEvent {
            timestamp: t,
            address: "a.onion".into(),
            stage: "pattern".into(),
            reason: "pattern_not_matched".into(),
        };
        {
            let store = Store::open(&path).unwrap();
            let mut h = History::new(10, 60, 10, 10);
            h.record("stays", 100, 1.0);
            h.record("goes", 100, 1.0);
            h.record_event("stays", event(100));
            h.record_event("goes", event(100));
            store.save(&mut h).unwrap();
            h.record("stays", 200, 2.0);
            h.record_event("stays", event(200));
            assert_eq!(h.expire(150), 1);
            store.save(&mut h).unwrap();
            assert_eq!(h.pending_changes(), 0);
        }
        let store = Store::open(&path).unwrap();
        let mut h = History::new(10, 60, 10, 10);
        store.load(&mut h).unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h.points("stays"), vec![(100, 1.0), (200, 2.0)]);
        assert_eq!(h.events("stays"), vec![event(100), event(200)]);
        assert!(h.events("goes").is_empty());
    }

    #[test]
    fn store_round_trips_buckets_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.redb");
        let before;
        {
            let store = Store::open(&path).unwrap();
            let mut h = History::new(4, 60, 100, 10);
            store.load(&mut h).unwrap();
            assert!(h.is_empty());
            for i in 0..30 {
                h.record("x|1", i * 15, if i == 29 { f64::NAN } else { i as f64 });
                store.save(&mut h).unwrap();
            }
            before = h.points("x|1");
        }
        let store = Store::open(&path).unwrap();
        let mut h = History::new(4, 60, 100, 10);
        store.load(&mut h).unwrap();
        let p = h.points("x|1");
        assert_eq!(p.len(), before.len());
        assert_eq!(p[..p.len() - 1], before[..before.len() - 1]);
        assert!(p.last().unwrap().1.is_nan());
        // The open bucket was rebuilt: it closes with the right mean.
        h.record("x|1", 480, 100.0);
        let mut reference = History::new(4, 60, 100, 10);
        for i in 0..30 {
            reference.record("x|1", i * 15, if i == 29 { f64::NAN } else { i as f64 });
        }
        reference.record("x|1", 480, 100.0);
        assert_eq!(
            format!("{:?}", h.points("x|1")),
            format!("{:?}", reference.points("x|1"))
        );
        let small = {
            let mut s = History::new(2, 60, 3, 10);
            store.load(&mut s).unwrap();
            s.points("x|1").len()
        };
        assert_eq!(small, 2 + 3, "trimmed to the bounds on load");
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
