//! Prometheus remote_write v1 for onionwatch: push the series a command
//! exports to any receiver (Prometheus with
//! `--web.enable-remote-write-receiver`, Thanos Receive, Grafana Mimir,
//! VictoriaMetrics), whether or not `/metrics` is served.
//!
//! Every `interval` one collection of the command's root collector (the
//! one behind `/metrics`) becomes series as the Prometheus text exposition
//! names them (`_total`, `_bucket`/`_sum`/`_count`, `_info`; [`batch`]), all
//! with the collection's timestamp, in requests of at most `batch_size`
//! samples: a protobuf `WriteRequest` ([`proto`], encoded by hand),
//! snappy-compressed, POSTed with `Content-Encoding: snappy`,
//! `Content-Type: application/x-protobuf` and
//! `X-Prometheus-Remote-Write-Version: 0.1.0`.
//!
//! Batches go through a bounded FIFO per receiver ([`buffer`]): on disk in
//! `STATE_DIR/remote-write/<hash of the URL>/` when the command has a
//! state directory (so they survive a receiver outage and a restart of
//! onionwatch), else in memory (an outage only). Batches are sent one at a
//! time, oldest first, so every series reaches the receiver in time order
//! as Prometheus requires. A 5xx, a 429 or a network error is retried
//! with exponential backoff (0.1 s doubling to 5 s, or the receiver's
//! `Retry-After` when longer, up to 5 minutes) and blocks the queue; any
//! other non-2xx status means the receiver will never take the batch: it
//! is dropped and counted as `failed`, as Prometheus does. When the
//! buffer is full the oldest batches are dropped and counted as `dropped`.
//!
//! Own metrics ([`RemoteWrite::collector`]), per receiver (`remote`: its
//! `name`, else its position in the list; never the URL):
//! `onionwatch_remote_write_samples_total{remote,result="sent|failed|dropped"}`,
//! `onionwatch_remote_write_bytes_total{remote}` (compressed bytes
//! accepted), `onionwatch_remote_write_retries_total{remote}`,
//! `onionwatch_remote_write_buffer_bytes{remote}`,
//! `onionwatch_remote_write_buffer_samples{remote}` and
//! `onionwatch_remote_write_last_success_timestamp_seconds{remote}`.
//! Logs name a receiver by its name and its URL's scheme and host only;
//! credentials are never logged.

pub mod batch;
pub mod buffer;
mod client;
pub mod config;
pub mod proto;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use onionwatch_metrics::{merge, Collect, Family};
use sha2::Digest;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

pub use batch::Batch;
pub use buffer::{Buffer, BufferError};
pub use config::{BasicAuth, ConfigError, RemoteWriteConfig, TlsConfig};

/// First wait after a failed request; doubled up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two attempts, unless the receiver asks for more.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The longest wait a receiver's `Retry-After` can ask for.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// remote_write could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A receiver's configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A receiver's buffer directory is unusable.
    #[error(transparent)]
    Buffer(#[from] BufferError),
    /// Two receivers have one name.
    #[error("remote_write: two receivers are named {0:?}; give each a distinct name")]
    DuplicateName(String),
    /// Two receivers have one URL (they would share one buffer).
    #[error("remote_write: receivers {0} and {1} have the same url; list each receiver once")]
    DuplicateUrl(usize, usize),
}

/// Where and how often to push.
#[derive(Debug, Clone)]
pub struct Options {
    /// The command's state directory: buffers go to `remote-write/` in it;
    /// in memory when `None`.
    pub state_dir: Option<PathBuf>,
    /// The interval of receivers without `interval_seconds`.
    pub default_interval: Duration,
}

/// A receiver's counters, as its metrics export them.
#[derive(Debug, Default)]
pub struct Stats {
    /// Samples the receiver accepted.
    pub sent: AtomicU64,
    /// Samples the receiver refused for good (4xx other than 429).
    pub failed: AtomicU64,
    /// Samples dropped: buffer full, unreadable segment, invalid or duplicate.
    pub dropped: AtomicU64,
    /// Compressed bytes the receiver accepted.
    pub bytes: AtomicU64,
    /// Requests retried (5xx, 429, network errors).
    pub retries: AtomicU64,
    /// Bytes buffered now.
    pub buffer_bytes: AtomicU64,
    /// Samples buffered now.
    pub buffer_samples: AtomicU64,
    /// Batches buffered now.
    pub buffer_batches: AtomicU64,
    /// Milliseconds since the epoch of the last accepted request (0: none).
    pub last_success_ms: AtomicU64,
    /// Collections pushed into the buffer.
    pub collections: AtomicU64,
}

struct Receiver {
    name: String,
    stats: Arc<Stats>,
    persistent: bool,
}

