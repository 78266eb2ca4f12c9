//! `onionwatch watch` against real daemons: a private Tor network with two
//! onion-service tors (two "projects", each with a MetricsPort and a control
//! port), a real nginx with stub_status, promtool, and a real Prometheus
//! scraping onionwatch. Then one tor is killed and restarted.
//!
//! Needs Debian's `tor`, `nginx` and `prometheus` packages (.ci/run
//! installs them). Every wait is bounded.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use onionwatch_test_support::value;
use onionwatch_testnet::nginx::{Nginx, NginxConfig};
use onionwatch_testnet::{
    free_port, shared_network, with_shared_network, NetworkConfig, NetworkInfo, ServiceTorConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(250);

fn net() -> &'static NetworkInfo {
    shared_network(|| NetworkConfig {
        service_tors: vec![ServiceTorConfig::default(), ServiceTorConfig::default()],
        ..NetworkConfig::default()
    })
}

/// A child process killed (and reaped) on drop.
struct Proc(Child, &'static str);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    fn check(&mut self, log: &Path) {
        if let Ok(Some(status)) = self.0.try_wait() {
            panic!(
                "{} exited ({status}); its log:\n{}",
                self.1,
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
    }
}

/// GET over HTTP/1.0; `None` if nothing answers.
async fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .await
            .ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        let (head, body) = out.split_once("\r\n\r\n")?;
        head.starts_with("HTTP/1.").then(|| body.to_owned())
    };
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .ok()
        .flatten()
}

/// Poll `f` until it returns `Some`, at most `WAIT`.
async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

