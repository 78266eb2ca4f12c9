//! Alerts as notifiers see them, and the notifiers.
//!
//! The alert engine (`onionwatch-alert`) decides *when* an alert fires,
//! resolves and is repeated; this crate only carries those decisions to
//! people and systems. The types follow Alertmanager's model, so the
//! webhook payload and the Alertmanager v2 push are direct translations.
//!
//! [`Notifiers::start`] takes the entries of the top-level `notifiers:`
//! list ([`NotifierConfig`]) and runs one task per notifier. The engine
//! hands it each [`Group`] to tell ([`Notifiers::notify`], which never
//! blocks) and, after every evaluation, the whole alert state
//! ([`Notifiers::push_alerts`], for Alertmanager).
//!
//! ```yaml
//! notifiers:
//!   - type: webhook
//!     url: https://hooks.example.org/onionwatch
//!   - type: email
//!     match: {severity: critical}
//!     smtp_host: mail.example.org
//!     username: alerts@example.org
//!     password: {file: /etc/onionwatch/smtp-password}
//!     from: onionwatch <alerts@example.org>
//!     to: [oncall@example.org]
//! ```
//!
//! # Options of every notifier
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `type` | required | `webhook`, `alertmanager`, `email`, `ntfy` or `exec` |
//! | `name` | `<type>-<index>` | name in logs, the `notifier` metric label, the webhook's `receiver` |
//! | `match` | none | `{label: value}`: only alerts with these exact label values |
//! | `match_re` | none | `{label: regex}`: only alerts whose labels match (anchored; a missing label is `""`) |
//! | `send_resolved` | `true` | also notify when alerts resolve |
//! | `timeout` | `10s` | bound of one attempt (connect, send, answer; or the command's run) |
//! | `queue_size` | `100` | notifications waiting; when full the oldest is dropped and counted |
//! | `max_attempts` | `10` | attempts per notification, then it is dropped and counted |
//! | `retry_initial`, `retry_max` | `1s`, `5m` | backoff between attempts: doubled each time, capped |
//!
//! Durations are `500ms`, `30s`, `5m`, `4h`, `1d` or a number of seconds.
//!
//! **Routing** is per alert: a notifier gets the alerts of a group whose
//! labels match all its `match` and `match_re` entries, as a group of its
//! own (same key and group labels, its status from those alerts); a group
//! none of whose alerts match is not sent to it. With
//! `send_resolved: false` resolved alerts are left out too.
//!
//! **Secrets** (`password`, `bearer_token`, `basic_auth.password`) are
//! never inline: `{file: PATH}` (its content without the final newline)
//! or `{env: VARIABLE}`, read at start. URLs may carry tokens too, so
//! logs and errors only ever show a URL's scheme and host, header values
//! are never shown, and `Debug` of a config hides all of them.
//!
//! # webhook
//!
//! POSTs Alertmanager's webhook payload (version `4`) as JSON, so any
//! receiver written for Alertmanager works: `groupKey`, `status`
//! (`firing` while any alert of the group fires), `receiver` (the
//! notifier's name), `groupLabels`, `commonLabels`, `commonAnnotations`,
//! `externalURL`, `truncatedAlerts` (0) and `alerts`, each with `status`,
//! `labels`, `annotations`, `startsAt`, `endsAt` (RFC 3339;
//! `0001-01-01T00:00:00Z` while firing), `generatorURL` and `fingerprint`
//! (Alertmanager's). A 2xx answer is success.
//!
//! | option | meaning |
//! |---|---|
//! | `url` | required; `http` or `https`; `user:password@` in it is basic authentication |
//! | `headers` | `{name: value}` added to the request |
//! | `bearer_token` | `{file: …}` or `{env: …}`: `Authorization: Bearer …` |
//! | `basic_auth` | `{username: …, password: {file: …}}` |
//! | `ca_file` | PEM certificates trusted besides the public web roots (private CA, self-signed) |
//! | `external_url` | `externalURL` and `generatorURL` (e.g. the dashboard) |
//!
//! # alertmanager
//!
//! Pushes the whole alert state to `<url>/api/v2/alerts` as Prometheus
//! does, and leaves grouping, silences, inhibition and receivers to
//! Alertmanager: firing alerts with `endsAt` four `resend_interval`s
//! ahead (so Alertmanager resolves them by itself if onionwatch stops),
//! resolved ones with their end. It pushes when the state changes and
//! every `resend_interval` (default `1m`) otherwise; a failed push is
//! retried with backoff. An alert that leaves the state without having
//! resolved is pushed as resolved now. It does not use the groups of
//! [`Notifiers::notify`]. Options: `url` (the base URL, e.g.
//! `http://127.0.0.1:9093`), `resend_interval`, and `headers`,
//! `bearer_token`, `basic_auth`, `ca_file` as for webhook.
//!
//! # email
//!
//! One e-mail per notification over SMTP (`lettre`, rustls), subject
//! `[FIRING:2] OnionServiceUnreachable (name=shop)`, a plain-text body
//! listing each alert with its labels (onion service `name`, `address`,
//! `project`, …), annotations and times.
//!
//! | option | default | meaning |
//! |---|---|---|
//! | `smtp_host` | required | server host name (its certificate must carry it) |
//! | `smtp_port` | 587, 465 or 25 | by `tls` |
//! | `tls` | `starttls` | `starttls` (required, not opportunistic), `tls` (implicit, "SMTPS") or `none` (a local relay only) |
//! | `username` | none | authenticate (PLAIN or LOGIN) when set |
//! | `password` | none | `{file: …}` or `{env: …}`; required with `username` |
//! | `from` | required | sender, `Name <address>` or `address` |
//! | `to` | required | list of recipients |
//! | `ca_file` | none | PEM certificates trusted besides the public web roots |
//! | `external_url` | none | linked at the end of the body |
//!
//! # ntfy
//!
//! POSTs a short text (the alerts, one paragraph each) to a topic URL
//! (`https://ntfy.sh/mytopic` or a self-hosted server) with headers
//! `Title` (the e-mail subject), `Priority` and `Tags`
//! (`rotating_light` firing, `white_check_mark` resolved). Options:
//! `url` (required), `priority` of firing notifications (`min`, `low`,
//! `default`, `high`, `urgent` or 1-5; default `high`; resolved ones are
//! sent with `default`), `bearer_token` (ntfy's access token), and
//! `headers`, `basic_auth`, `ca_file` as for webhook.
//!
//! # exec
//!
//! Runs `command` (a list: program and arguments, no shell) with the
//! webhook payload as JSON on its standard input, in a process group of
//! its own; after `timeout` the whole group is killed and the attempt
//! failed. Exit status 0 is success, anything else a failure (retried).
//! Options: `command` (required), `external_url`.
//!
//! # Metrics
//!
//! [`Notifiers`] implements [`onionwatch_metrics::Collect`]:
//! `onionwatch_notifications_total{notifier,result}` with `result`
//! `success` (delivered), `failure` (an attempt failed) or `dropped`
//! (given up: queue full, attempts exhausted, or undelivered at
//! shutdown), and `onionwatch_notification_queue_length{notifier}`.

