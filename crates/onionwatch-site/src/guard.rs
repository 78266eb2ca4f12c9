//! The abusive-circuit policy of a site: the one place that wires the
//! policy's guard to the follower and resolves the tor to close circuits on.

use std::sync::Arc;

use onionwatch_inside::watch::Watcher;
use onionwatch_logs::follow::Follower;
use onionwatch_logs::guard::{single_control_port, AbuseGuard, Resolver};
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

/// Resolve a project to its only tor control port, configured or
/// discovered when the circuit is to be closed.
pub fn single_tor(watcher: &Watcher) -> Resolver {
    let ports = watcher.clone();
    Box::new(move |project| single_control_port(ports.control_ports(project)))
}

/// Resolve every project to `target`, the one tor whose logs are followed
/// (`onionwatch logs --control-port`); without one, circuits are not closed.
pub fn fixed_tor(target: Option<ControlTarget>) -> Resolver {
    Box::new(move |_| {
        target
            .clone()
            .ok_or_else(|| "no --control-port given".into())
    })
}
