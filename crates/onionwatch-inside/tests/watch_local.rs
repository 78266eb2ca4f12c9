//! The watch runtime against local endpoints: a MetricsPort serving a
//! real tor page, one that accepts and never answers, and one refusing
//! connections (the slow and dead ones must not hold back the rest); two
//! real nginx, one of them stopped; Onionspray trees that fail.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use onionwatch_inside::targets::{Flags, Settings};
use onionwatch_inside::watch::Watcher;
use onionwatch_metrics::{render, Format};
use onionwatch_server::Registry;
use onionwatch_test_support::TOR_METRICSPORT_PAGE as TOR_PAGE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

async fn tor_like_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut req = [0u8; 1024];
                let _ = s.read(&mut req).await;
                let head = format!("HTTP/1.0 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n", TOR_PAGE.len());
                let _ = s.write_all(head.as_bytes()).await;
                let _ = s.write_all(TOR_PAGE.as_bytes()).await;
                // Like tor, do not close: the client must stop at Content-Length.
                let _ = s.read(&mut req).await;
            });
        }
    });
    addr
}

async fn silent_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s); // never answer
        }
    });
    (addr, task)
}

#[tokio::test]
async fn a_slow_or_dead_target_does_not_block_the_others() {
    let good = tor_like_server().await;
    let (slow, _slow_task) = silent_server().await;
    // Bound but not listening: refuses connections, and holds the port so
    // that no other process can listen there.
    let dead_socket = tokio::net::TcpSocket::new_v4().unwrap();
    dead_socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let dead = dead_socket.local_addr().unwrap();
    let flags = Flags {
        metrics_ports: vec![
            format!("good={good}"),
            format!("slow={slow}"),
            format!("dead={dead}"),
        ],
        interval_seconds: Some(0.5),
        timeout_seconds: Some(0.4),
        ..Flags::default()
    };
    let watcher = Watcher::new(Settings::build(None, &flags).unwrap());
    watcher.start().unwrap();
    let registry = Arc::new(Registry::default());
    registry.register(watcher.collector());

    let text = render_until(&registry, "every target scraped", |t| {
        ["good", "slow", "dead"]
            .iter()
            .all(|p| t.contains(&format!("collector=\"tor_metrics\",project=\"{p}\"")))
    })
    .await;
    // Every target has its scrape duration; the slow one took the timeout.
    for (p, at_least) in [("good", 0.0), ("slow", 0.4), ("dead", 0.0)] {
        let line = format!("onionwatch_scrape_duration_seconds{{collector=\"tor_metrics\",project=\"{p}\",tor_instance=\"tor\"}} ");
        let v: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no duration for {p}:\n{text}"))
            .parse()
            .unwrap();
        assert!(v > 0.0 && v >= at_least, "{p}: {v}");
    }
    assert_eq!(
        text.matches("# TYPE onionwatch_scrape_duration_seconds gauge\n")
            .count(),
        1
    );
    let up = |p: &str| {
        format!("onionwatch_scrape_up{{collector=\"tor_metrics\",project=\"{p}\",tor_instance=\"tor\"}}")
    };
    assert!(text.contains(&format!("{} 1\n", up("good"))), "{text}");
    assert!(text.contains(&format!("{} 0\n", up("slow"))), "{text}");
    assert!(text.contains(&format!("{} 0\n", up("dead"))), "{text}");
    // The good tor's families, relabelled, one declaration each.
    assert!(text.contains("tor_relay_traffic_bytes{direction=\"read\",project=\"good\",tor_instance=\"tor\"} 184921\n"), "{text}");
    assert_eq!(
        text.matches("# TYPE tor_hs_intro_num_total counter")
            .count(),
        1
    );

    let states = watcher.target_states();
    let slow_state = states.iter().find(|s| s.project == "slow").unwrap();
    assert!(
        slow_state
            .last_error
            .as_deref()
            .unwrap()
            .contains("did not answer within"),
        "{slow_state:?}"
    );
    let dead_state = states.iter().find(|s| s.project == "dead").unwrap();
    assert!(
        dead_state
            .last_error
            .as_deref()
            .unwrap()
            .contains("cannot connect to tor's MetricsPort"),
        "{dead_state:?}"
    );

    // Targets removed at runtime stop being exported.
    watcher.set_targets(Vec::new());
    let text = render(&registry.gather(), Format::Prometheus);
    assert!(!text.contains("project=\"good\""), "{text}");
}