mod alertmanager;
mod config;
mod email;
mod exec;
mod http;
mod notifiers;
mod ntfy;
pub mod payload;
mod text;

pub use config::{
    parse_duration, redact_url, BasicAuth, Kind, NotifierConfig, SecretSource, SmtpTls,
};
pub use notifiers::Notifiers;

/// A notifier that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An invalid option, or a secret or CA file that cannot be read.
    #[error("notifier {notifier}: {message}")]
    Config {
        /// The notifier's name (or `type-index`).
        notifier: String,
        /// What is wrong and where.
        message: String,
    },
}

use std::collections::BTreeMap;
use std::time::SystemTime;

/// Label set of an alert or a group: sorted, so equal sets compare and
/// print the same everywhere.
pub type Labels = BTreeMap<String, String>;

/// One alert, as Alertmanager models it.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// Identifying labels; always holds `alertname`, and the labels of the
    /// series it comes from (`name`, `address`, `project`, …) plus the
    /// rule's extra labels (`severity`, …).
    pub labels: Labels,
    /// `summary`, `description`, `runbook_url`, … Never secrets.
    pub annotations: Labels,
    /// When the alert started firing (after its `for`).
    pub starts_at: SystemTime,
    /// Set once the alert resolved; `None` while it fires.
    pub ends_at: Option<SystemTime>,
}

impl Alert {
    /// Whether this alert is still firing.
    pub fn is_firing(&self) -> bool {
        self.ends_at.is_none()
    }
}

/// Firing or resolved, as in Alertmanager's webhook payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// At least one alert of the group fires.
    Firing,
    /// Every alert of the group resolved.
    Resolved,
}

impl Status {
    /// `"firing"` or `"resolved"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

/// One notification: the alerts of one group (one onion service, or one
/// project) at the moment the engine decided to tell someone, because an
/// alert started firing, resolved, or is repeated after the repeat
/// interval.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// Stable key of the group (e.g. `{name="shop/abc"}`), Alertmanager's
    /// `groupKey`.
    pub key: String,
    /// The labels the group is formed by (e.g. `name`, or `project`).
    pub labels: Labels,
    /// Every alert of the group that fires now, and those that resolved
    /// since the group's last notification.
    pub alerts: Vec<Alert>,
}

impl Group {
    /// Firing while any alert of the group fires.
    pub fn status(&self) -> Status {
        if self.alerts.iter().any(Alert::is_firing) {
            Status::Firing
        } else {
            Status::Resolved
        }
    }
}
