//! The Alertmanager notifier against a real Alertmanager on 127.0.0.1.

mod common;

use std::time::Duration;

use common::*;
use onionwatch_notify::Notifiers;
use onionwatch_test_support::{json_until, wait_for, Alertmanager};
use serde_json::Value;

/// The alerts Alertmanager lists whose `alertname` is `name`.
fn named<'a>(v: &'a Value, name: &str) -> Vec<&'a Value> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter(|x| x["labels"]["alertname"] == name)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_are_pushed_to_alertmanager_and_resolved() {
    let Some(am) = Alertmanager::start() else {
        return;
    };
    let n = Notifiers::start(vec![config(&format!(
        "type: alertmanager\nname: am\nurl: {}/\nresend_interval: 1m\nmatch_re: {{severity: 'critical|warning'}}\n",
        am.url()
    ))])
    .unwrap();
    // Groups are Alertmanager's business: notify() sends it nothing.
    n.notify(group("g", vec![alert("Ignored", "critical", None)]));

    let down = alert("OnionServiceUnreachable", "critical", None);
    let desc = alert("DescriptorUnavailable", "warning", None);
    let info = alert("NotRouted", "info", None);
    n.push_alerts(vec![down.clone(), desc.clone(), info]);
    let v = json_until(am.addr, "/api/v2/alerts", |v| {
        !named(v, "OnionServiceUnreachable").is_empty()
            && !named(v, "DescriptorUnavailable").is_empty()
    });
    let a = named(&v, "OnionServiceUnreachable")[0];
    assert_eq!(a["status"]["state"], "active", "{v}");
    assert_eq!(a["labels"]["name"], "shop");
    assert_eq!(a["labels"]["project"], "news");
    assert_eq!(
        a["annotations"]["summary"],
        "OnionServiceUnreachable on shop"
    );
    assert_eq!(a["startsAt"], "2024-05-01T12:00:00.000Z");
    // Firing: it ends a few resend intervals ahead, not in 2024.
    assert!(a["endsAt"].as_str().unwrap() > "2025", "{a}");
    assert!(named(&v, "NotRouted").is_empty(), "match_re: {v}");
    assert!(named(&v, "Ignored").is_empty(), "{v}");

    // Resolved with its end: no longer active. The descriptor alert just
    // leaves the state: it is pushed resolved too.
    let mut resolved = down.clone();
    resolved.ends_at = Some(at(600));
    n.push_alerts(vec![resolved]);
    json_until(am.addr, "/api/v2/alerts", |v| {
        named(v, "OnionServiceUnreachable").is_empty()
            && named(v, "DescriptorUnavailable").is_empty()
    });
    let pushed = wait_for(Duration::from_secs(30), || {
        (n.counts("am") == Some((2, 0, 0))).then_some(())
    });
    assert!(pushed.is_some(), "{:?}", n.counts("am"));

    // Firing again after a restart of the alert: listed again.
    n.push_alerts(vec![down]);
    json_until(am.addr, "/api/v2/alerts", |v| {
        named(v, "OnionServiceUnreachable").len() == 1
    });
    n.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_state_is_pushed_again_every_resend_interval() {
    let Some(am) = Alertmanager::start() else {
        return;
    };
    let n = Notifiers::start(vec![config(&format!(
        "type: alertmanager\nname: am\nurl: {}\nresend_interval: 100ms\n",
        am.url()
    ))])
    .unwrap();
    n.push_alerts(vec![alert("OnionServiceUnreachable", "critical", None)]);
    // The same state again is no change, but the interval resends it.
    n.push_alerts(vec![alert("OnionServiceUnreachable", "critical", None)]);
    let resent = wait_for(Duration::from_secs(30), || {
        (n.counts("am").unwrap().0 >= 3).then_some(())
    });
    assert!(resent.is_some(), "{:?}", n.counts("am"));
    json_until(am.addr, "/api/v2/alerts", |v| {
        named(v, "OnionServiceUnreachable").len() == 1
    });
    assert_eq!(n.counts("am").unwrap().1, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alertmanager_that_is_down_is_retried() {
    let dead = onionwatch_test_support::dead_addr();
    let n = Notifiers::start(vec![config(&format!(
        "type: alertmanager\nname: am\nurl: http://{}\nretry_initial: 10ms\nretry_max: 20ms\n",
        dead.addr
    ))])
    .unwrap();
    n.push_alerts(vec![alert("OnionServiceUnreachable", "critical", None)]);
    let failed = wait_for(Duration::from_secs(30), || {
        (n.counts("am").unwrap().1 >= 3).then_some(())
    });
    assert!(failed.is_some(), "{:?}", n.counts("am"));
    let m = metrics(&n);
    assert!(
        m.contains("onionwatch_notifications_total{notifier=\"am\",result=\"success\"} 0\n"),
        "{m}"
    );
}
