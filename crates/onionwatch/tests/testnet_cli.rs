//! `onionwatch testnet up` as a user runs it: one JSON line, then SIGINT
//! leaves no tor behind.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn testnet_up_prints_one_json_line_and_sigint_leaves_no_tor() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::Running(
        Command::new(env!("CARGO_BIN_EXE_onionwatch"))
            .args(["testnet", "up", "--onions", "2", "--onions-per-tor", "2"])
            .args([
                "--control",
                "unix",
                "--export-circuit-id",
                "--format",
                "json",
            ])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run onionwatch"),
    );

    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = match rx.recv_timeout(Duration::from_secs(300)) {
        Ok(line) => line.unwrap(),
        Err(e) => {
            panic!("no JSON line from testnet up: {e}");
        }
    };
    let v: serde_json::Value = serde_json::from_str(&line).expect("one line of JSON");

    let client = &v["client"];
    for key in ["socks", "control"] {
        assert!(
            client[key].as_str().unwrap().starts_with("127.0.0.1:"),
            "{v}"
        );
    }
    assert!(Path::new(client["cookie"].as_str().unwrap()).exists());
    let onions = v["onions"].as_array().unwrap();
    assert_eq!(onions.len(), 2);
    for o in onions {
        let address = o["address"].as_str().unwrap();
        assert!(
            address.len() == 62 && address.ends_with(".onion"),
            "{address}"
        );
        // Both services share one tor, so they share its control socket.
        assert_eq!(o["control"], onions[0]["control"]);
        assert!(o["control"].as_str().unwrap().starts_with("unix:"), "{o}");
        assert!(o["metrics"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(o["backend"].as_str().unwrap().starts_with("127.0.0.1:"));
        assert!(o["cookie"].is_string());
    }

    // Every tor writes its pid file; collect them before stopping.
    let mut pids = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        if let Ok(pid) = std::fs::read_to_string(entry.unwrap().path().join("pid")) {
            pids.push(pid.trim().parse::<u32>().unwrap());
        }
    }
    assert_eq!(
        pids.len(),
        7,
        "3 authorities, 2 relays, 1 onion-service tor, 1 client"
    );
    assert!(pids.iter().all(|p| alive(*p)));

    unsafe { libc::kill(child.0.id() as i32, libc::SIGINT) };
    let status = child.0.wait().unwrap();
    assert!(status.success(), "exit status after SIGINT: {status}");
    let left: Vec<u32> = pids.into_iter().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "tor processes left after SIGINT: {left:?}");
}

#[test]
fn help_lists_only_working_subcommands() {
    let out = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("testnet"), "{help}");
    let out = Command::new(env!("CARGO_BIN_EXE_onionwatch"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .starts_with("onionwatch "));
}
