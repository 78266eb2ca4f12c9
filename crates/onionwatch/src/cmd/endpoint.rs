//! Options of the HTTP endpoint shared by the long-running commands.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use onionwatch_server::{EndpointConfig, ServeError, TlsConfig};

/// TLS and authentication of the endpoint (required off loopback).
#[derive(Debug, Clone, Args)]
pub struct EndpointArgs {
    /// Serve HTTPS with this PEM certificate chain (re-read on SIGHUP).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this PEM CA (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// YAML file of accepted credentials: `bearer_token_sha256: [HEX…]` and/or
    /// `basic: [{username: U, password_bcrypt: '$2…'}]` (re-read on SIGHUP;
    /// a broken file keeps the old credentials).
    #[arg(long, value_name = "FILE")]
    pub auth_file: Option<PathBuf>,
    /// Serve on a non-loopback address without TLS and authentication
    /// anyway. Anyone reaching it reads your tor metrics: logged loudly.
    #[arg(long)]
    pub i_understand_the_risk: bool,
    /// Also answer requests for this host name (repeatable), e.g. a reverse
    /// proxy's. Against DNS rebinding the endpoint answers only `localhost`,
    /// IP addresses and `.onion` names otherwise (421 for other names); off
    /// loopback any name is answered unless this is given.
    #[arg(long = "allowed-host", value_name = "NAME")]
    pub allowed_hosts: Vec<String>,
    /// TLS, client certificates, basic-auth users and response headers from
    /// a Prometheus exporter-toolkit web configuration file (the
    /// `--web.config.file` of node_exporter, used unchanged; settings
    /// onionwatch cannot honour are refused by name). Re-read on SIGHUP.
    #[arg(
        long = "web.config.file",
        value_name = "FILE",
        conflicts_with_all = ["tls_cert", "tls_key", "tls_client_ca", "auth_file"]
    )]
    pub web_config_file: Option<PathBuf>,
    /// Most connections the endpoint keeps open; one more closes the oldest
    /// without a request in progress (default: a quarter of the open-file
    /// limit, 16 to 1024).
    #[arg(long, value_name = "N")]
    pub endpoint_max_connections: Option<usize>,
    /// Seconds a client of the endpoint has to send a request head (also how
    /// long an idle keep-alive connection stays); default 10.
    #[arg(long, value_name = "SECS")]
    pub endpoint_header_timeout: Option<f64>,
}

impl EndpointArgs {
    /// The endpoint configuration for `listen`, checked.
    pub fn config(&self, listen: SocketAddr) -> Result<EndpointConfig, ServeError> {
        let (hosts, risk) = (self.allowed_hosts.clone(), self.i_understand_the_risk);
        let mut config = if let Some(web) = &self.web_config_file {
            EndpointConfig::from_web_config(listen, web, hosts, risk)?
        } else {
            let tls = self.tls_cert.clone().zip(self.tls_key.clone());
            let tls = tls.map(|(cert, key)| TlsConfig {
                cert,
                key,
                client_ca: self.tls_client_ca.clone(),
            });
            EndpointConfig::new(listen, tls, self.auth_file.as_deref(), hosts, risk)?
        };
        if let Some(n) = self.endpoint_max_connections {
            config.connections.max_connections = n;
        }
        if let Some(secs) = self.endpoint_header_timeout {
            config.connections.header_timeout_secs = secs;
        }
        config.connections.validate()?;
        Ok(config)
    }
}