fn up_line(project: &str, collector: &str) -> String {
    format!("onionwatch_scrape_up{{collector=\"{collector}\",project=\"{project}\",tor_instance=\"tor\"}}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_serves_two_projects_and_nginx_to_promtool_and_prometheus() {
    let info = net();
    assert_eq!(info.onions.len(), 2);
    let tmp = tempfile::tempdir().unwrap();

    let mut nginx = Nginx::start(&NginxConfig {
        server_directives: "location = /stub_status { stub_status; allow 127.0.0.1; deny all; }"
            .into(),
        ..NginxConfig::default()
    })
    .expect("nginx starts (apt-get install nginx)");
    let nginx_addr = nginx.addr();
    wait_for("nginx stub_status", || {
        if let Err(e) = nginx.check_alive() {
            panic!("{e}");
        }
        async move {
            http_get(nginx_addr, "/stub_status")
                .await
                .filter(|b| b.starts_with("Active connections"))
        }
    })
    .await;

    // project p0 = tor hs0, p1 = tor hs1.
    let listen: SocketAddr = ([127, 0, 0, 1], free_port().unwrap()).into();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_onionwatch"));
    cmd.args(["watch", "--interval", "1", "--timeout", "1", "--listen"])
        .arg(listen.to_string());
    for (i, o) in info.onions.iter().enumerate() {
        cmd.arg("--metrics-port")
            .arg(format!("p{i}={}", o.metrics.unwrap()));
        cmd.arg("--control-port").arg(format!("p{i}={}", o.control));
    }
    cmd.arg("--nginx-status")
        .arg(format!("p0=http://{nginx_addr}/stub_status"));
    let watch_log = tmp.path().join("watch.log");
    let log = std::fs::File::create(&watch_log).unwrap();
    let mut watch = Proc(
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
        "onionwatch watch",
    );

    let text = wait_for("both projects and nginx scraped", || {
        watch.check(&watch_log);
        async move {
            let t = http_get(listen, "/metrics").await?;
            let ok = ["p0", "p1"].iter().all(|p| {
                value(&t, &up_line(p, "tor_metrics")) == Some(1.0)
                    && value(&t, &up_line(p, "tor_control")) == Some(1.0)
            }) && t.contains("nginx_up{project=\"p0\"} 1");
            ok.then_some(t)
        }
    })
    .await;

    // Both projects' tor families, labelled, with types and histograms kept.
    for (i, o) in info.onions.iter().enumerate() {
        let onion = o.address.trim_end_matches(".onion");
        let p = format!("p{i}");
        for needle in [
            format!("tor_hs_intro_num_total{{onion=\"{onion}\",project=\"{p}\",tor_instance=\"tor\"}}"),
            format!("tor_hs_intro_circ_build_time_bucket{{onion=\"{onion}\",le=\"+Inf\",project=\"{p}\",tor_instance=\"tor\"}}"),
            format!("tor_relay_traffic_bytes{{direction=\"read\",project=\"{p}\",tor_instance=\"tor\"}}"),
            format!("onionwatch_tor_bootstrap_percent{{project=\"{p}\",tor_instance=\"tor\"}} 100"),
            format!("onionwatch_tor_onion_services{{project=\"{p}\",tor_instance=\"tor\"}} 1"),
            format!("onionwatch_tor_version_info{{project=\"{p}\",tor_instance=\"tor\",version=\"0."),
        ] {
            assert!(text.contains(&needle), "{needle} missing from /metrics:\n{text}");
        }
    }
    assert!(text.contains("# TYPE tor_hs_intro_circ_build_time histogram\n"));
    assert!(text.contains("# TYPE tor_relay_traffic_bytes counter\n"));
    assert!(text.contains(
        "onionwatch_tor_circuits{project=\"p0\",tor_instance=\"tor\",status=\"BUILT\",purpose="
    ));
    for name in [
        "nginx_connections_active",
        "nginx_connections_accepted",
        "nginx_connections_handled",
        "nginx_http_requests_total",
        "nginx_connections_reading",
        "nginx_connections_writing",
        "nginx_connections_waiting",
    ] {
        assert!(
            text.contains(&format!("{name}{{project=\"p0\"}} ")),
            "{name} missing:\n{text}"
        );
    }
    // One HELP/TYPE per family even though each tor (and each project) prints its own.
    let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    let unique: std::collections::BTreeSet<&&str> = types.iter().collect();
    assert_eq!(types.len(), unique.len(), "a family was declared twice");

    // The targets API.
    let api = http_get(listen, "/api/v1/targets")
        .await
        .expect("/api/v1/targets answers");
    let v: serde_json::Value = serde_json::from_str(&api).unwrap();
    let targets = v["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 5, "{api}");
    assert!(targets.iter().all(|t| t["health"] == "up"), "{api}");

    // promtool parses it; its only lint complaints are about names tor and
    // nginx-prometheus-exporter chose (kept on purpose).
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is installed (apt-get install prometheus)");
    std::io::Write::write_all(promtool.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    drop(promtool.stdin.take());
    let out = promtool.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        matches!(out.status.code(), Some(0) | Some(3)),
        "promtool failed ({:?}):\n{report}",
        out.status
    );
    assert!(
        !report.contains("error while") && !report.contains("parsing error"),
        "promtool could not parse the output:\n{report}"
    );
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            line.starts_with("tor_")
                || line.starts_with("nginx_connections_accepted ")
                || line.starts_with("nginx_connections_handled "),
            "promtool complains about one of our own names: {line}\n{report}"
        );
    }

    // A real Prometheus scrapes onionwatch.
    let prom_port = free_port().unwrap();
    let prom_addr: SocketAddr = ([127, 0, 0, 1], prom_port).into();
    let prom_dir = tmp.path().join("prometheus");
    std::fs::create_dir(&prom_dir).unwrap();
    std::fs::write(
        prom_dir.join("prometheus.yml"),
        format!("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: onionwatch\n    static_configs:\n      - targets: ['{listen}']\n"),
    )
    .unwrap();
    let prom_log = prom_dir.join("prometheus.log");
    let plog = std::fs::File::create(&prom_log).unwrap();
    let mut prometheus = Proc(
        Command::new("/usr/bin/prometheus")
            .arg(format!(
                "--config.file={}",
                prom_dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                prom_dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdin(Stdio::null())
            .stdout(plog.try_clone().unwrap())
            .stderr(plog)
            .spawn()
            .expect("prometheus is installed (apt-get install prometheus)"),
        "prometheus",
    );
    wait_for("Prometheus to return both projects' series", || {
        prometheus.check(&prom_log);
        async move {
            let body = http_get(
            prom_addr,
            "/api/v1/query?query=onionwatch_scrape_up%7Bcollector%3D%22tor_metrics%22%7D%3D%3D1",
        )
        .await?;
            (body.contains("\"status\":\"success\"")
                && body.contains("\"project\":\"p0\"")
                && body.contains("\"project\":\"p1\""))
            .then_some(())
        }
    })
    .await;
    let body = http_get(
        prom_addr,
        "/api/v1/query?query=tor_hs_intro_num_total%7Bproject%3D%22p1%22%7D",
    )
    .await
    .unwrap();
    assert!(
        body.contains("\"tor_instance\":\"tor\"") && body.contains(&info.onions[1].address[..56]),
        "{body}"
    );
    let body = http_get(prom_addr, "/api/v1/query?query=nginx_http_requests_total")
        .await
        .unwrap();
    assert!(body.contains("\"project\":\"p0\""), "{body}");

    // Kill p1's tor: its scrape goes down, the rest keeps working.
    with_shared_network(|n| n.kill_node(&info.onions[1].tor))
        .unwrap()
        .unwrap();
    let text = wait_for(
        "p1's MetricsPort and control port scrapes to fail",
        || async {
            let t = http_get(listen, "/metrics").await?;
            let down = ["tor_metrics", "tor_control"]
                .iter()
                .all(|c| value(&t, &up_line("p1", c)) == Some(0.0));
            down.then_some(t)
        },
    )
    .await;
    assert_eq!(
        value(&text, &up_line("p0", "tor_metrics")),
        Some(1.0),
        "{text}"
    );
    assert!(text.contains("nginx_up{project=\"p0\"} 1"), "{text}");
    let p1_series = format!(
        "tor_hs_intro_num_total{{onion=\"{}\"",
        &info.onions[1].address[..56]
    );
    assert!(
        !text.contains(&p1_series),
        "stale series of the dead tor:\n{text}"
    );
    let api = http_get(listen, "/api/v1/targets").await.unwrap();
    assert!(api.contains("cannot connect to tor's MetricsPort"), "{api}");

    // Restart it on the same ports: both collectors reconnect, back to 1.
    with_shared_network(|n| n.restart_node(&info.onions[1].tor))
        .unwrap()
        .unwrap();
    wait_for(
        "p1's MetricsPort and control port scrapes to work again",
        || async {
            let t = http_get(listen, "/metrics").await?;
            let up = ["tor_metrics", "tor_control"]
                .iter()
                .all(|c| value(&t, &up_line("p1", c)) == Some(1.0));
            up.then_some(())
        },
    )
    .await;
    watch.check(&watch_log);
    drop(prometheus);
    drop(watch);
    drop(nginx);
}
