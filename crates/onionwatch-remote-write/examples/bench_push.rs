//! remote_write figures for BENCHMARKS.md: bytes per sample (uncompressed
//! and snappy-compressed protobuf) and samples per second, encoded alone
//! and sent end to end into a real Prometheus receiver on 127.0.0.1.
//!
//! `cargo run --release -p onionwatch-remote-write --example bench_push -- SERVICES SECONDS`
//!
//! Each collection has the prober's shape: per onion service 5 gauges, a
//! counter and a 12-bucket latency histogram (20 series) with
//! `name`, `address`, `protocol`, `port`, `path` and `vantage` labels.
//! The end-to-end run offers collections faster than one receiver takes
//! them (every 100 ms), so the sender is saturated and `sent / time` is its
//! throughput: one connection, one request at a time, as in production.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use onionwatch_metrics::{Collect, Family, Histogram};
use onionwatch_remote_write::batch::{batches, series};
use onionwatch_remote_write::{Options, RemoteWrite, RemoteWriteConfig};
use onionwatch_testnet::prometheus::Prometheus;

struct Probes {
    services: usize,
    round: AtomicU64,
}

impl Collect for Probes {
    fn collect(&self, out: &mut Vec<Family>) {
        let r = self.round.fetch_add(1, Relaxed) as f64;
        let gauges = [
            "onion_service_reachable",
            "onion_service_latency_seconds_last",
            "onion_service_status_code",
            "onion_service_descriptor_reachable",
            "onion_service_introduction_points",
        ];
        let mut gs: Vec<Family> = gauges.iter().map(|g| Family::gauge(*g, "")).collect();
        let mut c = Family::counter("onion_service_connection_attempts", "");
        let mut h = Family::histogram("onion_service_latency_seconds", "");
        for i in 0..self.services {
            let name = format!("site-{i}");
            let address = format!("{:0>56}.onion", format!("{i:x}abcdef"));
            let labels = [
                ("name", name.as_str()),
                ("address", address.as_str()),
                ("protocol", "http"),
                ("port", "80"),
                ("path", "/"),
                ("vantage", "eu-1"),
            ];
            for (k, g) in gs.iter_mut().enumerate() {
                g.push(&labels, ((i + k) % 3) as f64 + r * 0.01);
            }
            c.push(&labels, r + i as f64);
            let mut hist =
                Histogram::new(&[0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0, 34.0, 55.0]);
            hist.observe(1.0 + (i % 7) as f64 + r * 0.1);
            h.push_histogram(&labels, &hist);
        }
        out.extend(gs);
        out.push(c);
        out.push(h);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let services: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    println!("load average at start: {}", load.join(", "));
    let source = Arc::new(Probes {
        services,
        round: AtomicU64::new(0),
    });

    // Encoding alone: families -> series -> protobuf -> snappy.
    let rounds = 50;
    let mut samples = 0u64;
    let (mut raw, mut compressed) = (0u64, 0u64);
    let start = Instant::now();
    for _ in 0..rounds {
        let mut f = Vec::new();
        source.collect(&mut f);
        let (s, _) = series(&onionwatch_metrics::merge(f), 1_764_650_000_000);
        for b in batches(&s, 2000) {
            samples += b.samples;
            raw += b.raw_bytes;
            compressed += b.body.len() as u64;
        }
    }
    let encode = start.elapsed().as_secs_f64();
    println!(
        "services {services}: {} samples per collection",
        samples / rounds
    );
    println!(
        "bytes per sample: uncompressed {:.1}, snappy {:.1} (ratio {:.2})",
        raw as f64 / samples as f64,
        compressed as f64 / samples as f64,
        raw as f64 / compressed as f64
    );
    println!(
        "encoding alone: {:.0} samples/s ({} collections in {encode:.2} s)",
        samples as f64 / encode,
        rounds
    );

    // End to end into a real Prometheus.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let addr =
        std::net::SocketAddr::from(([127, 0, 0, 1], onionwatch_testnet::free_port().unwrap()));
    let _p = Prometheus::start_receiver(dir.path(), addr).unwrap();
    rt.block_on(async {
        let mut c = RemoteWriteConfig::from_url(format!("http://{addr}/api/v1/write"));
        c.interval_seconds = Some(0.1);
        c.max_buffer_bytes = 1 << 30;
        let rw = RemoteWrite::start(
            &[c],
            source.clone(),
            Options {
                state_dir: None,
                default_interval: Duration::from_secs(1),
            },
        )
        .unwrap();
        let stats = rw.stats()[0].1.clone();
        // Warm-up: the first requests create every series in Prometheus.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (s0, b0, t0) = (stats.sent.load(Relaxed), stats.bytes.load(Relaxed), Instant::now());
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let (s1, b1, t) = (
            stats.sent.load(Relaxed),
            stats.bytes.load(Relaxed),
            t0.elapsed().as_secs_f64(),
        );
        println!(
            "sent to Prometheus: {:.0} samples/s, {:.1} compressed bytes per sample ({} samples in {t:.1} s; {} still buffered, {} retries, {} failed)",
            (s1 - s0) as f64 / t,
            (b1 - b0) as f64 / (s1 - s0).max(1) as f64,
            s1 - s0,
            stats.buffer_samples.load(Relaxed),
            stats.retries.load(Relaxed),
            stats.failed.load(Relaxed),
        );
        drop(rw);
    });
}
