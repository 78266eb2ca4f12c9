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
