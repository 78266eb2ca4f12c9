//! Reading the fixture Onionspray tree (tests/fixtures/onionspray), which
//! mirrors Onionspray's generated layout: a hardmap project with
//! circuit-id export, a softmap project with two tor workers, a project
//! with only a control socket and an nginx stub_status, onionbalance logs.
//! (`onionwatch-inside` tests the targets and logs it makes of them.)

use std::path::PathBuf;

use onionwatch_onionspray::nginx_conf::StubStatus;
use onionwatch_onionspray::torrc::Listen;
use onionwatch_onionspray::tree::discover;

const ROOT: &str = "/home/onionspray/onionspray/projects";

fn fixture(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(p)
}

#[test]
fn reads_every_project_tor_and_nginx() {
    let inst = discover(&fixture("onionspray")).unwrap();

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
    assert_eq!(
        news.tors[0].metrics_port(),
        Some(Listen::Tcp("127.0.0.1:9035".parse().unwrap()))
    );
    assert_eq!(
        news.tors[0].control_port(),
        Some(Listen::Unix(format!("{ROOT}/news/tor-control.sock").into()))
    );
    // Onionspray's control sockets have no cookie (NULL authentication).
    assert!(inst
        .projects
        .iter()
        .flat_map(|p| &p.tors)
        .all(|t| t.cookie_file().is_none()));
    assert_eq!(inst.onionbalance_logs.len(), 2);
    assert_eq!(inst.configs.len(), 3);

    let stub: Vec<Option<StubStatus>> = inst.projects.iter().map(|p| p.stub_status()).collect();
    assert_eq!(
        stub,
        [
            Some(StubStatus {
                host: "127.0.0.1".into(),
                port: 8081,
                path: "/nginx_status".into(),
                unix: None,
            }),
            None,
            None
        ]
    );
}

#[test]
fn not_an_installation() {
    let err = discover(&fixture("audit")).unwrap_err();
    assert!(err.to_string().contains("no projects/ directory"), "{err}");
}

#[test]
fn every_project_has_its_access_and_tor_logs() {
    let dir = fixture("onionspray");
    let inst = discover(&dir).unwrap();
    let rel = |p: PathBuf| p.strip_prefix(&dir).unwrap().to_owned();
    let got: Vec<(String, PathBuf, Vec<PathBuf>)> = inst
        .projects
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                rel(p.access_logs()),
                p.tor_logs().into_iter().map(rel).collect(),
            )
        })
        .collect();
    let want = |p: &str, access: &str, tors: &[&str]| {
        (
            p.to_string(),
            PathBuf::from(access),
            tors.iter().map(PathBuf::from).collect::<Vec<_>>(),
        )
    };
    // The torrc paths (/home/onionspray/…) do not exist here: each tor's
    // log is found where Onionspray puts it in the tree (log/tor.log, or
    // the softmap worker's directory).
    assert_eq!(
        got,
        [
            want(
                "blog",
                "projects/blog/log/nginx-access*.log",
                &["projects/blog/log/tor.log"]
            ),
            want(
                "news",
                "projects/news/log/nginx-access*.log",
                &["projects/news/log/tor.log"]
            ),
            want(
                "shop",
                "projects/shop/log/nginx-access*.log",
                &["projects/shop/hs-1/tor.log", "projects/shop/hs-2/tor.log"]
            ),
        ]
    );
    for (_, _, tors) in &got {
        for rel in tors {
            assert!(
                dir.join(rel).is_file(),
                "{} is not in the fixture",
                rel.display()
            );
        }
    }
}