/// Pushing to every configured receiver; stop it with [`RemoteWrite::stop`].
pub struct RemoteWrite {
    receivers: Vec<Receiver>,
    collectors: Vec<JoinHandle<()>>,
    senders: Vec<JoinHandle<()>>,
    stop_collecting: watch::Sender<bool>,
    stop_sending: watch::Sender<bool>,
}

impl std::fmt::Debug for RemoteWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.receivers.iter().map(|r| r.name.as_str()).collect();
        f.debug_struct("RemoteWrite")
            .field("receivers", &names)
            .finish_non_exhaustive()
    }
}

/// The buffer directory of the receiver at `url` under `state_dir`.
pub fn buffer_dir(state_dir: &Path, url: &str) -> PathBuf {
    let hash = sha2::Sha256::digest(url.as_bytes());
    let hex: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
    state_dir.join("remote-write").join(hex)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl RemoteWrite {
    /// Start pushing `source`'s families to every receiver of `configs`
    /// (inside a tokio runtime). Secrets, certificates and buffers are read
    /// now, so a bad file fails here.
    pub fn start(
        configs: &[RemoteWriteConfig],
        source: Arc<dyn Collect>,
        options: Options,
    ) -> Result<RemoteWrite, Error> {
        let mut me = RemoteWrite {
            receivers: Vec::new(),
            collectors: Vec::new(),
            senders: Vec::new(),
            stop_collecting: watch::channel(false).0,
            stop_sending: watch::channel(false).0,
        };
        let mut names = std::collections::HashSet::new();
        for (index, config) in configs.iter().enumerate() {
            let name = config.display_name(index);
            if !names.insert(name.clone()) {
                return Err(Error::DuplicateName(name));
            }
            if let Some(first) = configs[..index].iter().position(|c| c.url == config.url) {
                return Err(Error::DuplicateUrl(first, index));
            }
            let client = client::Client::new(config, index)?;
            let url = config.check(index)?;
            let stats = Arc::new(Stats::default());
            let (buffer, dropped) = match &options.state_dir {
                Some(dir) => {
                    let (b, d) =
                        Buffer::open(&buffer_dir(dir, &config.url), config.max_buffer_bytes)?;
                    if !b.is_empty() {
                        tracing::info!(
                            "remote_write {name} ({}): {} samples buffered by an earlier run to send",
                            url.redacted(),
                            b.samples()
                        );
                    }
                    (b, d)
                }
                None => (
                    Buffer::memory(config.max_buffer_bytes),
                    buffer::Dropped::default(),
                ),
            };
            stats.dropped.fetch_add(dropped.samples, Relaxed);
            let shared = Arc::new(Shared {
                name: name.clone(),
                target: url.redacted(),
                buffer: Mutex::new(buffer),
                wake: Notify::new(),
                stats: stats.clone(),
                last_timestamp_ms: AtomicI64::new(i64::MIN),
            });
            shared.update_gauges();
            let interval = config
                .interval(options.default_interval)
                .max(Duration::from_millis(100));
            tracing::info!(
                "remote_write {name}: pushing to {} every {interval:?}, buffer {}",
                url.redacted(),
                match &options.state_dir {
                    Some(d) => buffer_dir(d, &config.url).display().to_string(),
                    None => "in memory".into(),
                }
            );
            me.collectors.push(tokio::spawn(collect_loop(
                shared.clone(),
                source.clone(),
                interval,
                config.batch_size,
                me.stop_collecting.subscribe(),
            )));
            me.senders.push(tokio::spawn(send_loop(
                shared,
                client,
                me.stop_sending.subscribe(),
            )));
            me.receivers.push(Receiver {
                name,
                stats,
                persistent: options.state_dir.is_some(),
            });
        }
        Ok(me)
    }

    /// The counters of each receiver, by name.
    pub fn stats(&self) -> Vec<(String, Arc<Stats>)> {
        self.receivers
            .iter()
            .map(|r| (r.name.clone(), r.stats.clone()))
            .collect()
    }

    /// The `onionwatch_remote_write_*` families (register them with the
    /// command's registry, so they are exported and pushed too).
    pub fn collector(&self) -> Arc<dyn Collect> {
        Arc::new(Metrics(self.stats()))
    }

    /// Stop: one last collection is buffered, then each receiver gets up
    /// to `flush` to take what is buffered; the rest stays in the buffer
    /// (on disk, for the next start).
    pub async fn stop(mut self, flush: Duration) {
        let _ = self.stop_collecting.send(true);
        for t in std::mem::take(&mut self.collectors) {
            let _ = t.await;
        }
        // Senders now drain their buffers and end at the first failure.
        let _ = self.stop_sending.send(true);
        let mut senders = std::mem::take(&mut self.senders);
        let deadline = tokio::time::Instant::now() + flush;
        for t in &mut senders {
            if tokio::time::timeout_at(deadline, &mut *t).await.is_err() {
                // A request cut short is sent again at the next start.
                t.abort();
                // Until it is gone it holds the buffer (and its lock).
                let _ = t.await;
            }
        }
        for r in &self.receivers {
            let left = r.stats.buffer_samples.load(Relaxed);
            if left > 0 {
                tracing::warn!(
                    "remote_write {}: {left} samples not sent before stopping; they stay buffered{}",
                    r.name,
                    if r.persistent { " on disk for the next start" } else { " in memory and are lost" }
                );
            }
        }
    }
}

struct Shared {
    name: String,
    target: String,
    buffer: Mutex<Buffer>,
    wake: Notify,
    stats: Arc<Stats>,
    /// Timestamp of the last collection: the next is later, even when two
    /// collections fall in one millisecond (the one at a stop right after a
    /// tick), since a receiver refuses a second value at one timestamp.
    last_timestamp_ms: AtomicI64,
}

impl Shared {
    fn buffer(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_gauges(&self) {
        let b = self.buffer();
        self.stats.buffer_bytes.store(b.bytes(), Relaxed);
        self.stats.buffer_samples.store(b.samples(), Relaxed);
        self.stats.buffer_batches.store(b.len() as u64, Relaxed);
    }

    fn count_dropped(&self, d: buffer::Dropped) {
        if d.samples > 0 || d.batches > 0 {
            tracing::warn!(
                "remote_write {}: dropped {} samples ({} batches): buffer full or unreadable (max_buffer_bytes)",
                self.name,
                d.samples,
                d.batches
            );
        }
        self.stats.dropped.fetch_add(d.samples, Relaxed);
    }

    /// Collect, encode and buffer one round of samples.
    fn collect_once(&self, source: &dyn Collect, batch_size: usize) {
        let mut families: Vec<Family> = Vec::new();
        source.collect(&mut families);
        let families = merge(families);
        let previous = self.last_timestamp_ms.load(Relaxed);
        let timestamp = now_ms().max(previous.saturating_add(1));
        self.last_timestamp_ms.store(timestamp, Relaxed);
        let (series, skipped) = batch::series(&families, timestamp);
        self.stats
            .dropped
            .fetch_add(skipped.invalid + skipped.duplicate, Relaxed);
        let batches = batch::batches(&series, batch_size);
        // File writes (fsync) are blocking, but short and once per interval.
        for b in &batches {
            let d = self.buffer().push(b);
            self.count_dropped(d);
        }
        self.stats.collections.fetch_add(1, Relaxed);
        self.update_gauges();
        self.wake.notify_one();
    }
}

impl Drop for RemoteWrite {
    /// Dropped without [`RemoteWrite::stop`] (an early return): stop at
    /// once; what is buffered on disk stays for the next start.
    fn drop(&mut self) {
        for t in self.collectors.iter().chain(&self.senders) {
            t.abort();
        }
    }
}

async fn collect_loop(
    shared: Arc<Shared>,
    source: Arc<dyn Collect>,
    interval: Duration,
    batch_size: usize,
    mut stop: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => shared.collect_once(source.as_ref(), batch_size),
            _ = stop.wait_for(|s| *s) => {
                // The state at the stop (e.g. a last probe round) too.
                shared.collect_once(source.as_ref(), batch_size);
                return;
            }
        }
    }
}

