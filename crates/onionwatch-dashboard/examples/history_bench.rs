//! Memory and disk of the dashboard's history for 100 onion services over
//! 7 days of 15 s rounds, with the default configuration (BENCHMARKS.md):
//!
//! ```sh
//! cargo run --release -p onionwatch-dashboard --example history_bench [SERVICES] [DAYS]
//! ```
//!
//! Each onion service has the series the dashboard keeps for one probed
//! path: latency, reachability, descriptor fetched, introduction points,
//! and a failure every 100 rounds. The store is saved every 20 rounds
//! (5 minutes) during the first days and every round during the last hour,
//! so the run takes minutes instead of the 40,320 commits of a real week;
//! what is in the file at the end is the same.

use std::time::Instant;

use onionwatch_dashboard::history::{FailureEvent, History, Store};
use onionwatch_dashboard::DashboardConfig;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let services: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let days: i64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(7);
    let config = DashboardConfig::default();
    let interval = config.interval.as_secs() as i64;
    let step = config.downsample.as_secs() as i64;
    let buckets = (config.retention.as_secs() as i64 / step) as usize;
    let rounds = days * 86_400 / interval;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("dashboard.redb");
    let store = Store::open(&path).expect("the store opens");
    let rss_before = rss_kib();
    let mut h = History::new(config.points, step, buckets, config.max_series);
    let names: Vec<String> = (0..services)
        .map(|i| format!("project{}/svc{i:03}", i % 10))
        .collect();
    let address = "x".repeat(56) + ".onion";
    let t0 = 1_800_000_000i64;
    let started = Instant::now();
    let mut commits = 0u32;
    for r in 0..rounds {
        let ts = t0 + r * interval;
        for (i, name) in names.iter().enumerate() {
            let key = format!("{name}|{address}|/");
            let up = (r + i as i64) % 100 != 0;
            h.record(
                &format!("latency|{key}"),
                ts,
                1.0 + ((r * 7 + i as i64) % 13) as f64 / 10.0,
            );
            h.record(&format!("reachable|{key}"), ts, if up { 1.0 } else { 0.0 });
            h.record(&format!("descriptor|{name}"), ts, 1.0);
            h.record(&format!("intro|{name}"), ts, 3.0);
            if !up {
                h.record_event(
                    name,
                    FailureEvent {
                        timestamp: ts,
                        address: address.clone(),
                        stage: "introduction_failed".into(),
                        reason: "onion_service_introduction_failed".into(),
                    },
                );
            }
        }
        if r % 20 == 0 || r >= rounds - 3_600 / interval {
            store.save(&mut h).expect("the store saves");
            commits += 1;
        }
    }
    store.save(&mut h).expect("the store saves");
    let elapsed = started.elapsed();
    let rss_after = rss_kib();
    let file = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    let points = h.total_points();
    println!(
        "{services} onion services, {days} days of {interval} s rounds ({rounds} rounds, {commits} commits, {:.0} s)",
        elapsed.as_secs_f64()
    );
    println!(
        "series: {}, points held: {points} (bound {}), point data: {:.1} MiB",
        h.len(),
        h.max_points(),
        (points * 16) as f64 / 1_048_576.0
    );
    println!(
        "resident memory: {:.1} MiB before, {:.1} MiB after (+{:.1} MiB)",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        rss_after.saturating_sub(rss_before) as f64 / 1024.0
    );
    println!("store file: {:.1} MiB", file as f64 / 1_048_576.0);
    // A restart reads it all back.
    drop(store);
    let store = Store::open(&path).expect("the store reopens");
    let mut again = History::new(config.points, step, buckets, config.max_series);
    let load = Instant::now();
    store.load(&mut again).expect("the store loads");
    println!(
        "reloaded: {} series, {} points in {:.2} s",
        again.len(),
        again.total_points(),
        load.elapsed().as_secs_f64()
    );
}
