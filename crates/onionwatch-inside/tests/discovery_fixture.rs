//! Targets and logs discovered in the fixture Onionspray tree of
//! onionwatch-onionspray (tests/fixtures/onionspray there, which mirrors
//! Onionspray's generated layout: a hardmap project with circuit-id
//! export, a softmap project with two tor workers, a project with only a
//! control socket and an nginx stub_status, onionbalance logs).

use std::path::PathBuf;

use onionwatch_inside::collector::{Endpoint, Kind};
use onionwatch_inside::discovery::discover;
use onionwatch_inside::targets::Origin;
use onionwatch_tor::control::ControlAddr;

const ROOT: &str = "/home/onionspray/onionspray/projects";

fn fixture(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../onionwatch-onionspray/tests/fixtures")
        .join(p)
}

#[test]
fn discovers_every_project_tor_and_nginx() {
    let dir = fixture("onionspray");
    let (_, targets) = discover(&dir).unwrap();

    let summary: Vec<(String, Option<String>, Kind, String)> = targets
        .iter()
        .map(|t| {
            assert_eq!(t.origin, Origin::Onionspray);
            (
                t.project.clone(),
                t.tor_instance.clone(),
                t.collector(),
                t.endpoint.to_string(),
            )
        })
        .collect();
    let s = |p: &str, i: Option<&str>, c, e: String| (p.to_owned(), i.map(str::to_owned), c, e);
    assert_eq!(
        summary,
        [
            s(
                "blog",
                Some("tor"),
                Kind::TorControl,
                format!("unix:{ROOT}/blog/tor-control.sock")
            ),
            s(
                "blog",
                None,
                Kind::Nginx,
                "http://127.0.0.1:8081/nginx_status".into()
            ),
            s(
                "news",
                Some("tor"),
                Kind::TorMetrics,
                "http://127.0.0.1:9035/metrics".into()
            ),
            s(
                "news",
                Some("tor"),
                Kind::TorControl,
                format!("unix:{ROOT}/news/tor-control.sock")
            ),
            s(
                "shop",
                Some("hs-1"),
                Kind::TorMetrics,
                "http://127.0.0.1:9036/metrics".into()
            ),
            s(
                "shop",
                Some("hs-1"),
                Kind::TorControl,
                format!("unix:{ROOT}/shop/hs-1/tor-control.sock")
            ),
            s(
                "shop",
                Some("hs-2"),
                Kind::TorMetrics,
                "http://127.0.0.1:9037/metrics".into()
            ),
            s(
                "shop",
                Some("hs-2"),
                Kind::TorControl,
                format!("unix:{ROOT}/shop/hs-2/tor-control.sock")
            ),
        ]
    );
    // Onionspray's control sockets have no cookie (NULL authentication).
    assert!(targets.iter().all(|t| match &t.endpoint {
        Endpoint::Control(t) =>
            !matches!(t.control_port, ControlAddr::Unix(_)) || t.control_cookie.is_none(),
        _ => true,
    }));
}

#[test]
fn not_an_installation() {
    let dir = fixture("audit");
    let err = discover(&dir).unwrap_err();
    assert!(err.to_string().contains("no projects/ directory"), "{err}");
}

#[test]
fn every_project_has_its_access_and_tor_logs_followed() {
    use onionwatch_logs::follow::LogKind;
    let dir = fixture("onionspray");
    let (inst, _) = discover(&dir).unwrap();
    let sources = onionwatch_inside::discovery::log_sources(&inst);
    let got: Vec<(String, LogKind, PathBuf)> = sources
        .into_iter()
        .map(|s| {
            let rel = s.pattern.strip_prefix(&dir).unwrap().to_owned();
            (s.project, s.kind, rel)
        })
        .collect();
    let want = |p: &str, kind, path: &str| (p.to_string(), kind, PathBuf::from(path));
    // The torrc paths (/home/onionspray/…) do not exist here: each tor's
    // log is found where Onionspray puts it in the tree (log/tor.log, or
    // the softmap worker's directory); onionbalance's are installation-wide.
    assert_eq!(
        got,
        [
            want(
                "blog",
                LogKind::Access,
                "projects/blog/log/nginx-access*.log"
            ),
            want("blog", LogKind::Tor, "projects/blog/log/tor.log"),
            want(
                "blog",
                LogKind::NginxError,
                "projects/blog/log/nginx-error.log"
            ),
            want(
                "news",
                LogKind::Access,
                "projects/news/log/nginx-access*.log"
            ),
            want("news", LogKind::Tor, "projects/news/log/tor.log"),
            want(
                "news",
                LogKind::NginxError,
                "projects/news/log/nginx-error.log"
            ),
            want(
                "shop",
                LogKind::Access,
                "projects/shop/log/nginx-access*.log"
            ),
            want("shop", LogKind::Tor, "projects/shop/hs-1/tor.log"),
            want("shop", LogKind::Tor, "projects/shop/hs-2/tor.log"),
            want(
                "shop",
                LogKind::NginxError,
                "projects/shop/log/nginx-error.log"
            ),
            want("", LogKind::Onionbalance, "onionbalance/onionbalance.log"),
            want("", LogKind::Onionbalance, "onionbalance/tor.log"),
        ]
    );
    // Every file followed is in the fixture (except the globs).
    for (_, kind, rel) in &got {
        if *kind != LogKind::Access {
            assert!(
                dir.join(rel).is_file(),
                "{} is not in the fixture",
                rel.display()
            );
        }
    }
}

