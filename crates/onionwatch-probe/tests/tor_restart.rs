//! The runner keeps probing when its tor dies and comes back: an existing
//! tor killed (SIGKILL) and restarted on the same ports, and the tor the
//! prober launched itself killed. One private network for this binary (one
//! onion service, the built-in backend); its client tor is the one killed.

use std::sync::Arc;
use std::time::Duration;

use onionwatch_probe::runner::{Event, Runner};
use onionwatch_probe::{Config, ProbeMetrics, ProbeResult, Tor};
use onionwatch_testnet::{shared_network, with_shared_network, NetworkConfig, NetworkInfo};
use tokio::sync::mpsc;

/// Every wait for a round outcome gives up after this.
const LIMIT: Duration = Duration::from_secs(400);

fn net() -> &'static NetworkInfo {
    shared_network(|| NetworkConfig {
        ready_timeout: Duration::from_secs(180),
        ..NetworkConfig::default()
    })
}

/// Probe the network's onion service every 2 s, forever.
fn yaml(tor: &str) -> String {
    let address = &net().onions[0].address;
    format!(
        "{tor}loop: true\nsleep: 2\ninterval: 0\nshuffle: false\nrandomize: false\n\
         descriptor_max_retries: 1\ndescriptor_timeout: 30\nhttp_connect_timeout: 30\n\
         http_read_timeout: 30\nhttp_connect_max_retries: 1\n\
         endpoints:\n  site:\n    address: {address}\n    protocol: http\n    port: 80\n    \
         paths:\n      - path: /\n        allowed_statuses: [200]\n"
    )
}

/// A running [`Runner`] sending each round's results.
struct Running {
    rounds: mpsc::UnboundedReceiver<Vec<ProbeResult>>,
    metrics: Arc<ProbeMetrics>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(tor: Arc<Tor>, config: Config) -> Running {
        let metrics = Arc::new(ProbeMetrics::new());
        let mut runner = Runner::new(tor, metrics.clone(), config).unwrap();
        let (tx, rounds) = mpsc::unbounded_channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            runner
                .run(stopped, |e| {
                    if let Event::RoundDone { results, .. } = e {
                        let _ = tx.send(results);
                    }
                    Ok::<_, std::convert::Infallible>(())
                })
                .await
                .unwrap();
            runner.shutdown().await;
        });
        Running {
            rounds,
            metrics,
            stop: Some(stop),
            task,
        }
    }

    /// Rounds until one whose probe `passed` is `want`; their number.
    async fn until(&mut self, want: bool, what: &str) -> usize {
        self.until_with(|r| r.passed == want, what).await
    }

    /// Rounds until one whose result satisfies `done`; their number.
    async fn until_with(&mut self, done: impl Fn(&ProbeResult) -> bool, what: &str) -> usize {
        let mut n = 0;
        let found = tokio::time::timeout(LIMIT, async {
            loop {
                let results = self.rounds.recv().await.expect("the runner runs");
                n += 1;
                let r = &results[0];
                eprintln!(
                    "round: passed {} reachable {} descriptor {} error {:?}",
                    r.passed, r.reachable, r.descriptor_reachable, r.error
                );
                if done(r) {
                    return;
                }
            }
        })
        .await;
        assert!(found.is_ok(), "no round {what} in {LIMIT:?} ({n} rounds)");
        n
    }

    fn reconnects(&self, kind: &str) -> f64 {
        self.metrics
            .get("onionwatch_probe_tor_reconnects", &[kind])
            .unwrap_or(0.0)
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probing_resumes_after_an_existing_tor_is_killed_and_restarted() {
    let client = &net().client;
    let tor = format!(
        "launch_tor: false\ntor_address: 127.0.0.1\nsocks_port: {}\ncontrol_port: {}\n",
        client.socks.port(),
        client.control.port()
    );
    let (config, _) = Config::from_yaml(&yaml(&tor), "test").unwrap();
    let tor = Arc::new(Tor::from_config(&config).await.unwrap());
    let mut running = Running::start(tor, config);
    running.until(true, "passing at first").await;

    with_shared_network(|n| n.kill_node("client"))
        .unwrap()
        .unwrap();
    running
        .until(false, "failing with the client tor killed")
        .await;
    with_shared_network(|n| n.restart_node("client"))
        .unwrap()
        .unwrap();
    // The descriptor through the control port and the page through SOCKS,
    // both from the restarted tor.
    running.until(true, "passing after the restart").await;
    assert!(running.reconnects("control_connection") >= 1.0);
    assert_eq!(running.reconnects("launched_tor"), 0.0);
    running.stop().await;
}

/// The lines of the network client's torrc that join a tor to the private
/// network (authorities, testing-network settings), for a launched tor.
fn network_torrc_lines() -> Vec<String> {
    let torrc = std::fs::read_to_string(net().dir.join("client/torrc")).unwrap();
    let keep = [
        "TestingTorNetwork",
        "DirAuthority",
        "AssumeReachable",
        "PathsNeededToBuildCircuits",
        "V3AuthNIntervalsValid",
    ];
    torrc
        .lines()
        .filter(|l| l.starts_with("Testing") || keep.iter().any(|k| l.starts_with(k)))
        .map(str::to_owned)
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_launched_tor_that_is_killed_is_launched_again() {
    let mut tor = format!(
        "launch_tor: true\ntor_address: 127.0.0.1\nsocks_port: {}\ncontrol_port: {}\ntor_config:\n",
        free_port(),
        free_port()
    );
    for line in network_torrc_lines() {
        tor.push_str(&format!("  - '{line}'\n"));
    }
    let (config, _) = Config::from_yaml(&yaml(&tor), "test").unwrap();
    let tor = Arc::new(Tor::from_config(&config).await.unwrap());
    let pid = tor.launched_pid().await.expect("tor was launched");
    let mut running = Running::start(tor.clone(), config);
    running.until(true, "passing at first").await;

    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // The next round may already pass: it launches tor again first.
    running
        .until_with(
            |r| r.passed && tor.relaunches() > 0,
            "passing after the relaunch",
        )
        .await;
    let again = tor.launched_pid().await.expect("tor was launched again");
    assert_ne!(again, pid);
    assert_eq!(tor.relaunches(), 1);
    assert!(running.reconnects("launched_tor") >= 1.0);
    drop(tor);
    running.stop().await;
    // The runner's shutdown killed the relaunched tor.
    let alive = std::process::Command::new("kill")
        .args(["-0", &again.to_string()])
        .status()
        .unwrap();
    assert!(
        !alive.success(),
        "tor {again} still runs after the runner stopped"
    );
}
