//! Targets and logs from an Onionspray installation (read by
//! [`onionwatch_onionspray::tree`]): what each collector scrapes of every
//! project ([`collector::FROM_TOR`], [`collector::FROM_PROJECT`]: each
//! tor's MetricsPort and ControlPort, the nginx `stub_status`), and the
//! logs to follow.

use std::path::Path;

use onionwatch_logs::follow::{LogKind, Source};
use onionwatch_logs::guard::Listener;
use onionwatch_onionspray::tree::{self, Installation};

use crate::collector;
use crate::targets::{Origin, Target};
use crate::Error;

/// Read the installation at `root` and list its targets.
pub fn discover(root: &Path) -> Result<(Installation, Vec<Target>), Error> {
    let inst = tree::discover(root)?;
    let targets = targets_of(&inst);
    Ok((inst, targets))
}

/// The targets of an installation already read: per project, each tor's
/// (softmap workers included), then the project's own.
pub fn targets_of(inst: &Installation) -> Vec<Target> {
    let mut out = Vec::new();
    for p in &inst.projects {
        let target = |tor_instance: Option<&String>, endpoint| Target {
            project: p.name.clone(),
            tor_instance: tor_instance.cloned(),
            endpoint,
            origin: Origin::Onionspray,
        };
        for t in &p.tors {
            for from_tor in collector::FROM_TOR {
                out.extend(from_tor(t).map(|e| target(Some(&t.name), e)));
            }
        }
        for from_project in collector::FROM_PROJECT {
            out.extend(from_project(p).map(|e| target(None, e)));
        }
    }
    out
}

/// Per project and tor (softmap workers included), the listeners its onion
/// services' `HiddenServicePort` lines point at (targets that are no
/// address, such as a host name, are left out: that tor is never closed on
/// through them).
pub fn listeners_of(inst: &Installation) -> Vec<(String, String, Vec<Listener>)> {
    let mut out = Vec::new();
    for p in &inst.projects {
        for t in &p.tors {
            let listeners = t
                .torrc
                .onion_services()
                .iter()
                .flat_map(|hs| hs.ports())
                .filter_map(|(_, target)| Listener::from_target(&target))
                .collect();
            out.push((p.name.clone(), t.name.clone(), listeners));
        }
    }
    out
}

/// The logs to follow: every project's nginx access logs (per-domain
/// `nginx-access-<domain>.log` included), its nginx error log and each
/// tor's log (see [`tree::Project::access_logs`],
/// [`tree::Project::error_log`] and [`tree::Project::tor_logs`]), and the
/// installation's `onionbalance/*.log` and `log/*.log` (no project label:
/// they serve the whole installation).
pub fn log_sources(inst: &Installation) -> Vec<Source> {
    let mut out = Vec::new();
    for p in &inst.projects {
        out.push(Source {
            project: p.name.clone(),
            kind: LogKind::Access,
            pattern: p.access_logs(),
        });
        out.extend(p.tor_logs().into_iter().map(|pattern| Source {
            project: p.name.clone(),
            kind: LogKind::Tor,
            pattern,
        }));
        out.push(Source {
            project: p.name.clone(),
            kind: LogKind::NginxError,
            pattern: p.error_log(),
        });
    }
    out.extend(inst.onionbalance_logs.iter().map(|f| Source {
        project: String::new(),
        kind: LogKind::Onionbalance,
        pattern: f.clone(),
    }));
    // The installation's own logs (log/*.log, re-expanded as files
    // appear), once it has some.
    if let Some(dir) = inst.logs.first().and_then(|l| l.parent()) {
        out.push(Source {
            project: String::new(),
            kind: LogKind::Onionspray,
            pattern: dir.join("*.log"),
        });
    }
    out
}
