//! The shipped Grafana dashboards provision from files (a datasource
//! variable, no `${DS_…}` import inputs; job, vantage, instance and project
//! variables), and every query of theirs, variables substituted, is
//! accepted by a real Prometheus (Debian's `prometheus`) that scraped real
//! onionwatch output (`watch` on a stored tor MetricsPort page, stub_status
//! and an access log; `gateway`'s metrics; the prober's families served by
//! onionwatch-server) and names only families onionwatch exports or the
//! shipped recording rules define.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use onionwatch_test_support::{self as support, Running, TOR_METRICSPORT_PAGE};
use onionwatch_testnet::prometheus::Prometheus;
use regex::Regex;

const STUB_STATUS: &str = "Active connections: 3 \nserver accepts handled requests\n 120 120 345 \nReading: 0 Writing: 1 Waiting: 2 \n";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn dashboards() -> Vec<(PathBuf, serde_json::Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root().join("contrib/grafana")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let json = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            out.push((path, json));
        }
    }
    assert_eq!(out.len(), 2, "the inside and the prober dashboards");
    out
}

/// Every `expr` under `value`.
fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn dashboards_provision_from_files_with_datasource_job_and_instance_variables() {
    for (path, json) in dashboards() {
        let name = path.display();
        let text = json.to_string();
        assert!(
            json["title"].is_string() && json["uid"].is_string(),
            "{name}"
        );
        assert!(
            json.get("__inputs").is_none(),
            "{name}: import-only __inputs"
        );
        assert!(
            !text.contains("${DS_"),
            "{name}: an import-time datasource input"
        );
        let vars = json["templating"]["list"].as_array().unwrap();
        let var = |n: &str| vars.iter().find(|v| v["name"] == n);
        let ds = var("datasource").unwrap_or_else(|| panic!("{name}: no datasource variable"));
        assert_eq!(ds["type"], "datasource");
        assert_eq!(ds["query"], "prometheus");
        for v in ["job", "vantage", "instance"] {
            let v = var(v).unwrap_or_else(|| panic!("{name}: no {v} variable"));
            assert_eq!(v["datasource"]["uid"], "${datasource}", "{name}");
        }
        if json["uid"] == "onionwatch-inside" {
            assert!(var("project").is_some(), "{name}: no project variable");
        }
        let mut panels = 0;
        for p in json["panels"].as_array().unwrap() {
            panels += 1;
            assert_eq!(
                p["datasource"]["uid"], "${datasource}",
                "{name}: {}",
                p["title"]
            );
            let mut queries = Vec::new();
            exprs(p, &mut queries);
            for q in &queries {
                // Recording rules already sum over job and instance.
                if !q.contains("project:onionwatch_") {
                    assert!(
                        q.contains("job=~\"$job\"")
                            && q.contains("instance=~\"$instance\"")
                            && q.contains("vantage=~\"$vantage\""),
                        "{name}: {q} ignores the job, instance or vantage variable"
                    );
                }
            }
        }
        assert!(panels > 5, "{name}");
    }
}

/// The metric names a PromQL expression reads (not functions, keywords,
/// label names or durations).
fn metric_names(expr: &str) -> Vec<String> {
    let mut e = expr.to_owned();
    for (pattern, with) in [
        (r#""(?:[^"\\]|\\.)*""#, "\"\""),
        (r"\{[^}]*\}", " "),
        (r"\[[^\]]*\]", " "),
        (
            r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)",
            " ",
        ),
        (r"\boffset\s+\S+", " "),
    ] {
        e = Regex::new(pattern)
            .unwrap()
            .replace_all(&e, with)
            .into_owned();
    }
    let ident = Regex::new(r"[A-Za-z_:][A-Za-z0-9_:]*(\s*\()?").unwrap();
    ident
        .find_iter(&e)
        .map(|m| m.as_str())
        .filter(|m| !m.ends_with('('))
        .filter(|m| !["and", "or", "unless", "bool", "inf", "nan"].contains(m))
        .map(str::to_owned)
        .collect()
}

