//! remote_write into a real Prometheus (`--web.enable-remote-write-receiver`)
//! on 127.0.0.1: a pushed series is returned by its HTTP API; a receiver
//! stopped for a minute and started again (same TSDB) gets every sample of
//! that minute from the on-disk buffer; a restart of the writer with
//! samples still buffered delivers them.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use onionwatch_metrics::{Collect, Family, Histogram};
use onionwatch_remote_write::{Options, RemoteWrite, RemoteWriteConfig, Stats};
use onionwatch_testnet::free_port;
use onionwatch_testnet::prometheus::{url_encode, Prometheus};

/// A counter whose value is the number of times it was collected, so the
/// samples a receiver holds must be exactly 1..=N: a gap is a lost sample.
#[derive(Default)]
struct Ticks(AtomicU64);

impl Collect for Ticks {
    fn collect(&self, out: &mut Vec<Family>) {
        let n = self.0.fetch_add(1, Relaxed) + 1;
        let mut c = Family::counter("rw_test_ticks", "Collections so far.");
        c.push(&[("job", "rw-test")], n as f64);
        let mut h = Family::histogram("rw_test_latency_seconds", "A histogram.");
        let mut hist = Histogram::new(&[0.5, 1.0]);
        hist.observe(0.7);
        h.push_histogram(&[("job", "rw-test")], &hist);
        out.extend([c, h]);
    }
}

fn config(addr: std::net::SocketAddr, interval: f64) -> RemoteWriteConfig {
    let mut c = RemoteWriteConfig::from_url(format!("http://{addr}/api/v1/write"));
    c.name = Some("test".into());
    c.interval_seconds = Some(interval);
    c
}

fn options(state_dir: Option<&Path>) -> Options {
    Options {
        state_dir: state_dir.map(Path::to_owned),
        default_interval: Duration::from_secs(1),
    }
}

/// Poll `check` until it is true (conditions, not sleeps, synchronise).
async fn wait_until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The raw samples of `series` over the last hour: (timestamp ms, value).
fn raw_samples(p: &Prometheus, series: &str) -> Vec<(i64, f64)> {
    let body = p
        .api(&format!(
            "/api/v1/query?query={}",
            url_encode(&format!("{series}[1h]"))
        ))
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let mut out = Vec::new();
    for r in v["data"]["result"].as_array().into_iter().flatten() {
        for pair in r["values"].as_array().into_iter().flatten() {
            let ts = (pair[0].as_f64().unwrap_or(0.0) * 1000.0).round() as i64;
            let val: f64 = pair[1]
                .as_str()
                .unwrap_or("NaN")
                .parse()
                .unwrap_or(f64::NAN);
            out.push((ts, val));
        }
    }
    out
}

/// Every value 1..=n exactly once, at n distinct increasing timestamps.
fn assert_complete(samples: &[(i64, f64)], n: u64) {
    let values: Vec<u64> = samples.iter().map(|(_, v)| *v as u64).collect();
    let want: Vec<u64> = (1..=n).collect();
    assert_eq!(values, want, "one sample per collection, none missing");
    assert!(
        samples.windows(2).all(|w| w[0].0 < w[1].0),
        "one sample per timestamp, in order: {samples:?}"
    );
}

