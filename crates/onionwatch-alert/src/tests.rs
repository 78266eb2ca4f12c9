//! The engine on hostile timelines: flapping, missed rounds, clock jumps,
//! restarts.

use super::*;

#[derive(Default)]
struct Recorder {
    groups: Mutex<Vec<Group>>,
    pushes: Mutex<Vec<Vec<Alert>>>,
}

impl Sink for Recorder {
    fn notify(&self, group: Group) {
        self.groups.lock().unwrap().push(group);
    }
    fn push_alerts(&self, alerts: Vec<Alert>) {
        self.pushes.lock().unwrap().push(alerts);
    }
}

impl Recorder {
    /// The notifications so far, as `(group key, status, alert names)`, emptied.
    fn take(&self) -> Vec<(String, Status, Vec<String>)> {
        self.groups
            .lock()
            .unwrap()
            .drain(..)
            .map(|g| {
                let names = g
                    .alerts
                    .iter()
                    .map(|a| {
                        format!(
                            "{}:{}",
                            a.labels["alertname"],
                            if a.is_firing() { "firing" } else { "resolved" }
                        )
                    })
                    .collect();
                (g.key.clone(), g.status(), names)
            })
            .collect()
    }
}

const T0: u64 = 1_800_000_000;

fn at(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
}

fn engine_with(config: &AlertsConfig, dir: Option<&Path>) -> (Engine, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let external = Labels::from([("vantage".into(), "berlin".into())]);
    let e = Engine::new(config, external, dir, rec.clone()).unwrap();
    (e, rec)
}

fn engine() -> (Engine, Arc<Recorder>) {
    engine_with(&AlertsConfig::default(), None)
}

/// A probe round: `onion_service_reachable` of endpoint `name`, or nothing
/// (a missed round) for `None`.
fn reachable(name: &str, up: Option<bool>) -> Vec<Family> {
    let mut f = Family::gauge("onion_service_reachable", "h");
    if let Some(up) = up {
        f.push(
            &[
                ("name", name),
                ("address", "a.onion"),
                ("protocol", "http"),
                ("port", "80"),
                ("path", "/"),
            ],
            if up { 1.0 } else { 0.0 },
        );
    }
    vec![f]
}

/// Feed rounds 5 minutes apart from `start`; `pattern`: `x` bad, `.` good,
/// `_` missed.
fn feed(e: &Engine, start: u64, pattern: &str) -> u64 {
    let mut t = start;
    for c in pattern.chars() {
        let up = match c {
            'x' => Some(false),
            '.' => Some(true),
            _ => None,
        };
        e.observe(Source::Probe, &reachable("shop", up), at(t));
        t += 300;
    }
    t
}

#[test]
fn three_failed_rounds_in_five_fire_once_and_recovery_resolves_once() {
    let (e, rec) = engine();
    let t = feed(&e, T0, "..xx");
    assert!(rec.take().is_empty(), "two failures are not enough");
    let t = feed(&e, t, "x");
    let sent = rec.take();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].0, "{name=\"shop\"}");
    assert_eq!(sent[0].1, Status::Firing);
    assert_eq!(sent[0].2, ["OnionServiceUnreachable:firing"]);
    assert_eq!(e.firing().len(), 1);
    let alert = &e.firing()[0];
    assert_eq!(alert.labels["severity"], "critical");
    assert_eq!(alert.labels["vantage"], "berlin");
    assert_eq!(alert.labels["address"], "a.onion");
    assert!(alert.annotations["summary"].contains("shop (a.onion/) is unreachable"));
    // Still failing: nothing more until the repeat interval.
    let t = feed(&e, t, "xxxx");
    assert!(rec.take().is_empty());
    // Back: resolved once the window holds fewer than 3 failures.
    let t = feed(&e, t, "..");
    assert!(rec.take().is_empty(), "4 of the last 5 rounds failed still");
    feed(&e, t, "......");
    let sent = rec.take();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].1, Status::Resolved);
    assert_eq!(sent[0].2, ["OnionServiceUnreachable:resolved"]);
    assert!(e.firing().is_empty());
}

#[test]
fn an_onion_service_failing_one_round_in_five_sends_nothing() {
    let (e, rec) = engine();
    feed(&e, T0, &"x....".repeat(40));
    // Two in five neither, even irregularly.
    feed(&e, T0 + 1_000_000, &"x.x....x..x...".repeat(10));
    assert!(rec.take().is_empty());
    assert!(e.firing().is_empty());
}

