//! Waiting until the network is usable: the consensus, the client's
//! bootstrap, a GET through every onion service.

use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use onionwatch_tor::socks::Isolation;
use tokio::time::sleep;

use super::TestNetwork;
use crate::config::{BackendKind, NetworkConfig, ServiceConfig};
use crate::error::{Error, Result};
use crate::node::{tail, TorNode};
use crate::ports::loopback;

/// How often readiness waits look again. Polling is fine here: tor offers no
/// cheaper signal for "consensus reached and descriptors reachable".
const POLL: Duration = Duration::from_millis(200);
impl TestNetwork {
    /// Poll `ready` until it yields, a node dies, or `deadline` passes.
    pub(super) async fn poll<T>(
        &mut self,
        deadline: Instant,
        what: &str,
        log: &Path,
        mut ready: impl FnMut() -> Option<T>,
    ) -> Result<T> {
        let start = Instant::now();
        loop {
            if let Some(v) = ready() {
                return Ok(v);
            }
            self.check_alive()?;
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: what.to_owned(),
                    waited: start.elapsed(),
                    log: log.to_owned(),
                    tail: tail(log, 15),
                });
            }
            sleep(POLL).await;
        }
    }

    pub(super) async fn wait_ready(
        &mut self,
        config: &NetworkConfig,
        deadline: Instant,
    ) -> Result<()> {
        let client_log = self.info.dir.join("client").join("notice.log");
        self.poll(
            deadline,
            "the client tor to bootstrap to 100%",
            &client_log.clone(),
            || {
                fs::read_to_string(&client_log)
                    .ok()
                    .filter(|l| l.contains("Bootstrapped 100%"))
                    .map(|_| ())
            },
        )
        .await?;

        let socks = self.info.client.socks;
        for i in 0..self.info.onions.len() {
            let onion = self.info.onions[i].clone();
            let svc = config_service(config, i);
            let built_in =
                matches!(svc.backend, BackendKind::BuiltIn).then_some(svc.response.status);
            let hs_log = self.info.dir.join(&onion.tor).join("notice.log");
            let mut attempt = 0u32;
            loop {
                attempt += 1;
                let left = deadline.saturating_duration_since(Instant::now());
                let last_error = match tokio::time::timeout(
                    left.min(Duration::from_secs(30)),
                    reach(
                        socks,
                        &onion.address,
                        built_in,
                        &format!("ready-{i}-{attempt}"),
                    ),
                )
                .await
                {
                    Ok(Ok(())) => break,
                    Ok(Err(e)) => e,
                    Err(_) => "timed out".into(),
                };
                tracing::debug!(onion = %onion.address, attempt, error = %last_error, "not reachable yet");
                self.check_alive()?;
                if Instant::now() >= deadline {
                    return Err(Error::Timeout {
                        what: format!(
                            "onion service {} to be reachable (last error: {last_error})",
                            onion.address
                        ),
                        waited: config.ready_timeout,
                        log: hs_log.clone(),
                        tail: format!(
                            "{}\nlast lines of {}:\n{}",
                            tail(&hs_log, 15),
                            client_log.display(),
                            tail(&client_log, 15)
                        ),
                    });
                }
                sleep(POLL).await;
            }
        }
        Ok(())
    }
}
/// Poll the authority's consensus until `relays` relays are in it with the
/// Running and Stable flags.
pub(super) async fn wait_for_full_consensus(
    nodes: &mut [TorNode],
    dir_port: u16,
    relays: usize,
    deadline: Instant,
    log: &Path,
) -> Result<()> {
    let start = Instant::now();
    loop {
        let usable = fetch_consensus(dir_port).await.map_or(0, |text| {
            text.lines()
                .filter(|l| l.starts_with("s ") && l.contains(" Running") && l.contains(" Stable"))
                .count()
        });
        if usable >= relays {
            tracing::debug!(relays, waited = ?start.elapsed(), "the consensus lists every relay");
            return Ok(());
        }
        nodes.iter_mut().try_for_each(TorNode::check_alive)?;
        if Instant::now() >= deadline {
            return Err(Error::Timeout {
                what: format!(
                    "a consensus with {relays} Running and Stable relays ({usable} so far)"
                ),
                waited: start.elapsed(),
                log: log.to_owned(),
                tail: tail(log, 15),
            });
        }
        sleep(POLL).await;
    }
}

/// The current consensus from an authority's DirPort (`None` until there is
/// one: tor answers 404 before its first vote; `None` too after 5 s).
async fn fetch_consensus(dir_port: u16) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(loopback(dir_port)).await?;
        s.write_all(b"GET /tor/status-vote/current/consensus HTTP/1.0\r\n\r\n")
            .await?;
        let mut body = Vec::new();
        s.read_to_end(&mut body).await?;
        std::io::Result::Ok(body)
    };
    let body = tokio::time::timeout(Duration::from_secs(5), fetch)
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&body);
    text.starts_with("HTTP/1.0 200").then(|| text.into_owned())
}

/// One reachability attempt, on a fresh circuit (`token` isolates it).
/// A built-in backend (`built_in` = its configured status) must answer a
/// GET with its own body; for any other backend an open stream is proof
/// enough (it may not speak HTTP).
async fn reach(
    socks: SocketAddr,
    address: &str,
    built_in: Option<u16>,
    token: &str,
) -> Result<(), String> {
    let iso = Isolation::new(token);
    let Some(status) = built_in else {
        return onionwatch_tor::socks::connect(socks, address, 80, Some(&iso))
            .await
            .map(drop)
            .map_err(|e| e.to_string());
    };
    let r = crate::http::get(socks, address, 80, "/", Some(&iso))
        .await
        .map_err(|e| e.to_string())?;
    if r.status == status && r.body.contains("onionwatch testnet backend") {
        Ok(())
    } else {
        Err(format!("unexpected answer: HTTP {} {:?}", r.status, r.body))
    }
}
fn config_service(config: &NetworkConfig, index: usize) -> &ServiceConfig {
    config
        .service_tors
        .iter()
        .flat_map(|t| &t.services)
        .nth(index)
        .expect("onion index within the configuration")
}
pub(super) fn read_hostname(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let host = text.trim();
    (host.len() == 62 && host.ends_with(".onion")).then(|| host.to_owned())
}
