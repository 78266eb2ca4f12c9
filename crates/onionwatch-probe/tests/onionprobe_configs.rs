//! Onionprobe's bundled configs (shipped in its PyPI package) load unchanged.

use std::path::PathBuf;
use std::process::Command;

use onionwatch_probe::Config;

/// `<python prefix>/share/onionprobe/configs`, where `pip install
/// onionprobe==1.4.1` puts them; `None` when Onionprobe is not installed.
fn configs_dir() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import onionprobe, sys, os; print(os.path.join(sys.prefix, 'share', 'onionprobe', 'configs'))",
        ])
        .output()
        .ok()?;
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (out.status.success() && dir.join("tor.yaml").exists()).then_some(dir)
}

#[test]
fn bundled_onionprobe_configs_load() {
    let Some(dir) = configs_dir() else {
        eprintln!(
            "SKIPPED: Onionprobe is not installed (python3 -m pip install onionprobe==1.4.1; .ci/run installs it)"
        );
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install onionprobe==1.4.1 (see .ci/run)"
        );
        return;
    };
    for (file, at_least) in [
        ("tor.yaml", 62),
        ("securedrop.yaml", 33),
        ("real-world-onion-sites.yaml", 147),
    ] {
        let path = dir.join(file);
        let (config, warnings) =
            Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let targets = config
            .targets()
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            targets.len(),
            at_least,
            "{file}: as many endpoints as PyYAML reads"
        );
        assert!(warnings.is_empty(), "{file}: {warnings:?}");
        eprintln!("{file}: {} endpoints", targets.len());
    }
}
