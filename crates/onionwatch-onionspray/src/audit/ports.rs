//! `audit --suggest-ports`: a distinct loopback MetricsPort for every tor
//! of an installation, keeping the safe ones it already has.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use crate::config::SprayProject;
use crate::torrc::Listen;
use crate::tree::{self, TorInstance};
use crate::Error;

/// One tor's suggested MetricsPort.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstancePort {
    /// The tor instance (`tor`, or a softmap worker such as `hs-1`).
    pub instance: String,
    /// `127.0.0.1:PORT`.
    pub tor_metrics_port: String,
    /// Whether it already had this (safe, unique) port.
    pub kept: bool,
}

/// One project's suggested `tor_metrics_port`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortSuggestion {
    /// The project.
    pub project: String,
    /// `127.0.0.1:PORT`, the first tor's port (for `set tor_metrics_port`).
    /// Like `kept`, derivable from `tor_instances`; both stay so that the
    /// JSON of `audit --suggest-ports` keeps its fields.
    pub tor_metrics_port: String,
    /// The policy to pair it with.
    pub tor_metrics_port_policy: String,
    /// Whether every tor of the project keeps its current port.
    pub kept: bool,
    /// One distinct port per tor of the project: softmap workers are tors
    /// of their own and need one each.
    pub tor_instances: Vec<InstancePort>,
}

/// A safe MetricsPort per tor of every project of the installation at
/// `root`: a tor keeps its loopback port if nothing else uses or claims
/// it, otherwise it gets the next port from `base` that no tor uses and no
/// project configuration (`set tor_metrics_port`) names.
pub fn suggest_ports(root: &Path, base: u16) -> Result<Vec<PortSuggestion>, Error> {
    let inst = tree::discover(root)?;
    // Port → the projects that listen on or claim it; how many listeners.
    let mut claims: BTreeMap<u16, BTreeSet<&str>> = BTreeMap::new();
    let mut listeners: BTreeMap<u16, usize> = BTreeMap::new();
    for p in &inst.projects {
        for t in &p.tors {
            for key in [
                "MetricsPort",
                "ControlPort",
                "SocksPort",
                "ORPort",
                "DirPort",
            ] {
                for e in t.torrc.all(key) {
                    if let Some(port) = Listen::parse(&e.value).and_then(|l| l.port()) {
                        *listeners.entry(port).or_default() += 1;
                        claims.entry(port).or_default().insert(&p.name);
                    }
                }
            }
        }
    }
    let config_port = |c: &SprayProject| {
        c.setting("tor_metrics_port")
            .and_then(|(v, _)| Listen::parse(v))
            .filter(|l| *l != Listen::Disabled)
    };
    for c in &inst.configs {
        if let Some(port) = config_port(c).and_then(|l| l.port()) {
            claims.entry(port).or_default().insert(&c.name);
        }
    }
    // Not to hand out: what is claimed, then what is handed out.
    let mut used: BTreeSet<u16> = claims.keys().copied().collect();
    // Safe to keep for `project`: loopback, one listener at most, nobody else's.
    let keepable = |l: Option<Listen>, project: &str| {
        l.filter(|l| matches!(l, Listen::Tcp(a) if a.ip().is_loopback()))
            .and_then(|l| l.port())
            .filter(|port| {
                listeners.get(port).copied().unwrap_or(0) <= 1
                    && claims
                        .get(port)
                        .is_some_and(|c| c.len() == 1 && c.contains(project))
            })
    };
    let mut tors: BTreeMap<&str, Vec<&TorInstance>> = BTreeMap::new();
    for p in &inst.projects {
        tors.insert(&p.name, p.tors.iter().collect());
    }
    for c in &inst.configs {
        tors.entry(&c.name).or_default();
    }
    let mut next = base;
    let mut out = Vec::new();
    for (name, tors) in tors {
        let config = inst
            .configs
            .iter()
            .filter(|c| c.name == name)
            .find_map(config_port);
        // A project not generated yet has one tor to come.
        let instances: Vec<(String, Option<Listen>)> = match tors.as_slice() {
            [] => vec![("tor".into(), None)],
            tors => tors
                .iter()
                .map(|t| (t.name.clone(), t.metrics_port()))
                .collect(),
        };
        let single = instances.len() == 1;
        let mut ports = Vec::new();
        for (instance, current) in instances {
            // One tor may also keep the port its configuration names.
            let kept = keepable(current, name)
                .or_else(|| single.then(|| keepable(config.clone(), name)).flatten());
            let port = match kept {
                Some(p) => p,
                None => {
                    while used.contains(&next) {
                        next = next.checked_add(1).ok_or_else(|| Error::NotOnionspray {
                            path: root.to_owned(),
                            reason: "no free port left above --base-port".into(),
                        })?;
                    }
                    used.insert(next);
                    next
                }
            };
            ports.push(InstancePort {
                instance,
                tor_metrics_port: format!("127.0.0.1:{port}"),
                kept: kept.is_some(),
            });
        }
        out.push(PortSuggestion {
            project: name.to_owned(),
            tor_metrics_port: ports[0].tor_metrics_port.clone(),
            tor_metrics_port_policy: "accept 127.0.0.1".into(),
            kept: ports.iter().all(|p| p.kept),
            tor_instances: ports,
        });
    }
    Ok(out)
}

/// The suggestions as lines to paste into project configurations (and,
/// for softmap workers, the generated `tor.conf` of each worker).
pub fn suggestions_text(s: &[PortSuggestion]) -> String {
    let mut t = String::from(
        "# A distinct loopback MetricsPort per tor. Paste each block into the\n\
         # project's configuration, then regenerate and restart the project\n\
         # (./onionspray config <file>.conf && ./onionspray restart <project>).\n",
    );
    for p in s {
        t.push_str(&format!(
            "\n# project {}{}\nset tor_metrics_port {}\nset tor_metrics_port_policy {}\n",
            p.project,
            if p.kept {
                " (keeps its current port)"
            } else {
                ""
            },
            p.tor_metrics_port,
            p.tor_metrics_port_policy
        ));
        if p.tor_instances.len() > 1 {
            t.push_str(&format!(
                "# softmap: each of its {} tor workers needs its own port; check that\n\
                 # each worker's generated tor.conf has its line:\n",
                p.tor_instances.len()
            ));
            for i in &p.tor_instances {
                t.push_str(&format!(
                    "#   {}/tor.conf: MetricsPort {}{}\n",
                    i.instance,
                    i.tor_metrics_port,
                    if i.kept { " (current)" } else { "" }
                ));
            }
        }
    }
    t
}
