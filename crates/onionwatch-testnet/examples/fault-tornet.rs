//! A private Tor network whose tors a script can crash and restart, for
//! scripts/fault-tor.sh (`onionwatch testnet up` exits when one of its tors
//! dies, which is right for it and wrong for a fault test).
//!
//! ```sh
//! cargo run --release -p onionwatch-testnet --example fault-tornet -- [ONIONS=1]
//! ```
//!
//! Prints the network's JSON line (as `onionwatch testnet up --format json`)
//! once it is ready, then reads commands on stdin, one a line, answering
//! `ok` or `error: ...` on stdout:
//! `kill NICK` (SIGKILL, as a crash), `restart NICK` (same torrc, ports and
//! keys), `pids`. End of input stops the network.

use std::io::{BufRead, Write};

use onionwatch_testnet::{NetworkConfig, TestNetwork};

fn main() {
    let onions: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ONIONS must be a number"))
        .unwrap_or(1);
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let mut net = rt
        .block_on(TestNetwork::start(NetworkConfig::with_onions(onions, 1)))
        .expect("the private Tor network did not start");
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