#[test]
fn missed_rounds_are_neither_failures_nor_successes() {
    let (e, rec) = engine();
    // Three failures among the observed rounds, whatever the gaps.
    let t = feed(&e, T0, "x_x__x");
    assert_eq!(rec.take().len(), 1);
    // Missed rounds do not resolve it…
    let t = feed(&e, t, "____");
    assert!(rec.take().is_empty());
    assert_eq!(e.firing().len(), 1);
    // …until the series has been gone for a whole window (the endpoint
    // was removed): forgotten, and resolved.
    feed(&e, t, "_");
    let sent = rec.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1, Status::Resolved);
}

#[test]
fn rounds_of_another_source_do_not_advance_windows() {
    let (e, rec) = engine();
    let t = feed(&e, T0, "xx");
    for i in 0..10 {
        e.observe(Source::Watch, &[], at(t + i));
    }
    assert!(rec.take().is_empty());
    assert!(e.firing().is_empty());
    feed(&e, t + 100, "x");
    assert_eq!(rec.take().len(), 1);
}

#[test]
fn clock_jumps_neither_fire_early_nor_storm() {
    let mut config = AlertsConfig::default();
    config.rules.insert(
        "OnionServiceUnreachable".into(),
        config::RuleConfig {
            window: Some(Window { k: 1, n: 1 }),
            for_: Some(For::Duration(Duration::from_secs(600))),
            ..Default::default()
        },
    );
    let (e, rec) = engine_with(&config, None);
    let down = reachable("shop", Some(false));
    e.observe(Source::Probe, &down, at(T0));
    // A step back of a day counts as no time.
    e.observe(Source::Probe, &down, at(T0 - 86_400));
    e.observe(Source::Probe, &down, at(T0 - 86_400 + 300));
    assert!(rec.take().is_empty(), "300 s of 600");
    e.observe(Source::Probe, &down, at(T0 - 86_400 + 599));
    assert!(rec.take().is_empty(), "599 s of 600");
    e.observe(Source::Probe, &down, at(T0 - 86_400 + 600));
    assert_eq!(rec.take().len(), 1, "600 s of failure");
    // Rounds before the firing time (the clock goes back again): no
    // repeat storm, the repeat counts from then.
    for i in 0..20 {
        e.observe(Source::Probe, &down, at(T0 - 10 * 86_400 + i * 60));
    }
    assert!(rec.take().is_empty());
    // A jump forward past the repeat interval repeats once.
    let late = T0 - 10 * 86_400 + 5 * 3600;
    e.observe(Source::Probe, &down, at(late));
    e.observe(Source::Probe, &down, at(late + 60));
    let sent = rec.take();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].1, Status::Firing);
}

#[test]
fn firing_groups_are_repeated_at_the_repeat_interval() {
    let (e, rec) = engine();
    // 4 h of rounds 5 minutes apart after firing, plus one.
    feed(&e, T0, &"x".repeat(3 + 48));
    assert_eq!(rec.take().len(), 2);
}

#[test]
fn alerts_of_one_onion_service_go_in_one_notification() {
    let (e, rec) = engine();
    let mut t = T0;
    for _ in 0..3 {
        let mut families = reachable("shop", Some(false));
        families.extend(reachable("news", Some(false)));
        let mut d = Family::gauge("onion_service_descriptor_reachable", "h");
        d.push(&[("name", "shop"), ("address", "a.onion")], 0.0);
        families.push(d);
        e.observe(Source::Probe, &families, at(t));
        t += 300;
    }
    let mut sent = rec.take();
    sent.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0].0, "{name=\"news\"}");
    assert_eq!(sent[1].0, "{name=\"shop\"}");
    assert_eq!(
        sent[1].2,
        [
            "OnionServiceDescriptorUnreachable:firing",
            "OnionServiceUnreachable:firing"
        ]
    );
    assert_eq!(rec.pushes.lock().unwrap().last().unwrap().len(), 3);
    let mut metrics = Vec::new();
    e.collect(&mut metrics);
    let text = onionwatch_metrics::render(&metrics, onionwatch_metrics::Format::Prometheus);
    assert!(
        text.contains("onionwatch_alerts_firing{alertname=\"OnionServiceUnreachable\"} 2\n"),
        "{text}"
    );
    assert!(text.contains("onionwatch_alerts_firing{alertname=\"OnionwatchScrapeTargetDown\"} 0\n"));
}

#[test]
fn a_restart_neither_repeats_a_firing_alert_nor_loses_its_resolution() {
    let dir = tempfile::tempdir().unwrap();
    let (e, rec) = engine_with(&AlertsConfig::default(), Some(dir.path()));
    let t = feed(&e, T0, "xxx");
    assert_eq!(rec.take().len(), 1);
    drop(e);
    // Restarted while the onion service is still down: no second "firing".
    let (e, rec) = engine_with(&AlertsConfig::default(), Some(dir.path()));
    assert_eq!(e.firing().len(), 1, "firing across the restart");
    let t = feed(&e, t, "xx");
    assert!(rec.take().is_empty());
    drop(e);
    // Restarted again, and the onion service is back: "resolved" comes.
    let (e, rec) = engine_with(&AlertsConfig::default(), Some(dir.path()));
    feed(&e, t, "....");
    let sent = rec.take();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].1, Status::Resolved);
    // A torn state file does not stop the engine.
    std::fs::write(state_file(dir.path()), b"{\"series\": {").unwrap();
    engine_with(&AlertsConfig::default(), Some(dir.path()));
}

