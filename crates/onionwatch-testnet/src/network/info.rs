//! What a caller needs to use the network.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Serialize;

/// The client tor's endpoints.
#[derive(Debug, Clone, Serialize)]
pub struct ClientInfo {
    /// SOCKS5 port (`ExtendedErrors`, isolation by SOCKS auth).
    pub socks: SocketAddr,
    /// Control port (TCP).
    pub control: SocketAddr,
    /// Its cookie file (cookie or safecookie authentication).
    pub cookie: PathBuf,
}

/// One onion service and the endpoints of the tor hosting it.
#[derive(Debug, Clone, Serialize)]
pub struct OnionInfo {
    /// `<56 chars>.onion`.
    pub address: String,
    /// The hosting tor's control port: `127.0.0.1:P` or `unix:/path`.
    pub control: String,
    /// The hosting tor's cookie file.
    pub cookie: PathBuf,
    /// The hosting tor's MetricsPort, if enabled.
    pub metrics: Option<SocketAddr>,
    /// Where tor sends the onion service's connections.
    pub backend: SocketAddr,
    /// Nickname of the hosting tor (onion services sharing a tor share it).
    pub tor: String,
    /// Whether tor sends a PROXY v1 line with the circuit id first.
    pub export_circuit_id: bool,
    /// The built-in backend's access log (nginx `combined` format; the
    /// client address is the circuit-id address when `export_circuit_id`).
    pub access_log: Option<PathBuf>,
}

/// What a caller needs to use the network; `--format json` prints this.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkInfo {
    /// The client tor.
    pub client: ClientInfo,
    /// Every onion service, in configuration order.
    pub onions: Vec<OnionInfo>,
    /// The directory holding every node's data and logs.
    pub dir: PathBuf,
}

/// The endpoints as lines for people (`onionwatch testnet up`'s text
/// output), ending with a curl command through the first onion service.
impl std::fmt::Display for NetworkInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "private Tor network ready (data in {})",
            self.dir.display()
        )?;
        writeln!(f, "client SOCKS:    {}", self.client.socks)?;
        let (control, cookie) = (self.client.control, self.client.cookie.display());
        writeln!(f, "client control:  {control} (cookie {cookie})")?;
        for o in &self.onions {
            writeln!(f, "onion service:   {}", o.address)?;
            let cookie = o.cookie.display();
            writeln!(
                f,
                "  tor {}: control {} (cookie {cookie})",
                o.tor, o.control
            )?;
            if let Some(m) = o.metrics {
                writeln!(f, "  MetricsPort:   http://{m}/metrics")?;
            }
            writeln!(f, "  backend:       {}", o.backend)?;
        }
        if let Some(first) = self.onions.first() {
            let socks = self.client.socks;
            writeln!(
                f,
                "try: curl --socks5-hostname {socks} http://{}/",
                first.address
            )?;
        }
        Ok(())
    }
}
