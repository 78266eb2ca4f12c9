//! One entry of the `notifiers:` list, and its validation.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::Error;

/// The kind of a notifier (`type:`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// POST of the Alertmanager webhook payload.
    Webhook,
    /// Push to Alertmanager's `/api/v2/alerts`.
    Alertmanager,
    /// E-mail over SMTP.
    Email,
    /// ntfy-style HTTP push of a short text.
    Ntfy,
    /// A command, the webhook payload on its standard input.
    Exec,
}

impl Kind {
    /// `"webhook"`, `"alertmanager"`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Webhook => "webhook",
            Kind::Alertmanager => "alertmanager",
            Kind::Email => "email",
            Kind::Ntfy => "ntfy",
            Kind::Exec => "exec",
        }
    }
}

/// How to talk to the SMTP server (`tls:` of an `email` notifier).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which must succeed
    /// (port 587 by default).
    #[default]
    Starttls,
    /// TLS from the first byte ("SMTPS", port 465 by default).
    Tls,
    /// No TLS at all (port 25 by default): only for a relay on the same
    /// host, as the password would travel in clear.
    None,
}

/// Where a secret comes from: a file (its content, without the final
/// newline) or an environment variable. Never inline, so configs can be
/// shown and shared.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// Read the secret from this file.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Read the secret from this environment variable.
    #[serde(default)]
    pub env: Option<String>,
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Where it comes from is not secret; the value never is here.
        f.debug_struct("SecretSource")
            .field("file", &self.file)
            .field("env", &self.env)
            .finish()
    }
}

impl SecretSource {
    /// The secret, read now.
    pub(crate) fn read(&self, what: &str) -> Result<String, String> {
        match (&self.file, &self.env) {
            (Some(path), None) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| format!("{what}: cannot read {}: {e}", path.display())),
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                format!("{what}: the environment variable {var} is not set (or not UTF-8)")
            }),
            _ => Err(format!("{what}: give exactly one of `file` and `env`")),
        }
    }
}

/// HTTP basic authentication (`basic_auth:`).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// User name.
    pub username: String,
    /// Where the password is read from.
    pub password: SecretSource,
}

