//! `onionwatch watch` notifying by itself: a MetricsPort that refuses
//! connections fires `OnionwatchScrapeTargetDown` at a real webhook
//! receiver (Alertmanager's webhook payload), once, across a restart, and
//! resolves when the target answers; the alert is on `/api/v1/alerts`,
//! `/metrics` and the dashboard; silences come and go through the API; a
//! webhook that never answers does not hold the scrapes up; the webhook's
//! token never reaches the log.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};

use onionwatch_test_support::{self as support, Recorder, Running};

/// A tor MetricsPort page.
const TOR_PAGE: &str = "# TYPE tor_relay_load_onionskins_total counter\ntor_relay_load_onionskins_total{type=\"ntor\",action=\"processed\"} 1\n";

/// `onionwatch watch ARGS` on a free port, its log in `log`.
fn watch(args: &[&str], log: &Path) -> (Running, SocketAddr) {
    let addr = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let child = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .args([
            "watch",
            "--listen",
            &addr.to_string(),
            "--interval",
            "1",
            "--timeout",
            "1",
        ])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    (Running(child), addr)
}

/// SIGTERM, then a clean exit.
fn stop(mut child: Running) {
    unsafe { libc::kill(child.0.id() as i32, libc::SIGTERM) };
    let status = support::wait_exit(&mut child.0);
    assert!(status.success(), "{status}");
}

/// One HTTP/1.0 request with a JSON body; the whole answer.
fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn body(answer: &str) -> serde_json::Value {
    let (_, b) = answer.split_once("\r\n\r\n").unwrap();
    serde_json::from_str(b).unwrap_or_else(|e| panic!("{e}: {answer}"))
}

/// Scrapes of the first target so far.
fn scrapes(addr: SocketAddr) -> u64 {
    let answer = support::get(addr, "/api/v1/targets");
    answer
        .split_once("\r\n\r\n")
        .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(b).ok())
        .and_then(|v| {
            let list = v.get("targets").cloned().unwrap_or(v);
            list.get(0)?.get("scrapes")?.as_u64()
        })
        .unwrap_or(0)
}

