//! `onionwatch watch --onionspray`: every discovered project's nginx access
//! log and tor logs (softmap workers' too) are followed (across a rotation)
//! and exported with a `project` label, in the series the dashboard reads;
//! the installation's onionbalance logs are counted by severity.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use onionwatch_test_support as support;

/// nginx's `$time_local` for now, so the lines fall in the 5-minute window.
fn now_local() -> String {
    let out = Command::new("date")
        .env("LC_ALL", "C")
        .args(["-u", "+%d/%b/%Y:%H:%M:%S +0000"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn line(circuit: u32, status: u16, time: &str) -> String {
    format!(
        "fc00:dead:beef:4dad::{circuit:x} - - [{time}] \"GET / HTTP/1.1\" {status} 10 \"-\" \"t\"\n"
    )
}

#[test]
fn discovered_projects_logs_are_followed_with_a_project_label() {
    let tree = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../onionwatch-onionspray/tests/fixtures/onionspray");
    support::copy_tree(&fixture, tree.path());
    let news_log = tree.path().join("projects/news/log");
    let access = news_log.join("nginx-access.log");
    let t = now_local();
    support::append(&access, &line(1, 200, &t));
    support::append(&access, &line(2, 200, &t));
    support::append(&access, &line(2, 503, &t));
    support::append(
        &news_log.join("tor.log"),
        "Nov 25 10:00:01.000 [warn] Your system clock just jumped 120 seconds forward\n",
    );
    // A softmap worker's tor logs in its own directory.
    support::append(
        &tree.path().join("projects/shop/hs-1/tor.log"),
        "Nov 25 10:00:02.000 [warn] Rejecting SOCKS request for anonymous connection\n",
    );
    // Onionbalance's own log (Python logging) and its tor's.
    let ob = tree.path().join("onionbalance");
    support::append(
        &ob.join("onionbalance.log"),
        "2026-11-25 10:00:03,120 [WARNING]: Instance shop1 is offline. Ignoring its intro points...\n\
         2026-11-25 10:00:04,250 [ERROR]: Error uploading descriptor for service shop\n",
    );
    support::append(
        &ob.join("tor.log"),
        "Nov 25 10:00:05.000 [notice] Bootstrapped 100% (done): Done\n",
    );
    let blog_access = tree.path().join("projects/blog/log/nginx-access.log");
    support::append(&blog_access, &line(7, 404, &t));
    let state = tree.path().join("log-state.json");

    let addr = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let child = support::Running(
        Command::new(env!("CARGO_BIN_EXE_onionwatch"))
            .args(["watch", "--interval", "1", "--timeout", "1"])
            .args(["--listen", &addr.to_string()])
            .arg("--log-state")
            .arg(&state)
            .arg("--onionspray")
            .arg(tree.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    support::get_until(
        addr,
        "/metrics",
        &[
            "onionwatch_log_lines_total{project=\"news\"} 3\n",
            "onionwatch_log_requests_total{project=\"news\",status_class=\"2xx\"} 2\n",
            "onionwatch_log_requests_total{project=\"news\",status_class=\"5xx\"} 1\n",
            "onionwatch_log_unique_circuits{project=\"news\",window=\"5m\"} 2\n",
            "onionwatch_log_requests_total{project=\"blog\",status_class=\"4xx\"} 1\n",
            "onionwatch_log_severity_lines_total{project=\"news\",log=\"tor\",severity=\"warn\"} 1\n",
            "onionwatch_log_severity_lines_total{project=\"shop\",log=\"tor\",severity=\"warn\"} 1\n",
            "onionwatch_log_severity_lines_total{log=\"onionbalance\",severity=\"warn\"} 1\n",
            "onionwatch_log_severity_lines_total{log=\"onionbalance\",severity=\"err\"} 1\n",
            "onionwatch_log_severity_lines_total{log=\"onionbalance\",severity=\"notice\"} 1\n",
            "onionwatch_log_tail_read_errors_total 0\n",
        ],
    );
    // The dashboard's unique-circuits column reads the same series;
    // shop's worker warning is on its row; onionbalance gets none.
    let dashboard = support::get_until(
        addr,
        "/api/v1/dashboard",
        &["\"unique_circuits_5m\":2.0", "Rejecting SOCKS request"],
    );
    assert!(!dashboard.contains("\"project\":\"\""), "{dashboard}");

    // Hourly rotation (rename and create).
    std::fs::rename(&access, news_log.join("nginx-access.log-2026112512")).unwrap();
    support::append(&access, &line(3, 200, &now_local()));
    support::get_until(
        addr,
        "/metrics",
        &[
            "onionwatch_log_lines_total{project=\"news\"} 4\n",
            "onionwatch_log_unique_circuits{project=\"news\",window=\"5m\"} 3\n",
            "onionwatch_log_tail_rotations_total 1\n",
        ],
    );
    // Its requests/s and 5xx/s columns come from two samples of
    // onionwatch_log_requests_total (one a second here).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = support::get(addr, "/api/v1/dashboard");
        let json: serde_json::Value = body
            .split("\r\n\r\n")
            .nth(1)
            .and_then(|b| serde_json::from_str(b).ok())
            .unwrap_or_default();
        let news = json["projects"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["project"] == "news").cloned())
            .unwrap_or_default();
        if news["requests_per_second"].is_number() && news["errors_5xx_per_second"].is_number() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no request rates for news: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(child);
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(saved.contains("nginx-access.log"), "{saved}");
}