/// One notifier: an entry of the top-level `notifiers:` list.
///
/// Every field but `type` is optional; fields that do not apply to the
/// notifier's type are refused by [`crate::Notifiers::start`], so a typo
/// in a config shows at start and not when the first alert fires.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    /// `webhook`, `alertmanager`, `email`, `ntfy` or `exec`.
    #[serde(rename = "type")]
    pub kind: Kind,
    /// Name in logs, the `notifier` metric label and the webhook's
    /// `receiver`; default `<type>-<index in the list>` (`webhook-0`).
    #[serde(default)]
    pub name: Option<String>,
    /// Only alerts whose labels have these exact values go to this
    /// notifier (`{severity: critical}`).
    #[serde(default, rename = "match")]
    pub matchers: BTreeMap<String, String>,
    /// Only alerts whose labels match these regular expressions (anchored
    /// at both ends, as Alertmanager's) go to this notifier; a missing
    /// label is the empty string.
    #[serde(default)]
    pub match_re: BTreeMap<String, String>,
    /// Whether to notify when alerts resolve (default true).
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// Bound of one attempt: connecting, sending and the answer, or the
    /// command's run time (default 10s).
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Notifications waiting while an earlier one is delivered (default
    /// 100); when full, the oldest is dropped and counted.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// Attempts per notification before it is given up and counted as
    /// dropped (default 10).
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Wait after the first failed attempt, doubled after each one
    /// (default 1s).
    #[serde(default = "default_retry_initial", deserialize_with = "duration")]
    pub retry_initial: Duration,
    /// Longest wait between attempts (default 5m).
    #[serde(default = "default_retry_max", deserialize_with = "duration")]
    pub retry_max: Duration,

    // --- HTTP: webhook, alertmanager, ntfy ---
    /// webhook: where the payload is POSTed; alertmanager: the base URL
    /// (`http://127.0.0.1:9093`, `/api/v2/alerts` is appended); ntfy: the
    /// topic URL (`https://ntfy.sh/mytopic`). `http` or `https`. Only its
    /// scheme and host are ever logged, as URLs may carry tokens.
    #[serde(default)]
    pub url: Option<String>,
    /// Extra HTTP headers (values may be secrets: they are never logged).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `Authorization: Bearer` token (ntfy: its access token).
    #[serde(default)]
    pub bearer_token: Option<SecretSource>,
    /// HTTP basic authentication.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// PEM file of certificate authorities trusted besides the public web
    /// ones (HTTPS and SMTP TLS), for a private CA or a self-signed
    /// certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// webhook and exec: the payload's `externalURL` and every alert's
    /// `generatorURL` (e.g. the dashboard's address).
    #[serde(default)]
    pub external_url: Option<String>,

    // --- alertmanager ---
    /// alertmanager: the alert state is pushed again after this long
    /// without change (default 1m); firing alerts are pushed with
    /// `endsAt` four of these ahead, so Alertmanager resolves them by
    /// itself if onionwatch stops.
    #[serde(default, deserialize_with = "opt_duration")]
    pub resend_interval: Option<Duration>,

    // --- ntfy ---
    /// ntfy: `Priority` of a firing notification (`min`, `low`,
    /// `default`, `high`, `urgent` or 1-5; default `high`); resolved ones
    /// are sent with `default`.
    #[serde(default)]
    pub priority: Option<String>,

    // --- email ---
    /// email: SMTP server host name (also the name its certificate must
    /// carry).
    #[serde(default)]
    pub smtp_host: Option<String>,
    /// email: SMTP port (default 587 with `starttls`, 465 with `tls`, 25
    /// with `none`).
    #[serde(default)]
    pub smtp_port: Option<u16>,
    /// email: `starttls` (default), `tls` or `none`.
    #[serde(default)]
    pub tls: Option<SmtpTls>,
    /// email: SMTP user name (authentication is used when set).
    #[serde(default)]
    pub username: Option<String>,
    /// email: where the SMTP password is read from (`{file: …}` or
    /// `{env: …}`); required with `username`.
    #[serde(default)]
    pub password: Option<SecretSource>,
    /// email: sender address (`onionwatch <alerts@example.org>`).
    #[serde(default)]
    pub from: Option<String>,
    /// email: recipient addresses.
    #[serde(default)]
    pub to: Vec<String>,

    // --- exec ---
    /// exec: the command and its arguments (no shell); it gets the
    /// webhook payload as JSON on standard input and is killed after
    /// `timeout`. Exit status 0 is success.
    #[serde(default)]
    pub command: Vec<String>,
}

fn yes() -> bool {
    true
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_queue_size() -> usize {
    100
}
fn default_max_attempts() -> u32 {
    10
}
fn default_retry_initial() -> Duration {
    Duration::from_secs(1)
}
fn default_retry_max() -> Duration {
    Duration::from_secs(300)
}
/// Default of `resend_interval`.
pub(crate) const DEFAULT_RESEND: Duration = Duration::from_secs(60);

impl NotifierConfig {
    /// A notifier of `kind` with every option at its default.
    pub fn new(kind: Kind) -> NotifierConfig {
        NotifierConfig {
            kind,
            name: None,
            matchers: BTreeMap::new(),
            match_re: BTreeMap::new(),
            send_resolved: true,
            timeout: default_timeout(),
            queue_size: default_queue_size(),
            max_attempts: default_max_attempts(),
            retry_initial: default_retry_initial(),
            retry_max: default_retry_max(),
            url: None,
            headers: BTreeMap::new(),
            bearer_token: None,
            basic_auth: None,
            ca_file: None,
            external_url: None,
            resend_interval: None,
            priority: None,
            smtp_host: None,
            smtp_port: None,
            tls: None,
            username: None,
            password: None,
            from: None,
            to: Vec::new(),
            command: Vec::new(),
        }
    }

    /// The fields set that `kind` does not use, by YAML name.
    pub(crate) fn foreign_fields(&self) -> Vec<&'static str> {
        use Kind::*;
        let k = self.kind;
        let http = matches!(k, Webhook | Alertmanager | Ntfy);
        let mut out = Vec::new();
        let mut check = |set: bool, allowed: bool, name: &'static str| {
            if set && !allowed {
                out.push(name);
            }
        };
        check(self.url.is_some(), http, "url");
        check(!self.headers.is_empty(), http, "headers");
        check(self.bearer_token.is_some(), http, "bearer_token");
        check(self.basic_auth.is_some(), http, "basic_auth");
        check(self.ca_file.is_some(), http || k == Email, "ca_file");
        check(
            self.external_url.is_some(),
            matches!(k, Webhook | Exec | Email),
            "external_url",
        );
        check(
            self.resend_interval.is_some(),
            k == Alertmanager,
            "resend_interval",
        );
        check(self.priority.is_some(), k == Ntfy, "priority");
        for (set, name) in [
            (self.smtp_host.is_some(), "smtp_host"),
            (self.smtp_port.is_some(), "smtp_port"),
            (self.tls.is_some(), "tls"),
            (self.username.is_some(), "username"),
            (self.password.is_some(), "password"),
            (self.from.is_some(), "from"),
            (!self.to.is_empty(), "to"),
        ] {
            check(set, k == Email, name);
        }
        check(!self.command.is_empty(), k == Exec, "command");
        out
    }
}

