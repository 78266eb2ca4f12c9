//! The Alertmanager notifier: pushes the whole alert state to
//! `/api/v2/alerts` as Prometheus does, and lets Alertmanager group,
//! silence and route.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;

use crate::http::HttpTarget;
use crate::notifiers::{pause, Shared as NotifierShared};
use crate::{payload, Alert};

/// Firing alerts are pushed with `endsAt` this many resend intervals
/// ahead: Alertmanager resolves them by itself if onionwatch stops, but
/// not after one lost push (Prometheus uses 4 too).
const ENDS_AHEAD: u32 = 4;

pub(crate) struct Pusher {
    pub target: HttpTarget,
    pub resend: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub state: watch::Receiver<Vec<Alert>>,
}

impl Pusher {
    pub(crate) async fn run(
        mut self,
        n: Arc<NotifierShared>,
        mut drain: watch::Receiver<Option<Instant>>,
    ) {
        // Alerts last pushed as firing, by fingerprint: one that leaves
        // the state without a resolved entry is pushed resolved (now),
        // so Alertmanager never waits for its endsAt.
        let mut firing: BTreeMap<String, Alert> = BTreeMap::new();
        let mut gone: BTreeMap<String, Alert> = BTreeMap::new();
        let mut next: Option<Instant> = None;
        let mut wait = self.retry_initial;
        loop {
            let draining = drain.borrow_and_update().is_some();
            if !draining {
                tokio::select! {
                    r = self.state.changed() => if r.is_err() { return },
                    _ = sleep_until_opt(next) => {}
                    r = drain.changed() => if r.is_err() { return },
                }
            }
            let alerts = self.state.borrow_and_update().clone();
            let now = SystemTime::now();
            for (fp, a) in &firing {
                if !alerts
                    .iter()
                    .any(|b| &payload::fingerprint(&b.labels) == fp)
                {
                    gone.entry(fp.clone()).or_insert_with(|| Alert {
                        ends_at: Some(now),
                        ..a.clone()
                    });
                }
            }
            let mut push = alerts.clone();
            push.extend(
                gone.iter()
                    .filter(|(fp, _)| {
                        !alerts
                            .iter()
                            .any(|b| &&payload::fingerprint(&b.labels) == fp)
                    })
                    .map(|(_, a)| a.clone()),
            );
            if push.is_empty() {
                next = None;
                if draining {
                    return;
                }
                continue;
            }
            let body = payload::alertmanager(&push, now + self.resend * ENDS_AHEAD, "");
            match self
                .target
                .post("application/json", &[], body.to_string().into_bytes())
                .await
            {
                Ok(()) => {
                    n.success.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(notifier = %n.name, target = %self.target.redacted, alerts = push.len(), "alerts pushed to Alertmanager");
                    firing = alerts
                        .iter()
                        .filter(|a| a.is_firing())
                        .map(|a| (payload::fingerprint(&a.labels), a.clone()))
                        .collect();
                    gone.clear();
                    wait = self.retry_initial;
                    next = Some(Instant::now() + self.resend);
                    if draining {
                        return;
                    }
                }
                Err(e) => {
                    n.failure.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(notifier = %n.name, target = %self.target.redacted, "pushing alerts to Alertmanager failed ({e}); again in {wait:?}");
                    if crate::notifiers::past_deadline(&drain) {
                        n.dropped.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    if draining {
                        pause(&mut drain, wait).await;
                        if crate::notifiers::past_deadline(&drain) {
                            n.dropped.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                    next = Some(Instant::now() + wait.min(self.resend));
                    wait = (wait * 2).min(self.retry_max);
                }
            }
        }
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
