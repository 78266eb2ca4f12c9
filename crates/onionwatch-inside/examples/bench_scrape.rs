//! Scrape + re-export cost per project: N local servers each serve a copy
//! of a real tor MetricsPort page (tor 0.4.9.11, 2 onion services, 36 KB);
//! each round scrapes all N concurrently (HTTP, parse, relabel), merges
//! and renders the whole exposition as `onionwatch watch` does.
//!
//! cargo run --release -p onionwatch-inside --example bench_scrape -- 1 10 50

use std::time::Instant;

use onionwatch_inside::collector::tor_metrics;
use onionwatch_metrics::{merge, render, Format};
use onionwatch_test_support::TOR_METRICSPORT_PAGE as TOR_PAGE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
const ROUNDS: usize = 50;

fn cpu_seconds() -> f64 {
    // utime + stime of this process from /proc/self/stat (clock ticks, 100 Hz).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (t(11) + t(12)) / 100.0
}

async fn server() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut req = [0u8; 1024];
                let _ = s.read(&mut req).await;
                let head = format!("HTTP/1.0 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n", TOR_PAGE.len());
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(TOR_PAGE.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let counts: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![1, 10, 50]
    } else {
        counts
    };
    println!(
        "payload: {} bytes, {} lines per MetricsPort; {ROUNDS} rounds each",
        TOR_PAGE.len(),
        TOR_PAGE.lines().count()
    );
    println!("ports | round median ms | round p90 ms | per project ms (wall) | per project ms (CPU) | output bytes");
    for n in counts {
        let mut addrs = Vec::new();
        for _ in 0..n {
            addrs.push(server().await);
        }
        let mut walls = Vec::new();
        let mut out_len = 0;
        let cpu0 = cpu_seconds();
        for _ in 0..ROUNDS {
            let t = Instant::now();
            let tasks: Vec<_> = addrs
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    let a = *a;
                    tokio::spawn(async move {
                        let mut f = tor_metrics::scrape(tor_metrics::MetricsPort::new(a))
                            .await
                            .expect("scrape");
                        tor_metrics::relabel(&mut f, &format!("p{i}"), "tor");
                        f
                    })
                })
                .collect();
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            let text = render(&merge(all), Format::Prometheus);
            out_len = text.len();
            walls.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let cpu = (cpu_seconds() - cpu0) * 1000.0 / ROUNDS as f64;
        walls.sort_by(|a, b| a.total_cmp(b));
        let median = walls[ROUNDS / 2];
        let p90 = walls[ROUNDS * 9 / 10];
        println!(
            "{n:>5} | {median:>15.2} | {p90:>12.2} | {:>21.3} | {:>20.3} | {out_len}",
            median / n as f64,
            cpu / n as f64
        );
    }
}
