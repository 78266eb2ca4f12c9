//! The dashboard page in a real browser (headless Chromium), its data, and
//! its history surviving a restart.

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use onionwatch_dashboard::{Dashboard, DashboardConfig};
use onionwatch_metrics::{Collect, Family};
use onionwatch_server::{start, EndpointConfig, Registry};

/// Prober- and inside-style families whose values move at every collection.
#[derive(Default)]
struct Fake(AtomicU64);

impl Collect for Fake {
    fn collect(&self, out: &mut Vec<Family>) {
        let n = self.0.fetch_add(1, Ordering::Relaxed) as f64;
        let probe = |name: &'static str, address: &'static str| {
            [
                ("name", name),
                ("address", address),
                ("path", "/"),
                ("port", "80"),
                ("protocol", "http"),
            ]
        };
        let news = probe(
            "news",
            "newsxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.onion",
        );
        let down = probe(
            "offline",
            "offlinexxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.onion",
        );
        let mut reachable = Family::gauge("onion_service_reachable", "");
        reachable.push(&news, 1.0).push(&down, 0.0);
        let mut latency = Family::gauge("onion_service_latency_seconds", "");
        latency.push(&news, 0.5 + n / 10.0);
        let mut status = Family::gauge("onion_service_status_code", "");
        status.push(&news, 200.0);
        let mut desc = Family::gauge("onion_service_descriptor_reachable", "");
        desc.push(&[("name", "news"), ("address", "x.onion")], 1.0)
            .push(&[("name", "offline"), ("address", "y.onion")], 0.0);
        let mut intro = Family::gauge("onion_service_introduction_points_number", "");
        intro.push(&[("name", "news"), ("address", "x.onion")], 3.0);
        let mut cert = Family::gauge("onion_service_certificate_expiry_seconds", "");
        cert.push(
            &[("name", "news"), ("address", "x.onion"), ("port", "443")],
            5.0 * 86400.0,
        );
        let mut up = Family::gauge("onionwatch_scrape_up", "");
        up.push(&[("project", "shop"), ("tor_instance", "main")], 1.0)
            .push(&[("project", "shop"), ("tor_instance", "worker1")], 0.0);
        let mut requests = Family::counter("onionwatch_log_requests", "");
        requests
            .push(&[("project", "shop"), ("status_class", "2xx")], 100.0 * n)
            .push(&[("project", "shop"), ("status_class", "5xx")], 10.0 * n);
        let mut circuits = Family::gauge("onionwatch_log_unique_circuits", "");
        circuits.push(&[("project", "shop"), ("window", "5m")], 42.0);
        let mut hs = Family::counter("tor_hs_app_write_bytes", "");
        hs.push(&[("onion", "a"), ("port", "80"), ("project", "shop")], 1.0)
            .push(
                &[
                    ("onion_service", "b.onion"),
                    ("port", "80"),
                    ("project", "shop"),
                ],
                1.0,
            );
        // The offline service fails at the descriptor at every probe.
        let mut failures = Family::counter("onionwatch_probe_failures", "");
        failures.push(
            &[
                ("name", "offline"),
                ("address", "offline.onion"),
                ("stage", "descriptor_not_found"),
            ],
            n + 1.0,
        );
        let mut errors = Family::counter("onionwatch_probe_errors", "");
        errors.push(
            &[
                ("name", "offline"),
                ("address", "offline.onion"),
                ("reason", "descriptor_not_found"),
            ],
            n + 1.0,
        );
        // The shop's tor hosts news.
        let mut hosted = Family::gauge("tor_hs_rdv_circuits", "");
        hosted.push(
            &[
                (
                    "onion",
                    "newsxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
                ),
                ("project", "shop"),
            ],
            2.0,
        );
        out.extend([
            reachable, latency, status, desc, intro, cert, up, requests, circuits, hs, failures,
            errors, hosted,
        ]);
    }
}

/// Notifications go nowhere: the page is what is tested.
struct Quiet;

impl onionwatch_alert::Sink for Quiet {
    fn notify(&self, _: onionwatch_alert::Group) {}
    fn push_alerts(&self, _: Vec<onionwatch_alert::Alert>) {}
}