#[test]
fn silenced_alerts_are_listed_and_told_once_the_silence_ends() {
    let (e, rec) = engine();
    let id = e
        .add_silence(Silence {
            id: String::new(),
            matchers: vec!["name=\"shop\"".parse().unwrap()],
            starts_at: at(T0),
            ends_at: at(T0 + 3600),
            created_by: "test".into(),
            comment: "maintenance".into(),
        })
        .unwrap();
    feed(&e, T0, "xxxxx");
    assert!(rec.take().is_empty());
    assert!(e.firing_at(at(T0 + 1500))[0].silenced);
    assert_eq!(e.silences().len(), 1);
    feed(&e, T0 + 3600, "x");
    assert_eq!(rec.take().len(), 1, "the silence ended");
    assert!(!e.firing_at(at(T0 + 3600))[0].silenced);
    assert!(e.silences().is_empty(), "expired silences go");
    assert!(!e.delete_silence(&id).unwrap());
    let id = e
        .add_silence(Silence {
            id: String::new(),
            matchers: vec!["name=~\"n.*\"".parse().unwrap()],
            starts_at: at(T0),
            ends_at: at(T0 + 100_000),
            created_by: String::new(),
            comment: String::new(),
        })
        .unwrap();
    assert!(e.delete_silence(&id).unwrap());
    assert!(!e.delete_silence(&id).unwrap());
}

#[test]
fn configured_silences_cannot_be_deleted_through_the_api() {
    let config: AlertsConfig = serde_saphyr::from_str(
        "silences: [{matchers: ['project=\"x\"'], ends_at: 2099-01-01T00:00:00Z}]",
    )
    .unwrap();
    let (e, _) = engine_with(&config, None);
    assert!(e.delete_silence("config-1").is_err());
    assert_eq!(e.silences().len(), 1);
}

#[test]
fn counters_fire_on_growth_and_resolve_after_a_quiet_window() {
    let (e, rec) = engine();
    let round = |t: u64, a: f64, b: f64| {
        let mut f = Family::counter("onionwatch_log_abusive_circuits", "h");
        f.push_suffixed("_total", &[("project", "shop"), ("action", "log")], a);
        f.push_suffixed("_total", &[("project", "shop"), ("action", "close")], b);
        e.observe(Source::Watch, &[f], at(t));
    };
    // Known totals at start are history, not news.
    round(T0, 5.0, 1.0);
    assert!(rec.take().is_empty());
    round(T0 + 60, 5.0, 2.0);
    let sent = rec.take();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, "{project=\"shop\"}");
    let alert = &e.firing()[0];
    assert!(!alert.labels.contains_key("action"), "summed by project");
    for i in 2..6 {
        round(T0 + 60 * i, 5.0, 2.0);
    }
    assert!(rec.take().is_empty());
    round(T0 + 60 * 6, 5.0, 2.0);
    assert_eq!(rec.take()[0].1, Status::Resolved);
}

#[test]
fn disabled_rules_and_thresholds_apply() {
    let config: AlertsConfig = serde_saphyr::from_str(
        "rules:\n  OnionServiceUnreachable: {disabled: true}\n  OnionServiceCertificateExpiringSoon: {threshold: 30d, window: 1 of 1}\n",
    )
    .unwrap();
    let (e, rec) = engine_with(&config, None);
    feed(&e, T0, "xxxxx");
    let mut f = Family::gauge("onion_service_certificate_expiry_seconds", "h");
    f.push(&[("name", "shop")], 20.0 * 86_400.0);
    e.observe(Source::Probe, &[f], at(T0 + 10_000));
    let sent = rec.take();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].2, ["OnionServiceCertificateExpiringSoon:firing"]);
}

#[test]
fn hostile_series_are_bounded() {
    let (e, _) = engine();
    let mut f = Family::gauge("onion_service_reachable", "h");
    for i in 0..(MAX_SERIES_PER_RULE + 50) {
        f.push(&[("name", &i.to_string())], f64::NAN);
        f.push(&[("name", &format!("n{i}"))], 0.0);
    }
    e.observe(Source::Probe, &[f], at(T0));
    assert_eq!(e.lock().saved.series.len(), MAX_SERIES_PER_RULE);
}
