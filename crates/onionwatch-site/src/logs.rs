//! The log follower's HTTP routes and its feed to the dashboard.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use onionwatch_dashboard::Dashboard;
use onionwatch_logs::follow::{Follower, LogKind};
use onionwatch_logs::severity::RecentLine;

/// Warning lines shown per project on the dashboard.
const SHOWN: usize = 5;

/// `/api/v1/logs` (each project's summary, busiest circuits included: they
/// are never metric labels) and `/api/v1/warnings` (the kept tor and
/// onionbalance warnings).
pub fn api(follower: &Follower) -> Router {
    let (logs, warnings) = (follower.clone(), follower.clone());
    Router::new()
        .route(
            "/api/v1/logs",
            get(move || {
                let f = logs.clone();
                async move { Json(f.summaries()) }
            }),
        )
        .route(
            "/api/v1/warnings",
            get(move || {
                let f = warnings.clone();
                async move { Json(f.recent_warnings()) }
            }),
        )
}

/// Show each project's last tor and onionbalance warnings, as the follower
/// keeps them, on the dashboard every `every` (the logs are already being
/// read: no second read). Runs until aborted.
pub async fn feed_recent_warnings(follower: Follower, dashboard: Arc<Dashboard>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        for (project, lines) in dashboard_warnings(follower.recent_warnings()) {
            dashboard.set_recent_warnings(&project, lines);
        }
    }
}

/// Each project's last warning lines for its dashboard row: tor's last,
/// nginx's error log's then onionbalance's filling in when tor has fewer.
fn dashboard_warnings(
    recent: BTreeMap<String, BTreeMap<&'static str, Vec<RecentLine>>>,
) -> Vec<(String, Vec<String>)> {
    recent
        .into_iter()
        // An installation-wide Onionbalance log has no project: no row.
        .filter(|(project, _)| !project.is_empty())
        .map(|(project, logs)| {
            let lines: Vec<String> = [LogKind::Onionbalance, LogKind::NginxError, LogKind::Tor]
                .iter()
                .filter_map(|k| logs.get(k.as_str()))
                .flatten()
                .map(|r| r.text.clone())
                .collect();
            let shown = lines[lines.len().saturating_sub(SHOWN)..].to_vec();
            (project, shown)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use onionwatch_logs::severity::Severity;

    fn lines(kind: LogKind, texts: &[&str]) -> BTreeMap<&'static str, Vec<RecentLine>> {
        let lines = texts
            .iter()
            .map(|t| RecentLine {
                severity: Severity::Warn,
                text: (*t).to_owned(),
            })
            .collect();
        BTreeMap::from([(kind.as_str(), lines)])
    }

    #[test]
    fn dashboard_rows_skip_only_the_installation_wide_log() {
        let mut both = lines(LogKind::Onionbalance, &["ob1", "ob2"]);
        both.extend(lines(LogKind::Tor, &["t1", "t2", "t3", "t4"]));
        let recent = BTreeMap::from([
            (
                String::new(),
                lines(LogKind::Onionbalance, &["whole install"]),
            ),
            ("news".to_owned(), lines(LogKind::Onionbalance, &["ob"])),
            ("shop".to_owned(), both),
        ]);
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            dashboard_warnings(recent),
            [
                ("news".to_owned(), s(&["ob"])),
                ("shop".to_owned(), s(&["ob2", "t1", "t2", "t3", "t4"])),
            ]
        );
    }
}