fn stat(stats: &[(String, Arc<Stats>)], f: impl Fn(&Stats) -> u64) -> u64 {
    stats.iter().map(|(_, s)| f(s)).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_series_is_returned_by_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let addr = prometheus_addr();
    let p = Prometheus::start_receiver(dir.path(), addr).unwrap();
    let source = Arc::new(Ticks::default());
    let rw = RemoteWrite::start(&[config(addr, 0.2)], source.clone(), options(None)).unwrap();
    let stats = rw.stats();
    wait_until("a sample accepted", Duration::from_secs(60), || {
        stat(&stats, |s| s.sent.load(Relaxed)) > 0
    })
    .await;
    let q = |e: &str| p.query(e).unwrap_or_default();
    let bucket = q("rw_test_latency_seconds_bucket{le=\"1\",job=\"rw-test\"}");
    assert!(
        bucket.contains("\"value\":[") && bucket.contains("\"1\"]"),
        "{bucket}"
    );
    let count = q("rw_test_latency_seconds_count");
    assert!(count.contains("\"1\"]"), "{count}");
    let ticks = q("rw_test_ticks_total{job=\"rw-test\"}");
    assert!(ticks.contains("rw_test_ticks_total"), "{ticks}");
    // Its own metrics say so, with the name and never the URL.
    let mut own = Vec::new();
    rw.collector().collect(&mut own);
    let text = onionwatch_metrics::render(&own, onionwatch_metrics::Format::Prometheus);
    assert!(
        text.contains("onionwatch_remote_write_samples_total{remote=\"test\",result=\"sent\"}"),
        "{text}"
    );
    assert!(!text.contains("127.0.0.1"), "{text}");
    rw.stop(Duration::from_secs(5)).await;
    let n = source.0.load(Relaxed);
    // Stopped with a flush: every collection, the last one included, is there.
    assert_complete(&raw_samples(&p, "rw_test_ticks_total"), n);
}