/// A tree laid out as Onionspray writes it: every project's per-domain
/// access logs, its nginx error log (by severity) and the installation's
/// log/*.log are followed, under the project they belong to.
#[test]
fn error_per_domain_and_installation_logs_of_a_tree_are_followed() {
    use onionwatch_logs::access::LogFormat;
    use onionwatch_logs::follow::{FollowConfig, Follower, LogKind};
    use onionwatch_logs::tail::TailState;
    use onionwatch_metrics::{render, Format};
    use onionwatch_test_support::onionspray::{SprayProject, SprayTree};
    use onionwatch_test_support::{append, wait_for};

    let dir = tempfile::tempdir().unwrap();
    let tree = SprayTree::build(
        &dir.path().join("onionspray"),
        &[
            SprayProject::hardmap("news", &["example.com", "example.net"]),
            SprayProject::softmap("shop", &["example.org"], 2),
        ],
    );
    let log = |p: &str, f: &str| tree.root.join("projects").join(p).join("log").join(f);
    let line = |status: u16| {
        format!(
            "unix: - - [01/Dec/2026:00:00:00 +0000] \"GET / HTTP/1.1\" {status} 5 \"-\" \"curl\"\n"
        )
    };
    append(&log("news", "nginx-access-example.com.log"), &line(200));
    append(&log("news", "nginx-access-example.net.log"), &line(404));
    append(&log("news", "nginx-access.log"), &line(200));
    append(
        &log("news", "nginx-error.log"),
        "2026/12/01 00:00:01 [warn] 12#12: *2 an upstream response is buffered to a temporary file\n\
         2026/12/01 00:00:02 [crit] 12#12: *3 SSL_do_handshake() failed\n",
    );
    let (inst, _) = discover(&tree.root).unwrap();
    let sources = onionwatch_inside::discovery::log_sources(&inst);
    let kinds: Vec<(&str, LogKind)> = sources
        .iter()
        .map(|s| (s.project.as_str(), s.kind))
        .filter(|(_, k)| matches!(k, LogKind::NginxError | LogKind::Onionspray))
        .collect();
    assert_eq!(
        kinds,
        [
            ("news", LogKind::NginxError),
            ("shop", LogKind::NginxError),
            ("", LogKind::Onionspray)
        ]
    );
    let follower = Follower::new(
        FollowConfig::default(),
        LogFormat::combined(),
        sources,
        TailState::default(),
    );
    let handle = follower.spawn().unwrap();
    let want = [
        "onionwatch_log_requests_total{project=\"news\",status_class=\"2xx\"} 2",
        "onionwatch_log_requests_total{project=\"news\",status_class=\"4xx\"} 1",
        "onionwatch_log_severity_lines_total{project=\"news\",log=\"nginx_error\",severity=\"err\"} 2",
        "onionwatch_log_severity_lines_total{project=\"news\",log=\"nginx_error\",severity=\"warn\"} 1",
        "onionwatch_log_severity_lines_total{project=\"shop\",log=\"nginx_error\",severity=\"err\"} 1",
        "onionwatch_log_severity_lines_total{log=\"onionspray\",severity=\"unknown\"} 1",
    ];
    let mut text = String::new();
    let done = wait_for(std::time::Duration::from_secs(30), || {
        text = render(&follower.families(), Format::Prometheus);
        want.iter().all(|w| text.contains(w)).then_some(())
    });
    handle.stop();
    assert!(done.is_some(), "missing some of {want:#?} in\n{text}");
    let warnings = follower.recent_warnings();
    let news = &warnings["news"]["nginx_error"];
    assert_eq!(news.len(), 3, "{news:?}");
    assert!(news[2].text.contains("SSL_do_handshake"), "{news:?}");
}

/// The log policy's view of a softmap project: each worker with its own
/// control socket and the listeners its `HiddenServicePort` lines point
/// at, so a logged `$server_addr` names one worker.
#[tokio::test]
async fn each_softmap_worker_owns_its_hidden_service_port_listeners() {
    use onionwatch_inside::targets::{Flags, Settings};
    use onionwatch_inside::watch::Watcher;
    use onionwatch_logs::guard::{Listener, Skip};

    let flags = Flags {
        onionspray: vec![fixture("onionspray")],
        ..Flags::default()
    };
    let watcher = Watcher::new(Settings::build(None, &flags).unwrap());
    watcher.start().unwrap();
    let shop = watcher.project_tors("shop");
    let names: Vec<&str> = shop.tors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["hs-1", "hs-2"]);
    for (n, t) in [1, 2].into_iter().zip(&shop.tors) {
        let dir = format!("{ROOT}/shop/hs-{n}");
        assert_eq!(
            t.control.as_ref().map(|c| c.control_port.clone()),
            Some(ControlAddr::Unix(format!("{dir}/tor-control.sock").into()))
        );
        let hs = format!("{dir}/shop{n}xxxxxxxxxxxxxxx-v3");
        assert_eq!(
            t.listeners,
            [
                Listener::Unix(format!("{hs}/port-80.sock").into()),
                Listener::Unix(format!("{hs}/port-443.sock").into())
            ]
        );
    }
    let line = |n| format!("unix:{ROOT}/shop/hs-{n}/shop{n}xxxxxxxxxxxxxxx-v3/port-443.sock");
    assert_eq!(shop.owner(line(2).as_bytes(), None), Ok(1));
    assert_eq!(shop.owner(line(1).as_bytes(), None), Ok(0));
    assert_eq!(shop.owner(b"", None), Err(Skip::NoListener));
    // A hardmap project: its one tor.
    let blog = watcher.project_tors("blog");
    assert_eq!(blog.tors.len(), 1);
    assert_eq!(blog.owner(b"", None), Ok(0));
}
