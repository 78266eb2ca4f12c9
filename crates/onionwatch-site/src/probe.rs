//! Outside probing in the site: the Onionprobe-compatible prober of
//! `onionwatch-probe`, its metrics on the site's registry (so on `/metrics`
//! with the names `onionwatch probe` exports, and on the dashboard's "Onion
//! services, seen from the Tor network" table).
//!
//! What is probed: the endpoints of the Onionprobe options ([`Probing`]),
//! plus, with `discover`, every onion service found in the Onionspray
//! trees ([`Watcher::onion_services`](onionwatch_inside::watch::Watcher::onion_services)),
//! at `/` on each virtual port its `HiddenServicePort` lines expose:
//!
//! - port 80 as `http`, named `<project>/<first 16 characters of the address>`;
//! - port 443 as `https` (certificate not verified: Onionspray's are
//!   self-signed unless the operator installed others; its expiry is still
//!   recorded), named `<project>/<prefix>:443`;
//! - any other port as `tcp` (reachable when the stream opens), named
//!   `<project>/<prefix>:<port>`.
//!
//! Any HTTP status counts (Onionspray answers port 80 with a redirect);
//! the prefix becomes the whole address when two services of a project
//! share it. An onion service whose address an endpoint of the options
//! names is not probed again. Rediscovery updates the list between rounds;
//! with an Onionprobe file, that file is re-read then and on SIGHUP.
//!
//! Probing goes through the tor the options describe: launched with a
//! temporary DataDirectory (`launch_tor: true`, Onionprobe's default, so a
//! client tor that hosts none of the services), or the one at
//! `tor_address`/`socks_port`/`control_port`. The tor is started once
//! there is something to probe; if it cannot be started or reached, the
//! error is logged and tried again every 30 s. `watch` probes
//! continuously: `loop`, `rounds` and `prometheus_exporter` are not used.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use onionwatch_onionspray::tree::OnionService;
use onionwatch_probe::config::{Endpoint, PathSpec, Protocol};
use onionwatch_probe::{Config, Event, ProbeMetrics, Runner, Tor};
use onionwatch_tor::onion::OnionAddress;
use tokio::sync::watch;

use crate::Error;

/// Between two attempts to start or reach the prober's tor.
const TOR_RETRY: Duration = Duration::from_secs(30);

/// Characters of an address in a discovered onion service's name.
const PREFIX: usize = 16;

/// How a site probes from the outside.
#[derive(Debug, Clone)]
pub struct Probing {
    /// Onionprobe options and the endpoints named.
    pub options: Config,
    /// The Onionprobe file `options` came from, re-read at each reload.
    pub file: Option<PathBuf>,
    /// Probe the onion services found in the Onionspray trees too.
    pub discover: bool,
}

impl Probing {
    /// What `watch` probes: `--probe-config` (`file`), else the `probe:`
    /// section's file or inline options, else, with Onionspray trees to
    /// discover, Onionprobe's defaults (a launched tor); `None` when
    /// nothing is to be probed.
    pub fn for_watch(
        section: Option<onionwatch_inside::probe::ProbeSection>,
        file: Option<PathBuf>,
        trees: bool,
    ) -> Result<Option<Probing>, Error> {
        let section = section.unwrap_or_default();
        let discover = section.discover && trees;
        let file = file.or(section.config);
        let options = match (&file, section.inline) {
            (Some(path), _) => load(path)?,
            (None, Some(inline)) => {
                for w in &inline.warnings {
                    tracing::warn!("{w}");
                }
                inline.options
            }
            (None, None) if discover => Config::default(),
            (None, None) => return Ok(None),
        };
        if options.endpoints.is_empty() && !discover {
            return Err(Error::NothingToProbe);
        }
        if !options.remote_write.is_empty() {
            // A file shared with a standalone `probe` may have one.
            tracing::warn!(
                "the probe options' remote_write is not used by watch: watch pushes everything it \
                 serves, the prober's families included, to the receivers of its own top-level \
                 remote_write (or --remote-write)"
            );
        }
        Ok(Some(Probing {
            options,
            file,
            discover,
        }))
    }

