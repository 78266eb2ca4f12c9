//! `onionwatch watch --onionspray`: a project appearing or disappearing is
//! picked up live on SIGHUP and by the periodic re-discovery
//! (`rediscover_seconds`), and projects' tor warnings reach the dashboard.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use onionwatch_test_support as support;

/// Poll /api/v1/targets until `done` holds (30 s at most).
fn targets_until(addr: SocketAddr, done: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let body = support::get(addr, "/api/v1/targets");
        if done(&body) || start.elapsed() > Duration::from_secs(30) {
            return body;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn has(body: &str, project: &str) -> bool {
    body.contains(&format!("\"project\":\"{project}\""))
}

#[test]
fn sighup_picks_up_new_and_removed_projects() {
    let tree = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../onionwatch-onionspray/tests/fixtures/onionspray");
    support::copy_tree(&fixture, tree.path());
    let warning = "Nov 25 10:00:01.000 [warn] Your system clock just jumped 120 seconds forward";
    let tor_log = tree.path().join("projects/news/log/tor.log");
    let mut log = std::fs::read_to_string(&tor_log).unwrap();
    log.push_str(warning);
    log.push('\n');
    std::fs::write(&tor_log, log).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let child = support::Running(
        Command::new(env!("CARGO_BIN_EXE_onionwatch"))
            .args(["watch", "--interval", "1", "--timeout", "1"])
            .args(["--listen", &addr.to_string(), "--onionspray"])
            .arg(tree.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let body = targets_until(addr, |b| has(b, "news") && has(b, "blog"));
    assert!(
        has(&body, "news") && has(&body, "blog") && !has(&body, "daily"),
        "{body}"
    );

    // news's tor warning is on its dashboard row.
    support::json_until(addr, "/api/v1/dashboard", |json| {
        json["projects"].as_array().is_some_and(|rows| {
            rows.iter().any(|r| {
                r["project"] == "news"
                    && r["recent_warnings"]
                        .as_array()
                        .is_some_and(|w| w.iter().any(|l| l == warning))
            })
        })
    });

    // A new project (a copy of news), and blog removed.
    let projects = tree.path().join("projects");
    support::copy_tree(&projects.join("news"), &projects.join("daily"));
    std::fs::copy(
        tree.path().join("news.conf"),
        tree.path().join("daily.conf"),
    )
    .unwrap();
    std::fs::remove_dir_all(projects.join("blog")).unwrap();
    std::fs::remove_file(tree.path().join("blog.conf")).unwrap();
    unsafe { libc::kill(child.0.id() as i32, libc::SIGHUP) };

    let body = targets_until(addr, |b| has(b, "daily") && !has(b, "blog"));
    assert!(has(&body, "daily"), "new project not discovered: {body}");
    assert!(!has(&body, "blog"), "removed project still watched: {body}");
    assert!(has(&body, "news") && has(&body, "shop"), "{body}");
}

#[test]
fn periodic_rediscovery_picks_up_a_new_project_without_sighup() {
    let tree = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../onionwatch-onionspray/tests/fixtures/onionspray");
    support::copy_tree(&fixture, tree.path());
    let addr = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let config = tree.path().join("watch.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: {addr}\nonionspray: ['{}']\nrediscover_seconds: 0.5\n",
            tree.path().display()
        ),
    )
    .unwrap();
    let _child = support::Running(
        Command::new(env!("CARGO_BIN_EXE_onionwatch"))
            .args(["watch", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let body = targets_until(addr, |b| has(b, "news"));
    assert!(has(&body, "news") && !has(&body, "daily"), "{body}");

    let projects = tree.path().join("projects");
    support::copy_tree(&projects.join("news"), &projects.join("daily"));
    let body = targets_until(addr, |b| has(b, "daily"));
    assert!(has(&body, "daily"), "new project not discovered: {body}");
}
