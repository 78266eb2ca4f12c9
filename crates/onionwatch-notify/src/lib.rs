//! Alerts as notifiers see them.
//!
//! The alert engine (`onionwatch-alert`) decides *when* an alert fires,
//! resolves and is repeated; this crate only carries those decisions to
//! people and systems. The types follow Alertmanager's model, so the
//! webhook payload and the Alertmanager v2 push are direct translations.

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
