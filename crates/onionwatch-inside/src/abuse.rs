//! The abusive-circuit policy applied to followed access logs: one
//! [`Policy`] per project, fed by the log follower's record hook, and
//! `close` decisions sent to that project's tor with `CLOSECIRCUIT`.
//!
//! Which tor to ask is resolved when a circuit is to be closed, so projects
//! discovered later are covered. A project with several tors (Onionspray's
//! softmap workers) is never acted on: circuit ids are per tor, and closing
//! the same id on every tor would cut unrelated users.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use onionwatch_logs::follow::{RecordHook, RecordInfo};
use onionwatch_logs::policy::{Action, Policy, PolicyConfig, PolicyConfigError};
use onionwatch_metrics::{Collect, Family};

use crate::circuit_close::{CloseExecutor, ControlTarget};

/// Finds the control port of a project's only tor; `Err` says why not.
pub type Resolver = Box<dyn Fn(&str) -> Result<ControlTarget, String> + Send + Sync>;

/// Per-project policies and close executors. Shared by the follower's hook
/// (which observes) and the metrics registry (which reads).
pub struct AbuseGuard {
    config: PolicyConfig,
    resolve: Resolver,
    runtime: tokio::runtime::Handle,
    projects: Mutex<BTreeMap<String, Project>>,
}

struct Project {
    policy: Policy,
    /// Started at the project's first close decision.
    executor: Option<CloseExecutor>,
}

impl AbuseGuard {
    /// A guard applying `config` to every project. Must be called inside a
    /// tokio runtime: close executors are spawned on it later, from the
    /// follower's thread.
    pub fn new(config: PolicyConfig, resolve: Resolver) -> Result<Arc<Self>, PolicyConfigError> {
        config.validate()?;
        Ok(Arc::new(AbuseGuard {
            config,
            resolve,
            runtime: tokio::runtime::Handle::current(),
            projects: Mutex::new(BTreeMap::new()),
        }))
    }

    /// A hook for [`onionwatch_logs::follow::Follower::set_record_hook`].
    pub fn hook(self: &Arc<Self>) -> RecordHook {
        let guard = Arc::clone(self);
        Box::new(move |record| guard.observe(record))
    }

    /// Count one record; act on its circuit if it crosses the limit.
    pub fn observe(&self, record: &RecordInfo<'_>) {
        let (Some(circuit), Some(time)) = (record.circuit, record.time) else {
            return;
        };
        let mut projects = self.projects.lock().unwrap_or_else(|e| e.into_inner());
        let project = projects
            .entry(record.project.to_owned())
            .or_insert_with(|| Project {
                // Validated in new().
                policy: Policy::new(self.config.clone()).expect("validated policy"),
                executor: None,
            });
        let Some(decision) = project.policy.observe(circuit, time) else {
            return;
        };
        if decision.action != Action::Close {
            return;
        }
        if project.executor.is_none() {
            match (self.resolve)(record.project) {
                Ok(target) => {
                    let _runtime = self.runtime.enter();
                    project.executor = Some(CloseExecutor::spawn(target.closer()));
                }
                Err(why) => {
                    tracing::warn!(
                        project = record.project,
                        circuit = circuit.0,
                        "not closing abusive circuit {}: {why}",
                        circuit.0
                    );
                    return;
                }
            }
        }
        if let Some(executor) = &project.executor {
            executor.submit(&decision);
        }
    }
}

impl Collect for AbuseGuard {
    fn collect(&self, out: &mut Vec<Family>) {
        let projects = self.projects.lock().unwrap_or_else(|e| e.into_inner());
        let mut families = Vec::new();
        for (name, p) in projects.iter() {
            families.extend(p.policy.counters().to_families(Some(name)));
            if let Some(e) = &p.executor {
                families.extend(e.counters().to_families(Some(name)));
            }
        }
        out.extend(onionwatch_metrics::merge(families));
    }
}

impl std::fmt::Debug for AbuseGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AbuseGuard")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The resolver for `onionwatch watch`: the project's only control port.
pub fn single_control_port(
    ports: Vec<(
        onionwatch_tor::control::ControlAddr,
        Option<std::path::PathBuf>,
    )>,
) -> Result<ControlTarget, String> {
    match <[_; 1]>::try_from(ports) {
        Ok([(control_port, control_cookie)]) => Ok(ControlTarget {
            control_port,
            control_password: None,
            control_cookie,
        }),
        Err(ports) if ports.is_empty() => {
            Err("the project has no control port configured or discovered".into())
        }
        Err(ports) => Err(format!(
            "the project has {} tors and circuit ids are per tor",
            ports.len()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onionwatch_tor::circuit_id::CircuitId;

    fn record(project: &str, circuit: u32, time: i64) -> RecordInfo<'_> {
        RecordInfo {
            project,
            circuit: Some(CircuitId(circuit)),
            time: Some(time),
            status: Some(200),
        }
    }

    #[tokio::test]
    async fn projects_are_counted_apart_and_unresolvable_closes_are_skipped() {
        let config = PolicyConfig {
            max_requests: 2,
            window_secs: 60,
            action: Action::Close,
            i_understand_closing_circuits: true,
            ..PolicyConfig::default()
        };
        let guard = AbuseGuard::new(config, Box::new(|_| single_control_port(vec![]))).unwrap();
        for t in 0..3 {
            guard.observe(&record("a", 7, t));
            guard.observe(&record("b", 7, t));
        }
        // Under the limit in b's window; no circuit or time: ignored.
        guard.observe(&RecordInfo {
            project: "c",
            circuit: None,
            time: Some(1),
            status: None,
        });
        let mut out = Vec::new();
        guard.collect(&mut out);
        let text = onionwatch_metrics::render(&out, onionwatch_metrics::Format::Prometheus);
        for want in [
            "onionwatch_log_abusive_circuits_total{project=\"a\",action=\"close\"} 1\n",
            "onionwatch_log_abusive_circuits_total{project=\"b\",action=\"close\"} 1\n",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
        assert_eq!(
            text.matches("# TYPE onionwatch_log_abusive_circuits_total")
                .count(),
            1
        );
        assert!(!text.contains("project=\"c\""), "{text}");
        // Nothing to close with: no executor, so no close counters.
        assert!(
            !text.contains("onionwatch_log_circuit_closes_total"),
            "{text}"
        );
    }

    #[test]
    fn only_a_project_with_one_tor_is_acted_on() {
        use onionwatch_tor::control::ControlAddr;
        let addr: ControlAddr = "127.0.0.1:9051".parse().unwrap();
        assert!(single_control_port(vec![])
            .unwrap_err()
            .contains("no control port"));
        let two = vec![(addr.clone(), None), (addr.clone(), None)];
        assert!(single_control_port(two).unwrap_err().contains("2 tors"));
        let one = single_control_port(vec![(addr.clone(), None)]).unwrap();
        assert_eq!(one.control_port, addr);
    }
}
