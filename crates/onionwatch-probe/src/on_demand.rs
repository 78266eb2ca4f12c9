//! Probes scheduled by Prometheus: the prober's side of `GET /probe`
//! (`onionwatch_server::on_demand_router` bounds it in time and number).
//!
//! - `?target=NAME` probes the endpoint of the configuration called NAME
//!   (any endpoint, whatever the prober's `shard`);
//! - `?target=ADDRESS.onion[&protocol=http|https|tcp][&port=P][&path=/…]`
//!   probes an onion service that is not configured, like `-e`: no
//!   pattern, any HTTP status counts as reachable; the address, port and
//!   path are checked as the configuration's are (a bad one is a 400).
//!
//! Each request runs its own probe through the prober's tor with the
//! configuration's settings, into metrics of its own: the answer holds only
//! that probe's families (with the prober's constant labels), plus
//! `onionwatch_probe_duration_seconds`. When the scrape timeout runs out
//! first, the answer says what was known then, with
//! `onionwatch_probe_success` 0.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use onionwatch_metrics::{Collect, ConstLabels, Family};
use onionwatch_server::{OnDemand, OnDemandError, OnDemandFuture};

use crate::config::{Config, Endpoint, PathSpec, Protocol, Target};
use crate::metrics::{family, names, ProbeMetrics};
use crate::probe::{Prober, Settings};
use crate::tor::Tor;

/// Families of the prober as a whole, not of one probe: left out of the
/// answers.
const PROCESS_FAMILIES: &[&str] = &[
    names::VERSION,
    names::STATE,
    names::WAIT_SECONDS,
    names::ROUND_DURATION_SECONDS,
    names::ROUNDS,
    names::TOR_RECONNECTS,
];

/// The family every answer ends with.
pub const DURATION: &str = "onionwatch_probe_duration_seconds";

/// Answers `/probe` once the prober's tor is up ([`OnDemandProbes::update`],
/// done by the runner); before, requests get 503.
#[derive(Default)]
pub struct OnDemandProbes {
    current: RwLock<Option<(Arc<Tor>, Arc<Config>)>>,
    labels: ConstLabels,
}

impl std::fmt::Debug for OnDemandProbes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnDemandProbes").finish_non_exhaustive()
    }
}

impl OnDemandProbes {
    /// Answers carrying `labels` (the exporter's constant labels).
    pub fn new(labels: ConstLabels) -> Self {
        Self {
            current: RwLock::new(None),
            labels,
        }
    }

    /// Probe through `tor` with `config`'s endpoints and settings from now on.
    pub fn update(&self, tor: Arc<Tor>, config: Config) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some((tor, Arc::new(config)));
    }

    fn current(&self) -> Option<(Arc<Tor>, Arc<Config>)> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

fn bad(message: impl Into<String>) -> OnDemandError {
    OnDemandError::BadRequest(message.into())
}

/// The target a request names: a configured endpoint, or an onion service
/// given by address (validated as the configuration is).
pub fn resolve(config: &Config, params: &[(String, String)]) -> Result<Target, OnDemandError> {
    let mut target = None;
    let (mut protocol, mut port, mut path) = (None, None, None);
    for (k, v) in params {
        let slot = match k.as_str() {
            "target" => &mut target,
            "protocol" => &mut protocol,
            "port" => &mut port,
            "path" => &mut path,
            other => {
                return Err(bad(format!(
                    "unknown parameter {:?}: use target, and with an ADDRESS.onion target \
                     protocol, port and path",
                    other.chars().take(64).collect::<String>()
                )))
            }
        };
        if slot.replace(v.as_str()).is_some() {
            return Err(bad(format!("parameter {k} is given twice")));
        }
    }
    let Some(target) = target.filter(|t| !t.is_empty()) else {
        return Err(bad(
            "target is required: ?target=NAME (an endpoint of the configuration) or \
             ?target=ADDRESS.onion&protocol=http&path=/",
        ));
    };
    let shown: String = target.chars().take(128).collect();
    let ad_hoc = protocol.is_some() || port.is_some() || path.is_some();
    if !ad_hoc {
        let targets = config
            .targets()
            .map_err(|e| OnDemandError::Unavailable(e.to_string()))?;
        if let Some(t) = targets.into_iter().find(|t| t.name == target) {
            return Ok(t);
        }
    }
    if !target.to_ascii_lowercase().ends_with(".onion") {
        return Err(bad(if ad_hoc {
            format!("target {shown:?} is not an ADDRESS.onion (protocol, port and path apply only to one)")
        } else {
            format!("unknown target {shown:?}: not an endpoint of the configuration and not an ADDRESS.onion")
        }));
    }
    let protocol = match protocol.map(str::to_ascii_lowercase).as_deref() {
        None | Some("http") => Protocol::Http,
        Some("https") => Protocol::Https,
        Some("tcp") => Protocol::Tcp,
        Some(_) => return Err(bad("protocol must be http, https or tcp")),
    };
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| bad("port must be a number from 1 to 65535"))?,
        ),
    };
    if protocol == Protocol::Tcp && path.is_some() {
        return Err(bad("a tcp target has no path"));
    }
    let endpoint = Endpoint {
        address: target.to_owned(),
        protocol,
        port,
        paths: (protocol != Protocol::Tcp).then(|| {
            vec![PathSpec {
                path: path.unwrap_or("/").to_owned(),
                pattern: None,
                allowed_statuses: None,
            }]
        }),
        ..Endpoint::default()
    };
    let one = Config {
        endpoints: [(target.to_owned(), endpoint)].into(),
        shard: None,
        ..config.clone()
    };
    let mut targets = one.targets().map_err(|e| bad(e.to_string()))?;
    targets.pop().ok_or_else(|| bad("nothing to probe"))
}

