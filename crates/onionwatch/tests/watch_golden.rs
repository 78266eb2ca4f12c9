//! Golden test of `onionwatch watch`'s whole `/metrics`: the binary scrapes
//! a local server serving the stored tor MetricsPort page, a stub_status
//! page and a MetricsPort nothing listens on; its exposition, with only the
//! scrape durations, build labels and process_* values normalised, must
//! equal tests/fixtures/watch-metrics.golden.txt.
//! ONIONWATCH_BLESS=1 rewrites that file (review the diff before committing).

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use onionwatch_test_support::{
    self as support, assert_golden, fixture, mask_exporter_families,
    TOR_METRICSPORT_PAGE as TOR_PAGE,
};

const STUB_STATUS: &str = "Active connections: 3 \nserver accepts handled requests\n 120 120 345 \nReading: 0 Writing: 1 Waiting: 2 \n";

/// Replace what differs between runs (each scrape's duration) with a
/// placeholder, after checking it is a positive number.
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        match line.strip_prefix("onionwatch_scrape_duration_seconds{") {
            Some(rest) => {
                let (labels, value) = rest.rsplit_once(' ').unwrap();
                let v: f64 = value.parse().unwrap();
                assert!(v > 0.0 && v.is_finite(), "{line}");
                out.push_str(&format!(
                    "onionwatch_scrape_duration_seconds{{{labels} <duration>"
                ));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[test]
fn whole_metrics_output_matches_the_stored_file() {
    let tor = support::serve(TOR_PAGE);
    let nginx = support::serve(STUB_STATUS);
    let dead = support::dead_addr();
    let listen = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let _child = support::Running(
        Command::new(env!("CARGO_BIN_EXE_onionwatch"))
            .args(["watch", "--interval", "60", "--timeout", "5"])
            .args(["--listen", &listen.to_string()])
            .args(["--metrics-port", &format!("news={tor}")])
            .args([
                "--nginx-status",
                &format!("news=http://{nginx}/stub_status"),
            ])
            .args(["--metrics-port", &format!("shop/hs-1={}", dead.addr)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Once every target has been scraped, nothing changes for 60 s; that
    // is when /-/ready says so.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = support::get(listen, "/-/ready");
        if ready.starts_with("HTTP/1.1 200") || ready.starts_with("HTTP/1.0 200") {
            break;
        }
        assert!(Instant::now() < deadline, "never ready: {ready}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let body = support::get(listen, "/api/v1/targets");
    assert_eq!(body.matches("\"scrapes\":1").count(), 3, "{body}");
    let response = support::get(listen, "/metrics");
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    let got = mask_exporter_families(&normalise(body));

    assert_golden(fixture!("watch-metrics.golden.txt"), &got);
}
