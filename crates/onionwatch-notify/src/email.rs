//! The e-mail notifier: one plain-text message per notification over
//! SMTP (lettre, rustls), with STARTTLS or implicit TLS and
//! authentication.

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{NotifierConfig, SmtpTls};
use crate::{text, Group};

pub(crate) struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    server: String,
    external_url: String,
    timeout: std::time::Duration,
}

impl Email {
    pub(crate) fn new(c: &NotifierConfig) -> Result<Email, String> {
        let host = c
            .smtp_host
            .as_deref()
            .filter(|h| !h.is_empty())
            .ok_or("smtp_host: required for an email notifier")?;
        let mode = c.tls.unwrap_or_default();
        let port = c.smtp_port.unwrap_or(match mode {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        });
        let from: Mailbox = c
            .from
            .as_deref()
            .ok_or("from: required for an email notifier")?
            .parse()
            .map_err(|e| format!("from: not an e-mail address: {e}"))?;
        if c.to.is_empty() {
            return Err("to: required for an email notifier (a list of addresses)".into());
        }
        let to =
            c.to.iter()
                .map(|t| {
                    t.parse::<Mailbox>()
                        .map_err(|e| format!("to: {t:?} is not an e-mail address: {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(c.timeout));
        if let Some(name) = hostname() {
            builder = builder.hello_name(ClientId::Domain(name));
        }
        if mode != SmtpTls::None {
            let mut params = TlsParameters::builder(host.to_owned());
            if let Some(path) = &c.ca_file {
                // Checked (and its reason told) the way HTTPS checks it.
                crate::http::tls_config(Some(path))?;
                let pem = std::fs::read(path)
                    .map_err(|e| format!("ca_file: cannot read {}: {e}", path.display()))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| format!("ca_file: {}: {e}", path.display()))?;
                params = params.add_root_certificate(cert);
            }
            let params = params
                .build_rustls()
                .map_err(|e| format!("TLS setup failed: {e}"))?;
            builder = builder.tls(match mode {
                SmtpTls::Starttls => Tls::Required(params),
                _ => Tls::Wrapper(params),
            });
        }
        match (&c.username, &c.password) {
            (Some(user), Some(pw)) => {
                let pw = pw.read("password")?;
                builder = builder
                    .credentials(Credentials::new(user.clone(), pw))
                    .authentication(vec![Mechanism::Plain, Mechanism::Login]);
            }
            (Some(_), None) => return Err("password: required with username".into()),
            (None, Some(_)) => return Err("username: required with password".into()),
            (None, None) => {}
        }
        Ok(Email {
            transport: builder.build(),
            from,
            to,
            server: format!("smtp://{host}:{port}"),
            external_url: c.external_url.clone().unwrap_or_default(),
            timeout: c.timeout,
        })
    }

    /// `smtp://host:port`, for logs.
    pub(crate) fn server(&self) -> String {
        self.server.clone()
    }

    pub(crate) async fn send(&self, group: &Group) -> Result<(), String> {
        let mut m = Message::builder()
            .from(self.from.clone())
            .subject(text::subject(group))
            .header(ContentType::TEXT_PLAIN)
            .user_agent(concat!("onionwatch/", env!("CARGO_PKG_VERSION")).to_owned());
        for t in &self.to {
            m = m.to(t.clone());
        }
        let m = m
            .body(text::body(group, &self.external_url))
            .map_err(|e| format!("cannot build the e-mail: {e}"))?;
        // lettre bounds each SMTP command; this bounds the whole exchange.
        match tokio::time::timeout(self.timeout, self.transport.send(m)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("SMTP: {e}")),
            Err(_) => Err(format!("no answer within {:?} (timeout)", self.timeout)),
        }
    }
}

/// This host's name for EHLO (lettre says `[127.0.0.1]` otherwise, which
/// some servers dislike).
fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname(2) writes at most buf.len() bytes into buf.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0)?;
    let name = std::str::from_utf8(&buf[..end]).ok()?;
    // Only a plain host name: it goes into an SMTP command.
    (!name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'))
    .then(|| name.to_owned())
}