/// GET over plain HTTP/1.1 on loopback: the body.
async fn reqwest_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let body = text
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_owned();
    // Chunked transfer: take the JSON between the first `{` and last `}`.
    match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) => body[a..=b].to_owned(),
        _ => body,
    }
}

fn chromium(args: &[&str], profile: &Path) -> String {
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium runs (sudo apt-get install -y chromium)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_onion_services_and_projects_and_history_survives_a_restart() {
    let state = tempfile::tempdir().unwrap();
    let registry = Arc::new(Registry::default());
    registry.register(Arc::new(Fake::default()));
    let dash = Dashboard::open(
        registry.clone(),
        DashboardConfig::default(),
        Some(state.path()),
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for t in [now - 30, now - 15, now] {
        dash.sample_at(t).unwrap();
    }

    let snap = dash.snapshot();
    let news = snap
        .onion_services
        .iter()
        .find(|p| p.name == "news")
        .unwrap();
    assert_eq!(news.reachable, Some(true));
    assert_eq!(news.descriptor_reachable, Some(true));
    assert_eq!(news.introduction_points, Some(3.0));
    assert_eq!(news.latency_history.len(), 3);
    let offline = snap
        .onion_services
        .iter()
        .find(|p| p.name == "offline")
        .unwrap();
    assert_eq!(
        (offline.reachable, offline.descriptor_reachable),
        (Some(false), Some(false))
    );
    assert_eq!(
        offline.failure_stage.as_deref(),
        Some("descriptor_not_found")
    );
    assert_eq!(offline.uptime_ratio_24h, Some(0.0));
    assert_eq!(news.uptime_ratio_24h, Some(1.0));
    assert_eq!(news.failure_stage, None);
    let shop = &snap.projects[0];
    assert_eq!(
        (
            shop.project.as_str(),
            shop.targets_up,
            shop.targets,
            shop.onion_services
        ),
        ("shop", 1, 2, 3)
    );
    // 100 and 10 more per collection, 15 s apart.
    assert_eq!(shop.requests_history.len(), 2);
    let rps = shop.requests_per_second.unwrap();
    assert!((rps - 110.0 / 15.0).abs() < 1e-9, "{rps}");
    assert!((shop.errors_5xx_per_second.unwrap() - 10.0 / 15.0).abs() < 1e-9);
    dash.set_recent_warnings("shop", vec!["[warn] Your system clock just jumped".into()]);
    // The alert engine, fed three rounds in which "offline" is unreachable.
    let engine = onionwatch_alert::Engine::new(
        &onionwatch_alert::AlertsConfig::default(),
        onionwatch_alert::Labels::new(),
        None,
        Arc::new(Quiet),
    )
    .unwrap();
    for _ in 0..3 {
        let families = registry.gather();
        engine.observe(
            onionwatch_alert::Source::Probe,
            &families,
            std::time::SystemTime::now(),
        );
    }
    dash.set_alerts(engine);

    let config = EndpointConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..EndpointConfig::default()
    };
    let server = start(&config, dash.router()).await.unwrap();
    let url = format!("http://{}/", server.local_addr());
    let profile = tempfile::tempdir().unwrap();
    let shot = profile.path().join("dashboard.png");
    let (dom, _) = tokio::task::block_in_place(|| {
        let dom = chromium(&["--dump-dom", &url], &profile.path().join("a"));
        let shot_arg = format!("--screenshot={}", shot.display());
        chromium(
            &[&shot_arg, "--window-size=1400,600", &url],
            &profile.path().join("b"),
        );
        (dom, ())
    });
    assert!(
        dom.contains("data-loaded=\"1\""),
        "the script ran and rendered: {dom}"
    );
    assert!(
        dom.contains("data-name=\"news\"") && dom.contains("data-name=\"offline\""),
        "{dom}"
    );
    assert!(dom.contains("data-project=\"shop\""), "{dom}");
    assert!(
        dom.contains("data-points=\"3\""),
        "latency sparkline drawn: {dom}"
    );
    assert!(dom.contains("Your system clock just jumped"), "{dom}");
    assert!(
        dom.contains("<section id=\"alerts-section\">")
            && dom.contains("data-alert=\"OnionServiceUnreachable\"")
            && dom.contains("Onion service offline (offlinexxx"),
        "the firing alert is on the overview: {dom}"
    );
    assert!(dom.contains("5 days"), "certificate expiry shown: {dom}");
    // The overview: failure stage, uptime over the range, the picker, and
    // headings naming the range.
    assert!(
        dom.contains("<td class=\"stage\">descriptor_not_found</td>"),
        "{dom}"
    );
    assert!(dom.contains("<td class=\"uptime\">100 %</td>"), "{dom}");
    assert!(dom.contains("<td class=\"uptime\">0 %</td>"), "{dom}");
    for r in ["1 h", "24 h", "7 d"] {
        assert!(dom.contains(&format!(">{r}</button>")), "range {r}: {dom}");
    }
    assert!(dom.contains("<th class=\"last\">Last 1 h</th>"), "{dom}");
    assert!(!dom.contains("Last 3 h"), "{dom}");
    assert!(dom.contains("href=\"/service/news\""), "{dom}");

    // The service pages, and their JSON twins.
    let (news_dom, offline_dom, day_dom) = tokio::task::block_in_place(|| {
        (
            chromium(
                &["--dump-dom", &format!("{url}service/news")],
                &profile.path().join("c"),
            ),
            chromium(
                &["--dump-dom", &format!("{url}service/offline")],
                &profile.path().join("d"),
            ),
            chromium(
                &["--dump-dom", &format!("{url}service/news?range=86400")],
                &profile.path().join("e"),
            ),
        )
    });
    assert!(news_dom.contains("data-loaded=\"1\""), "{news_dom}");
    // A picture of the service page: ONIONWATCH_SERVICE_SCREENSHOT=FILE cargo test …
    if let Some(dest) = std::env::var_os("ONIONWATCH_SERVICE_SCREENSHOT") {
        let shot_arg = format!("--screenshot={}", std::path::Path::new(&dest).display());
        tokio::task::block_in_place(|| {
            chromium(
                &[
                    &shot_arg,
                    "--window-size=1400,1500",
                    &format!("{url}service/news"),
                ],
                &profile.path().join("f"),
            )
        });
    }
    assert!(
        news_dom.contains("<h2 id=\"svc-title\">news "),
        "{news_dom}"
    );
    assert!(
        news_dom.contains("Latency, last 1 h") && news_dom.contains("Reachability, last 1 h"),
        "{news_dom}"
    );
    assert!(
        news_dom.contains("data-uptime=\"24 h\"><b>100 %</b>"),
        "{news_dom}"
    );
    assert!(
        news_dom.contains("data-kind=\"line\" data-points=\"3\""),
        "latency chart: {news_dom}"
    );
    assert!(
        news_dom.contains("data-kind=\"bars\" data-points=\"3\""),
        "reachability chart: {news_dom}"
    );
    assert!(news_dom.contains("class=\"tick\""), "time axis: {news_dom}");
    assert!(
        news_dom.contains("data-project=\"shop\"") && news_dom.contains("requests/s"),
        "inside figures of the hosting project: {news_dom}"
    );
    assert!(news_dom.contains("5 days"), "{news_dom}");
    assert!(
        offline_dom.contains("data-stage=\"descriptor_not_found\""),
        "the last failures: {offline_dom}"
    );
    assert!(
        offline_dom.contains("data-uptime=\"1 h\"><b>0 %</b>"),
        "{offline_dom}"
    );
    assert!(day_dom.contains("Latency, last 24 h"), "{day_dom}");
    assert!(
        day_dom.contains("class=\"on\" data-range=\"86400\"")
            || day_dom.contains("data-range=\"86400\" class=\"on\""),
        "{day_dom}"
    );
    let api = reqwest_get(&format!("{url}api/v1/service/news?range=86400")).await;
    let v: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert_eq!(v["name"], "news");
    assert_eq!(v["range_seconds"], 86_400);
    assert_eq!(
        v["endpoints"][0]["latency_history"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(v["project"]["project"], "shop");
    let api = reqwest_get(&format!("{url}api/v1/dashboard")).await;
    let v: serde_json::Value = serde_json::from_str(&api).unwrap();
    for row in v["onion_services"].as_array().unwrap() {
        for key in [
            "name",
            "reachable",
            "latency_history",
            "failure_stage",
            "uptime_ratio_24h",
        ] {
            assert!(row.get(key).is_some(), "{key}: {row}");
        }
    }
    assert!(reqwest_get(&format!("{url}api/v1/service/nobody"))
        .await
        .contains("no onion service named"));
    let png = std::fs::read(&shot).expect("a screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    // A picture of this page: ONIONWATCH_SCREENSHOT=FILE cargo test … (the README's
    // docs/dashboard.png and docs/service.png are taken during `onionwatch demo`).
    if let Some(dest) = std::env::var_os("ONIONWATCH_SCREENSHOT") {
        std::fs::write(dest, &png).unwrap();
    }
    server.shutdown(Duration::from_secs(5)).await.unwrap();

    // A restart keeps the charts.
    drop(dash);
    let again = Dashboard::open(registry, DashboardConfig::default(), Some(state.path())).unwrap();
    let news = again
        .snapshot()
        .onion_services
        .into_iter()
        .find(|p| p.name == "news")
        .unwrap();
    assert_eq!(news.latency_history.len(), 3);
}

/// One probed onion service named as `watch` names discovered ones:
/// `<project>/<address prefix>`, and its `:443` endpoint.
struct Slashed;

const SLASHED: &str = "shop/abcdefghijklmnop";

impl Collect for Slashed {
    fn collect(&self, out: &mut Vec<Family>) {
        let address = "abcdefghijklmnopxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.onion";
        let https = format!("{SLASHED}:443");
        let mut reachable = Family::gauge("onion_service_reachable", "");
        let mut latency = Family::gauge("onion_service_latency_seconds", "");
        for (name, port, protocol) in [(SLASHED, "80", "http"), (https.as_str(), "443", "https")] {
            let labels = [
                ("name", name),
                ("address", address),
                ("path", "/"),
                ("port", port),
                ("protocol", protocol),
            ];
            reachable.push(&labels, 1.0);
            latency.push(&labels, 0.25);
        }
        out.extend([reachable, latency]);
    }
}

/// GET over plain HTTP/1.1 on loopback: the status and the body.
async fn get_status(url: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |x| x.1).to_owned();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_named_with_a_slash_has_its_page_and_json_twin() {
    let registry = Arc::new(Registry::default());
    registry.register(Arc::new(Slashed));
    let dash = Dashboard::open(registry, DashboardConfig::default(), None).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for t in [now - 15, now] {
        dash.sample_at(t).unwrap();
    }
    let config = EndpointConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..EndpointConfig::default()
    };
    let server = start(&config, dash.router()).await.unwrap();
    let url = format!("http://{}/", server.local_addr());
    let encoded = "shop%2Fabcdefghijklmnop";

    // The JSON twin, by the encoded name (as the page asks for it) and
    // with the port suffix.
    let (status, body) = get_status(&format!("{url}api/v1/service/{encoded}")).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["name"], SLASHED, "{v}");
    let (status, body) = get_status(&format!("{url}api/v1/service/{encoded}%3A443")).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["name"], format!("{SLASHED}:443"), "{v}");
    let (status, _) = get_status(&format!("{url}service/{encoded}")).await;
    assert_eq!(status, 200);

    // The overview links to it encoded, and the page renders its data.
    let profile = tempfile::tempdir().unwrap();
    let (overview, page) = tokio::task::block_in_place(|| {
        (
            chromium(&["--dump-dom", &url], &profile.path().join("a")),
            chromium(
                &["--dump-dom", &format!("{url}service/{encoded}")],
                &profile.path().join("b"),
            ),
        )
    });
    assert!(
        overview.contains(&format!("href=\"/service/{encoded}\"")),
        "{overview}"
    );
    assert!(page.contains("data-loaded=\"1\""), "{page}");
    assert!(
        page.contains(&format!("<h2 id=\"svc-title\">{SLASHED} ")),
        "{page}"
    );
    assert!(
        page.contains("data-kind=\"line\" data-points=\"2\""),
        "latency chart: {page}"
    );
}
