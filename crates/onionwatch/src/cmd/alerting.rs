//! The alert engine and the notifiers of `probe` and `watch`: on when the
//! configuration names a notifier (`notifiers:` or `--notify-webhook`) or
//! has an `alerts:` section.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use onionwatch_alert::{AlertsConfig, Engine};
use onionwatch_notify::{NotifierConfig, Notifiers};
use onionwatch_server::{Collect, ConstLabels};

/// How long queued notifications may still go out at shutdown.
const NOTIFY_GRACE: Duration = Duration::from_secs(5);

/// The running engine and its notifiers.
pub struct Alerting {
    pub engine: Engine,
    pub notifiers: Notifiers,
}

/// Start the notifiers of `configs` plus one webhook per `webhooks` URL,
/// and the engine over them (its state in `state_dir`), when there is a
/// notifier or an `alerts:` section; `None` otherwise.
pub fn start(
    alerts: Option<&AlertsConfig>,
    mut configs: Vec<NotifierConfig>,
    webhooks: &[String],
    state_dir: Option<&Path>,
    labels: &ConstLabels,
) -> Result<Option<Alerting>> {
    for url in webhooks {
        configs.push(Notifiers::webhook(url).context("--notify-webhook")?);
    }
    if configs.is_empty() && alerts.is_none() {
        return Ok(None);
    }
    let count = configs.len();
    let notifiers = Notifiers::start(configs).context("notifiers")?;
    if let Some(dir) = state_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
    }
    let default = AlertsConfig::default();
    let engine = Engine::new(
        alerts.unwrap_or(&default),
        // The prober's vantage and external labels: alerts carry the labels
        // of the series they are about.
        labels.pairs().iter().cloned().collect(),
        state_dir,
        Arc::new(notifiers.clone()),
    )
    .context("alerts")?;
    tracing::info!(
        rules = engine.rules().len(),
        notifiers = count,
        "alert rules evaluated"
    );
    Ok(Some(Alerting { engine, notifiers }))
}

impl Alerting {
    /// `onionwatch_alerts_firing` and `onionwatch_notifications_total`.
    pub fn collectors(&self) -> Vec<Arc<dyn Collect>> {
        vec![
            Arc::new(self.engine.clone()),
            Arc::new(self.notifiers.clone()),
        ]
    }

    /// Let queued notifications go out (for a few seconds at most).
    pub async fn shutdown(&self) {
        self.notifiers.shutdown(NOTIFY_GRACE).await;
    }
}
