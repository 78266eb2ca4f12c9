//! Alerts and groups for the notifier tests.

#![allow(dead_code)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use onionwatch_notify::{Alert, Group, Labels, NotifierConfig, Notifiers};

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// 2024-05-01T12:00:00Z plus `secs`.
pub fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_714_564_800 + secs)
}

/// An alert of the onion service `shop` of project `news`.
pub fn alert(alertname: &str, severity: &str, ends: Option<u64>) -> Alert {
    Alert {
        labels: labels(&[
            ("alertname", alertname),
            ("name", "shop"),
            ("project", "news"),
            ("severity", severity),
        ]),
        annotations: labels(&[("summary", &format!("{alertname} on shop"))]),
        starts_at: at(0),
        ends_at: ends.map(at),
    }
}

pub fn group(key: &str, alerts: Vec<Alert>) -> Group {
    Group {
        key: key.to_owned(),
        labels: labels(&[("name", "shop")]),
        alerts,
    }
}

/// Parse one `notifiers:` entry.
#[track_caller]
pub fn config(yaml: &str) -> NotifierConfig {
    serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

/// The `/metrics` text of `n`.
pub fn metrics(n: &Notifiers) -> String {
    use onionwatch_metrics::Collect;
    let mut f = Vec::new();
    n.collect(&mut f);
    onionwatch_metrics::render(&f, onionwatch_metrics::Format::Prometheus)
}

/// Wait (30 s at most) until notifier `name` counted `(success, failure,
/// dropped)`.
#[track_caller]
pub fn wait_counts(n: &Notifiers, name: &str, want: (u64, u64, u64)) {
    let mut last = None;
    let got = onionwatch_test_support::wait_for(Duration::from_secs(30), || {
        last = n.counts(name);
        (last == Some(want)).then_some(())
    });
    assert!(got.is_some(), "{name}: counts {last:?}, expected {want:?}");
}
