//! Options of the HTTP endpoint shared by the long-running commands.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use onionwatch_server::{AuthConfig, EndpointConfig, TlsConfig};

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
}

impl EndpointArgs {
    /// The endpoint configuration for `listen`, checked.
    pub fn config(&self, listen: SocketAddr) -> Result<EndpointConfig> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsConfig {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
            }),
            _ => None,
        };
        let mut config = EndpointConfig {
            listen,
            tls,
            auth: AuthConfig::default(),
            auth_file: self.auth_file.clone(),
            i_understand_the_risk: self.i_understand_the_risk,
            allowed_hosts: self.allowed_hosts.clone(),
        };
        config.load_auth_file()?;
        config.check()?;
        Ok(config)
    }
}
