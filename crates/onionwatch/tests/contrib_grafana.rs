//! Every query of the shipped Grafana dashboards is valid PromQL, as judged
//! by a real Prometheus (Debian's `prometheus`) started on loopback.

use std::path::PathBuf;
use std::time::Duration;

use onionwatch_testnet::prometheus::Prometheus;

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

    let prometheus = Prometheus::start(&[], Duration::from_secs(15)).expect("Prometheus starts");
    for q in &queries {
        // Grafana substitutes the template variable before querying.
        let concrete = q.replace("$project", ".*");
        let answer = prometheus.query(&concrete).unwrap();
        assert!(
            answer.contains("\"status\":\"success\""),
            "query {q:?} rejected: {answer}"
        );
    }
}
