//! What network to start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How a tor's control port listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ControlKind {
    /// `ControlPort 127.0.0.1:PORT`.
    #[default]
    Tcp,
    /// `ControlPort unix:DIR/control.sock`, as Onionspray does.
    Unix,
}

/// What answers behind an onion service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// A small built-in HTTP server (see [`crate::Backend`]).
    #[default]
    BuiltIn,
    /// An address of the caller's (e.g. an nginx started by a test).
    Address(SocketAddr),
}

/// How the built-in backend answers (to play a broken or slow site).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuiltInResponse {
    /// HTTP status of every answer.
    pub status: u16,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Default for BuiltInResponse {
    fn default() -> Self {
        Self {
            status: 200,
            delay: Duration::ZERO,
        }
    }
}

/// One onion service (v3), on virtual port 80.
#[derive(Debug, Clone, Default)]
pub struct ServiceConfig {
    /// `HiddenServiceExportCircuitID haproxy`: the backend gets a PROXY v1
    /// line carrying the circuit id before each connection's data.
    pub export_circuit_id: bool,
    /// `HiddenServicePoWDefensesEnabled 1`.
    pub pow_defenses: bool,
    /// `HiddenServiceEnableIntroDoSDefense 1` with this (rate, burst) per second.
    pub intro_dos: Option<(u32, u32)>,
    /// The backend.
    pub backend: BackendKind,
    /// How the built-in backend answers (ignored for other backends).
    pub response: BuiltInResponse,
}

/// One tor process hosting onion services.
#[derive(Debug, Clone)]
pub struct ServiceTorConfig {
    /// Its onion services (one `HiddenServiceDir` each); at least one.
    pub services: Vec<ServiceConfig>,
    /// Serve `MetricsPort 127.0.0.1:PORT` with [`ServiceTorConfig::metrics_policy`].
    pub metrics_port: bool,
    /// The `MetricsPortPolicy` value.
    pub metrics_policy: String,
    /// How its control port listens (cookie authentication in every case).
    pub control: ControlKind,
}

impl Default for ServiceTorConfig {
    fn default() -> Self {
        Self {
            services: vec![ServiceConfig::default()],
            metrics_port: true,
            metrics_policy: "accept 127.0.0.1".into(),
            control: ControlKind::Tcp,
        }
    }
}

/// Called with a node's nickname (`auth0`, `relay1`, `hs0`, `client`) and
/// the ports picked for it, before its tor starts: tests use it to take a
/// port and provoke a clash.
#[derive(Clone)]
pub struct PortHook(Arc<PortHookFn>);

type PortHookFn = dyn Fn(&str, &[u16]) + Send + Sync;

impl PortHook {
    /// Wrap `f(nickname, ports)`.
    pub fn new(f: impl Fn(&str, &[u16]) + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    pub(crate) fn call(&self, nickname: &str, ports: &[u16]) {
        (self.0)(nickname, ports)
    }
}

impl std::fmt::Debug for PortHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PortHook")
    }
}

/// The whole network: 3 authorities (which also relay), `relays` more relays,
/// the onion-service tors and one client.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// The tors hosting onion services.
    pub service_tors: Vec<ServiceTorConfig>,
    /// Relays besides the 3 authorities; 2 keep tor's retry warnings low.
    pub relays: usize,
    /// Where to put every node's directory; a temporary directory (removed
    /// at teardown) when `None`.
    pub dir: Option<PathBuf>,
    /// The tor binary; `tor-gencert` is looked for next to it, then on PATH.
    pub tor: PathBuf,
    /// Also allow `HashedControlPassword` with this password on the client.
    pub client_password: Option<String>,
    /// Longest wait for the whole network to become reachable.
    pub ready_timeout: Duration,
    /// See [`PortHook`]; `None` outside tests.
    pub port_hook: Option<PortHook>,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            service_tors: vec![ServiceTorConfig::default()],
            relays: 2,
            dir: None,
            tor: PathBuf::from("tor"),
            client_password: None,
            ready_timeout: Duration::from_secs(240),
            port_hook: None,
        }
    }
}

impl NetworkConfig {
    /// `onions` default onion services, `per_tor` to a tor process.
    pub fn with_onions(onions: usize, per_tor: usize) -> Self {
        let per_tor = per_tor.max(1);
        let mut service_tors = Vec::new();
        let mut left = onions;
        while left > 0 {
            let here = left.min(per_tor);
            service_tors.push(ServiceTorConfig {
                services: vec![ServiceConfig::default(); here],
                ..ServiceTorConfig::default()
            });
            left -= here;
        }
        Self {
            service_tors,
            ..Self::default()
        }
    }

    /// The network of `onionwatch demo`: two onion-service tors, as two
    /// projects would have, `hs0` with a healthy and a slow (2.5 s) onion
    /// service and `hs1` with one answering 500, each exporting circuit ids
    /// as Onionspray does (so the access logs count unique circuits).
    pub fn demo(tor: PathBuf) -> Self {
        let svc = |status, delay_ms| ServiceConfig {
            export_circuit_id: true,
            response: BuiltInResponse {
                status,
                delay: Duration::from_millis(delay_ms),
            },
            ..ServiceConfig::default()
        };
        let tor_of = |services| ServiceTorConfig {
            services,
            ..ServiceTorConfig::default()
        };
        Self {
            service_tors: vec![
                tor_of(vec![svc(200, 0), svc(200, 2500)]),
                tor_of(vec![svc(500, 0)]),
            ],
            tor,
            ..Self::default()
        }
    }

    /// Check the configuration once, before anything starts.
    pub fn validate(&self) -> Result<(), String> {
        if self.service_tors.iter().any(|t| t.services.is_empty()) {
            return Err("every onion-service tor needs at least one onion service".into());
        }
        if self.relays + 3 < 4 {
            return Err("onion circuits need at least 4 relays: use relays >= 1".into());
        }
        if self.ready_timeout.is_zero() {
            return Err("ready_timeout must be positive".into());
        }
        Ok(())
    }

    /// Number of onion services.
    pub fn onion_count(&self) -> usize {
        self.service_tors.iter().map(|t| t.services.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_onions_per_tor() {
        let c = NetworkConfig::with_onions(5, 2);
        let sizes: Vec<usize> = c.service_tors.iter().map(|t| t.services.len()).collect();
        assert_eq!(sizes, vec![2, 2, 1]);
        assert_eq!(c.onion_count(), 5);
        assert!(c.validate().is_ok());
        assert_eq!(NetworkConfig::with_onions(3, 0).service_tors.len(), 3);
    }

    #[test]
    fn rejects_bad_configs() {
        let c = NetworkConfig {
            relays: 0,
            ..NetworkConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("relays"));
        let mut c = NetworkConfig::default();
        c.service_tors[0].services.clear();
        assert!(c.validate().is_err());
    }
}