#[test]
fn a_scrape_target_down_is_notified_once_across_a_restart_then_resolved() {
    let hook = Recorder::start(0);
    let url = hook.url("/hook?token=s3cr3t-token");
    let dead = support::dead_addr();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = dir.path().join("watch.yaml");
    std::fs::write(
        &config,
        "alerts:\n  labels: {team: web}\n  rules:\n    OnionwatchScrapeTargetDown: {window: 2 of 3}\n",
    )
    .unwrap();
    let target = format!("shop={}", dead.addr);
    let args = |target: &str| -> Vec<String> {
        [
            "--config",
            config.to_str().unwrap(),
            "--metrics-port",
            target,
            "--notify-webhook",
            &url,
            "--state-dir",
            state.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let log = dir.path().join("watch1.log");
    let a = args(&target);
    let (child, addr) = watch(&a.iter().map(String::as_str).collect::<Vec<_>>(), &log);

    // The webhook gets the firing group, in Alertmanager's payload.
    let firing = hook.next().json();
    assert_eq!(firing["status"], "firing", "{firing}");
    assert_eq!(firing["groupKey"], "{project=\"shop\"}", "{firing}");
    let alert = &firing["alerts"][0];
    assert_eq!(alert["labels"]["alertname"], "OnionwatchScrapeTargetDown");
    assert_eq!(alert["labels"]["project"], "shop");
    assert_eq!(alert["labels"]["team"], "web");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert!(alert["annotations"]["runbook_url"]
        .as_str()
        .unwrap()
        .ends_with("#onionwatchscrapetargetdown"));

    // The API, the metric and the dashboard show it.
    let alerts = support::json_until(addr, "/api/v1/alerts", |v| {
        v["data"]["alerts"].as_array().is_some_and(|a| a.len() == 1)
    });
    assert_eq!(alerts["data"]["alerts"][0]["state"], "firing");
    support::get_until(
        addr,
        "/metrics",
        &["onionwatch_alerts_firing{alertname=\"OnionwatchScrapeTargetDown\"} 1\n"],
    );
    let dashboard = support::json_until(addr, "/api/v1/dashboard", |v| {
        v["firing_alerts"].as_array().is_some_and(|a| !a.is_empty())
    });
    assert_eq!(
        dashboard["firing_alerts"][0]["alertname"],
        "OnionwatchScrapeTargetDown"
    );

    // Silences: refused when bad, listed, deleted.
    let bad = request(
        addr,
        "POST",
        "/api/v1/silences",
        "{\"matchers\": [\"project\"]}",
    );
    assert!(
        bad.starts_with("HTTP/1.1 400") || bad.starts_with("HTTP/1.0 400"),
        "{bad}"
    );
    let made = body(&request(
        addr,
        "POST",
        "/api/v1/silences",
        "{\"matchers\": [\"project=\\\"blog\\\"\"], \"duration\": \"2h\", \"comment\": \"move\"}",
    ));
    let id = made["data"]["silenceID"].as_str().unwrap().to_owned();
    let list = body(&support::get(addr, "/api/v1/silences"));
    assert_eq!(list["data"][0]["id"], id.as_str());
    assert_eq!(list["data"][0]["status"]["state"], "active");
    let deleted = request(addr, "DELETE", &format!("/api/v1/silences/{id}"), "");
    assert!(deleted.contains(" 200 "), "{deleted}");
    stop(child);

    // Restarted while the target is still down: no second "firing".
    let log2 = dir.path().join("watch2.log");
    let (child, addr) = watch(&a.iter().map(String::as_str).collect::<Vec<_>>(), &log2);
    support::json_until(addr, "/api/v1/alerts", |v| {
        v["data"]["alerts"].as_array().is_some_and(|a| a.len() == 1)
    });
    assert!(
        support::wait_for(std::time::Duration::from_secs(60), || (scrapes(addr) >= 6)
            .then_some(()))
        .is_some(),
        "watch scrapes: {} scrapes; targets {}; its log:\n{}",
        scrapes(addr),
        support::get(addr, "/api/v1/targets"),
        std::fs::read_to_string(&log2).unwrap_or_default()
    );
    stop(child);

    // Restarted with the target answering: the next notification is the
    // resolution (a duplicate "firing" would come first).
    let live = support::serve(TOR_PAGE);
    let b = args(&format!("shop={live}"));
    let log3 = dir.path().join("watch3.log");
    let (child, _) = watch(&b.iter().map(String::as_str).collect::<Vec<_>>(), &log3);
    let resolved = hook.next().json();
    assert_eq!(resolved["status"], "resolved", "{resolved}");
    assert_eq!(
        resolved["alerts"][0]["labels"]["alertname"],
        "OnionwatchScrapeTargetDown"
    );
    assert!(resolved["alerts"][0]["endsAt"].as_str().is_some());
    stop(child);

    for l in [&log, &log2, &log3] {
        let text = std::fs::read_to_string(l).unwrap();
        assert!(
            !text.contains("s3cr3t"),
            "the webhook token is logged:\n{text}"
        );
    }
}

#[test]
fn a_webhook_that_never_answers_does_not_hold_the_scrapes_up() {
    // Accepts connections (the kernel's backlog) and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", silent.local_addr().unwrap());
    let dead = support::dead_addr();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("watch.yaml");
    std::fs::write(
        &config,
        "alerts:\n  rules:\n    OnionwatchScrapeTargetDown: {window: 1 of 1}\n",
    )
    .unwrap();
    let log = dir.path().join("watch.log");
    let target = format!("shop={}", dead.addr);
    let (child, addr) = watch(
        &[
            "--config",
            config.to_str().unwrap(),
            "--metrics-port",
            &target,
            "--notify-webhook",
            &url,
        ],
        &log,
    );
    support::get_until(
        addr,
        "/metrics",
        &["onionwatch_alerts_firing{alertname=\"OnionwatchScrapeTargetDown\"} 1\n"],
    );
    // The notification is stuck in flight; scrapes go on regardless.
    let from = scrapes(addr);
    assert!(
        support::wait_for(std::time::Duration::from_secs(60), || (scrapes(addr)
            >= from + 5)
            .then_some(()))
        .is_some(),
        "scrapes stopped at {}; log:\n{}",
        scrapes(addr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let m = support::get(addr, "/metrics");
    assert!(
        !m.contains("onionwatch_notifications_total{notifier=\"webhook-0\",result=\"success\"}")
            || m.contains(
                "onionwatch_notifications_total{notifier=\"webhook-0\",result=\"success\"} 0"
            ),
        "{m}"
    );
    stop(child);
}

/// README's "Getting notified" examples are valid `probe` and `watch`
/// configurations.
#[test]
fn the_readme_examples_load_in_probe_and_watch() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme
        .split("\n## Getting notified\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a Getting notified section");
    let blocks: Vec<&str> = section
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect();
    // The example, the silences, and the Notifiers subsection's.
    assert_eq!(blocks.len(), 3, "{section}");
    for yaml in blocks {
        let (probe, warnings) = onionwatch_probe::Config::from_yaml(yaml, "README").unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        if let Some(alerts) = &probe.alerts {
            alerts.validate().unwrap();
        }
        let watch = onionwatch_inside::targets::Config::from_yaml(yaml, "README").unwrap();
        assert_eq!(watch.alerts, probe.alerts);
        assert_eq!(watch.notifiers, probe.notifiers);
    }
}
