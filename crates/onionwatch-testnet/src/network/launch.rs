//! Launching the tors: authorities, relays, then the onion-service tors and
//! the client, each tier at once, on free ports (picked again on a clash).

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::ready::{read_hostname, wait_for_full_consensus};
use super::{ClientInfo, NetworkInfo, OnionInfo, TestNetwork};
use crate::backend::Backend;
use crate::config::{BackendKind, ControlKind, NetworkConfig, ServiceTorConfig};
use crate::error::{Error, Result};
use crate::keys::{hash_password, make_authority};
use crate::node::{private_dir, Role, TorNode};
use crate::ports::{free_port, loopback};
use crate::torrc::{self, DirAuthorityLine};

impl TestNetwork {
    pub(super) async fn launch(config: &NetworkConfig, deadline: Instant) -> Result<Self> {
        let (tempdir, root) = match &config.dir {
            Some(dir) => {
                fs::create_dir_all(dir).map_err(Error::io(format!("create {}", dir.display())))?;
                (None, dir.clone())
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("onionwatch-testnet-")
                    .tempdir()
                    .map_err(Error::io("create a temporary directory"))?;
                let root = t.path().to_owned();
                (Some(t), root)
            }
        };
        let tor = &config.tor;

        // If anything below fails, `nodes` drops and kills what started.
        let (authorities, mut nodes) = start_authorities(config, &root, deadline).await?;
        let mut relays = Vec::new();
        for i in 0..config.relays {
            let nick = format!("relay{i}");
            let dir = root.join(&nick);
            private_dir(&dir)?;
            let common = torrc::common(&nick, &dir, &authorities);
            relays.push(NodeSpec {
                nick,
                role: Role::Relay,
                dir,
                ports: 2,
                torrc: Box::new(move |p| common.clone() + &torrc::relay(p[0], p[1], false)),
            });
        }
        nodes.extend(
            start_tier(config, &relays, deadline)
                .await?
                .into_iter()
                .map(|(n, _)| n),
        );
        // Onion-service tors start only once every authority's consensus
        // lists every relay as Running, Stable and HSDir: started earlier
        // (or on an authority's older consensus), with the 3 authorities
        // alone, they cannot build 4-hop intro circuits, and tor then stops
        // launching them for 300 s after ~30 failures ("exceeded its circuit
        // launch limit"), longer than any readiness wait.
        let dir_ports: Vec<u16> = authorities.iter().map(|a| a.dir_port).collect();
        wait_for_full_consensus(
            &mut nodes,
            &dir_ports,
            3 + config.relays,
            deadline,
            &root.join("auth0").join("notice.log"),
        )
        .await?;

        // The onion-service tors and the client, all at once.
        let mut tier = Vec::new();
        let mut backends = Vec::new();
        let mut onions = Vec::new();
        for (t, tor_cfg) in config.service_tors.iter().enumerate() {
            let nick = format!("hs{t}");
            let dir = root.join(&nick);
            private_dir(&dir)?;
            let mut services = String::new();
            for (s, svc) in tor_cfg.services.iter().enumerate() {
                let (backend, access_log) = match &svc.backend {
                    BackendKind::BuiltIn => {
                        let log = dir.join(format!("access-{s}.log"));
                        let b = Backend::start(format!("{nick}-{s}"), svc.response, Some(&log))
                            .await
                            .map_err(Error::io("start the built-in backend"))?;
                        let addr = b.addr();
                        backends.push(b);
                        (addr, Some(log))
                    }
                    BackendKind::Address(a) => (*a, None),
                };
                let hs_dir = dir.join(format!("hs{s}"));
                private_dir(&hs_dir)?;
                services.push_str(&format!(
                    "HiddenServiceDir {}\nHiddenServicePort 80 {backend}\n",
                    hs_dir.display()
                ));
                if svc.export_circuit_id {
                    services.push_str("HiddenServiceExportCircuitID haproxy\n");
                }
                if svc.pow_defenses {
                    services.push_str("HiddenServicePoWDefensesEnabled 1\n");
                }
                if let Some((rate, burst)) = svc.intro_dos {
                    services.push_str(&format!(
                        "HiddenServiceEnableIntroDoSDefense 1\nHiddenServiceEnableIntroDoSRatePerSec {rate}\nHiddenServiceEnableIntroDoSBurstPerSec {burst}\n"
                    ));
                }
                onions.push((
                    hs_dir,
                    OnionInfo {
                        address: String::new(),
                        control: String::new(),
                        cookie: dir.join("control_auth_cookie"),
                        metrics: None,
                        backend,
                        tor: nick.clone(),
                        export_circuit_id: svc.export_circuit_id,
                        access_log,
                    },
                ));
            }
            let common = torrc::common(&nick, &dir, &authorities);
            let ports = usize::from(tor_cfg.control == ControlKind::Tcp)
                + usize::from(tor_cfg.metrics_port);
            tier.push(NodeSpec {
                nick,
                role: Role::OnionService,
                dir: dir.clone(),
                ports,
                torrc: Box::new(move |p| {
                    let (control, metrics) = service_tor_endpoints(tor_cfg, &dir, p);
                    let mut text = common.clone() + "SocksPort 0\n" + &torrc::control(&control);
                    if let Some(m) = metrics {
                        text.push_str(&format!(
                            "MetricsPort {m}\nMetricsPortPolicy {}\n",
                            tor_cfg.metrics_policy
                        ));
                    }
                    text + &services
                }),
            });
        }

        let dir = root.join("client");
        private_dir(&dir)?;
        let mut common = torrc::common("client", &dir, &authorities);
        if let Some(password) = &config.client_password {
            common.push_str(&format!(
                "HashedControlPassword {}\n",
                hash_password(tor, password).await?
            ));
        }
        tier.push(NodeSpec {
            nick: "client".into(),
            role: Role::Client,
            dir: dir.clone(),
            ports: 2,
            torrc: Box::new(move |p| {
                format!("{common}SocksPort {} ExtendedErrors\n", loopback(p[0]))
                    + &torrc::control(&loopback(p[1]).to_string())
            }),
        });
        let mut started = start_tier(config, &tier, deadline).await?;
        let (client, ports) = started.pop().expect("the client is started last");
        let (socks, control) = (loopback(ports[0]), loopback(ports[1]));
        for ((node, ports), tor_cfg) in started.into_iter().zip(&config.service_tors) {
            let (control, metrics) = service_tor_endpoints(tor_cfg, &node.dir, &ports);
            for (_, onion) in onions.iter_mut().filter(|(_, o)| o.tor == node.nickname) {
                onion.control = control.clone();
                onion.metrics = metrics;
            }
            nodes.push(node);
        }
        nodes.push(client);

        let mut net = Self {
            info: NetworkInfo {
                client: ClientInfo {
                    socks,
                    control,
                    cookie: dir.join("control_auth_cookie"),
                },
                onions: Vec::new(),
                dir: root,
            },
            nodes,
            _backends: backends,
            _tempdir: tempdir,
        };
        // tor writes `hostname` within a second of starting.
        let deadline = deadline.min(Instant::now() + Duration::from_secs(30));
        for (hs_dir, mut onion) in onions {
            let hostname = hs_dir.join("hostname");
            onion.address = net
                .poll(
                    deadline,
                    &format!("{}", hostname.display()),
                    &hostname,
                    || read_hostname(&hostname),
                )
                .await?;
            net.info.onions.push(onion);
        }
        Ok(net)
    }
}

