//! The readable text of a notification: e-mail subject and body, ntfy
//! title and message.

use std::fmt::Write;

use crate::{payload, Group};

/// At most this many alerts are spelled out; the rest are counted.
const MAX_ALERTS: usize = 50;

/// `[FIRING:2] OnionServiceUnreachable, DescriptorUnavailable (name=shop project=news)`.
pub(crate) fn subject(group: &Group) -> String {
    let firing = group.alerts.iter().filter(|a| a.is_firing()).count();
    let mut names: Vec<&str> = group
        .alerts
        .iter()
        .filter_map(|a| a.labels.get("alertname").map(String::as_str))
        .collect();
    names.dedup();
    names.sort_unstable();
    names.dedup();
    let labels: Vec<String> = group
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let count = match group.status() {
        crate::Status::Firing => firing,
        crate::Status::Resolved => group.alerts.len(),
    };
    let mut s = format!(
        "[{}:{count}] {}",
        group.status().as_str().to_uppercase(),
        names.join(", ")
    );
    if !labels.is_empty() {
        let _ = write!(s, " ({})", labels.join(" "));
    }
    // One line, bounded: it becomes a header.
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect()
}

/// Every alert: status and name, labels, annotations, start and end.
pub(crate) fn body(group: &Group, external_url: &str) -> String {
    let mut s = String::new();
    for a in group.alerts.iter().take(MAX_ALERTS) {
        let status = if a.is_firing() { "FIRING" } else { "RESOLVED" };
        let name = a
            .labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("alert");
        let _ = writeln!(s, "{status}: {name}");
        let labels: Vec<String> = a
            .labels
            .iter()
            .filter(|(k, _)| *k != "alertname")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !labels.is_empty() {
            let _ = writeln!(s, "  {}", labels.join(" "));
        }
        for (k, v) in &a.annotations {
            let _ = writeln!(s, "  {k}: {v}");
        }
        let _ = writeln!(s, "  since {}", payload::rfc3339(a.starts_at));
        if let Some(end) = a.ends_at {
            let _ = writeln!(s, "  until {}", payload::rfc3339(end));
        }
        s.push('\n');
    }
    if group.alerts.len() > MAX_ALERTS {
        let _ = writeln!(s, "… and {} more alerts", group.alerts.len() - MAX_ALERTS);
    }
    if !external_url.is_empty() {
        let _ = writeln!(s, "Dashboard: {external_url}");
    }
    s
}
