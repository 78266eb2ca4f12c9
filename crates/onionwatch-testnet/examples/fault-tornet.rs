//! A private Tor network whose tors a script can crash and restart, for
//! scripts/fault-tor.sh and scripts/soak (`onionwatch testnet up` exits when
//! one of its tors dies, which is right for it and wrong for a fault test).
//!
//! ```sh
//! cargo run --release -p onionwatch-testnet --example fault-tornet -- [ONIONS=1] [PER_TOR=1] [SPRAY_DIR]
//! ```
//!
//! `PER_TOR` onion services share a tor. With `SPRAY_DIR`, an Onionspray
//! installation is written there (as Onionspray writes it, by
//! onionwatch-test-support) with one hardmap project `pNN` per onion
//! service: its `hostname` holds the network's real address, its
//! `tor.conf` the real MetricsPort and (TCP) control port of the tor
//! hosting it, so `watch --onionspray SPRAY_DIR` scrapes and probes the
//! network itself.
//!
//! Prints the network's JSON line (as `onionwatch testnet up --format json`)
//! once it is ready, then reads commands on stdin, one a line, answering
//! `ok` or `error: ...` on stdout:
//! `kill NICK` (SIGKILL, as a crash), `restart NICK` (same torrc, ports and
//! keys), `pids`. End of input stops the network.

use std::io::{BufRead, Write};
use std::path::Path;

use onionwatch_test_support::onionspray::{SprayProject, SprayTree};
use onionwatch_testnet::{NetworkConfig, NetworkInfo, TestNetwork};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut number = |what: &str| {
        args.next()
            .map(|a| {
                a.parse()
                    .unwrap_or_else(|_| panic!("{what} must be a number"))
            })
            .unwrap_or(1)
    };
    let onions: usize = number("ONIONS");
    let per_tor: usize = number("PER_TOR");
    let spray = std::env::args().nth(3);
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let mut net = rt
        .block_on(TestNetwork::start(NetworkConfig::with_onions(
            onions, per_tor,
        )))
        .expect("the private Tor network did not start");
    if let Some(dir) = spray {
        write_spray_tree(Path::new(&dir), net.info());
    }
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", serde_json::to_string(net.info()).expect("json"));
    let _ = out.flush();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let mut words = line.split_whitespace();
        let answer = match (words.next(), words.next()) {
            (Some("kill"), Some(nick)) => net.kill_node(nick).map(|()| "ok".to_owned()),
            (Some("restart"), Some(nick)) => net.restart_node(nick).map(|()| "ok".to_owned()),
            (Some("pids"), None) => Ok(format!("{:?}", net.pids())),
            _ => Ok(format!("error: unknown command {line:?}")),
        };
        let _ = match answer {
            Ok(a) => writeln!(out, "{a}"),
            Err(e) => writeln!(out, "error: {e}"),
        };
        let _ = out.flush();
    }
    net.shutdown();
}

/// One hardmap project per onion service, pointing at the network's tors.
fn write_spray_tree(root: &Path, info: &NetworkInfo) {
    let projects: Vec<SprayProject> = info
        .onions
        .iter()
        .enumerate()
        .map(|(i, o)| SprayProject {
            onions: vec![o.address.trim_end_matches(".onion").to_owned()],
            metrics_port: o.metrics.map(|m| m.port()),
            ..SprayProject::hardmap(&format!("p{i:02}"), &[&format!("p{i:02}.example")])
        })
        .collect();
    SprayTree::build(root, &projects);
    // The tree's control sockets are placeholders: name the real control
    // port instead, as a project using a TCP ControlPort would.
    for (p, o) in projects.iter().zip(&info.onions) {
        let conf = root.join("projects").join(&p.name).join("tor.conf");
        let text = std::fs::read_to_string(&conf).expect("tor.conf written");
        let text: String = text
            .lines()
            .map(|l| {
                if l.starts_with("ControlPort ") {
                    format!("ControlPort {}\n", o.control)
                } else {
                    format!("{l}\n")
                }
            })
            .collect();
        std::fs::write(&conf, text).expect("tor.conf rewritten");
    }
}
