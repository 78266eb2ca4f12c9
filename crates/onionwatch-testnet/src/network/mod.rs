//! The running network: starting it, node control, tearing it down.
//! Launching the tors is in `launch`, the readiness waits in `ready`, what
//! callers get ([`NetworkInfo`]) in `info`.

mod info;
mod launch;
mod ready;

use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::config::NetworkConfig;
use crate::error::{Error, Result};
use crate::node::TorNode;

pub use info::{ClientInfo, NetworkInfo, OnionInfo};

/// A running private Tor network. Dropping it kills every tor it started.
#[derive(Debug)]
pub struct TestNetwork {
    info: NetworkInfo,
    nodes: Vec<TorNode>,
    _backends: Vec<Backend>,
    // Declared last so it is removed after the nodes are dead.
    _tempdir: Option<tempfile::TempDir>,
}

impl TestNetwork {
    /// Start the network and wait until the client has bootstrapped and a GET
    /// through every onion service has succeeded.
    ///
    /// Must run inside a tokio runtime (the built-in backends are tasks).
    pub async fn start(config: NetworkConfig) -> Result<Self> {
        config.validate().map_err(Error::Config)?;
        let started = Instant::now();
        let deadline = started + config.ready_timeout;
        let mut net = Self::launch(&config, deadline).await?;
        net.wait_ready(&config, deadline).await?;
        tracing::info!(elapsed = ?started.elapsed(), onions = net.info.onions.len(), "test network ready");
        Ok(net)
    }

    /// Endpoints of the client and the onion services.
    pub fn info(&self) -> &NetworkInfo {
        &self.info
    }

    /// The tor processes.
    pub fn nodes(&self) -> &[TorNode] {
        &self.nodes
    }

    /// Kill the tor named `nickname` (e.g. `hs1`), as a crash would.
    /// `Err(Config)` if no node has that name.
    pub fn kill_node(&mut self, nickname: &str) -> Result<()> {
        self.node_mut(nickname)?.kill();
        Ok(())
    }

    /// Start the tor named `nickname` again (killing it first if it runs),
    /// with its torrc, ports, keys and onion addresses unchanged.
    pub fn restart_node(&mut self, nickname: &str) -> Result<()> {
        self.node_mut(nickname)?.restart()
    }

    fn node_mut(&mut self, nickname: &str) -> Result<&mut TorNode> {
        self.nodes
            .iter_mut()
            .find(|n| n.nickname == nickname)
            .ok_or_else(|| {
                Error::Config(format!(
                    "no tor node named {nickname:?} in the test network"
                ))
            })
    }

    /// Pids of every tor still running.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(TorNode::pid).collect()
    }

    /// `Err(NodeDied)` naming the first tor that has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        self.nodes.iter_mut().try_for_each(TorNode::check_alive)
    }

    /// Keep the network running until `stop` completes, looking every second
    /// whether a tor died (`Err(NodeDied)` then, as [`TestNetwork::check_alive`]).
    pub async fn run_until(&mut self, stop: impl std::future::Future<Output = ()>) -> Result<()> {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return Ok(()),
                _ = tick.tick() => self.check_alive()?,
            }
        }
    }

    /// Kill every tor and stop the backends (what `Drop` does, made explicit).
    pub fn shutdown(mut self) {
        self.nodes.iter_mut().for_each(TorNode::kill);
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        // Nodes kill themselves on drop; do it here first so the tempdir
        // removal never races a tor still writing into it.
        self.nodes.iter_mut().for_each(TorNode::kill);
    }
}
