//! What a shell sees of onionwatch: completions and man pages generated
//! from the command line's definition.

use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_onionwatch");

/// Whether `tool` is installed; outside CI a test without it is skipped
/// (with a note), in CI (`CI` set) it must be there.
fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(
        found || std::env::var_os("CI").is_none(),
        "{tool} is missing (scripts/install-deps installs it)"
    );
    if !found {
        eprintln!("skipped: {tool} is not installed");
    }
    found
}

fn output(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completion_scripts_name_every_subcommand_and_bash_parses_its_own() {
    for shell in ["bash", "zsh", "fish"] {
        let script = output(&["completions", shell]);
        for sub in [
            "watch",
            "probe",
            "logs",
            "gateway",
            "expose-onion",
            "completions",
        ] {
            assert!(script.contains(sub), "{shell}: no {sub}");
        }
        // Options of a subcommand, not only the top level.
        assert!(
            script.contains("state-dir"),
            "{shell}: no watch --state-dir"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let bash = dir.path().join("onionwatch");
    std::fs::write(&bash, output(&["completions", "bash"])).unwrap();
    let check = Command::new("bash").arg("-n").arg(&bash).output().unwrap();
    assert!(check.status.success(), "bash -n: {check:?}");
    // Loaded, it defines the completion function and registers it.
    let loaded = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p onionwatch",
            bash.display()
        ))
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&loaded.stdout).contains("onionwatch"),
        "{loaded:?}"
    );
    let bad = Command::new(BIN)
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(3),
        "an unknown shell is a usage error"
    );
}

#[test]
fn man_pages_are_written_for_each_subcommand_and_render() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man");
    output(&["manpages", "--out-dir", out.to_str().unwrap()]);
    let mut pages: Vec<String> = onionwatch_test_support::file_names(&out);
    pages.sort();
    for page in [
        "onionwatch.1",
        "onionwatch-watch.1",
        "onionwatch-probe.1",
        "onionwatch-logs.1",
        "onionwatch-gateway.1",
        "onionwatch-expose-onion.1",
        "onionwatch-scrape-gateway.1",
        "onionwatch-audit.1",
        "onionwatch-testnet-up.1",
    ] {
        assert!(pages.iter().any(|p| p == page), "no {page} in {pages:?}");
    }
    assert!(!pages.iter().any(|p| p.contains("manpages")), "{pages:?}");
    let probe = std::fs::read_to_string(out.join("onionwatch-probe.1")).unwrap();
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH OPTIONS"] {
        assert!(
            probe.contains(section),
            "onionwatch-probe.1 has no {section}"
        );
    }
    if !have("groff") {
        return;
    }
    for page in &pages {
        // -ww: every warning; a page that does not render well warns.
        // -k: through preconv, as man(1) does (the help has UTF-8).
        let rendered = Command::new("groff")
            .args(["-k", "-man", "-Tutf8", "-P-cbou", "-ww"])
            .arg(out.join(page))
            .output()
            .unwrap();
        assert!(rendered.status.success(), "{page}: {rendered:?}");
        let stderr = String::from_utf8_lossy(&rendered.stderr);
        assert!(stderr.is_empty(), "{page}: groff warns: {stderr}");
        let text = String::from_utf8_lossy(&rendered.stdout);
        assert!(text.contains("SYNOPSIS"), "{page} renders no synopsis");
    }
    let text = Command::new("groff")
        .args(["-k", "-man", "-Tutf8", "-P-cbou"])
        .arg(out.join("onionwatch-watch.1"))
        .output()
        .unwrap()
        .stdout;
    let text = String::from_utf8_lossy(&text);
    assert!(text.contains("--state-dir"), "{text}");
}
