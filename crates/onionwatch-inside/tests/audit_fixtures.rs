//! `audit` on the fixture configurations in tests/fixtures: every rule
//! fires on a bad configuration and stays quiet on a good one.

use std::path::PathBuf;

use onionwatch_inside::audit::{audit, rules, suggest_ports, suggestions_text, Report, Severity};

fn fixture(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(p)
}

fn run(p: &str) -> Report {
    audit(&[fixture(p)]).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// The (rule, severity) pairs of a report, sorted.
fn found(r: &Report) -> Vec<(&'static str, Severity)> {
    let mut v: Vec<_> = r.findings.iter().map(|f| (f.rule, f.severity)).collect();
    v.sort();
    v
}

fn run_all(paths: &[&str]) -> Report {
    let paths: Vec<PathBuf> = paths.iter().map(|p| fixture(p)).collect();
    audit(&paths).unwrap()
}

#[test]
fn good_configurations_are_clean() {
    // Two tors with their own authenticated TCP control ports.
    let r = run_all(&[
        "audit/control-tcp-news.torrc",
        "audit/control-tcp-shop.torrc",
    ]);
    assert!(r.findings.is_empty(), "{}", r.to_text());
    assert_eq!(r.checked, 2);
    for p in [
        "audit/good.torrc",
        "audit/good-unix-control.torrc",
        "audit/control-password.torrc",
        "audit/spray-good.conf",
        "onionspray",
        "onionspray/projects/news",
    ] {
        let r = run(p);
        assert!(r.findings.is_empty(), "{p}:\n{}", r.to_text());
        assert_eq!(r.exit_code(), 0);
        assert!(r.checked > 0, "{p}");
    }
}

#[test]
fn metrics_port_exposed() {
    let r = run("audit/metrics-exposed.torrc");
    assert_eq!(
        found(&r),
        [(rules::METRICS_PORT_EXPOSED, Severity::Critical)]
    );
    assert!(
        r.findings[0].fix.contains("MetricsPort 127.0.0.1:9035"),
        "{:?}",
        r.findings[0]
    );
    assert!(
        r.findings[0].location.ends_with("metrics-exposed.torrc:3"),
        "{:?}",
        r.findings[0]
    );
    assert_eq!(r.exit_code(), 2);
}

#[test]
fn metrics_policy_missing_empty_and_accept_all() {
    let r = run("audit/policy-missing.torrc");
    assert_eq!(
        found(&r),
        [(rules::METRICS_POLICY_MISSING, Severity::Warning)]
    );
    assert_eq!(r.exit_code(), 1);
    assert!(r.findings[0]
        .fix
        .contains("MetricsPortPolicy accept 127.0.0.1"));

    let r = run("audit/policy-empty.torrc");
    assert_eq!(
        found(&r),
        [(rules::METRICS_POLICY_EMPTY, Severity::Warning)]
    );

    // accept * on loopback: a warning; on a public address: critical.
    let r = run("audit/policy-accept-all.torrc");
    assert_eq!(
        found(&r),
        [(rules::METRICS_POLICY_ACCEPT_ALL, Severity::Warning)]
    );
    let r = run("audit/metrics-exposed-accept-all.torrc");
    assert_eq!(
        found(&r),
        [
            (rules::METRICS_POLICY_ACCEPT_ALL, Severity::Critical),
            (rules::METRICS_PORT_EXPOSED, Severity::Critical),
        ]
    );
}

#[test]
fn control_port_without_authentication() {
    let r = run("audit/control-no-auth.torrc");
    assert_eq!(
        found(&r),
        [(rules::CONTROL_PORT_NO_AUTH, Severity::Warning)]
    );
    assert!(r.findings[0].fix.contains("CookieAuthentication 1"));
    let r = run("audit/control-no-auth-exposed.torrc");
    assert_eq!(
        found(&r),
        [(rules::CONTROL_PORT_NO_AUTH, Severity::Critical)]
    );
}

#[test]
fn control_port_shared_over_tcp() {
    let r = run_all(&[
        "audit/control-tcp-news.torrc",
        "audit/control-tcp-shop-shared.torrc",
    ]);
    assert_eq!(
        found(&r),
        [(rules::CONTROL_PORT_SHARED, Severity::Critical)]
    );
    let f = &r.findings[0];
    assert!(
        f.message.contains("port 9051")
            && f.message.contains("control-tcp-news.torrc/tor")
            && f.message.contains("control-tcp-shop-shared.torrc/tor"),
        "{f:?}"
    );
    assert!(
        f.location.ends_with("control-tcp-shop-shared.torrc:5"),
        "{f:?}"
    );
    assert_eq!(r.exit_code(), 2);
}

#[test]
fn onionspray_configuration_without_policy() {
    let r = run("audit/spray-policy-missing.conf");
    assert_eq!(
        found(&r),
        [(rules::METRICS_POLICY_MISSING, Severity::Warning)]
    );
    let f = &r.findings[0];
    assert_eq!(
        (f.project.as_str(), f.instance.as_str()),
        ("news", "config")
    );
    assert!(f.location.ends_with("spray-policy-missing.conf:2"), "{f:?}");
    assert_eq!(f.fix, "set tor_metrics_port_policy accept 127.0.0.1");
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn onionspray_configuration_settings() {
    let r = run("audit/spray-bad.conf");
    let got = found(&r);
    assert!(
        got.contains(&(rules::METRICS_PORT_EXPOSED, Severity::Critical)),
        "{got:?}"
    );
    assert!(
        got.contains(&(rules::METRICS_POLICY_ACCEPT_ALL, Severity::Critical)),
        "{got:?}"
    );
    assert!(
        got.contains(&(rules::METRICS_PORT_SHARED, Severity::Critical)),
        "{got:?}"
    );
    assert!(
        got.contains(&(rules::METRICS_POLICY_EMPTY, Severity::Warning)),
        "{got:?}"
    );
    let exposed = r
        .findings
        .iter()
        .find(|f| f.rule == rules::METRICS_PORT_EXPOSED)
        .unwrap();
    assert_eq!(exposed.project, "news");
    assert!(
        exposed.fix.contains("set tor_metrics_port 127.0.0.1:9035"),
        "{exposed:?}"
    );
    let shared = r
        .findings
        .iter()
        .find(|f| f.rule == rules::METRICS_PORT_SHARED)
        .unwrap();
    assert!(
        shared.message.contains("news/config") && shared.message.contains("shop/config"),
        "{shared:?}"
    );
}

#[test]
fn onionspray_tree_shared_ports_and_proxy_protocol() {
    let r = run("onionspray-bad");
    let got = found(&r);
    assert_eq!(
        got,
        [
            (rules::CONTROL_PORT_NO_AUTH, Severity::Warning),
            (rules::CONTROL_PORT_NO_AUTH, Severity::Warning),
            (rules::CONTROL_PORT_SHARED, Severity::Critical),
            (rules::EXPORT_WITHOUT_PROXY_PROTOCOL, Severity::Critical),
            (rules::METRICS_PORT_SHARED, Severity::Critical),
            (rules::PROXY_PROTOCOL_WITHOUT_EXPORT, Severity::Critical),
        ]
    );
    let export = r
        .findings
        .iter()
        .find(|f| f.rule == rules::EXPORT_WITHOUT_PROXY_PROTOCOL)
        .unwrap();
    assert_eq!(export.project, "a");
    assert!(export.fix.contains("proxy_protocol"), "{export:?}");
    let text = r.to_text();
    assert!(text.contains("4 critical, 2 warning(s)"), "{text}");
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["findings"].as_array().unwrap().len(), 6);
    assert_eq!(json["findings"][0]["severity"], "critical");
}

#[test]
fn suggested_ports_are_distinct_loopback_and_keep_safe_ones() {
    let s = suggest_ports(&fixture("onionspray"), 9035).unwrap();
    let by: Vec<(&str, &str, bool)> = s
        .iter()
        .map(|p| (p.project.as_str(), p.tor_metrics_port.as_str(), p.kept))
        .collect();
    // news keeps 9035; shop's workers use 9036/9037 (a softmap project gets
    // a new port with a note); blog has none. Ports in use are skipped.
    assert_eq!(
        by,
        [
            ("blog", "127.0.0.1:9038", false),
            ("news", "127.0.0.1:9035", true),
            ("shop", "127.0.0.1:9039", false),
        ]
    );
    let text = suggestions_text(&s);
    assert!(text.contains("# project news (keeps its current port)\nset tor_metrics_port 127.0.0.1:9035\nset tor_metrics_port_policy accept 127.0.0.1\n"), "{text}");
    assert!(text.contains("2 tor workers (hs-1, hs-2)"), "{text}");

    // Two projects sharing 9035: neither keeps it.
    let s = suggest_ports(&fixture("onionspray-bad"), 9035).unwrap();
    let ports: Vec<&str> = s.iter().map(|p| p.tor_metrics_port.as_str()).collect();
    assert_eq!(ports, ["127.0.0.1:9036", "127.0.0.1:9037"]);
}

#[test]
fn unreadable_inputs_are_errors() {
    let err = audit(&[fixture("nonexistent.torrc")]).unwrap_err();
    assert!(err.to_string().contains("cannot read"), "{err}");
    let err = audit(&[fixture("audit")]).unwrap_err();
    assert!(
        err.to_string().contains("neither projects/ nor tor.conf"),
        "{err}"
    );
}
