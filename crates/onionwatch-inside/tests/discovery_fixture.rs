//! Discovery on the fixture Onionspray tree (tests/fixtures/onionspray),
//! which mirrors Onionspray's generated layout: a hardmap project with
//! circuit-id export, a softmap project with two tor workers, a project
//! with only a control socket and an nginx stub_status, onionbalance logs.

use std::path::PathBuf;

use onionwatch_inside::discovery::discover;
use onionwatch_inside::targets::{Collector, Endpoint, Origin};
use onionwatch_tor::control::ControlAddr;

const ROOT: &str = "/home/onionspray/onionspray/projects";

#[test]
fn discovers_every_project_tor_and_nginx() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onionspray");
    let (inst, targets) = discover(&dir).unwrap();

    let names: Vec<&str> = inst.projects.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["blog", "news", "shop"]);
    let shop = &inst.projects[2];
    assert!(shop.softmap);
    let workers: Vec<&str> = shop.tors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(workers, ["hs-1", "hs-2"]);
    let news = &inst.projects[1];
    assert_eq!(news.logs.len(), 3);
    assert_eq!(
        news.tors[0].log_files(),
        [PathBuf::from(format!("{ROOT}/news/log/tor.log"))]
    );
    assert_eq!(inst.onionbalance_logs.len(), 2);
    assert_eq!(inst.configs.len(), 3);

    let summary: Vec<(String, Option<String>, Collector, String)> = targets
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
                Collector::TorControl,
                format!("unix:{ROOT}/blog/tor-control.sock")
            ),
            s(
                "blog",
                None,
                Collector::Nginx,
                "http://127.0.0.1:8081/nginx_status".into()
            ),
            s(
                "news",
                Some("tor"),
                Collector::TorMetrics,
                "http://127.0.0.1:9035/metrics".into()
            ),
            s(
                "news",
                Some("tor"),
                Collector::TorControl,
                format!("unix:{ROOT}/news/tor-control.sock")
            ),
            s(
                "shop",
                Some("hs-1"),
                Collector::TorMetrics,
                "http://127.0.0.1:9036/metrics".into()
            ),
            s(
                "shop",
                Some("hs-1"),
                Collector::TorControl,
                format!("unix:{ROOT}/shop/hs-1/tor-control.sock")
            ),
            s(
                "shop",
                Some("hs-2"),
                Collector::TorMetrics,
                "http://127.0.0.1:9037/metrics".into()
            ),
            s(
                "shop",
                Some("hs-2"),
                Collector::TorControl,
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
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/audit");
    let err = discover(&dir).unwrap_err();
    assert!(err.to_string().contains("no projects/ directory"), "{err}");
}

#[test]
fn every_project_has_its_access_and_tor_logs_followed() {
    use onionwatch_logs::follow::LogKind;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/onionspray");
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
                "news",
                LogKind::Access,
                "projects/news/log/nginx-access*.log"
            ),
            want("news", LogKind::Tor, "projects/news/log/tor.log"),
            want(
                "shop",
                LogKind::Access,
                "projects/shop/log/nginx-access*.log"
            ),
            want("shop", LogKind::Tor, "projects/shop/hs-1/tor.log"),
            want("shop", LogKind::Tor, "projects/shop/hs-2/tor.log"),
            want("", LogKind::Onionbalance, "onionbalance/onionbalance.log"),
            want("", LogKind::Onionbalance, "onionbalance/tor.log"),
        ]
    );
    // Every file followed is in the fixture (except the access-log glob).
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
