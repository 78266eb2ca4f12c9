//! `onionwatch watch --config` together with flags: flag targets add to
//! the YAML's, `--listen` and `--interval` override its values; a failing
//! target is named with its reason in the log; start-up mistakes (a
//! missing Onionspray directory, nothing to watch) fail with a message.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use onionwatch_test_support::{self as support, TOR_METRICSPORT_PAGE as TOR_PAGE};

const STUB_STATUS: &str = "Active connections: 2 \nserver accepts handled requests\n 10 10 31 \nReading: 0 Writing: 1 Waiting: 1 \n";

fn watch(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onionwatch"));
    cmd.arg("watch").args(args).stdin(Stdio::null());
    cmd
}

#[test]
fn flags_add_targets_and_override_listen_and_interval() {
    let tmp = tempfile::tempdir().unwrap();
    let tor = support::serve(TOR_PAGE);
    let nginx = support::serve(STUB_STATUS);
    let dead = support::dead_addr();
    let yaml_listen = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let listen = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let config = tmp.path().join("watch.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: {yaml_listen}\ninterval_seconds: 3600\ntimeout_seconds: 0.5\n\
             projects:\n  news:\n    tors:\n      - metrics_port: {tor}\n"
        ),
    )
    .unwrap();
    let log = tmp.path().join("watch.log");
    let _child = support::Running(
        watch(&["--config", config.to_str().unwrap()])
            .args(["--listen", &listen.to_string(), "--interval", "0.5"])
            .args(["--metrics-port", &format!("shop={}", dead.addr)])
            .args([
                "--nginx-status",
                &format!("blog=http://{nginx}/stub_status"),
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );

    // With the YAML's interval news would be scraped once an hour: two
    // scrapes mean --interval won. Blog's first scrape may end after news's
    // second (or time out under load, 0.5 s): wait for every answer.
    let json = support::json_until(listen, "/api/v1/targets", |json| {
        let targets = json["targets"].as_array();
        let target = |p: &str| targets.and_then(|ts| ts.iter().find(|t| t["project"] == p));
        let news_scrapes = target("news")
            .and_then(|t| t["scrapes"].as_u64())
            .unwrap_or(0);
        let answered = target("blog").is_some_and(|t| t["health"] == "up")
            && target("shop").is_some_and(|t| t["health"] == "down");
        targets.is_some_and(|ts| ts.len() == 3) && news_scrapes >= 2 && answered
    });
    let targets = json["targets"].as_array().unwrap();
    let mut summary: Vec<(String, String, String)> = targets
        .iter()
        .map(|t| {
            (
                t["project"].as_str().unwrap().to_owned(),
                t["origin"].as_str().unwrap().to_owned(),
                t["health"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    summary.sort();
    let s = |p: &str, o: &str, h: &str| (p.to_owned(), o.to_owned(), h.to_owned());
    assert_eq!(
        summary,
        [
            s("blog", "flag", "up"),
            s("news", "config", "up"),
            s("shop", "flag", "down")
        ]
    );
    let metrics = support::get(listen, "/metrics");
    assert!(
        metrics.contains("tor_relay_traffic_bytes{direction=\"read\",project=\"news\",tor_instance=\"tor\"} 184921\n"),
        "{metrics}"
    );
    assert!(metrics.contains("nginx_http_requests_total{project=\"blog\"} 31\n"));

    // The failing target's warning names it and says why; the endpoint
    // logs where it serves: --listen's address, not the YAML's.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&log).unwrap();
        let warned = text.lines().any(|l| {
            l.contains("WARN")
                && l.contains("scrape failed")
                && l.contains("project=shop")
                && l.contains(&format!(
                    "cannot connect to tor's MetricsPort {}",
                    dead.addr
                ))
        });
        let served = text
            .lines()
            .any(|l| l.contains("serving /metrics") && l.contains(&format!("addr={listen} ")));
        if warned && served {
            assert!(!text.contains(&yaml_listen.to_string()), "{text}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no scrape warning for shop or no serving line for {listen}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn start_up_mistakes_fail_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.yaml");
    std::fs::write(&empty, "interval_seconds: 5\n").unwrap();
    let empty_tree = tmp.path().join("onionspray");
    std::fs::create_dir_all(empty_tree.join("projects")).unwrap();
    let typo = tmp.path().join("typo.yaml");
    std::fs::write(&typo, "probe: {sokcs_port: 9050}\n").unwrap();
    let no_endpoint = tmp.path().join("no-endpoint.yaml");
    std::fs::write(
        &no_endpoint,
        "projects: {news: {tors: [{metrics_port: 127.0.0.1:9}]}}\nprobe: {launch_tor: false}\n",
    )
    .unwrap();
    for (args, needle) in [
        (
            vec!["--config", typo.to_str().unwrap()],
            "probe: unknown key \"sokcs_port\"",
        ),
        (
            vec!["--config", no_endpoint.to_str().unwrap()],
            "nothing to probe",
        ),
        (
            vec![
                "--metrics-port",
                "news=127.0.0.1:9",
                "--probe-config",
                "/nonexistent/probe.yaml",
            ],
            "cannot read the config file /nonexistent/probe.yaml",
        ),
        (
            vec!["--onionspray", "/nonexistent/onionspray"],
            "cannot read /nonexistent/onionspray",
        ),
        (
            vec!["--config", empty.to_str().unwrap()],
            "nothing to watch",
        ),
        (
            vec!["--onionspray", empty_tree.to_str().unwrap()],
            "nothing to watch",
        ),
    ] {
        let listen = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
        let mut child = watch(&args)
            .args(["--listen", &listen.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = support::wait_exit(&mut child);
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert_eq!(status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

/// An onion service whose `hostname` cannot be read is named at start-up
/// with the reason and the fix, not skipped: here tor never wrote it.
#[test]
fn an_unreadable_onion_service_hostname_is_named_at_start_up() {
    use onionwatch_test_support::onionspray::{EntryKind, SprayProject, SprayTree};
    let tmp = tempfile::tempdir().unwrap();
    let tree = SprayTree::build(
        &tmp.path().join("onionspray"),
        &[SprayProject::hardmap("news", &["example.com"])],
    );
    let hostname = tree
        .paths(EntryKind::File)
        .into_iter()
        .find(|p| p.ends_with("hostname"))
        .unwrap()
        .to_owned();
    std::fs::remove_file(&hostname).unwrap();
    let listen = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let log = tmp.path().join("watch.log");
    let mut child = support::Running(
        watch(&["--onionspray", tree.root.to_str().unwrap()])
            .args(["--listen", &listen.to_string()])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap(),
    );
    let want = format!(
        "cannot read the onion service hostname file {}",
        hostname.display()
    );
    let start = Instant::now();
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(&want) {
            break text;
        }
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "watch exited: {text}"
        );
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{want:?} never logged:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let line = text.lines().find(|l| l.contains(&want)).unwrap();
    for part in ["onionspray start news", "its onion service is not probed"] {
        assert!(line.contains(part), "{part:?} missing from {line}");
    }
    // Nothing to probe: no tor launched for it (said at info level).
    assert!(text.contains("watching a target"), "{text}");
    assert!(!text.contains("launching a private tor"), "{text}");
}

#[test]
fn the_probe_section_s_vantage_and_external_labels_label_the_prober_s_families() {
    let tmp = tempfile::tempdir().unwrap();
    let tor = support::serve(TOR_PAGE);
    let dead = support::dead_addr();
    let listen = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let config = tmp.path().join("watch.yaml");
    // A tor that is not there: the prober's families are served before any
    // round, which is all this needs.
    std::fs::write(
        &config,
        format!(
            "listen: {listen}\nprojects:\n  news:\n    tors:\n      - metrics_port: {tor}\n\
             probe:\n  launch_tor: false\n  control_port: {port}\n  socks_port: {port}\n  \
             vantage: eu-1\n  external_labels: {{region: eu}}\n  endpoints:\n    \
             shop: {{address: 2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion}}\n",
            port = dead.addr.port()
        ),
    )
    .unwrap();
    let _child = support::Running(
        watch(&["--config", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let body = support::get_until(
        listen,
        "/metrics",
        &["onionprobe_state{", "onionwatch_scrape_up{"],
    );
    assert!(
        body.contains(
            "onionprobe_state{onionprobe_state=\"starting\",vantage=\"eu-1\",region=\"eu\"} 1"
        ),
        "{body}"
    );
    // The inside families are not the prober's: no vantage there.
    assert!(
        body.lines()
            .filter(|l| l.starts_with("onionwatch_scrape_up{"))
            .all(|l| !l.contains("vantage")),
        "{body}"
    );
}