    /// The configuration of the next rounds: the options (re-read from
    /// their file) and endpoints, plus the discovered `onions`.
    pub fn config(&self, onions: &[OnionService]) -> Result<Config, Error> {
        let mut c = match &self.file {
            Some(path) => load(path)?,
            None => self.options.clone(),
        };
        c.loop_ = true;
        c.rounds = 0;
        c.prometheus_exporter = false;
        if self.discover {
            let named: Vec<String> = c.endpoints.values().map(|e| e.address.clone()).collect();
            for (name, endpoint) in discovered(onions, &named) {
                // A bad address (a typo in a hand-written hostname) is
                // reported by discovery; it must not stop the others.
                if endpoint.address.parse::<OnionAddress>().is_ok() {
                    c.endpoints.entry(name).or_insert(endpoint);
                }
            }
        }
        if c.endpoints.is_empty() {
            return Err(Error::NothingToProbe);
        }
        c.targets()?;
        Ok(c)
    }
}

fn load(path: &std::path::Path) -> Result<Config, Error> {
    let (c, warnings) = Config::load(path)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    Ok(c)
}

/// The endpoints of the discovered onion services not in `named`.
fn discovered(onions: &[OnionService], named: &[String]) -> Vec<(String, Endpoint)> {
    let mut out = Vec::new();
    for o in onions {
        if named.iter().any(|a| a.ends_with(&o.address)) {
            continue;
        }
        let prefix = |a: &str| {
            let id = a.trim_end_matches(".onion");
            id.get(..PREFIX).unwrap_or(id).to_owned()
        };
        let shared = onions.iter().any(|p| {
            p.project == o.project
                && p.address != o.address
                && prefix(&p.address) == prefix(&o.address)
        });
        let id = o.address.trim_end_matches(".onion");
        let short = if shared { id.to_owned() } else { prefix(id) };
        for &port in &o.ports {
            let (protocol, name) = match port {
                80 => (Protocol::Http, format!("{}/{short}", o.project)),
                443 => (Protocol::Https, format!("{}/{short}:443", o.project)),
                p => (Protocol::Tcp, format!("{}/{short}:{p}", o.project)),
            };
            let paths = (protocol != Protocol::Tcp).then(|| {
                vec![PathSpec {
                    path: "/".into(),
                    pattern: None,
                    allowed_statuses: None,
                }]
            });
            out.push((
                name,
                Endpoint {
                    address: o.address.clone(),
                    protocol,
                    port: Some(port),
                    paths,
                    tls_verify: (protocol == Protocol::Https).then_some(false),
                    ..Endpoint::default()
                },
            ));
        }
    }
    out
}

