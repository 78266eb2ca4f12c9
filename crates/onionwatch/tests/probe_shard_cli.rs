//! `onionwatch probe --list [--shard I/N]`: the endpoints a prober covers,
//! without tor; the N shards' lists together name every endpoint once.

use std::collections::BTreeMap;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_onionwatch");
const A: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion";

fn list(config: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let out = Command::new(BIN)
        .args(["probe", "-c"])
        .arg(config)
        .arg("--list")
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn config(dir: &std::path::Path, names: &[String], extra: &str) -> std::path::PathBuf {
    let mut yaml = format!("{extra}endpoints:\n");
    for n in names {
        yaml.push_str(&format!("  {n:?}: {{address: {A}}}\n"));
    }
    let path = dir.join("probe.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

#[test]
fn the_shard_lists_cover_every_endpoint_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let names: Vec<String> = (0..60).map(|i| format!("site {i}")).collect();
    let path = config(dir.path(), &names, "");
    let mut all = list(&path, &[]);
    all.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(all, expected, "no shard: every endpoint");
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for i in 1..=3 {
        let part = list(&path, &["--shard", &format!("{i}/3")]);
        assert!(!part.is_empty(), "shard {i}/3 covers some of 60");
        for n in part {
            *seen.entry(n).or_default() += 1;
        }
    }
    assert_eq!(seen.keys().cloned().collect::<Vec<_>>(), expected);
    assert!(seen.values().all(|&c| c == 1), "{seen:?}");
    // A fourth prober takes endpoints only from the others, about a quarter.
    let before: Vec<Vec<String>> = (1..=3)
        .map(|i| list(&path, &["--shard", &format!("{i}/3")]))
        .collect();
    let fourth = list(&path, &["--shard", "4/4"]);
    for i in 1..=3 {
        let after = list(&path, &["--shard", &format!("{i}/4")]);
        assert!(
            after.iter().all(|n| before[i - 1].contains(n)),
            "shard {i} gained endpoints when a prober was added"
        );
        for n in &before[i - 1] {
            assert!(after.contains(n) || fourth.contains(n), "{n} lost");
        }
    }
    assert!((5..=25).contains(&fourth.len()), "{}", fourth.len());
    // The YAML key says the same as the flag.
    let keyed = config(dir.path(), &names, "shard: 2/3\n");
    assert_eq!(list(&keyed, &[]), before[1]);
}

#[test]
fn bad_shards_and_labels_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &["a".into()], "");
    for (args, needle) in [
        (vec!["--shard", "0/3"], "I/N"),
        (vec!["--shard", "4/3"], "I/N"),
        (vec!["--vantage", ""], "vantage"),
    ] {
        let out = Command::new(BIN)
            .args(["probe", "-c"])
            .arg(&path)
            .arg("--list")
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(needle),
            "{args:?}: {err}"
        );
    }
    let bad = config(
        dir.path(),
        &["a".into()],
        "external_labels: {__name__: x}\n",
    );
    let out = Command::new(BIN)
        .args(["probe", "-c"])
        .arg(&bad)
        .arg("--list")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("external_labels"),
        "{err}"
    );
}