/// An Onionspray tree with one hardmap project per name, each tor with a
/// MetricsPort (nothing listens there: discovery only).
fn tree(projects: &[(&str, u16)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, port) in projects {
        let p = dir.path().join("projects").join(name);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(
            p.join("tor.conf"),
            format!("MetricsPort 127.0.0.1:{port}\nMetricsPortPolicy accept 127.0.0.1\n"),
        )
        .unwrap();
    }
    dir
}

fn projects(w: &Watcher) -> Vec<String> {
    w.target_states().into_iter().map(|s| s.project).collect()
}

#[tokio::test]
async fn start_up_fails_on_a_missing_tree_or_nothing_to_watch() {
    let settings = |root: &std::path::Path| {
        let flags = Flags {
            onionspray: vec![root.to_owned()],
            ..Flags::default()
        };
        Settings::build(None, &flags).unwrap()
    };
    let missing = std::path::Path::new("/nonexistent/onionspray");
    let err = Watcher::new(settings(missing)).start().unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot read /nonexistent/onionspray"),
        "{err}"
    );
    let empty = tree(&[]);
    std::fs::create_dir(empty.path().join("projects")).unwrap();
    let err = Watcher::new(settings(empty.path())).start().unwrap_err();
    let want = format!("nothing to watch: no target or log was given, and {} has no projects (each needs projects/<name>/ with its generated tor.conf)", empty.path().display());
    assert_eq!(err.to_string(), want);

    // Projects whose tors have no port to scrape, with log following off.
    let portless = tree(&[]);
    let p = portless.path().join("projects/news");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("tor.conf"), "SocksPort 0\n").unwrap();
    let mut s = settings(portless.path());
    s.follow_onionspray_logs = false;
    let err = Watcher::new(s).start().unwrap_err().to_string();
    assert!(
        err.contains("has 1 project(s) but no MetricsPort, ControlPort or nginx stub_status")
            && err.contains("set follow_onionspray_logs: true")
            && !err.contains("no projects"),
        "{err}"
    );
    // With log following on, the project's logs are something to watch.
    Watcher::new(settings(portless.path())).start().unwrap();

    let err = Watcher::new(Settings::build(None, &Flags::default()).unwrap())
        .start()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("give an Onionspray directory (--onionspray DIR)"),
        "{err}"
    );
}

#[tokio::test]
async fn a_tree_that_fails_later_keeps_only_its_own_targets() {
    let a = tree(&[("a", 1)]);
    let b = tree(&[("b", 2), ("c", 3)]);
    let flags = Flags {
        onionspray: vec![a.path().to_owned(), b.path().to_owned()],
        interval_seconds: Some(3600.0),
        ..Flags::default()
    };
    let watcher = Watcher::new(Settings::build(None, &flags).unwrap());
    watcher.start().unwrap();
    assert_eq!(projects(&watcher), ["a", "b", "c"]);

    // Tree a becomes unreadable, c leaves tree b: a keeps its target, c goes.
    let moved = a.path().with_extension("moved");
    std::fs::rename(a.path(), &moved).unwrap();
    std::fs::remove_dir_all(b.path().join("projects/c")).unwrap();
    watcher.rediscover();
    assert_eq!(projects(&watcher), ["a", "b"]);

    // Once it is back, a new project of tree a shows up.
    std::fs::rename(&moved, a.path()).unwrap();
    std::fs::create_dir(a.path().join("projects/d")).unwrap();
    std::fs::write(
        a.path().join("projects/d/tor.conf"),
        "MetricsPort 127.0.0.1:4\n",
    )
    .unwrap();
    watcher.rediscover();
    assert_eq!(projects(&watcher), ["a", "b", "d"]);
}

