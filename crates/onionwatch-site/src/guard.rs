//! The abusive-circuit policy of a site: the one place that wires the
//! policy's guard to the follower and resolves the tor to close circuits on.

use std::sync::Arc;

use onionwatch_inside::watch::Watcher;
use onionwatch_logs::follow::Follower;
use onionwatch_logs::guard::{AbuseGuard, ProjectTors, Resolver, TorOwner};
use onionwatch_logs::policy::{PolicyConfig, PolicyConfigError};
use onionwatch_tor::control::ControlTarget;

/// Apply `policy` to every access-log record `follower` reads (call it
/// before the follower starts), closing circuits on the tor `resolve`
/// names. The guard is the metrics source of the policy's counters.
pub fn attach(
    policy: PolicyConfig,
    follower: &Follower,
    resolve: Resolver,
) -> Result<Arc<AbuseGuard>, PolicyConfigError> {
    let guard = AbuseGuard::new(policy, resolve)?;
    follower.set_record_hook(guard.hook());
    Ok(guard)
}

/// Resolve a project to its tors, configured and discovered (with the
/// listeners each softmap worker's `HiddenServicePort` lines point at), so
/// that a circuit is closed on the tor whose listener served it.
pub fn project_tors(watcher: &Watcher) -> Resolver {
    let watcher = watcher.clone();
    Box::new(move |project| watcher.project_tors(project))
}

/// Resolve every project to `target`, the one tor whose logs are followed
/// (`onionwatch logs --control-port`); without one, circuits are not closed.
pub fn fixed_tor(target: Option<ControlTarget>) -> Resolver {
    Box::new(move |_| ProjectTors {
        tors: target
            .iter()
            .map(|t| TorOwner {
                name: "tor".into(),
                control: Some(t.clone()),
                listeners: Vec::new(),
            })
            .collect(),
    })
}
