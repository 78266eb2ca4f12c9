//! The ntfy notifier against a loopback receiver, and the exec notifier
//! with real commands.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use onionwatch_notify::Notifiers;
use onionwatch_test_support::{wait_for, Recorder};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ntfy_posts_a_short_text_with_title_priority_and_tags() {
    let rx = Recorder::start(0);
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "tk_s3cret").unwrap();
    let n = Notifiers::start(vec![config(&format!(
        "type: ntfy\nname: phone\nurl: {}\npriority: urgent\nbearer_token: {{file: {}}}\n",
        rx.url("/onion-alerts"),
        token.display()
    ))])
    .unwrap();
    n.notify(group(
        "{name=\"shop\"}",
        vec![alert("OnionServiceUnreachable", "critical", None)],
    ));
    let r = rx.next();
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/onion-alerts");
    assert_eq!(
        r.header("title"),
        Some("[FIRING:1] OnionServiceUnreachable (name=shop project=news)")
    );
    assert_eq!(r.header("priority"), Some("urgent"));
    assert_eq!(r.header("tags"), Some("rotating_light"));
    assert_eq!(r.header("authorization"), Some("Bearer tk_s3cret"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let body = String::from_utf8(r.body).unwrap();
    assert!(
        body.starts_with("FIRING: OnionServiceUnreachable\n"),
        "{body}"
    );
    assert!(
        body.contains("name=shop project=news severity=critical"),
        "{body}"
    );
    assert!(
        body.contains("summary: OnionServiceUnreachable on shop"),
        "{body}"
    );

    n.notify(group(
        "{name=\"shop\"}",
        vec![alert("OnionServiceUnreachable", "critical", Some(60))],
    ));
    let r = rx.next();
    assert_eq!(
        r.header("title"),
        Some("[RESOLVED:1] OnionServiceUnreachable (name=shop project=news)")
    );
    assert_eq!(r.header("priority"), Some("default"));
    assert_eq!(r.header("tags"), Some("white_check_mark"));
    wait_counts(&n, "phone", (2, 0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_gets_the_webhook_payload_on_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("payload.json");
    let n = Notifiers::start(vec![config(&format!(
        "type: exec\nname: script\ncommand: [sh, -c, 'cat > \"$1\"', sh, {}]\n",
        out.display()
    ))])
    .unwrap();
    n.notify(group(
        "{name=\"shop\"}",
        vec![alert("OnionServiceUnreachable", "critical", None)],
    ));
    wait_counts(&n, "script", (1, 0, 0));
    let p: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(p["version"], "4");
    assert_eq!(p["receiver"], "script");
    assert_eq!(p["status"], "firing");
    assert_eq!(
        p["alerts"][0]["labels"]["alertname"],
        "OnionServiceUnreachable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_failures_are_counted_and_retried() {
    let n = Notifiers::start(vec![config(
        "type: exec\nname: script\ncommand: [sh, -c, 'exit 3']\nmax_attempts: 2\nretry_initial: 10ms\n",
    )])
    .unwrap();
    n.notify(group(
        "g",
        vec![alert("OnionServiceUnreachable", "critical", None)],
    ));
    wait_counts(&n, "script", (0, 2, 1));

    // A program that does not exist fails the same way.
    let n = Notifiers::start(vec![config(
        "type: exec\nname: script\ncommand: [/nonexistent/notify-me]\nmax_attempts: 1\n",
    )])
    .unwrap();
    n.notify(group(
        "g",
        vec![alert("OnionServiceUnreachable", "critical", None)],
    ));
    wait_counts(&n, "script", (0, 1, 1));
}

/// Whether `pid` is gone (or a zombie nobody reaped yet).
fn dead(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

fn read_pid(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_is_killed_after_its_timeout_with_what_it_started() {
    let dir = tempfile::tempdir().unwrap();
    let (shell, child) = (dir.path().join("shell"), dir.path().join("child"));
    // The shell starts a sleep in the background and waits for it; the
    // pid files are written before the timeout can strike (2 s).
    let n = Notifiers::start(vec![config(&format!(
        "type: exec\nname: slow\ncommand: [sh, -c, 'sleep 600 & echo $! > \"$2\"; echo $$ > \"$1\"; wait', sh, {}, {}]\ntimeout: 2s\nmax_attempts: 1\n",
        shell.display(),
        child.display()
    ))])
    .unwrap();
    n.notify(group(
        "g",
        vec![alert("OnionServiceUnreachable", "critical", None)],
    ));
    let pids = wait_for(Duration::from_secs(30), || {
        Some((read_pid(&shell)?, read_pid(&child)?))
    })
    .expect("the command wrote its pids");
    wait_counts(&n, "slow", (0, 1, 1));
    let gone = wait_for(Duration::from_secs(30), || {
        (dead(&pids.0) && dead(&pids.1)).then_some(())
    });
    assert!(gone.is_some(), "still running: {pids:?}");
}