/// `count` free ports for `nick`, shown to the [`crate::PortHook`] if any.
fn pick_ports(config: &NetworkConfig, nick: &str, count: usize) -> Result<Vec<u16>> {
    let ports = (0..count)
        .map(|_| free_port())
        .collect::<std::io::Result<Vec<u16>>>()
        .map_err(Error::io("pick a free port"))?;
    if let Some(hook) = &config.port_hook {
        hook.call(nick, &ports);
    }
    Ok(ports)
}

/// A tor to start on `ports` ports picked for it; `torrc` writes its
/// configuration from them.
struct NodeSpec<'a> {
    nick: String,
    role: Role,
    dir: PathBuf,
    ports: usize,
    torrc: Torrc<'a>,
}

type Torrc<'a> = Box<dyn Fn(&[u16]) -> String + 'a>;

/// Start every tor of `specs` at once, then wait until each has bound its
/// ports. One that found a port taken starts again alone, on fresh ports.
/// Returns the nodes, in order, with the ports they listen on.
async fn start_tier(
    config: &NetworkConfig,
    specs: &[NodeSpec<'_>],
    deadline: Instant,
) -> Result<Vec<(TorNode, Vec<u16>)>> {
    let spawn = |s: &NodeSpec| -> Result<(TorNode, Vec<u16>)> {
        let ports = pick_ports(config, &s.nick, s.ports)?;
        let node = TorNode::spawn(&config.tor, &s.nick, s.role, &s.dir, &(s.torrc)(&ports))?;
        Ok((node, ports))
    };
    // If anything below fails, `started` drops and kills what started.
    let mut started = specs.iter().map(spawn).collect::<Result<Vec<_>>>()?;
    for (spec, slot) in specs.iter().zip(&mut started) {
        retry_on_clash(&spec.nick, async |retry| {
            if retry {
                *slot = spawn(spec)?;
            }
            slot.0.wait_started(deadline).await
        })
        .await?;
    }
    Ok(started)
}

/// Run `start`, and once more (`start(true)`, which picks fresh ports) if a
/// port it picked was taken first: the race [`free_port`] cannot close. A
/// second clash is [`Error::PortClash`].
async fn retry_on_clash<T>(what: &str, mut start: impl AsyncFnMut(bool) -> Result<T>) -> Result<T> {
    match start(false).await {
        Err(e) if e.is_port_clash() => {
            tracing::warn!(what, "a port was taken; starting again on fresh ports");
            start(true).await.map_err(Error::clash_again)
        }
        other => other,
    }
}

/// Make the 3 authorities' keys and start them. Every node's torrc names
/// every authority's ports, so a port clash restarts all three on fresh
/// ports (with fresh keys: the certificate holds the DirPort), once.
async fn start_authorities(
    config: &NetworkConfig,
    root: &Path,
    deadline: Instant,
) -> Result<(Vec<DirAuthorityLine>, Vec<TorNode>)> {
    let gencert = tor_gencert(&config.tor);
    let dirs: Vec<PathBuf> = (0..3).map(|i| root.join(format!("auth{i}"))).collect();
    retry_on_clash("the authorities", async |retry| {
        let mut ports = Vec::new();
        for (i, d) in dirs.iter().enumerate() {
            if retry {
                fs::remove_dir_all(d).map_err(Error::io(format!("remove {}", d.display())))?;
            }
            private_dir(d)?;
            ports.push(pick_ports(config, &format!("auth{i}"), 2)?);
        }
        // ~1 s of RSA each, so in parallel.
        let key = |i: usize| make_authority(&config.tor, &gencert, &dirs[i], ports[i][1]);
        let (a, b, c) = tokio::try_join!(key(0), key(1), key(2))?;
        let authorities: Vec<DirAuthorityLine> = [a, b, c]
            .into_iter()
            .zip(&ports)
            .enumerate()
            .map(|(i, (id, p))| DirAuthorityLine {
                nickname: format!("auth{i}"),
                or_port: p[0],
                dir_port: p[1],
                v3ident: id.v3ident,
                fingerprint: id.fingerprint,
            })
            .collect();
        // On an error `started` drops: those tors are killed before a retry.
        let mut started = Vec::new();
        for (a, dir) in authorities.iter().zip(&dirs) {
            let text = torrc::common(&a.nickname, dir, &authorities)
                + &torrc::relay(a.or_port, a.dir_port, true);
            started.push(TorNode::spawn(
                &config.tor,
                &a.nickname,
                Role::Authority,
                dir,
                &text,
            )?);
        }
        for node in &mut started {
            node.wait_started(deadline).await?;
        }
        Ok((authorities, started))
    })
    .await
}

/// The control endpoint and MetricsPort of an onion-service tor, from the
/// ports picked for it (control first, if TCP).
fn service_tor_endpoints(
    cfg: &ServiceTorConfig,
    dir: &Path,
    ports: &[u16],
) -> (String, Option<SocketAddr>) {
    let mut ports = ports.iter().copied();
    let control = match cfg.control {
        ControlKind::Tcp => loopback(ports.next().expect("a control port")).to_string(),
        ControlKind::Unix => format!("unix:{}", dir.join("control.sock").display()),
    };
    let metrics = cfg
        .metrics_port
        .then(|| loopback(ports.next().expect("a MetricsPort")));
    (control, metrics)
}
/// `tor-gencert` next to the tor binary if there is one, else from PATH.
fn tor_gencert(tor: &Path) -> PathBuf {
    match tor.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && dir.join("tor-gencert").exists() => {
            dir.join("tor-gencert")
        }
        _ => PathBuf::from("tor-gencert"),
    }
}
