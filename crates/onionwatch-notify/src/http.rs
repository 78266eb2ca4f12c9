//! A small HTTP/1.1 POST client on hyper and rustls (the stack the rest
//! of the workspace uses), for the webhook, Alertmanager and ntfy
//! notifiers.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full, Limited};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::config::{redact_url, NotifierConfig};

/// Where and how to POST: checked once, at start.
pub(crate) struct HttpTarget {
    /// `scheme://host[:port]`, for logs.
    pub redacted: String,
    host: String,
    port: u16,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Path and query of the request line.
    path: String,
    /// `Host` header value.
    authority: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static P: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The public web roots plus the certificates of `ca_file`.
pub(crate) fn tls_config(
    ca_file: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let data = std::fs::read(path)
            .map_err(|e| format!("ca_file: cannot read {}: {e}", path.display()))?;
        let mut n = 0;
        for cert in CertificateDer::pem_slice_iter(&data) {
            let cert =
                cert.map_err(|e| format!("ca_file: {} is not valid PEM: {e}", path.display()))?;
            roots
                .add(cert)
                .map_err(|e| format!("ca_file: {}: bad certificate: {e}", path.display()))?;
            n += 1;
        }
        if n == 0 {
            return Err(format!(
                "ca_file: {} holds no PEM certificate",
                path.display()
            ));
        }
    }
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

impl HttpTarget {
    /// Check `url` and the auth options of `c`; `suffix` is appended to
    /// the URL's path (`/api/v2/alerts`).
    pub(crate) fn new(c: &NotifierConfig, url: &str, suffix: &str) -> Result<HttpTarget, String> {
        let redacted = redact_url(url);
        let uri: http::Uri = url
            .parse()
            .map_err(|_| format!("url: {redacted} is not a valid URL"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("url: {redacted}: the scheme must be http or https")),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| format!("url: {redacted} has no host"))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("url: {redacted} has no host"));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let host_header = match authority.port() {
            Some(p) => format!("{}:{p}", authority.host()),
            None => authority.host().to_owned(),
        };
        let mut headers = Vec::new();
        // user:password@ in the URL is basic authentication, as curl does.
        if let Some((userinfo, _)) = authority.as_str().rsplit_once('@') {
            headers.push(basic(userinfo));
        }
        if let Some(b) = &c.basic_auth {
            let pw = b.password.read("basic_auth.password")?;
            headers.push(basic(&format!("{}:{pw}", b.username)));
        }
        if let Some(t) = &c.bearer_token {
            let t = t.read("bearer_token")?;
            let v = HeaderValue::try_from(format!("Bearer {t}"))
                .map_err(|_| "bearer_token: not a valid header value".to_owned())?;
            headers.push((http::header::AUTHORIZATION, sensitive(v)));
        }
        for (k, v) in &c.headers {
            let name = HeaderName::try_from(k.as_str())
                .map_err(|_| format!("headers: {k:?} is not a header name"))?;
            let value = HeaderValue::try_from(v.as_str())
                .map_err(|_| format!("headers: the value of {k} is not a valid header value"))?;
            headers.push((name, sensitive(value)));
        }
        let path = uri.path_and_query().map(|p| p.path()).unwrap_or("/");
        let path = format!(
            "{}{suffix}{}",
            if suffix.is_empty() {
                path
            } else {
                path.trim_end_matches('/')
            },
            uri.query().map(|q| format!("?{q}")).unwrap_or_default()
        );
        let tls = if tls {
            Some(Arc::new(tls_config(c.ca_file.as_deref())?))
        } else {
            None
        };
        Ok(HttpTarget {
            redacted,
            host: host.to_owned(),
            port,
            tls,
            path,
            authority: host_header,
            headers,
            timeout: c.timeout,
        })
    }

    /// POST `body`; `Ok` on a 2xx answer. Errors never hold the URL.
    pub(crate) async fn post(
        &self,
        content_type: &str,
        extra: &[(HeaderName, HeaderValue)],
        body: Vec<u8>,
    ) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, self.post_inner(content_type, extra, body)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {:?} (timeout)", self.timeout)),
        }
    }

    async fn post_inner(
        &self,
        content_type: &str,
        extra: &[(HeaderName, HeaderValue)],
        body: Vec<u8>,
    ) -> Result<(), String> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let response = match &self.tls {
            Some(config) => {
                let name = ServerName::try_from(self.host.clone())
                    .map_err(|e| format!("not a TLS server name: {e}"))?;
                let s = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS handshake failed: {e}"))?;
                self.exchange(s, content_type, extra, body).await?
            }
            None => self.exchange(tcp, content_type, extra, body).await?,
        };
        let (response, _conn) = response;
        let status = response.status();
        // Only a little of the answer, for the error message: the
        // receiver may be anything.
        let text = Limited::new(response.into_body(), 512)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            let text: String = String::from_utf8_lossy(&text)
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            Err(format!("HTTP {status}: {text}"))
        }
    }

    async fn exchange<S>(
        &self,
        io: S,
        content_type: &str,
        extra: &[(HeaderName, HeaderValue)],
        body: Vec<u8>,
    ) -> Result<(http::Response<hyper::body::Incoming>, AbortOnDrop), String>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                .await
                .map_err(|e| format!("HTTP: {e}"))?;
        let conn = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let mut req = http::Request::post(self.path.as_str())
            .header(http::header::HOST, self.authority.as_str())
            .header(
                http::header::USER_AGENT,
                concat!("onionwatch/", env!("CARGO_PKG_VERSION")),
            )
            .header(http::header::CONTENT_TYPE, content_type)
            .header(http::header::CONNECTION, "close")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        for (k, v) in self.headers.iter().chain(extra) {
            req.headers_mut().append(k.clone(), v.clone());
        }
        let r = sender
            .send_request(req)
            .await
            .map_err(|e| format!("HTTP: {e}"))?;
        Ok((r, conn))
    }
}

/// The connection task ends with the request, whatever happens to it.
pub(crate) struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn sensitive(mut v: HeaderValue) -> HeaderValue {
    v.set_sensitive(true);
    v
}

fn basic(userinfo: &str) -> (HeaderName, HeaderValue) {
    let v = format!(
        "Basic {}",
        data_encoding::BASE64.encode(userinfo.as_bytes())
    );
    (
        http::header::AUTHORIZATION,
        sensitive(HeaderValue::try_from(v).expect("base64 is a valid header value")),
    )
}
