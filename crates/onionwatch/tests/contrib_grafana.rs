//! Every query of the shipped Grafana dashboards is valid PromQL, as judged
//! by a real Prometheus (Debian's `prometheus`) started on loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Prometheus(Child);
impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

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
fn every_dashboard_query_is_valid_promql() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contrib/grafana");
    let mut queries = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(
            json["title"].is_string() && json["uid"].is_string(),
            "{}",
            path.display()
        );
        let before = queries.len();
        exprs(&json["panels"], &mut queries);
        assert!(queries.len() > before, "{} has no queries", path.display());
    }

    let data = tempfile::tempdir().unwrap();
    let config = data.path().join("prometheus.yml");
    std::fs::write(&config, "global:\n  scrape_interval: 15s\n").unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let _p = Prometheus(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                data.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus runs (sudo apt-get install -y prometheus)"),
    );
    let start = Instant::now();
    while !get(addr, "/-/ready").is_some_and(|r| r.starts_with("HTTP/1.0 200")) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Prometheus did not become ready"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for q in &queries {
        // Grafana substitutes the template variable before querying.
        let concrete = q.replace("$project", ".*");
        let answer = get(addr, &format!("/api/v1/query?query={}", encode(&concrete))).unwrap();
        assert!(
            answer.contains("\"status\":\"success\""),
            "query {q:?} rejected: {answer}"
        );
    }
}
