//! The follow pipeline on real files: exact counts through a rotation and a
//! restart from the state file, the record hook, severity counting.

use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use onionwatch_logs::access::LogFormat;
use onionwatch_logs::follow::{FollowConfig, Follower, LogKind, Source};
use onionwatch_logs::tail::{TailConfig, TailState};
use onionwatch_metrics::{render, Format};
use onionwatch_test_support::append;

fn access(circuit: u32, status: u16) -> String {
    format!(
        "fc00:dead:beef:4dad::{circuit:x} - - [11/Jan/2024:17:08:43 +0000] \"GET / HTTP/1.1\" {status} 10 \"-\" \"t\"\n"
    )
}

fn text(f: &Follower) -> String {
    render(&onionwatch_metrics::merge(f.families()), Format::Prometheus)
}

/// Poll the rendered metrics until every needle is there.
fn until(f: &Follower, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = text(f);
        if needles.iter().all(|n| t.contains(n)) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {needles:?} in\n{t}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn config(state: &Path) -> FollowConfig {
    FollowConfig {
        tail: TailConfig {
            poll_interval: Duration::from_millis(10),
            rescan_interval: Duration::ZERO,
            rotate_grace: Duration::ZERO,
            ..TailConfig::default()
        },
        state_file: Some(state.to_owned()),
        state_interval: Duration::ZERO,
        ..FollowConfig::default()
    }
}

#[test]
fn counts_are_exact_across_rotation_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("nginx-access.log");
    let tor = dir.path().join("tor.log");
    let state = dir.path().join("state.json");
    let sources = vec![
        Source {
            project: "shop".into(),
            kind: LogKind::Access,
            pattern: dir.path().join("nginx-access*.log"),
        },
        Source {
            project: "shop".into(),
            kind: LogKind::Tor,
            pattern: tor.clone(),
        },
    ];
    for i in 0..10 {
        append(&log, &access(i, if i < 8 { 200 } else { 503 }));
    }
    append(&log, "garbage\n");
    append(
        &tor,
        "Nov 25 09:00:00.000 [notice] Bootstrapped 100% (done): Done\n\
         Nov 25 09:00:01.000 [warn] Your system clock just jumped\n",
    );
    type Seen = Vec<(String, Option<u32>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let f = Follower::new(
        config(&state),
        LogFormat::combined(),
        sources.clone(),
        TailState::default(),
    );
    let s2 = seen.clone();
    f.set_record_hook(Box::new(move |r| {
        s2.lock()
            .unwrap()
            .push((r.project.to_owned(), r.circuit.map(|(c, _)| c.0)))
    }));
    let handle = f.spawn().unwrap();
    until(
        &f,
        &[
            "onionwatch_log_lines_total{project=\"shop\"} 11\n",
            "onionwatch_log_requests_total{project=\"shop\",status_class=\"5xx\"} 2\n",
            "onionwatch_log_parse_errors_total{project=\"shop\",reason=\"truncated\"} 1\n",
            "onionwatch_log_unique_circuits{project=\"shop\",window=\"all\"} 10\n",
            "onionwatch_log_severity_lines_total{project=\"shop\",log=\"tor\",severity=\"warn\"} 1\n",
            "onionwatch_log_severity_lines_total{project=\"shop\",log=\"tor\",severity=\"notice\"} 1\n",
            "onionwatch_log_tail_files 2\n",
        ],
    );
    assert_eq!(seen.lock().unwrap().len(), 10);
    assert_eq!(seen.lock().unwrap()[3], ("shop".into(), Some(3)));
    assert_eq!(f.recent_tor_warnings("shop").len(), 1);
    let recent = f.recent_warnings();
    assert_eq!(recent["shop"]["tor"].len(), 1);
    assert!(recent["shop"]["tor"][0].text.contains("clock just jumped"));
    assert!(!recent["shop"].contains_key("onionbalance"));

    // Rotate: rename and create.
    fs::rename(&log, dir.path().join("nginx-access.log-2024011118")).unwrap();
    append(&log, &access(100, 404));
    until(
        &f,
        &[
            "onionwatch_log_lines_total{project=\"shop\"} 12\n",
            "onionwatch_log_tail_rotations_total 1\n",
        ],
    );
    handle.stop();
    let saved = TailState::load(&state).unwrap();
    assert_eq!(saved.files.len(), 2);

    // Restart from the state: only what is new is counted.
    append(&log, &access(101, 200));
    append(&tor, "Nov 25 09:00:02.000 [err] bad\n");
    let f = Follower::new(config(&state), LogFormat::combined(), sources, saved);
    let handle = f.spawn().unwrap();
    let t = until(
        &f,
        &[
            "onionwatch_log_lines_total{project=\"shop\"} 1\n",
            "onionwatch_log_severity_lines_total{project=\"shop\",log=\"tor\",severity=\"err\"} 1\n",
        ],
    );
    assert!(t.contains("severity=\"warn\"} 0\n"), "{t}");
    assert!(t.contains("onionwatch_log_tail_lines_total 2\n"), "{t}");
    drop(handle);
}

#[test]
fn a_project_sources_are_in_kind_order_and_refuse_stdin_and_gzip() {
    let p = |s: &str| std::path::PathBuf::from(s);
    let sources = Source::project("shop", &[p("a.log")], &[p("tor.log")], &[p("ob.log")]).unwrap();
    let kinds: Vec<_> = sources
        .iter()
        .map(|s| (s.kind, s.project.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            (LogKind::Access, "shop"),
            (LogKind::Tor, "shop"),
            (LogKind::Onionbalance, "shop")
        ]
    );
    let stdin = Source::project("", &[p("-")], &[], &[]).unwrap_err();
    assert!(stdin.to_string().contains("standard input"), "{stdin}");
    let gz = Source::project("", &[], &[p("tor.log.1.gz")], &[]).unwrap_err();
    assert!(
        gz.to_string().starts_with("tor.log.1.gz is compressed"),
        "{gz}"
    );
}
