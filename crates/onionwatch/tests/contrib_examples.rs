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
    let history = watch
        .dashboard
        .check(std::time::Duration::from_secs(15))
        .expect("watch.yaml's dashboard section is valid");
    assert_eq!(
        history,
        onionwatch_inside::dashboard::HistorySettings::default()
    );

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
        // $VARIABLES come from the unit's EnvironmentFile, whose example
        // (/etc/onionwatch/X.env is contrib/examples/X.env) is used here.
        let env: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("EnvironmentFile="))
            .map(|f| {
                let name = f.trim_start_matches('-').rsplit('/').next().unwrap();
                read(&format!("examples/{name}"))
            })
            .collect();
        let mut words = Vec::new();
        for word in exec.split_whitespace() {
            match word.strip_prefix('$') {
                Some(var) => {
                    let value = env
                        .lines()
                        .find_map(|l| l.strip_prefix(var)?.strip_prefix('='))
                        .unwrap_or_else(|| panic!("{}: no example sets {var}", path.display()));
                    words.extend(value.split_whitespace());
                }
                None => words.push(word),
            }
        }
        let mut words = words.into_iter();
        assert_eq!(words.next(), Some("/usr/bin/onionwatch"));
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
    // watch, probe, logs, gateway, expose-onion, scrape-gateway.
    assert_eq!(units, 6);
}