fn prometheus_addr() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_of_receiver_outage_is_delivered_from_the_disk_buffer() {
    let prom_dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let addr = prometheus_addr();
    let p = Prometheus::start_receiver(prom_dir.path(), addr).unwrap();
    let source = Arc::new(Ticks::default());
    let rw = RemoteWrite::start(
        &[config(addr, 1.0)],
        source.clone(),
        options(Some(state.path())),
    )
    .unwrap();
    let stats = rw.stats();
    wait_until("3 samples accepted", Duration::from_secs(60), || {
        stat(&stats, |s| s.sent.load(Relaxed)) >= 3 * 5
    })
    .await;
    p.stop();
    let before = source.0.load(Relaxed);
    // The outage: a minute of 1 s collections piles up in the buffer.
    wait_until("60 collections buffered", Duration::from_secs(180), || {
        source.0.load(Relaxed) >= before + 60
            && stat(&stats, |s| s.buffer_batches.load(Relaxed)) >= 60
    })
    .await;
    assert!(stat(&stats, |s| s.retries.load(Relaxed)) > 0);
    assert!(
        std::fs::read_dir(state.path().join("remote-write"))
            .unwrap()
            .count()
            == 1,
        "one buffer directory per receiver"
    );
    let p = Prometheus::start_receiver(prom_dir.path(), addr).unwrap();
    wait_until("the buffer drained", Duration::from_secs(120), || {
        stat(&stats, |s| s.buffer_samples.load(Relaxed)) == 0
    })
    .await;
    rw.stop(Duration::from_secs(10)).await;
    assert_eq!(
        stat(&stats, |s| s.dropped.load(Relaxed) + s.failed.load(Relaxed)),
        0
    );
    let n = source.0.load(Relaxed);
    assert!(n >= before + 60);
    assert_complete(&raw_samples(&p, "rw_test_ticks_total"), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_buffered_at_a_restart_of_the_writer_are_delivered() {
    let prom_dir = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let addr = prometheus_addr();
    let source = Arc::new(Ticks::default());
    // No receiver yet: everything stays on disk.
    let rw = RemoteWrite::start(
        &[config(addr, 0.2)],
        source.clone(),
        options(Some(state.path())),
    )
    .unwrap();
    let stats = rw.stats();
    wait_until("5 collections buffered", Duration::from_secs(60), || {
        stat(&stats, |s| s.buffer_batches.load(Relaxed)) >= 5
    })
    .await;
    rw.stop(Duration::from_millis(200)).await;
    let buffered = source.0.load(Relaxed);
    assert_eq!(stat(&stats, |s| s.sent.load(Relaxed)), 0);
    let p = Prometheus::start_receiver(prom_dir.path(), addr).unwrap();
    // The next run: same state directory, same receiver.
    let rw = RemoteWrite::start(
        &[config(addr, 0.2)],
        source.clone(),
        options(Some(state.path())),
    )
    .unwrap();
    let stats = rw.stats();
    wait_until(
        "the earlier run's samples sent",
        Duration::from_secs(60),
        || stat(&stats, |s| s.sent.load(Relaxed)) >= buffered * 5,
    )
    .await;
    rw.stop(Duration::from_secs(5)).await;
    assert_complete(
        &raw_samples(&p, "rw_test_ticks_total"),
        source.0.load(Relaxed),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_receiver_refuses_is_dropped_and_counted_not_retried() {
    // A Prometheus without --web.enable-remote-write-receiver answers 404:
    // the receiver will never take these samples, so they are counted as
    // failed and the queue moves on instead of retrying for ever.
    let p = Prometheus::start(&[], Duration::from_secs(5)).unwrap();
    let source = Arc::new(Ticks::default());
    let rw = RemoteWrite::start(&[config(p.addr(), 0.2)], source, options(None)).unwrap();
    let stats = rw.stats();
    wait_until("3 collections refused", Duration::from_secs(60), || {
        stat(&stats, |s| s.failed.load(Relaxed)) >= 3 * 5
    })
    .await;
    rw.stop(Duration::from_secs(1)).await;
    assert_eq!(stat(&stats, |s| s.sent.load(Relaxed)), 0);
    assert_eq!(
        stat(&stats, |s| s.retries.load(Relaxed)),
        0,
        "a 404 is not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_ca_and_basic_auth() {
    // Prometheus behind its --web.config.file: TLS with a certificate of a
    // private CA, and a basic-auth user.
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "onionwatch remote_write test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let path = |n: &str| dir.path().join(n);
    std::fs::write(path("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(path("server.pem"), leaf.pem()).unwrap();
    std::fs::write(path("server.key"), key.serialize_pem()).unwrap();
    std::fs::write(path("good.pw"), "s3cret pw\n").unwrap();
    std::fs::write(path("bad.pw"), "guess\n").unwrap();
    let hash = bcrypt::hash("s3cret pw", 4)
        .unwrap()
        .replacen("$2b$", "$2y$", 1);
    std::fs::write(
        path("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  probes: {hash}\n",
            path("server.pem").display(),
            path("server.key").display()
        ),
    )
    .unwrap();
    let prom_dir = tempfile::tempdir().unwrap();
    let addr = prometheus_addr();
    let _p = Prometheus::start_receiver_with_web_config(prom_dir.path(), addr, &path("web.yml"))
        .unwrap();
    let writer = |name: &str, password: &str, ca: bool| {
        let mut c =
            RemoteWriteConfig::from_url(format!("https://localhost:{}/api/v1/write", addr.port()));
        c.name = Some(name.into());
        c.interval_seconds = Some(0.2);
        c.basic_auth = Some(onionwatch_remote_write::BasicAuth {
            username: "probes".into(),
            password_file: Some(path(password)),
            password_env: None,
        });
        if ca {
            c.tls.ca_file = Some(path("ca.pem"));
        }
        c
    };
    let configs = [
        writer("good", "good.pw", true),
        writer("wrong-password", "bad.pw", true),
        writer("unknown-ca", "good.pw", false),
    ];
    // Three receivers of one URL would share a buffer: one writer each.
    let source: Arc<Ticks> = Arc::new(Ticks::default());
    let writers: Vec<RemoteWrite> = configs
        .iter()
        .map(|c| {
            RemoteWrite::start(std::slice::from_ref(c), source.clone(), options(None)).unwrap()
        })
        .collect();
    let s: Vec<Arc<Stats>> = writers.iter().map(|w| w.stats()[0].1.clone()).collect();
    wait_until("each outcome", Duration::from_secs(60), || {
        s[0].sent.load(Relaxed) > 0
            && s[1].failed.load(Relaxed) > 0
            && s[2].retries.load(Relaxed) > 0
    })
    .await;
    for w in writers {
        w.stop(Duration::from_millis(500)).await;
    }
    assert_eq!(
        s[0].failed.load(Relaxed),
        0,
        "the right password over verified TLS"
    );
    assert_eq!(s[1].sent.load(Relaxed), 0, "a 401 is refused for good");
    assert_eq!(s[1].retries.load(Relaxed), 0);
    assert_eq!(
        s[2].sent.load(Relaxed) + s[2].failed.load(Relaxed),
        0,
        "a certificate of an unknown CA is never trusted, and retried"
    );
}