/// Render the registry until `done` holds (30 s at most).
async fn render_until(registry: &Registry, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = render(&registry.gather(), Format::Prometheus);
        if done(&text) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_stopped_nginx_reads_nginx_up_0_and_the_other_keeps_working() {
    use onionwatch_testnet::nginx::{Nginx, NginxConfig};
    let config = NginxConfig {
        server_directives: "location = /stub_status { stub_status; allow 127.0.0.1; deny all; }"
            .into(),
        ..NginxConfig::default()
    };
    let a = Nginx::start(&config).expect("nginx starts (apt-get install nginx)");
    let b = Nginx::start(&config).expect("nginx starts (apt-get install nginx)");
    let flags = Flags {
        nginx_status: vec![
            format!("a=http://{}/stub_status", a.addr()),
            format!("b=http://{}/stub_status", b.addr()),
        ],
        interval_seconds: Some(0.3),
        timeout_seconds: Some(0.3),
        ..Flags::default()
    };
    let watcher = Watcher::new(Settings::build(None, &flags).unwrap());
    watcher.start().unwrap();
    let registry = Arc::new(Registry::default());
    registry.register(watcher.collector());
    render_until(&registry, "both nginx up", |t| {
        t.contains("nginx_up{project=\"a\"} 1\n") && t.contains("nginx_up{project=\"b\"} 1\n")
    })
    .await;

    drop(b); // kills b's nginx
    let text = render_until(&registry, "b's nginx_up to read 0", |t| {
        t.contains("nginx_up{project=\"b\"} 0\n")
    })
    .await;
    assert!(text.contains("nginx_up{project=\"a\"} 1\n"), "{text}");
    assert!(
        text.contains("nginx_connections_active{project=\"a\"} "),
        "{text}"
    );
    // b has nothing but nginx_up now: no stale counters.
    let b_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("project=\"b\"") && l.starts_with("nginx_"))
        .collect();
    assert_eq!(b_lines, ["nginx_up{project=\"b\"} 0"], "{text}");
    // a keeps being scraped.
    let a_scrapes = |w: &Watcher| {
        w.target_states()
            .iter()
            .find(|s| s.project == "a")
            .unwrap()
            .scrapes
    };
    let before = a_scrapes(&watcher);
    let deadline = Instant::now() + Duration::from_secs(30);
    while a_scrapes(&watcher) <= before {
        assert!(Instant::now() < deadline, "a is no longer scraped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b_state = watcher
        .target_states()
        .into_iter()
        .find(|s| s.project == "b")
        .unwrap();
    assert_eq!(b_state.health, "down");
    assert!(b_state.last_error.unwrap().contains("nginx stub_status"));
    drop(a);
}

/// A MetricsPort posing as onionwatch (`onionwatch_scrape_up` as a
/// histogram), the prober (`onion_service_reachable`) and nginx, and
/// giving tor's own names other types or clashing sample names.
const HOSTILE_PAGE: &str = "\
# TYPE onionwatch_scrape_up histogram
onionwatch_scrape_up_bucket{collector=\"tor_metrics\",project=\"x\",le=\"+Inf\"} 1
onionwatch_scrape_up_sum{collector=\"tor_metrics\",project=\"x\"} 1
onionwatch_scrape_up_count{collector=\"tor_metrics\",project=\"x\"} 1
# TYPE onion_service_reachable gauge
onion_service_reachable{name=\"fake\",address=\"fake.onion\",path=\"/\"} 1
# TYPE nginx_up gauge
nginx_up 1
# TYPE tor_hs_app_write_bytes histogram
tor_hs_app_write_bytes_bucket{le=\"+Inf\"} 5
tor_hs_app_write_bytes_sum 5
tor_hs_app_write_bytes_count 5
# TYPE tor_hs_intro_num_total gauge
tor_hs_intro_num_total 7
# TYPE tor_hs_new_thing counter
tor_hs_new_thing_total 2
";

#[tokio::test]
async fn a_hostile_metrics_port_cannot_pose_as_our_families_or_poison_tor_s() {
    use onionwatch_test_support::{serve, value};
    let hostile = serve(HOSTILE_PAGE);
    let honest = serve(TOR_PAGE);
    // "aaa" sorts before "news": its families come first in every merge.
    let flags = Flags {
        metrics_ports: vec![format!("aaa={hostile}"), format!("news={honest}")],
        interval_seconds: Some(60.0),
        timeout_seconds: Some(10.0),
        ..Flags::default()
    };
    let watcher = Watcher::new(Settings::build(None, &flags).unwrap());
    watcher.start().unwrap();
    let registry = Arc::new(Registry::default());
    registry.register(watcher.collector());

    let text = render_until(&registry, "both targets scraped", |t| {
        ["aaa", "news"].iter().all(|p| {
            t.contains(&format!(
                "onionwatch_scrape_up{{collector=\"tor_metrics\",project=\"{p}\",tor_instance=\"tor\"}} 1\n"
            ))
        })
    })
    .await;
    // Our families are ours: one gauge, one sample per target.
    assert_eq!(
        text.matches("# TYPE onionwatch_scrape_up gauge\n").count(),
        1
    );
    assert_eq!(text.matches("\nonionwatch_scrape_up{").count(), 2, "{text}");
    for fake in [
        "onionwatch_scrape_up_",
        "onion_service_reachable",
        "nginx_up",
    ] {
        assert!(!text.contains(fake), "{fake} re-exported:\n{text}");
    }
    // tor's families keep tor's types, whichever page comes first.
    assert_eq!(
        text.matches("# TYPE tor_hs_app_write_bytes_total counter\n")
            .count(),
        1,
        "{text}"
    );
    assert!(!text.contains("tor_hs_app_write_bytes_bucket"), "{text}");
    assert!(!text.contains("tor_hs_app_write_bytes_count"), "{text}");
    assert_eq!(
        text.matches("# TYPE tor_hs_intro_num_total ").count(),
        1,
        "{text}"
    );
    assert!(!text.contains("tor_hs_intro_num_total 7"), "{text}");
    assert!(text.contains("tor_hs_intro_num_total{onion="), "{text}");
    // A tor_* family tor does not (yet) send passes.
    assert!(
        text.contains("tor_hs_new_thing_total{project=\"aaa\",tor_instance=\"tor\"} 2\n"),
        "{text}"
    );
    // Dropped, and counted without per-target labels.
    let dropped = |reason: &str| {
        value(
            &text,
            &format!("onionwatch_scrape_dropped_families_total{{reason=\"{reason}\"}}"),
        )
        .unwrap_or_else(|| panic!("no {reason} count:\n{text}"))
    };
    assert!(dropped("not_tor") >= 3.0);
    assert!(dropped("type_conflict") >= 1.0);
    assert!(dropped("name_conflict") >= 1.0);
    assert_eq!(
        text.matches("# TYPE onionwatch_scrape_dropped_families_total counter\n")
            .count(),
        1
    );
}

/// Onionspray's nginx listens on unix sockets only: the status server the
/// audit suggests (`listen unix:<project>/nginx-status.sock`) is found in
/// the project's generated nginx.conf and scraped over the socket, from a
/// real nginx; the onion services' sockets are left alone.
#[tokio::test]
async fn a_real_nginx_stub_status_on_a_unix_socket_is_discovered_and_scraped() {
    use onionwatch_test_support::onionspray::{SprayProject, SprayTree};
    use onionwatch_testnet::nginx::{Nginx, NginxConfig};
    let dir = tempfile::tempdir().unwrap();
    let tree = SprayTree::build(
        &dir.path().join("onionspray"),
        &[SprayProject {
            status_socket: true,
            ..SprayProject::hardmap("news", &["example.com"])
        }],
    );
    let socket = tree.root.join("projects/news/nginx-status.sock");
    // The builder leaves a socket file as a stopped nginx would; the real
    // one binds it afresh.
    std::fs::remove_file(&socket).unwrap();
    let nginx = Nginx::start(&NginxConfig {
        server_directives: format!(
            "listen unix:{}; location = /nginx_status {{ stub_status; }}",
            socket.display()
        ),
        ..NginxConfig::default()
    })
    .expect("nginx starts (apt-get install nginx)");
    let flags = Flags {
        onionspray: vec![tree.root.clone()],
        interval_seconds: Some(0.3),
        timeout_seconds: Some(0.3),
        ..Flags::default()
    };
    let watcher = Watcher::new(Settings::build(None, &flags).unwrap());
    watcher.start().unwrap();
    let registry = Arc::new(Registry::default());
    registry.register(watcher.collector());
    let text = render_until(&registry, "news's nginx over its unix socket", |t| {
        t.contains("nginx_up{project=\"news\"} 1\n")
    })
    .await;
    assert!(
        text.contains("nginx_connections_active{project=\"news\"} "),
        "{text}"
    );
    let state = watcher
        .target_states()
        .into_iter()
        .find(|s| s.project == "news" && s.collector.as_str() == "nginx")
        .unwrap();
    assert_eq!(
        state.endpoint,
        format!("http://unix:{}:/nginx_status", socket.display())
    );
    drop(nginx);
}

/// Where [`watch_start_up_as_another_user`] finds the tree.
const CHILD_ROOT: &str = "ONIONWATCH_TEST_WATCH_ROOT";

/// Run as `nobody` by [`start_up_names_what_it_cannot_read_in_a_0700_tree`]
/// (this test binary again, under setpriv): starts a watcher on the tree
/// and prints the start-up error. Without the tree, nothing to do.
#[test]
#[ignore = "run as another user by start_up_names_what_it_cannot_read_in_a_0700_tree"]
fn watch_start_up_as_another_user() {
    let Some(root) = std::env::var_os(CHILD_ROOT) else {
        return;
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let flags = Flags {
            onionspray: vec![root.into()],
            ..Flags::default()
        };
        let mut settings = Settings::build(None, &flags).unwrap();
        settings.follow_onionspray_logs = false;
        match Watcher::new(settings).start() {
            Ok(()) => println!("STARTED"),
            Err(e) => println!("ERROR {e}"),
        }
    });
}

/// A default Onionspray tree (0700, another user's) is not "nothing to
/// watch" without a word: start-up names each directory it cannot enter,
/// its owner and mode, and the fix.
#[test]
fn start_up_names_what_it_cannot_read_in_a_0700_tree() {
    use onionwatch_test_support::onionspray::{SprayProject, SprayTree};
    use onionwatch_test_support::process::{lines_from, rerun_as_nobody};
    let dir = tempfile::tempdir().unwrap();
    onionwatch_test_support::fs::chmod(dir.path(), 0o755);
    let tree = SprayTree::build(
        &dir.path().join("onionspray"),
        &[SprayProject {
            metrics_port: Some(9035),
            ..SprayProject::hardmap("news", &["example.com"])
        }],
    );
    tree.chown(47110, 47120);
    let Some(out) = rerun_as_nobody(
        dir.path(),
        "watch_start_up_as_another_user",
        Some(47120),
        &[(CHILD_ROOT, tree.root.as_os_str())],
    ) else {
        return;
    };
    let errors = lines_from(&out, "ERROR");
    assert_eq!(errors.len(), 1, "{out}");
    let news = tree.root.join("projects/news");
    for want in [
        "has 1 project(s) but no MetricsPort, ControlPort or nginx stub_status".to_owned(),
        format!("cannot read the project directory {}", news.display()),
        format!("{} is owned by 47110:47120 with mode 0700", news.display()),
        "fix: run onionwatch as user 47110 (User=47110 in its systemd unit)".to_owned(),
    ] {
        assert!(
            errors[0].contains(&want),
            "{want:?} missing from {}",
            errors[0]
        );
    }
}

/// A MetricsPort page of `n` samples (one tor family, one sample per port).
fn page_of(n: usize) -> &'static str {
    let mut page = String::from("# TYPE tor_hs_app_read_bytes_total counter\n");
    for port in 0..n {
        page.push_str(&format!(
            "tor_hs_app_read_bytes_total{{onion=\"x\",port=\"{port}\"}} 1\n"
        ));
    }
    Box::leak(page.into_boxed_str())
}

#[tokio::test]
async fn a_metricsport_page_over_its_max_samples_fails_the_scrape_and_names_the_option() {
    use onionwatch_inside::collector::tor_metrics::DEFAULT_MAX_SAMPLES;
    use onionwatch_inside::targets::Config;
    use onionwatch_test_support::http::serve;
    let under = serve(page_of(DEFAULT_MAX_SAMPLES));
    let over = serve(page_of(DEFAULT_MAX_SAMPLES + 1));
    let small = serve(page_of(11));
    let yaml = format!(
        "interval_seconds: 30\ntimeout_seconds: 30\nprojects:\n\
         \x20 under: {{tors: [{{metrics_port: \"{under}\"}}]}}\n\
         \x20 over: {{tors: [{{metrics_port: \"{over}\"}}]}}\n\
         \x20 small: {{tors: [{{metrics_port: \"{small}\", max_samples: 10}}]}}\n"
    );
    let config = Config::from_yaml(&yaml, "test").unwrap();
    let watcher = Watcher::new(Settings::build(Some(config), &Flags::default()).unwrap());
    watcher.start().unwrap();
    let registry = Arc::new(Registry::default());
    registry.register(watcher.collector());
    let up = |p: &str| {
        format!("onionwatch_scrape_up{{collector=\"tor_metrics\",project=\"{p}\",tor_instance=\"tor\"}}")
    };
    let text = render_until(&registry, "every target scraped", |t| {
        ["under", "over", "small"]
            .iter()
            .all(|p| t.contains(&up(p)))
    })
    .await;
    assert!(
        text.contains(&format!("{} 1\n", up("under"))),
        "under the limit"
    );
    assert!(text.contains(&format!("{} 0\n", up("over"))));
    assert!(text.contains(&format!("{} 0\n", up("small"))));
    let last = format!("tor_hs_app_read_bytes_total{{onion=\"x\",port=\"{}\",project=\"under\",tor_instance=\"tor\"}} 1\n", DEFAULT_MAX_SAMPLES - 1);
    assert!(
        text.contains(&last),
        "every sample of the page under the limit"
    );
    assert!(!text.contains("project=\"over\",tor_instance=\"tor\"} 1\n"));
    let error = |p: &str| {
        watcher
            .target_states()
            .into_iter()
            .find(|s| s.project == p)
            .and_then(|s| s.last_error)
            .unwrap_or_default()
    };
    let e = error("over");
    assert!(
        e.contains(&format!("tor's MetricsPort {over} (project over, tor_instance tor): more than 50000 samples, this target's max_samples")),
        "{e}"
    );
    let e = error("small");
    assert!(
        e.contains("more than 10 samples, this target's max_samples"),
        "{e}"
    );
    assert_eq!(error("under"), "");

    // Out of range at load, naming the tor and the option.
    for bad in ["0", "200001"] {
        let yaml = format!(
            "projects:\n  news:\n    tors:\n      - {{metrics_port: 127.0.0.1:9035, instance: hs-1, max_samples: {bad}}}\n"
        );
        let err = Settings::build(
            Some(Config::from_yaml(&yaml, "t").unwrap()),
            &Flags::default(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            format!("projects.news.tors (instance hs-1): max_samples must be between 1 and 200000, not {bad}")
        );
    }
}
