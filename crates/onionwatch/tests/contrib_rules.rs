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