impl OnDemand for OnDemandProbes {
    fn probe(&self, params: Vec<(String, String)>, timeout: Duration) -> OnDemandFuture {
        let current = self.current();
        let labels = self.labels.clone();
        Box::pin(async move {
            let (tor, config) = current.ok_or_else(|| {
                OnDemandError::Unavailable(
                    "the prober's tor is not ready yet: try again in a moment".into(),
                )
            })?;
            let target = resolve(&config, &params)?;
            let metrics = Arc::new(ProbeMetrics::new());
            let prober = Prober::new(tor, metrics.clone(), Settings::from_config(&config));
            let started = Instant::now();
            let finished = tokio::time::timeout(timeout, prober.probe(&target, 0))
                .await
                .is_ok();
            let elapsed = started.elapsed().as_secs_f64();
            if !finished {
                tracing::info!(
                    name = target.name.as_str(),
                    "/probe: the scrape timeout ran out before the probe finished"
                );
                metrics.set(
                    family::PROBE_SUCCESS,
                    [target.name.as_str(), target.address.host()],
                    0.0,
                );
            }
            let mut families = Vec::new();
            metrics.collect(&mut families);
            families.retain(|f| {
                !f.samples.is_empty()
                    && !PROCESS_FAMILIES.contains(&f.name.as_str())
                    && !f.name.ends_with("_created")
            });
            let mut duration = Family::gauge(
                DURATION,
                "Seconds the probe of this /probe request took (up to the scrape timeout)",
            );
            duration.push(&[], elapsed);
            families.push(duration);
            labels.apply(&mut families);
            Ok(families)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion";

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    #[test]
    fn targets_are_names_or_checked_onion_addresses() {
        let yaml = format!(
            "endpoints:\n  shop: {{address: {A}, paths: [{{path: /x, pattern: ok}}]}}\n  \
             far: {{address: {A}}}\nshard: 1/2\n"
        );
        let (c, _) = Config::from_yaml(&yaml, "t").unwrap();
        let t = resolve(&c, &p(&[("target", "shop")])).unwrap();
        assert_eq!((t.name.as_str(), t.paths[0].path.as_str()), ("shop", "/x"));
        assert!(t.paths[0].pattern.is_some());
        // Any endpoint of the configuration, whatever the shard.
        for name in ["shop", "far"] {
            assert!(resolve(&c, &p(&[("target", name)])).is_ok(), "{name}");
        }
        let t = resolve(
            &c,
            &p(&[("target", A), ("path", "/status"), ("protocol", "HTTPS")]),
        )
        .unwrap();
        assert_eq!(t.name, A);
        assert_eq!((t.protocol, t.port), (Protocol::Https, 443));
        assert_eq!(t.paths[0].path, "/status");
        assert_eq!(t.paths[0].allowed_statuses, None);
        let t = resolve(
            &c,
            &p(&[("target", A), ("protocol", "tcp"), ("port", "22")]),
        )
        .unwrap();
        assert!(t.paths.is_empty() && t.port == 22);

        let long = "x".repeat(10_000);
        let hostile: Vec<(Vec<(String, String)>, &str)> = vec![
            (p(&[]), "target is required"),
            (p(&[("target", "")]), "target is required"),
            (p(&[("target", "nope")]), "unknown target \"nope\""),
            (p(&[("target", &long)]), "unknown target"),
            (
                p(&[("target", "shop"), ("path", "/")]),
                "not an ADDRESS.onion",
            ),
            (p(&[("target", "abc.onion")]), "address"),
            (p(&[("target", "evil.example/.onion")]), "address"),
            (p(&[("target", &format!("user@{A}"))]), "address"),
            (p(&[("target", A), ("path", "no-slash")]), "path"),
            (p(&[("target", A), ("path", "/a b")]), "path"),
            (p(&[("target", A), ("path", "/\r\nHost: x")]), "path"),
            (p(&[("target", A), ("protocol", "gopher")]), "protocol"),
            (p(&[("target", A), ("port", "0")]), "port"),
            (p(&[("target", A), ("port", "99999")]), "port"),
            (
                p(&[("target", A), ("protocol", "tcp"), ("path", "/")]),
                "tcp",
            ),
            (p(&[("target", A), ("target", A)]), "twice"),
            (p(&[("target", A), ("module", "x")]), "unknown parameter"),
        ];
        for (params, needle) in hostile {
            match resolve(&c, &params) {
                Err(OnDemandError::BadRequest(m)) => {
                    assert!(m.contains(needle), "{params:?}: {m}");
                    assert!(m.len() < 600, "{params:?}: the message stays short");
                }
                other => panic!("{params:?}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn before_tor_is_up_requests_get_unavailable() {
        let od = OnDemandProbes::new(ConstLabels::new());
        let err = od
            .probe(p(&[("target", A)]), Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(matches!(err, OnDemandError::Unavailable(_)), "{err:?}");
    }
}
