//! The running notifiers: one task each, a bounded queue in front of it,
//! retries with backoff, counters.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use onionwatch_metrics::{Collect, Family};
use regex::Regex;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{invalid, Kind, NotifierConfig, DEFAULT_RESEND};
use crate::http::HttpTarget;
use crate::{payload, Alert, Error, Group, Labels};

/// Which alerts a notifier takes: every matcher must match the alert's
/// labels (a missing label is the empty string).
pub(crate) struct Route {
    eq: BTreeMap<String, String>,
    re: Vec<(String, Regex)>,
}

impl Route {
    pub(crate) fn matches(&self, labels: &Labels) -> bool {
        let get = |k: &String| labels.get(k).map(String::as_str).unwrap_or("");
        self.eq.iter().all(|(k, v)| get(k) == v) && self.re.iter().all(|(k, r)| r.is_match(get(k)))
    }
}

/// What one notifier shares with its task.
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) kind: Kind,
    pub(crate) route: Route,
    pub(crate) send_resolved: bool,
    pub(crate) queue: Mutex<VecDeque<Group>>,
    pub(crate) queue_size: usize,
    pub(crate) wake: Notify,
    pub(crate) success: AtomicU64,
    pub(crate) failure: AtomicU64,
    pub(crate) dropped: AtomicU64,
    /// 1 while a notification is being delivered: counted as dropped if
    /// shutdown stops the task then.
    in_flight: AtomicU64,
    /// The Alertmanager notifier's input: the whole alert state.
    pub(crate) alerts: Option<watch::Sender<Vec<Alert>>>,
}

