//! `onionwatch demo` as a user runs it: the dashboard line, both sides'
//! series on one /metrics, the page, and nothing left after Ctrl-C.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use onionwatch_test_support as support;
use onionwatch_test_support::process::tor_children;

/// Collects the last lines of the demo's log so a failure shows why.
fn keep_tail(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut kept = sink.lock().unwrap();
            if kept.len() == 200 {
                kept.remove(0);
            }
            kept.push(line);
        }
    });
    lines
}

#[test]
fn demo_serves_the_dashboard_and_both_sides_then_stops_cleanly() {
    let port = support::free_port();
    let mut child = support::Running(
        Command::new(env!("CARGO_BIN_EXE_onionwatch"))
            .args([
                "demo",
                "--interval",
                "3",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let log = keep_tail(child.0.stderr.take().unwrap());
    let log = move || log.lock().unwrap().join("\n");
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let url = loop {
        match rx.recv_timeout(Duration::from_secs(300)) {
            Ok(line) => {
                if let Some(url) = line.strip_prefix("dashboard: ") {
                    break url.to_owned();
                }
            }
            Err(e) => {
                panic!("no `dashboard: ` line: {e}; the demo's log:\n{}", log());
            }
        }
    };
    assert_eq!(url, format!("http://127.0.0.1:{port}/"));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));

    // Wait for a probe round and a scrape of both projects.
    let start = Instant::now();
    let metrics = loop {
        let m = support::get(addr, "/metrics");
        let healthy = support::value(&m, "onion_service_reachable{name=\"healthy\"");
        let offline = support::value(&m, "onion_service_reachable{name=\"offline\"");
        let slow = support::value(&m, "onion_service_reachable{name=\"slow\"");
        let shop = support::value(
            &m,
            "onionwatch_scrape_up{collector=\"tor_metrics\",project=\"shop\"",
        );
        let failing = support::value(&m, "onion_service_status_code{name=\"failing\"");
        // The backends' access logs, followed: requests by status, circuits.
        let news_2xx = support::value(
            &m,
            "onionwatch_log_requests_total{project=\"news\",status_class=\"2xx\"}",
        );
        let shop_5xx = support::value(
            &m,
            "onionwatch_log_requests_total{project=\"shop\",status_class=\"5xx\"}",
        );
        let circuits = support::value(
            &m,
            "onionwatch_log_unique_circuits{project=\"news\",window=\"all\"}",
        );
        let want = (Some(1.0), Some(1.0), Some(0.0), Some(500.0), Some(1.0));
        let logged = [news_2xx, shop_5xx, circuits]
            .iter()
            .all(|v| v.is_some_and(|v| v >= 1.0));
        if (healthy, slow, offline, failing, shop) == want && logged {
            break m;
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "never complete:\n{m}\nthe demo's log:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        metrics.contains("tor_hs_"),
        "tor's own families are re-exported"
    );
    let page = support::get(addr, "/");
    assert!(page.contains("<title>onionwatch</title>"), "{page}");
    let api = support::get(addr, "/api/v1/dashboard");
    assert!(
        api.contains("\"name\":\"slow\"") && api.contains("\"project\":\"shop\""),
        "{api}"
    );
    // The dashboard's unique-circuit column is filled from the access logs
    // (after its next sample).
    let start = Instant::now();
    loop {
        let api = support::get(addr, "/api/v1/dashboard");
        let body = api.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        let snapshot: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        let news = snapshot["projects"]
            .as_array()
            .and_then(|p| p.iter().find(|r| r["project"] == "news"));
        if news.is_some_and(|r| r["unique_circuits_5m"].as_f64() >= Some(1.0)) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no unique circuits on the dashboard: {api}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let tors = tor_children(child.0.id());
    assert_eq!(
        tors.len(),
        8,
        "3 authorities, 2 relays, 2 onion-service tors, 1 client"
    );
    unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) };
    let status = child.0.wait().unwrap();
    assert!(status.success(), "{status}");
    let left: Vec<u32> = tors
        .into_iter()
        .filter(|p| std::path::Path::new(&format!("/proc/{p}")).exists())
        .collect();
    assert!(left.is_empty(), "tor processes left: {left:?}");
}