/// A `label_values(SELECTOR, LABEL)` variable as a query Prometheus can
/// run, and the metric names of its selector.
fn label_values_query(q: &str) -> (String, Vec<String>) {
    let inner = q
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected variable query {q}"));
    let (selector, label) = inner.rsplit_once(',').unwrap();
    let names = match Regex::new(r#"__name__=~"([^"]*)""#)
        .unwrap()
        .captures(selector)
    {
        Some(c) => c[1].split('|').map(str::to_owned).collect(),
        None => metric_names(selector),
    };
    (format!("count by ({}) ({selector})", label.trim()), names)
}

/// Grafana's substitution with every variable on "All".
fn substitute(q: &str) -> String {
    let q = ["$job", "$instance", "$vantage", "$project"]
        .iter()
        .fold(q.to_owned(), |q, v| q.replace(v, ".*"));
    assert!(!q.contains('$'), "a variable the test does not know: {q}");
    q
}

/// Names of the samples of an exposition, and every name its families
/// declare (TYPE lines, with the series names of histograms and summaries).
fn exported(text: &str, sampled: &mut BTreeSet<String>, declared: &mut BTreeSet<String>) {
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            declared.insert(name.to_owned());
            if kind == "histogram" || kind == "summary" {
                for s in ["_bucket", "_sum", "_count"] {
                    declared.insert(format!("{name}{s}"));
                }
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let name = &line[..line.find(['{', ' ']).unwrap()];
            sampled.insert(name.to_owned());
            declared.insert(name.to_owned());
        }
    }
}

/// The prober's families as its exporter serves them, from a vantage point
/// (a probe needs a Tor network; the families and their names are the same
/// before one).
fn serve_probe_metrics(rt: &tokio::runtime::Runtime) -> SocketAddr {
    let exposition = onionwatch_probe::runner::Exposition::new(
        Arc::new(onionwatch_probe::ProbeMetrics::new()),
        onionwatch_probe::Config::from_yaml("vantage: test", "t")
            .unwrap()
            .0
            .labels()
            .unwrap(),
    );
    // Ready without a round: there is no tor to probe through.
    exposition.registry.set_readiness(|| true);
    let listener = rt
        .block_on(onionwatch_server::bind(
            "127.0.0.1:0".parse().unwrap(),
            false,
        ))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(onionwatch_server::serve_on(
        listener,
        onionwatch_server::router_over(exposition.registry, exposition.root),
        std::future::pending(),
    ));
    addr
}