impl Shared {
    /// `group` with only the alerts this notifier takes; `None` when that
    /// leaves nothing to say.
    fn route(&self, group: &Group) -> Option<Group> {
        let alerts: Vec<Alert> = group
            .alerts
            .iter()
            .filter(|a| self.route.matches(&a.labels) && (self.send_resolved || a.is_firing()))
            .cloned()
            .collect();
        (!alerts.is_empty()).then(|| Group {
            key: group.key.clone(),
            labels: group.labels.clone(),
            alerts,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Group>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Retry policy of one notifier.
#[derive(Clone, Copy)]
struct Retry {
    initial: Duration,
    max: Duration,
    attempts: u32,
}

/// How a notifier delivers one group.
enum Deliver {
    Webhook {
        target: HttpTarget,
        external_url: String,
    },
    Ntfy(crate::ntfy::Ntfy),
    Exec(crate::exec::Exec),
    Email(Box<crate::email::Email>),
}

impl Deliver {
    async fn send(&self, name: &str, group: &Group) -> Result<(), String> {
        match self {
            Deliver::Webhook {
                target,
                external_url,
            } => {
                let body = payload::webhook(group, name, external_url);
                target
                    .post("application/json", &[], body.to_string().into_bytes())
                    .await
            }
            Deliver::Ntfy(n) => n.send(group).await,
            Deliver::Exec(e) => e.send(name, group).await,
            Deliver::Email(e) => e.send(group).await,
        }
    }

    /// Where it delivers, for logs (never a secret).
    fn target(&self) -> String {
        match self {
            Deliver::Webhook { target, .. } => target.redacted.clone(),
            Deliver::Ntfy(n) => n.target.redacted.clone(),
            Deliver::Exec(e) => e.program(),
            Deliver::Email(e) => e.server(),
        }
    }
}

struct Inner {
    notifiers: Vec<Arc<Shared>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Set by [`Notifiers::shutdown`]: deliver what is queued until then.
    drain: watch::Sender<Option<Instant>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

/// The configured notifiers, running. Cheap to clone; the tasks stop when
/// the last clone is dropped, or at [`Notifiers::shutdown`].
#[derive(Clone)]
pub struct Notifiers {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Notifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.inner.notifiers.iter().map(|n| &n.name))
            .finish()
    }
}

impl Notifiers {
    /// Check `configs` and start one task per notifier on the current
    /// tokio runtime. Secrets (passwords, tokens) are read now, so a
    /// missing file shows at start.
    pub fn start(configs: Vec<NotifierConfig>) -> Result<Notifiers, Error> {
        let (drain, _) = watch::channel(None);
        let mut notifiers = Vec::new();
        let mut starts = Vec::new();
        for (i, c) in configs.iter().enumerate() {
            let name = c
                .name
                .clone()
                .unwrap_or_else(|| format!("{}-{i}", c.kind.as_str()));
            if name.is_empty() || name.chars().any(char::is_control) {
                return Err(invalid(&name, "name: must be non-empty printable text"));
            }
            if notifiers.iter().any(|n: &Arc<Shared>| n.name == name) {
                return Err(invalid(&name, "name: two notifiers have this name"));
            }
            let (shared, start) = prepare(c, name)?;
            notifiers.push(shared);
            starts.push(start);
        }
        let tasks = notifiers
            .iter()
            .zip(starts)
            .map(|(n, start)| {
                let n = n.clone();
                let drain = drain.subscribe();
                tokio::spawn(async move {
                    match start {
                        Start::Queue(d, retry) => run_queue(n, d, retry, drain).await,
                        Start::Alertmanager(a) => a.run(n, drain).await,
                    }
                })
            })
            .collect();
        Ok(Notifiers {
            inner: Arc::new(Inner {
                notifiers,
                tasks: Mutex::new(tasks),
                drain,
            }),
        })
    }

    /// The config of `--notify-webhook URL`: a webhook notifier with
    /// every other option at its default.
    pub fn webhook(url: &str) -> Result<NotifierConfig, Error> {
        let mut c = NotifierConfig::new(Kind::Webhook);
        c.url = Some(url.to_owned());
        HttpTarget::new(&c, url, "").map_err(|m| invalid("--notify-webhook", m))?;
        Ok(c)
    }

    /// Whether no notifier is configured.
    pub fn is_empty(&self) -> bool {
        self.inner.notifiers.is_empty()
    }

    /// Queue `group` for every notifier whose routing takes some of its
    /// alerts. Never blocks: a full queue drops its oldest notification
    /// (counted as `dropped`).
    pub fn notify(&self, group: Group) {
        for n in &self.inner.notifiers {
            if n.alerts.is_some() {
                continue; // Alertmanager groups by itself: push_alerts
            }
            let Some(g) = n.route(&group) else { continue };
            let mut q = n.lock();
            while q.len() >= n.queue_size.max(1) {
                q.pop_front();
                n.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(notifier = %n.name, "notification queue full: dropped the oldest notification");
            }
            q.push_back(g);
            drop(q);
            n.wake.notify_one();
        }
    }

    /// The whole current alert state (firing alerts, and those resolved
    /// recently), after each evaluation. Only Alertmanager notifiers use
    /// it; they push it on change and every `resend_interval`.
    pub fn push_alerts(&self, alerts: Vec<Alert>) {
        for n in &self.inner.notifiers {
            if let Some(tx) = &n.alerts {
                let mine: Vec<Alert> = alerts
                    .iter()
                    .filter(|a| n.route.matches(&a.labels))
                    .cloned()
                    .collect();
                tx.send_if_modified(|cur| {
                    let changed = *cur != mine;
                    if changed {
                        *cur = mine;
                    }
                    changed
                });
            }
        }
    }

    /// Deliver what is queued, trying for `within` at most, then stop the
    /// tasks; what is still undelivered is counted as dropped.
    pub async fn shutdown(&self, within: Duration) {
        let deadline = Instant::now() + within;
        self.inner.drain.send_replace(Some(deadline));
        let tasks: Vec<_> = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for mut t in tasks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                t.abort();
            }
        }
        for n in &self.inner.notifiers {
            let left = n.lock().drain(..).count() as u64 + n.in_flight.swap(0, Ordering::Relaxed);
            n.dropped.fetch_add(left, Ordering::Relaxed);
        }
    }
}

impl Collect for Notifiers {
    fn collect(&self, out: &mut Vec<Family>) {
        let mut total = Family::counter(
            "onionwatch_notifications",
            "Notifications by notifier and result: success (delivered), failure (an attempt failed; it is retried), dropped (given up: queue full, attempts exhausted or shutdown).",
        );
        let mut queue = Family::gauge(
            "onionwatch_notification_queue_length",
            "Notifications waiting to be delivered, by notifier.",
        );
        for n in &self.inner.notifiers {
            for (result, c) in [
                ("success", &n.success),
                ("failure", &n.failure),
                ("dropped", &n.dropped),
            ] {
                total.push(
                    &[("notifier", &n.name), ("result", result)],
                    c.load(Ordering::Relaxed) as f64,
                );
            }
            queue.push(&[("notifier", &n.name)], n.lock().len() as f64);
        }
        if !self.inner.notifiers.is_empty() {
            out.push(total);
            out.push(queue);
        }
    }
}

enum Start {
    Queue(Deliver, Retry),
    Alertmanager(crate::alertmanager::Pusher),
}

fn prepare(c: &NotifierConfig, name: String) -> Result<(Arc<Shared>, Start), Error> {
    let bad = |m: String| invalid(&name, m);
    let foreign = c.foreign_fields();
    if !foreign.is_empty() {
        return Err(bad(format!(
            "{} not used by a {} notifier",
            foreign.join(", "),
            c.kind.as_str()
        )));
    }
    if c.timeout.is_zero() {
        return Err(bad("timeout: must be above 0".into()));
    }
    if c.max_attempts == 0 {
        return Err(bad("max_attempts: must be at least 1".into()));
    }
    if c.queue_size == 0 {
        return Err(bad("queue_size: must be at least 1".into()));
    }
    let mut re = Vec::new();
    for (k, r) in &c.match_re {
        let compiled = Regex::new(&format!("^(?:{r})$"))
            .map_err(|e| bad(format!("match_re.{k}: invalid regular expression: {e}")))?;
        re.push((k.clone(), compiled));
    }
    let route = Route {
        eq: c.matchers.clone(),
        re,
    };
    let url = || {
        c.url
            .as_deref()
            .ok_or_else(|| bad(format!("url: required for a {} notifier", c.kind.as_str())))
    };
    let external_url = c.external_url.clone().unwrap_or_default();
    let retry = Retry {
        initial: c.retry_initial.max(Duration::from_millis(1)),
        max: c.retry_max.max(c.retry_initial),
        attempts: c.max_attempts,
    };
    let (start, alerts) = match c.kind {
        Kind::Webhook => (
            Start::Queue(
                Deliver::Webhook {
                    target: HttpTarget::new(c, url()?, "").map_err(bad)?,
                    external_url,
                },
                retry,
            ),
            None,
        ),
        Kind::Ntfy => (
            Start::Queue(
                Deliver::Ntfy(crate::ntfy::Ntfy::new(c, url()?).map_err(bad)?),
                retry,
            ),
            None,
        ),
        Kind::Exec => (
            Start::Queue(
                Deliver::Exec(crate::exec::Exec::new(c, external_url).map_err(bad)?),
                retry,
            ),
            None,
        ),
        Kind::Email => (
            Start::Queue(
                Deliver::Email(Box::new(crate::email::Email::new(c).map_err(bad)?)),
                retry,
            ),
            None,
        ),
        Kind::Alertmanager => {
            let target = HttpTarget::new(c, url()?, "/api/v2/alerts").map_err(bad)?;
            let resend = c.resend_interval.unwrap_or(DEFAULT_RESEND);
            if resend.is_zero() {
                return Err(bad("resend_interval: must be above 0".into()));
            }
            let (tx, rx) = watch::channel(Vec::new());
            (
                Start::Alertmanager(crate::alertmanager::Pusher {
                    target,
                    resend,
                    retry_initial: retry.initial,
                    retry_max: retry.max,
                    state: rx,
                }),
                Some(tx),
            )
        }
    };
    let shared = Arc::new(Shared {
        name,
        kind: c.kind,
        route,
        send_resolved: c.send_resolved,
        queue: Mutex::new(VecDeque::new()),
        queue_size: c.queue_size,
        wake: Notify::new(),
        success: AtomicU64::new(0),
        failure: AtomicU64::new(0),
        dropped: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        alerts,
    });
    Ok((shared, start))
}

/// Wait `d`, cut short by the drain deadline once shutdown began.
pub(crate) async fn pause(drain: &mut watch::Receiver<Option<Instant>>, d: Duration) {
    let until = Instant::now() + d;
    loop {
        let end = match *drain.borrow_and_update() {
            Some(dl) => until.min(dl),
            None => until,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(end) => return,
            r = drain.changed() => if r.is_err() {
                tokio::time::sleep_until(end).await;
                return;
            },
        }
    }
}

/// Whether shutdown began and its deadline passed.
pub(crate) fn past_deadline(drain: &watch::Receiver<Option<Instant>>) -> bool {
    matches!(*drain.borrow(), Some(dl) if Instant::now() >= dl)
}

async fn run_queue(
    n: Arc<Shared>,
    d: Deliver,
    retry: Retry,
    mut drain: watch::Receiver<Option<Instant>>,
) {
    let target = d.target();
    loop {
        let group = loop {
            // Notify keeps a permit when nobody waits, so a group queued
            // between this check and the wait is not missed.
            if let Some(g) = n.lock().pop_front() {
                n.in_flight.store(1, Ordering::Relaxed);
                break g;
            }
            if drain.borrow_and_update().is_some() {
                return;
            }
            tokio::select! {
                _ = n.wake.notified() => {}
                r = drain.changed() => if r.is_err() { return },
            }
        };
        let mut wait = retry.initial;
        let mut attempt = 1;
        loop {
            let result = d.send(&n.name, &group).await;
            let last = result.is_ok() || attempt >= retry.attempts || past_deadline(&drain);
            if last {
                n.in_flight.store(0, Ordering::Relaxed);
            }
            match result {
                Ok(()) => {
                    n.success.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(notifier = %n.name, kind = n.kind.as_str(), %target, group = %group.key, status = group.status().as_str(), "notification sent");
                    break;
                }
                Err(e) => {
                    n.failure.fetch_add(1, Ordering::Relaxed);
                    if last {
                        n.dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(notifier = %n.name, %target, group = %group.key, "notification failed ({e}); given up after {attempt} attempts");
                        break;
                    }
                    tracing::warn!(notifier = %n.name, %target, group = %group.key, "notification failed ({e}); attempt {} in {wait:?}", attempt + 1);
                    pause(&mut drain, wait).await;
                    wait = (wait * 2).min(retry.max);
                    attempt += 1;
                }
            }
        }
    }
}

impl Notifiers {
    /// `(success, failure, dropped)` of the notifier `name`.
    pub fn counts(&self, name: &str) -> Option<(u64, u64, u64)> {
        self.inner
            .notifiers
            .iter()
            .find(|n| n.name == name)
            .map(|n| {
                (
                    n.success.load(Ordering::Relaxed),
                    n.failure.load(Ordering::Relaxed),
                    n.dropped.load(Ordering::Relaxed),
                )
            })
    }
}
