//! `audit` on the fixture configurations in tests/fixtures: every rule
//! fires on a bad configuration and stays quiet on a good one.

use std::path::PathBuf;

use onionwatch_onionspray::audit::{
    audit, rules, suggest_ports, suggestions_text, Report, Severity,
};

/// `p` in a copy of the fixtures whose files are all as old as the copy
/// (`configuration-not-applied` compares modification times).
fn fixture(p: &str) -> PathBuf {
    onionwatch_test_support::fs::fresh_copy(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"),
        env!("CARGO_TARGET_TMPDIR"),
    )
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

/// (project, [(instance, port, kept)]) of each suggestion.
type Suggested = Vec<(String, Vec<(String, String, bool)>)>;

fn suggested(root: &std::path::Path) -> Suggested {
    suggest_ports(root, 9035)
        .unwrap()
        .into_iter()
        .map(|p| {
            let ports = p
                .tor_instances
                .into_iter()
                .map(|i| (i.instance, i.tor_metrics_port, i.kept))
                .collect();
            (p.project, ports)
        })
        .collect()
}

fn want(project: &str, ports: &[(&str, &str, bool)]) -> (String, Vec<(String, String, bool)>) {
    (
        project.into(),
        ports
            .iter()
            .map(|(i, p, k)| ((*i).into(), (*p).into(), *k))
            .collect(),
    )
}

#[test]
fn suggested_ports_are_distinct_loopback_and_keep_safe_ones() {
    // news keeps 9035; each softmap worker of shop keeps its own port;
    // blog has none and gets the first port no tor uses.
    assert_eq!(
        suggested(&fixture("onionspray")),
        [
            want("blog", &[("tor", "127.0.0.1:9038", false)]),
            want("news", &[("tor", "127.0.0.1:9035", true)]),
            want(
                "shop",
                &[
                    ("hs-1", "127.0.0.1:9036", true),
                    ("hs-2", "127.0.0.1:9037", true)
                ]
            ),
        ]
    );
    let s = suggest_ports(&fixture("onionspray"), 9035).unwrap();
    let text = suggestions_text(&s);
    assert!(text.contains("# project news (keeps its current port)\nset tor_metrics_port 127.0.0.1:9035\nset tor_metrics_port_policy accept 127.0.0.1\n"), "{text}");
    assert!(
        text.contains("each of its 2 tor workers needs its own port"),
        "{text}"
    );
    assert!(
        text.contains("#   hs-2/tor.conf: MetricsPort 127.0.0.1:9037 (current)\n"),
        "{text}"
    );

    // Two projects sharing 9035: neither keeps it.
    assert_eq!(
        suggested(&fixture("onionspray-bad")),
        [
            want("a", &[("tor", "127.0.0.1:9036", false)]),
            want("b", &[("tor", "127.0.0.1:9037", false)]),
        ]
    );
}

#[test]
fn suggested_ports_avoid_ports_that_configurations_name() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("projects/blog")).unwrap();
    std::fs::create_dir_all(root.join("projects/wiki/hs-1")).unwrap();
    std::fs::create_dir_all(root.join("projects/wiki/hs-2")).unwrap();
    std::fs::write(
        root.join("projects/blog/tor.conf"),
        "ControlPort 127.0.0.1:9040\nCookieAuthentication 1\n",
    )
    .unwrap();
    // A softmap project whose workers share one port: each gets its own.
    for w in ["hs-1", "hs-2"] {
        std::fs::write(
            root.join(format!("projects/wiki/{w}/tor.conf")),
            "MetricsPort 127.0.0.1:9041\n",
        )
        .unwrap();
    }
    std::fs::write(root.join("projects/wiki/softmap.conf"), "").unwrap();
    // Configured, not generated yet: zine claims 9035; yard names blog's
    // control port.
    std::fs::write(
        root.join("zine.conf"),
        "set project zine\nset tor_metrics_port 127.0.0.1:9035\nhardmap %NEW_V3_ONION% zine.example.com\n",
    )
    .unwrap();
    std::fs::write(
        root.join("yard.conf"),
        "set project yard\nset tor_metrics_port 127.0.0.1:9040\nhardmap %NEW_V3_ONION% yard.example.com\n",
    )
    .unwrap();
    assert_eq!(
        suggested(root),
        [
            want("blog", &[("tor", "127.0.0.1:9036", false)]),
            want(
                "wiki",
                &[
                    ("hs-1", "127.0.0.1:9037", false),
                    ("hs-2", "127.0.0.1:9038", false)
                ]
            ),
            want("yard", &[("tor", "127.0.0.1:9039", false)]),
            want("zine", &[("tor", "127.0.0.1:9035", true)]),
        ]
    );
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