/// When `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Probe until `stop` turns true: wait for something to probe, start or
/// reach the tor, run rounds (the configuration rebuilt whenever `onions`
/// changes, and on SIGHUP with an Onionprobe file), then stop the runner
/// and a launched tor.
pub(crate) async fn run(
    probing: Probing,
    metrics: Arc<ProbeMetrics>,
    mut onions: watch::Receiver<Vec<OnionService>>,
    mut stop: watch::Receiver<bool>,
    alerts: Option<onionwatch_alert::Engine>,
) {
    let config = loop {
        let built = probing.config(&onions.borrow_and_update());
        match built {
            Ok(c) => break c,
            // Said by discovery already (what it could not read), or nothing yet.
            Err(Error::NothingToProbe) => {}
            Err(e) => tracing::error!("probing not started: {e}"),
        }
        tokio::select! {
            changed = onions.changed() => if changed.is_err() { return },
            _ = stopped(&mut stop) => return,
        }
    };
    let tor = loop {
        tokio::select! {
            tor = Tor::from_config(&config) => match tor {
                Ok(t) => break Arc::new(t),
                Err(e) => tracing::error!("the prober's tor: {e}; trying again in {} s", TOR_RETRY.as_secs()),
            },
            _ = stopped(&mut stop) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(TOR_RETRY) => {}
            _ = stopped(&mut stop) => return,
        }
    };
    let (reload_tx, reload_rx) = tokio::sync::mpsc::unbounded_channel();
    let rebuild = {
        let (probing, onions) = (probing.clone(), onions.clone());
        move || -> Result<Config, onionwatch_probe::runner::BoxError> {
            Ok(probing.config(&onions.borrow())?)
        }
    };
    let round_metrics = metrics.clone();
    let mut runner = match Runner::new(tor, metrics, config) {
        Ok(r) => r.reload_on(reload_rx, rebuild),
        Err(e) => {
            tracing::error!("probing not started: {e}");
            return;
        }
    };
    let reread_on_hup = probing.file.is_some();
    let forward = tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hup = reread_on_hup
            .then(|| signal(SignalKind::hangup()).ok())
            .flatten();
        loop {
            let hup_recv = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = onions.changed() => if changed.is_err() { return },
                _ = hup_recv => {}
            }
            if reload_tx.send(()).is_err() {
                return;
            }
        }
    });
    let _ = runner
        .run(stopped(&mut stop), |event| {
            if let Event::RoundDone { round, results } = event {
                let ok = results.iter().filter(|r| r.reachable).count();
                let probes = results.len();
                tracing::info!(round, reachable = ok, probes, "probe round done");
                if let Some(engine) = &alerts {
                    let mut families = Vec::new();
                    onionwatch_server::Collect::collect(&*round_metrics, &mut families);
                    engine.observe(
                        onionwatch_alert::Source::Probe,
                        &families,
                        std::time::SystemTime::now(),
                    );
                }
            }
            Ok::<_, Infallible>(())
        })
        .await;
    forward.abort();
    // The tasks of a round abandoned by the stop hold the prober, and so
    // the tor, until the runtime drops them: let it, so that the shutdown
    // stops (and reaps) a launched tor instead of leaving it to be killed
    // when the process exits.
    for _ in 0..10_000 {
        if Arc::strong_count(runner.prober()) == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    runner.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(project: &str, address: &str, ports: &[u16]) -> OnionService {
        OnionService {
            project: project.into(),
            tor: "tor".into(),
            dir: "/x".into(),
            address: format!("{address}.onion"),
            ports: ports.to_vec(),
        }
    }

    // v3 addresses with valid checksums; B shares A's first 16 characters.
    const A: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid";
    const B: &str = "2gzyxa5ihm7nsggfaaaqeayeaudaocajbifqydiob4ibceqtcqkq4sid";
    const C: &str = "dqobyha4dqobyha4dqobyha4dqobyha4dqobyha4dqobyha4dqonykqd";
    // A bad checksum (a hand-edited hostname).
    const BAD: &str = "dqobyha4dqobyha4dqobyha4dqobyha4dqobyha4dqobyha4dqonykqa";

    #[test]
    fn discovered_services_are_named_by_project_and_prefix_per_port() {
        let onions = [
            service("news", C, &[80, 443, 8443]),
            service("shop", A, &[80]),
            service("shop", B, &[80]),
            service("blog", BAD, &[80]),
        ];
        let got: Vec<(String, Protocol, Option<u16>, Option<bool>)> = discovered(&onions, &[])
            .into_iter()
            .map(|(n, e)| (n, e.protocol, e.port, e.tls_verify))
            .collect();
        let s = |n: &str| n.to_owned();
        assert_eq!(
            got,
            [
                (s("news/dqobyha4dqobyha4"), Protocol::Http, Some(80), None),
                (
                    s("news/dqobyha4dqobyha4:443"),
                    Protocol::Https,
                    Some(443),
                    Some(false)
                ),
                (
                    s("news/dqobyha4dqobyha4:8443"),
                    Protocol::Tcp,
                    Some(8443),
                    None
                ),
                // Same 16-character prefix in one project: the whole address.
                (format!("shop/{A}"), Protocol::Http, Some(80), None),
                (format!("shop/{B}"), Protocol::Http, Some(80), None),
                (s("blog/dqobyha4dqobyha4"), Protocol::Http, Some(80), None),
            ]
        );
        let p = Probing {
            options: Config::default(),
            file: None,
            discover: true,
        };
        // BAD's bad checksum leaves it out, not the others.
        let c = p.config(&onions).unwrap();
        let t = c.targets().unwrap();
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "news/dqobyha4dqobyha4",
                "news/dqobyha4dqobyha4:443",
                "news/dqobyha4dqobyha4:8443",
                &format!("shop/{B}"),
                &format!("shop/{A}"),
            ]
        );
        assert!(c.looping() && !c.prometheus_exporter);
        assert_eq!(t[0].paths[0].path, "/");
        assert_eq!(t[0].paths[0].allowed_statuses, None);
        assert!(
            t[2].paths.is_empty(),
            "tcp: the stream opening is the probe"
        );
        assert!(!t[1].tls_verify && t[0].tls_verify);
    }

    #[test]
    fn an_address_the_options_name_is_not_probed_twice_and_discover_false_adds_none() {
        let yaml = format!("endpoints:\n  mine:\n    address: www.{A}.onion\n");
        let (options, _) = Config::from_yaml(&yaml, "t").unwrap();
        let onions = [service("shop", A, &[80, 443]), service("news", C, &[80])];
        let mut p = Probing {
            options,
            file: None,
            discover: true,
        };
        let names: Vec<String> = p.config(&onions).unwrap().endpoints.into_keys().collect();
        assert_eq!(names, ["mine", "news/dqobyha4dqobyha4"]);
        p.discover = false;
        let names: Vec<String> = p.config(&onions).unwrap().endpoints.into_keys().collect();
        assert_eq!(names, ["mine"]);
    }

    #[test]
    fn watch_probes_what_it_is_given() {
        use onionwatch_inside::targets::Config as WatchConfig;
        let section = |yaml: &str| WatchConfig::from_yaml(yaml, "w.yaml").unwrap().probe;
        // Nothing configured, no tree: no probing.
        assert!(Probing::for_watch(None, None, false).unwrap().is_none());
        // A tree: its services, through a launched tor.
        let p = Probing::for_watch(None, None, true).unwrap().unwrap();
        assert!(p.discover && p.options.launch_tor && p.options.endpoints.is_empty());
        assert!(matches!(p.config(&[]), Err(Error::NothingToProbe)));
        // discover: false with a tree and nothing named.
        assert!(
            Probing::for_watch(section("probe: {discover: false}\n"), None, true)
                .unwrap()
                .is_none()
        );
        // Inline options.
        let yaml =
            format!("probe:\n  launch_tor: false\n  endpoints: {{x: {{address: {A}.onion}}}}\n");
        let p = Probing::for_watch(section(&yaml), None, false)
            .unwrap()
            .unwrap();
        assert!(!p.options.launch_tor && !p.discover);
        // A file, named by the section or the flag (which wins).
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("probe.yaml");
        std::fs::write(
            &file,
            format!("socks_port: 9050\nendpoints: {{f: {{address: {A}.onion}}}}\n"),
        )
        .unwrap();
        let yaml = format!("probe: {{config: {}, discover: false}}\n", file.display());
        let p = Probing::for_watch(section(&yaml), None, true)
            .unwrap()
            .unwrap();
        assert_eq!((p.options.socks_port, p.discover), (9050, false));
        assert!(p.options.endpoints.contains_key("f"));
        let p = Probing::for_watch(
            section("probe: {discover: true}\n"),
            Some(file.clone()),
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.file.as_ref(), Some(&file));
        // Inline options without endpoints and nothing to discover.
        let err =
            Probing::for_watch(section("probe: {launch_tor: false}\n"), None, false).unwrap_err();
        assert!(err.to_string().contains("nothing to probe"), "{err}");
        // A missing file is named.
        let err = Probing::for_watch(None, Some(dir.path().join("nope.yaml")), false).unwrap_err();
        assert!(err.to_string().contains("nope.yaml"), "{err}");
    }
}