async fn send_loop(
    shared: Arc<Shared>,
    mut client: client::Client,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = MIN_BACKOFF;
    let mut failing = false;
    loop {
        let stopping = *stop.borrow();
        let (front, dropped) = shared.buffer().front();
        shared.count_dropped(dropped);
        let Some((id, samples, body)) = front else {
            shared.update_gauges();
            if stopping {
                return;
            }
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = stop.wait_for(|s| *s) => {}
            }
            continue;
        };
        let len = body.len() as u64;
        match client.send(Bytes::from(body)).await {
            client::Outcome::Sent => {
                if failing {
                    tracing::info!(
                        "remote_write {} ({}): sending again",
                        shared.name,
                        shared.target
                    );
                    failing = false;
                }
                backoff = MIN_BACKOFF;
                if shared.buffer().remove(id) {
                    shared.stats.sent.fetch_add(samples, Relaxed);
                    shared.stats.bytes.fetch_add(len, Relaxed);
                }
                shared
                    .stats
                    .last_success_ms
                    .store(now_ms().max(0) as u64, Relaxed);
                shared.update_gauges();
            }
            client::Outcome::Rejected(why) => {
                tracing::warn!(
                    "remote_write {} ({}): the receiver refused {samples} samples, dropped: {why}",
                    shared.name,
                    shared.target
                );
                if shared.buffer().remove(id) {
                    shared.stats.failed.fetch_add(samples, Relaxed);
                }
                shared.update_gauges();
            }
            client::Outcome::Retry(why, retry_after) => {
                shared.stats.retries.fetch_add(1, Relaxed);
                // The receiver's Retry-After, when longer than our backoff,
                // bounded so a hostile value cannot stop the pushing.
                let wait = retry_after.map_or(backoff, |a| a.min(MAX_RETRY_AFTER).max(backoff));
                if !failing {
                    tracing::warn!(
                        "remote_write {} ({}): {why}; retrying with backoff, samples stay buffered",
                        shared.name,
                        shared.target
                    );
                    failing = true;
                } else {
                    tracing::debug!("remote_write {}: {why}", shared.name);
                }
                if stopping {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.wait_for(|s| *s) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

struct Metrics(Vec<(String, Arc<Stats>)>);

impl Collect for Metrics {
    fn collect(&self, out: &mut Vec<Family>) {
        if self.0.is_empty() {
            return;
        }
        let mut samples = Family::counter(
            "onionwatch_remote_write_samples",
            "Samples pushed with remote_write, by result: sent (accepted), failed (refused by the receiver for good), dropped (buffer full or unreadable, invalid or duplicate series).",
        );
        let mut bytes = Family::counter(
            "onionwatch_remote_write_bytes",
            "Compressed request bytes the remote_write receiver accepted.",
        );
        let mut retries = Family::counter(
            "onionwatch_remote_write_retries",
            "remote_write requests retried after a 5xx, 429 or network error.",
        );
        let mut buffer_bytes = Family::gauge(
            "onionwatch_remote_write_buffer_bytes",
            "Bytes of batches waiting for the remote_write receiver (bounded by max_buffer_bytes).",
        );
        let mut buffer_samples = Family::gauge(
            "onionwatch_remote_write_buffer_samples",
            "Samples waiting for the remote_write receiver.",
        );
        let mut last = Family::gauge(
            "onionwatch_remote_write_last_success_timestamp_seconds",
            "When the remote_write receiver last accepted a request (0: never since start).",
        );
        for (name, s) in &self.0 {
            let r = name.as_str();
            for (result, v) in [
                ("sent", &s.sent),
                ("failed", &s.failed),
                ("dropped", &s.dropped),
            ] {
                samples.push(&[("remote", r), ("result", result)], v.load(Relaxed) as f64);
            }
            bytes.push(&[("remote", r)], s.bytes.load(Relaxed) as f64);
            retries.push(&[("remote", r)], s.retries.load(Relaxed) as f64);
            buffer_bytes.push(&[("remote", r)], s.buffer_bytes.load(Relaxed) as f64);
            buffer_samples.push(&[("remote", r)], s.buffer_samples.load(Relaxed) as f64);
            last.push(
                &[("remote", r)],
                s.last_success_ms.load(Relaxed) as f64 / 1000.0,
            );
        }
        out.extend([samples, bytes, retries, buffer_bytes, buffer_samples, last]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter that moves at every collection, as a probe's does.
    struct Moving(AtomicU64);

    impl Collect for Moving {
        fn collect(&self, out: &mut Vec<Family>) {
            let mut c = Family::counter("moving_total", "Collections.");
            c.push(&[], (self.0.fetch_add(1, Relaxed) + 1) as f64);
            out.push(c);
        }
    }

    #[test]
    fn collections_in_one_millisecond_get_distinct_timestamps() {
        // Prometheus answers 400 to a second value at one timestamp, which
        // drops the batch: seen when the collection at a stop followed a tick.
        let shared = Shared {
            name: "t".into(),
            target: "t".into(),
            buffer: Mutex::new(Buffer::memory(1 << 20)),
            wake: Notify::new(),
            stats: Arc::default(),
            last_timestamp_ms: AtomicI64::new(i64::MIN),
        };
        let source = Moving(AtomicU64::new(0));
        for _ in 0..200 {
            shared.collect_once(&source, 100);
        }
        let mut stamps = Vec::new();
        loop {
            let (front, _) = shared.buffer().front();
            let Some((id, _, body)) = front else { break };
            for s in batch::decode_body(&body).unwrap() {
                stamps.extend(s.samples.iter().map(|&(_, t)| t));
            }
            shared.buffer().remove(id);
        }
        assert_eq!(stamps.len(), 200);
        assert!(
            stamps.windows(2).all(|w| w[0] < w[1]),
            "timestamps not strictly increasing: {stamps:?}"
        );
    }
}