/// Debug shows the URLs by scheme and host only and no header values:
/// either may carry a token.
impl fmt::Debug for NotifierConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<&String> = self.headers.keys().collect();
        f.debug_struct("NotifierConfig")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("matchers", &self.matchers)
            .field("match_re", &self.match_re)
            .field("send_resolved", &self.send_resolved)
            .field("timeout", &self.timeout)
            .field("queue_size", &self.queue_size)
            .field("max_attempts", &self.max_attempts)
            .field("retry_initial", &self.retry_initial)
            .field("retry_max", &self.retry_max)
            .field("url", &self.url.as_deref().map(redact_url))
            .field("headers", &headers)
            .field("bearer_token", &self.bearer_token)
            .field("basic_auth", &self.basic_auth)
            .field("ca_file", &self.ca_file)
            .field(
                "external_url",
                &self.external_url.as_deref().map(redact_url),
            )
            .field("resend_interval", &self.resend_interval)
            .field("priority", &self.priority)
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("command", &self.command.first())
            .finish()
    }
}

/// `scheme://host[:port]` of a URL, the only part of it ever logged; for
/// something that is not a URL, a fixed placeholder.
pub fn redact_url(url: &str) -> String {
    match url.parse::<http::Uri>() {
        Ok(u) if u.scheme().is_some() && u.host().is_some() => {
            let host = u.host().unwrap_or_default();
            match u.port_u16() {
                Some(p) => format!("{}://{host}:{p}", u.scheme_str().unwrap_or_default()),
                None => format!("{}://{host}", u.scheme_str().unwrap_or_default()),
            }
        }
        _ => "<invalid URL>".to_owned(),
    }
}

/// A duration as `500ms`, `30s`, `5m`, `4h`, `1d` or a number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (like 30s, 5m, 4h)"))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        u => return Err(format!("{text:?}: unknown unit {u:?} (ms, s, m, h or d)")),
    };
    Duration::try_from_secs_f64(n * scale).map_err(|_| format!("{text:?} is out of range"))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum DurationValue {
    Seconds(f64),
    Text(String),
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    match DurationValue::deserialize(d)? {
        DurationValue::Seconds(s) => Duration::try_from_secs_f64(s)
            .map_err(|_| serde::de::Error::custom(format!("{s} is not a duration"))),
        DurationValue::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// Error of an invalid notifier config.
pub(crate) fn invalid(name: &str, message: impl Into<String>) -> Error {
    Error::Config {
        notifier: name.to_owned(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        for bad in ["", "s", "5x", "-1s", "1e400s", "ms5"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_are_redacted_to_scheme_and_host() {
        assert_eq!(
            redact_url("https://user:pw@hooks.example.org/T0K3N?key=s3cret"),
            "https://hooks.example.org"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:9093/x"),
            "http://127.0.0.1:9093"
        );
        assert_eq!(redact_url("not a url with s3cret"), "<invalid URL>");
    }

    #[test]
    fn debug_hides_secrets() {
        let mut c = NotifierConfig::new(Kind::Webhook);
        c.url = Some("https://hooks.example.org/T0K3N".into());
        c.headers.insert("X-Api-Key".into(), "s3cret".into());
        let text = format!("{c:?}");
        assert!(text.contains("hooks.example.org"), "{text}");
        assert!(
            !text.contains("T0K3N") && !text.contains("s3cret"),
            "{text}"
        );
    }
}
