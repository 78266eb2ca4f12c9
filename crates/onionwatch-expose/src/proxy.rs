//! The Prometheus side: plain HTTP in, through tor to the onion service out.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::TokioIo;
use onionwatch_tor::control::{ControlClient, ControlError};
use onionwatch_tor::socks::{self, Isolation, SocksReply};

use crate::keys::ClientKey;

/// Forwards scrapes to one onion service.
#[derive(Debug, Clone)]
pub struct ScrapeProxy {
    socks: SocketAddr,
    host: String,
    port: u16,
}

/// Why the key could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeProxyError {
    /// `ONION_CLIENT_AUTH_ADD` failed.
    #[error("tor refused the client authorization key for {address}: {source}")]
    ClientAuth {
        /// The onion service.
        address: String,
        /// tor's answer.
        source: ControlError,
    },
}

impl ScrapeProxy {
    /// Register `key` for `address` on the local tor (`control`), then
    /// forward to `address:port` through `socks`.
    pub async fn new(
        control: &ControlClient,
        socks: SocketAddr,
        address: &str,
        port: u16,
        key: Option<&ClientKey>,
    ) -> Result<Self, ScrapeProxyError> {
        let address = address.trim_end_matches(".onion").to_ascii_lowercase();
        if let Some(key) = key {
            control
                .onion_client_auth_add(&address, &key.private_base64(), Some("onionwatch"), false)
                .await
                .map_err(|source| ScrapeProxyError::ClientAuth {
                    address: address.clone(),
                    source,
                })?;
        }
        Ok(Self {
            socks,
            host: format!("{address}.onion"),
            port,
        })
    }

    /// A router forwarding every GET/HEAD to the onion service.
    pub fn router(self) -> Router {
        Router::new().fallback(forward).with_state(Arc::new(self))
    }
}

fn bad_gateway(msg: String) -> Response {
    tracing::warn!("{msg}");
    (StatusCode::BAD_GATEWAY, format!("{msg}\n")).into_response()
}

async fn forward(State(p): State<Arc<ScrapeProxy>>, mut req: Request) -> Response {
    // A scrape gateway has no business relaying writes.
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            "only GET and HEAD are forwarded\n",
        )
            .into_response();
    }
    // One circuit for all scrapes: they are ours, there is nothing to isolate.
    let iso = Isolation::new("onionwatch-scrape-gateway");
    let stream = match socks::connect(p.socks, &p.host, p.port, Some(&iso)).await {
        Ok(s) => s,
        Err(e) => {
            let hint = match e.reply() {
                Some(SocksReply::OnionMissingClientAuth)
                | Some(SocksReply::OnionWrongClientAuth) => {
                    " (client authorization: check the key given to scrape-gateway)"
                }
                Some(SocksReply::OnionDescriptorNotFound) => {
                    " (is expose-onion running, and has its descriptor been published yet?)"
                }
                _ => "",
            };
            return bad_gateway(format!("cannot reach {}: {e}{hint}", p.host));
        }
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(x) => x,
        Err(e) => return bad_gateway(format!("HTTP handshake with {} failed: {e}", p.host)),
    };
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection to the onion service ended");
        }
    });
    if let Ok(host) = HeaderValue::from_str(&p.host) {
        req.headers_mut().insert(header::HOST, host);
    }
    match sender.send_request(req).await {
        Ok(resp) => resp.map(Body::new),
        Err(e) => bad_gateway(format!("request to {} failed: {e}", p.host)),
    }
}
