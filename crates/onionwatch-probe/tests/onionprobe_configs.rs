//! Onionprobe's bundled configs (shipped in its PyPI package) load unchanged.

use std::path::PathBuf;
use std::process::Command;

use onionwatch_probe::Config;

/// `share/onionprobe/configs` under the data directory `pip install
/// onionprobe==1.4.1` used, as its installed-files record says: not always
/// under `sys.prefix` (Debian's pip puts it in /usr/local, a user install in
/// ~/.local). `None` when Onionprobe is not installed.
fn configs_dir() -> Option<PathBuf> {
    let out = Command::new("python3")
        .args([
            "-c",
            "import importlib.metadata as m, os\n\
             d = m.distribution('onionprobe')\n\
             f = next(f for f in d.files if str(f).endswith('onionprobe/configs/tor.yaml'))\n\
             print(os.path.dirname(os.path.normpath(d.locate_file(f))))",
        ])
        .output()
        .ok()?;
    let dir = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (out.status.success() && dir.join("tor.yaml").exists()).then_some(dir)
}

#[test]
fn bundled_onionprobe_configs_load() {
    let Some(dir) = configs_dir() else {
        eprintln!("SKIPPED: Onionprobe is not installed (scripts/install-deps installs it)");
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install onionprobe==1.4.1 (scripts/install-deps)"
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
