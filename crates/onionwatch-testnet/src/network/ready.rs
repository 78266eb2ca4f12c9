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
/// Flags a relay needs in every authority's consensus before the
/// onion-service tors start: onion-service circuits use Running and Stable
/// relays only, and a relay without HSDir is not on the hash ring the
/// descriptors are uploaded to and fetched from.
const NEEDED_FLAGS: [&str; 3] = ["Running", "Stable", "HSDir"];

/// Poll every authority's microdesc consensus (the flavour the other tors
/// fetch) until each lists `relays` relays with [`NEEDED_FLAGS`].
///
/// Every authority, not one: a tor fetches its first consensus from
/// whichever authority answers first, and an authority that missed a vote
/// ("Not enough info to publish pending consensus") still serves its older
/// consensus, listing only some of the relays; an onion-service tor that
/// starts on that one fails its intro circuits until tor's launch limit
/// stops them for 300 s, longer than the readiness wait, and the client
/// meanwhile logs "No more HSDir available to query" for every fetch.
pub(super) async fn wait_for_full_consensus(
    nodes: &mut [TorNode],
    dir_ports: &[u16],
    relays: usize,
    deadline: Instant,
    log: &Path,
) -> Result<()> {
    let start = Instant::now();
    loop {
        let mut usable = Vec::with_capacity(dir_ports.len());
        for &port in dir_ports {
            usable.push(fetch_consensus(port).await.map(|text| usable_relays(&text)));
        }
        if usable.iter().all(|u| u.is_some_and(|n| n >= relays)) {
            tracing::debug!(relays, waited = ?start.elapsed(), "every authority's consensus lists every relay");
            return Ok(());
        }
        nodes.iter_mut().try_for_each(TorNode::check_alive)?;
        if Instant::now() >= deadline {
            let so_far: Vec<String> = dir_ports
                .iter()
                .zip(&usable)
                .map(|(port, u)| match u {
                    Some(n) => format!("DirPort {port}: {n}"),
                    None => format!("DirPort {port}: no consensus"),
                })
                .collect();
            return Err(Error::Timeout {
                what: format!(
                    "every authority's consensus to list {relays} relays as {} ({})",
                    NEEDED_FLAGS.join(", "),
                    so_far.join(", ")
                ),
                waited: start.elapsed(),
                log: log.to_owned(),
                tail: tail(log, 15),
            });
        }
        sleep(POLL).await;
    }
}

/// Relays of a consensus with every flag of [`NEEDED_FLAGS`].
fn usable_relays(consensus: &str) -> usize {
    consensus
        .lines()
        .filter_map(|l| l.strip_prefix("s "))
        .filter(|flags| {
            let flags: Vec<&str> = flags.split_ascii_whitespace().collect();
            NEEDED_FLAGS.iter().all(|f| flags.contains(f))
        })
        .count()
}

/// The current microdesc consensus from an authority's DirPort (`None`
/// until there is one: tor answers 404 before its first vote; `None` too
/// after 5 s).
async fn fetch_consensus(dir_port: u16) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let fetch = async {
        let mut s = tokio::net::TcpStream::connect(loopback(dir_port)).await?;
        s.write_all(b"GET /tor/status-vote/current/consensus-microdesc HTTP/1.0\r\n\r\n")
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A consensus whose first `full` relays have every needed flag, then
    /// one Running and Stable relay without HSDir.
    fn consensus(full: usize) -> String {
        let mut text = String::from("HTTP/1.0 200 OK\r\n\r\nnetwork-status-version 3 microdesc\n");
        for i in 0..full {
            text.push_str(&format!(
                "r relay{i} AAAA 2038-01-01 00:00:00 127.0.0.1 1 0\ns Exit Fast Guard HSDir Running Stable V2Dir Valid\n"
            ));
        }
        text.push_str("r nohsdir AAAA 2038-01-01 00:00:00 127.0.0.1 1 0\ns Exit Guard Running Stable V2Dir Valid\n");
        text
    }

    /// A DirPort on 127.0.0.1 answering every request with `reply`.
    async fn dir_port(reply: String) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut request = [0u8; 256];
                let _ = s.read(&mut request).await;
                let _ = s.write_all(reply.as_bytes()).await;
            }
        });
        port
    }

    #[test]
    fn counts_relays_with_every_needed_flag() {
        assert_eq!(usable_relays(&consensus(5)), 5);
        assert_eq!(usable_relays(&consensus(0)), 0);
        // A flag's name inside another's does not count.
        assert_eq!(
            usable_relays("s NotRunning Stable HSDir\ns Running Stable HSDirs\n"),
            0
        );
    }

    #[tokio::test]
    async fn waits_until_every_authority_lists_every_relay() {
        let full = dir_port(consensus(5)).await;
        let stale = dir_port(consensus(3)).await;
        let none = dir_port("HTTP/1.0 404 Not found\r\n\r\n".into()).await;
        let soon = || Instant::now() + Duration::from_millis(600);
        let log = Path::new("/nonexistent/notice.log");

        // One authority behind (or without a consensus yet) is not ready,
        // whichever place it has.
        for ports in [[full, stale, full], [full, full, none]] {
            let err = wait_for_full_consensus(&mut [], &ports, 5, soon(), log)
                .await
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(
                    "every authority's consensus to list 5 relays as Running, Stable, HSDir"
                ),
                "{err}"
            );
            assert!(err.contains(&format!("DirPort {full}: 5")), "{err}");
            assert!(
                err.contains(&format!("DirPort {stale}: 3"))
                    || err.contains(&format!("DirPort {none}: no consensus")),
                "{err}"
            );
        }
        wait_for_full_consensus(&mut [], &[full, full, full], 5, soon(), log)
            .await
            .unwrap();
    }
}