fn spawn(args: &[&str]) -> Running {
    Running(
        Command::new(env!("CARGO_BIN_EXE_onionwatch"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn wait_ready(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !support::get(addr, "/-/ready").contains(" 200 ") {
        assert!(Instant::now() < deadline, "{addr} never ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_dashboard_query_runs_on_prometheus_and_names_exported_families() {
    let dir = tempfile::tempdir().unwrap();
    let access = dir.path().join("access.log");
    let mut lines = String::new();
    for (i, status) in [200, 200, 404, 502].iter().enumerate() {
        lines.push_str(&format!(
            "fc00:dead:beef:4dad::0:{i:x} - - [10/Jan/2024:10:00:0{i} +0000] \"GET / HTTP/1.1\" {status} 5 \"-\" \"-\"\n"
        ));
    }
    std::fs::write(&access, lines).unwrap();
    let tor_log = dir.path().join("tor.log");
    std::fs::write(&tor_log, "Jan 10 10:00:00.000 [warn] Something odd.\n").unwrap();

    let tor = support::serve(TOR_METRICSPORT_PAGE);
    let nginx = support::serve(STUB_STATUS);
    let watch = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let _watch = spawn(&[
        "watch",
        "--interval",
        "1",
        "--timeout",
        "1",
        "--listen",
        &watch.to_string(),
        "--metrics-port",
        &format!("news={tor}"),
        "--nginx-status",
        &format!("news=http://{nginx}/stub_status"),
        "--access-log",
        &format!("news={}", access.display()),
        "--tor-log",
        &format!("news={}", tor_log.display()),
    ]);
    let gateway = SocketAddr::from(([127, 0, 0, 1], support::free_port()));
    let _gateway = spawn(&[
        "gateway",
        "--listen",
        &format!("127.0.0.1:{}", support::free_port()),
        "--upstream",
        "127.0.0.1:9",
        "--metrics-listen",
        &gateway.to_string(),
    ]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let probe = serve_probe_metrics(&rt);
    for addr in [watch, gateway, probe] {
        wait_ready(addr);
    }

    let (mut sampled, mut declared) = (BTreeSet::new(), BTreeSet::new());
    for addr in [watch, gateway, probe] {
        exported(&support::get(addr, "/metrics"), &mut sampled, &mut declared);
    }
    let rules = root().join("contrib/prometheus/onionwatch-rules.yml");
    for line in std::fs::read_to_string(&rules).unwrap().lines() {
        if let Some(name) = line.trim().strip_prefix("- record: ") {
            declared.insert(name.to_owned());
            sampled.insert(name.to_owned());
        }
    }

    let prometheus =
        Prometheus::start_with_rules(&[watch, gateway, probe], Duration::from_secs(1), &[rules])
            .expect("Prometheus starts");
    // Until every target has been scraped.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = prometheus.query("sum(up)").unwrap_or_default();
        if up.contains("\"3\"") {
            break;
        }
        assert!(Instant::now() < deadline, "targets not scraped: {up}");
        std::thread::sleep(Duration::from_millis(200));
    }

    let mut checked = 0;
    for (path, json) in dashboards() {
        let mut queries: Vec<(String, Vec<String>)> = Vec::new();
        let mut panel_exprs = Vec::new();
        exprs(&json["panels"], &mut panel_exprs);
        for q in panel_exprs {
            let names = metric_names(&q);
            queries.push((substitute(&q), names));
        }
        for v in json["templating"]["list"].as_array().unwrap() {
            if v["type"] == "query" {
                let (q, names) = label_values_query(v["query"].as_str().unwrap());
                queries.push((substitute(&q), names));
            }
        }
        for (q, names) in queries {
            assert!(!names.is_empty(), "{}: {q} reads no metric", path.display());
            for n in &names {
                assert!(
                    declared.contains(n),
                    "{}: {q} reads {n}, which onionwatch does not export",
                    path.display()
                );
            }
            let answer = prometheus.query(&q).unwrap();
            assert!(
                answer.contains("\"status\":\"success\""),
                "{}: query {q:?} rejected: {answer}",
                path.display()
            );
            // What was scraped shows: the variables' matchers fit the labels.
            if names.iter().all(|n| sampled.contains(n)) {
                let deadline = Instant::now() + Duration::from_secs(30);
                while prometheus
                    .query(&q)
                    .unwrap_or_default()
                    .contains("\"result\":[]")
                {
                    assert!(Instant::now() < deadline, "{q} stays empty");
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 25, "{checked} queries");
}

#[test]
fn metric_names_are_told_from_functions_labels_and_durations() {
    assert_eq!(
        metric_names(
            r#"sum by (project, reason) (rate(a_total{job=~"$job",x="y{z}"}[5m])) / on (p) b:c:d > 3 * (e offset 1d) and f > 100 or vector(0)"#
        ),
        ["a_total", "b:c:d", "e", "f"]
    );
    let (q, names) = label_values_query(r#"label_values({__name__=~"a|b", job=~"$job"}, project)"#);
    assert_eq!(names, ["a", "b"]);
    assert_eq!(q, r#"count by (project) ({__name__=~"a|b", job=~"$job"})"#);
}
