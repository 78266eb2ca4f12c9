//! The shipped Prometheus rules are valid and their alerts behave as their
//! unit tests say, checked with the real promtool (Debian's `prometheus`).

use std::path::PathBuf;
use std::process::Command;

fn contrib() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../contrib/prometheus")
}

fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(contrib())
        .output()
        .expect("promtool runs (install it: sudo apt-get install -y prometheus)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn shipped_rules_pass_promtool_check_and_unit_tests() {
    let mut rules = Vec::new();
    let mut tests = Vec::new();
    for entry in std::fs::read_dir(contrib()).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".test.yml") {
            tests.push(name);
        } else if name.ends_with(".yml") {
            rules.push(name);
        }
    }
    assert!(
        !rules.is_empty() && !tests.is_empty(),
        "rules and their tests are shipped"
    );
    for r in &rules {
        let out = promtool(&["check", "rules", r]);
        assert!(out.contains("SUCCESS"), "{out}");
    }
    for t in &tests {
        let out = promtool(&["test", "rules", t]);
        assert!(out.contains("SUCCESS"), "{out}");
    }
}

#[derive(serde::Deserialize)]
struct RuleFile {
    groups: Vec<Group>,
}

#[derive(serde::Deserialize)]
struct Group {
    rules: Vec<Rule>,
}

#[derive(serde::Deserialize)]
struct Rule {
    alert: Option<String>,
    expr: String,
    #[serde(rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

fn alerts() -> Vec<Rule> {
    let text = std::fs::read_to_string(contrib().join("onionwatch-rules.yml")).unwrap();
    let file: RuleFile = serde_saphyr::from_str(&text).unwrap();
    let alerts: Vec<Rule> = file
        .groups
        .into_iter()
        .flat_map(|g| g.rules)
        .filter(|r| r.alert.is_some())
        .collect();
    assert!(alerts.len() >= 10, "the shipped alerts are read");
    alerts
}

/// The workspace's `repository`, where runbook links point.
fn repository() -> String {
    let manifest =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.toml"))
            .unwrap();
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("repository = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("the workspace names its repository")
        .to_owned()
}

/// `## Name` sections of docs/runbooks.md, with their text.
fn runbook_sections() -> std::collections::BTreeMap<String, String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/runbooks.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for section in text.split("\n## ").skip(1) {
        let (name, body) = section.split_once('\n').unwrap();
        out.insert(name.trim().to_owned(), body.to_owned());
    }
    out
}

#[test]
fn every_alert_has_a_for_a_description_and_a_runbook_section() {
    let sections = runbook_sections();
    let base = format!("{}/blob/main/docs/runbooks.md#", repository());
    let mut names = Vec::new();
    for rule in alerts() {
        let name = rule.alert.unwrap();
        let duration = rule.for_.unwrap_or_default();
        assert!(
            duration.ends_with(['s', 'm', 'h']) && !duration.starts_with('0'),
            "{name}: no `for:` ({duration:?})"
        );
        for key in ["summary", "description", "runbook_url"] {
            assert!(
                rule.annotations
                    .get(key)
                    .is_some_and(|v| !v.trim().is_empty()),
                "{name}: no {key} annotation"
            );
        }
        // GitHub's anchor of a `## Name` heading is the name in lower case.
        assert_eq!(
            rule.annotations["runbook_url"],
            format!("{base}{}", name.to_lowercase()),
            "{name}"
        );
        let body = sections
            .get(&name)
            .unwrap_or_else(|| panic!("docs/runbooks.md has no `## {name}` section"));
        for part in ["**What it means.**", "**Check first.**", "**How to fix.**"] {
            assert!(body.contains(part), "{name}'s runbook lacks {part}");
        }
        names.push(name);
    }
    for section in sections.keys() {
        assert!(
            names.contains(section),
            "docs/runbooks.md has a section for `{section}`, which is no alert"
        );
    }
}

#[test]
fn the_certificate_threshold_is_the_same_everywhere() {
    let days = onionwatch_probe::output::CERT_WARNING_SECONDS / 86_400;
    assert_eq!(
        days * 86_400,
        onionwatch_probe::output::CERT_WARNING_SECONDS
    );
    let rule = alerts()
        .into_iter()
        .find(|r| r.alert.as_deref() == Some("OnionServiceCertificateExpiringSoon"))
        .unwrap();
    let threshold = format!("< {days} * 86400");
    assert!(rule.expr.contains(&threshold), "rule: {}", rule.expr);
    assert!(
        rule.annotations["description"].contains(&format!("within {days} days")),
        "{:?}",
        rule.annotations
    );
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let grafana =
        std::fs::read_to_string(root.join("contrib/grafana/onionwatch-prober.json")).unwrap();
    assert!(
        grafana
            .lines()
            .any(|l| l.contains("onion_service_certificate_expiry_seconds{")
                && l.contains(&format!("}} {threshold})"))),
        "the Grafana prober dashboard uses another threshold"
    );
    assert!(
        grafana.contains(&format!("expiring within {days} days")),
        "the Grafana panel title names another threshold"
    );
    let builtin =
        std::fs::read_to_string(root.join("crates/onionwatch-dashboard/assets/dashboard.html"))
            .unwrap();
    // The built-in dashboard takes the engine's threshold from its data,
    // this one until it has.
    assert!(
        builtin.contains(&format!("let CERT_WARNING_DAYS = {days};"))
            && builtin.contains("d < CERT_WARNING_DAYS ? \"warn\""),
        "the built-in dashboard uses another threshold"
    );
    let runbook = &runbook_sections()["OnionServiceCertificateExpiringSoon"];
    assert!(
        runbook.contains(&format!("within {days} days")),
        "{runbook}"
    );
}

/// The number an expression compares with after `op` (`14 * 86400` is a
/// product), up to the end of the comparison.
fn compared_with(expr: &str, left: &str, op: &str) -> Option<f64> {
    let after = expr.split_once(&format!("{left} {op} "))?.1;
    let operand: String = after
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '*' | ' '))
        .collect();
    operand
        .split('*')
        .map(|n| n.trim().parse::<f64>().ok())
        .product()
}

