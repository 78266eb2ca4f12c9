//! The shipped example configurations load, and every systemd unit's
//! command line is accepted by the binary.

use std::path::PathBuf;
use std::process::Command;

fn contrib(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../contrib")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(contrib(path)).unwrap()
}

#[test]
fn example_configurations_load() {
    let watch =
        onionwatch_inside::targets::Config::from_yaml(&read("examples/watch.yaml"), "watch.yaml")
            .expect("watch.yaml loads");
    assert!(watch.projects.contains_key("news"));

    let (probe, warnings) =
        onionwatch_probe::Config::from_yaml(&read("examples/probe.yaml"), "probe.yaml")
            .expect("probe.yaml loads");
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(probe.targets().unwrap().len(), 1);

    onionwatch_gateway::Config::from_yaml(&read("examples/gateway.yaml"))
        .expect("gateway.yaml loads");

    let auth = onionwatch_server::AuthConfig::load(&contrib("examples/auth.yaml"))
        .expect("auth.yaml loads");
    onionwatch_server::Authenticator::new(&auth).expect("its hashes are well formed");
    assert!(onionwatch_server::Authenticator::new(&auth)
        .unwrap()
        .check("Bearer change-me"));
}

#[test]
fn systemd_units_run_commands_the_binary_accepts() {
    let mut units = 0;
    for entry in std::fs::read_dir(contrib("systemd")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let exec = text
            .lines()
            .find_map(|l| l.strip_prefix("ExecStart="))
            .unwrap_or_else(|| panic!("{} has no ExecStart", path.display()));
        let mut words = exec.split_whitespace();
        assert_eq!(words.next(), Some("/usr/local/bin/onionwatch"));
        // clap rejects an unknown subcommand or flag before it prints help.
        let out = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
            .args(words)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        units += 1;
    }
    assert_eq!(units, 4);
}
