//! One receiver's HTTP/1.1 client: a kept-alive connection (TCP or TLS with
//! rustls), remade after any error.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::{ConfigError, RemoteWriteConfig, Url};

/// Most bytes of an error response kept for the log.
const ERROR_BODY_BYTES: usize = 1024;

/// How a request ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// 2xx.
    Sent,
    /// 5xx, 429 or a network error: try again later, not before the
    /// receiver's `Retry-After` if it sent one.
    Retry(String, Option<Duration>),
    /// Any other status: the receiver will never take this batch.
    Rejected(String),
}

pub(crate) struct Client {
    url: Url,
    headers: HeaderMap,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    timeout: Duration,
    conn: Option<SendRequest<Full<Bytes>>>,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static P: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

impl Client {
    /// Build the client of `config` (number `index`): secrets and
    /// certificates are read here, once.
    pub(crate) fn new(config: &RemoteWriteConfig, index: usize) -> Result<Client, ConfigError> {
        let url = config.check(index)?;
        let invalid = |key, message: String| ConfigError::Invalid {
            index,
            key,
            message,
        };
        let mut headers = HeaderMap::new();
        let static_header = |v: &'static str| HeaderValue::from_static(v);
        headers.insert(http::header::CONTENT_ENCODING, static_header("snappy"));
        headers.insert(
            http::header::CONTENT_TYPE,
            static_header("application/x-protobuf"),
        );
        headers.insert(
            HeaderName::from_static("x-prometheus-remote-write-version"),
            static_header("0.1.0"),
        );
        headers.insert(
            http::header::USER_AGENT,
            static_header(concat!("onionwatch/", env!("CARGO_PKG_VERSION"))),
        );
        let host = HeaderValue::try_from(url.authority.as_str())
            .map_err(|_| invalid("url", "invalid host".into()))?;
        headers.insert(http::header::HOST, host);
        if let Some(auth) = config.authorization(index)? {
            let mut v = HeaderValue::try_from(auth).map_err(|_| {
                invalid(
                    "basic_auth",
                    "the credentials contain characters a header cannot carry".into(),
                )
            })?;
            v.set_sensitive(true);
            headers.insert(http::header::AUTHORIZATION, v);
        }
        for (k, v) in &config.headers {
            // Checked by `check`.
            if let (Ok(k), Ok(v)) = (
                HeaderName::try_from(k.as_str()),
                HeaderValue::try_from(v.as_str()),
            ) {
                headers.insert(k, v);
            }
        }
        let tls = if url.tls {
            Some(tls_connector(config, &url, index)?)
        } else {
            None
        };
        Ok(Client {
            url,
            headers,
            tls,
            timeout: Duration::from_secs_f64(config.timeout_seconds),
            conn: None,
        })
    }

    /// POST one compressed batch.
    pub(crate) async fn send(&mut self, body: Bytes) -> Outcome {
        match tokio::time::timeout(self.timeout, self.try_send(body)).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => {
                self.conn = None;
                Outcome::Retry(e, None)
            }
            Err(_) => {
                self.conn = None;
                Outcome::Retry(
                    format!("no answer within {:?} (timeout_seconds)", self.timeout),
                    None,
                )
            }
        }
    }

    async fn try_send(&mut self, body: Bytes) -> Result<Outcome, String> {
        let reuse = match &mut self.conn {
            Some(c) => c.ready().await.is_ok(),
            None => false,
        };
        if !reuse {
            self.conn = Some(self.connect().await?);
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err("no connection".into());
        };
        let mut req = Request::post(self.url.path_and_query.as_str())
            .body(Full::new(body))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        *req.headers_mut() = self.headers.clone();
        let resp = conn
            .send_request(req)
            .await
            .map_err(|e| format!("HTTP error: {e}"))?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, std::time::SystemTime::now()));
        // Read the body (bounded) so the connection can be used again.
        let text = match Limited::new(resp.into_body(), ERROR_BODY_BYTES)
            .collect()
            .await
        {
            Ok(b) => String::from_utf8_lossy(&b.to_bytes()).trim().to_owned(),
            Err(_) => {
                self.conn = None;
                String::from("(long body not read)")
            }
        };
        let what = || {
            let text: String = text.chars().filter(|c| !c.is_control()).take(300).collect();
            format!("{status}: {text}")
        };
        Ok(if status.is_success() {
            Outcome::Sent
        } else if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Outcome::Retry(what(), retry_after)
        } else {
            Outcome::Rejected(what())
        })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let tcp = tokio::net::TcpStream::connect((self.url.host.as_str(), self.url.port))
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => handshake(tcp).await,
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| format!("TLS handshake failed: {e}"))?;
                handshake(tls).await
            }
        }
    }
}

async fn handshake<S>(io: S) -> Result<SendRequest<Full<Bytes>>, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn tls_connector(
    config: &RemoteWriteConfig,
    url: &Url,
    index: usize,
) -> Result<(tokio_rustls::TlsConnector, ServerName<'static>), ConfigError> {
    let read = |key: &'static str, path: &std::path::PathBuf| {
        std::fs::read(path).map_err(|source| ConfigError::Read {
            index,
            key,
            path: path.clone(),
            source,
        })
    };
    let invalid = |key, message: String| ConfigError::Invalid {
        index,
        key,
        message,
    };
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(ca) = &config.tls.ca_file {
        let pem = read("tls.ca_file", ca)?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| invalid("tls.ca_file", format!("{}: {e}", ca.display())))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(invalid(
                "tls.ca_file",
                format!("{} holds no usable CA certificate", ca.display()),
            ));
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("tls", e.to_string()))?;
    let builder = if config.tls.insecure_skip_verify {
        tracing::warn!(
            "remote_write[{index}]: tls.insecure_skip_verify is set: the receiver's certificate is not verified, so anyone on the path can read the samples and credentials"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify))
    } else {
        builder.with_root_certificates(roots)
    };
    let client = match (&config.tls.cert_file, &config.tls.key_file) {
        (Some(cert), Some(key)) => {
            let pem = read("tls.cert_file", cert)?;
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<_, _>>()
                .map_err(|e| invalid("tls.cert_file", format!("{}: {e}", cert.display())))?;
            let key_pem = read("tls.key_file", key)?;
            let key_der = PrivateKeyDer::from_pem_slice(&key_pem)
                .map_err(|e| invalid("tls.key_file", format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| invalid("tls.cert_file", e.to_string()))?
        }
        _ => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from(url.host.clone())
        .map_err(|e| invalid("url", format!("not a TLS server name: {e}")))?;
    Ok((tokio_rustls::TlsConnector::from(Arc::new(client)), name))
}

/// `insecure_skip_verify`: accepts any certificate (signatures still checked
/// so the handshake is well-formed).
#[derive(Debug)]
struct NoVerify;

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A `Retry-After` value (delay-seconds or an HTTP-date) as a wait from
/// `now`; `None` when it does not parse.
fn retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(retry_after(" 7 ", now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        // A date gone by: at once.
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        for bad in ["", "-1", "soon", "1.5", "99999999999999999999999"] {
            assert_eq!(retry_after(bad, now), None, "{bad:?}");
        }
    }
}