/// The engine's built-in rules are shipped Prometheus alerts of the same
/// name, reading the same series with the same condition and threshold,
/// severity and runbook.
#[test]
fn built_in_rules_are_the_shipped_alerts_with_the_same_thresholds() {
    use onionwatch_alert::rules::{Condition, BUILTIN};
    let shipped = alerts();
    for def in BUILTIN {
        let rule = shipped
            .iter()
            .find(|r| r.alert.as_deref() == Some(def.name))
            .unwrap_or_else(|| panic!("{} is built in but not shipped", def.name));
        let expr = rule.expr.split_whitespace().collect::<Vec<_>>().join(" ");
        match def.condition {
            Condition::Equals => assert_eq!(
                compared_with(&expr, def.metric, "=="),
                Some(def.equals),
                "{}: {expr}",
                def.name
            ),
            Condition::Below => assert_eq!(
                compared_with(&expr, def.metric, "<"),
                def.threshold,
                "{}: {expr}",
                def.name
            ),
            Condition::Increased => {
                assert!(
                    expr.contains(&format!("increase({}[", def.metric)),
                    "{}: {expr}",
                    def.name
                );
                assert!(expr.ends_with("> 0"), "{}: {expr}", def.name);
                let by = def.by.unwrap().join(", ");
                assert!(
                    expr.starts_with(&format!("sum by ({by})")),
                    "{}: {expr}",
                    def.name
                );
            }
        }
        assert_eq!(rule.labels["severity"], def.severity, "{}", def.name);
        assert_eq!(
            rule.annotations["runbook_url"],
            def.runbook_url(),
            "{}",
            def.name
        );
    }
    // The one certificate threshold.
    let cert = BUILTIN
        .iter()
        .find(|d| d.name == "OnionServiceCertificateExpiringSoon")
        .unwrap();
    assert_eq!(
        cert.threshold,
        Some(onionwatch_probe::output::CERT_WARNING_SECONDS as f64)
    );
}
