//! `onionwatch audit`: check tor and Onionspray configurations for unsafe
//! or broken monitoring settings.
//!
//! Inputs are torrc files, Onionspray project configurations (`set
//! tor_metrics_port …`), project directories (`projects/<name>/` with the
//! generated `tor.conf` and `nginx.conf`) and whole installations. Every
//! rule ([`rules`]) yields a [`Finding`] with a [`Severity`] and a
//! suggested fix. [`suggest_ports`] proposes a distinct loopback
//! MetricsPort per tor of an installation (`audit --suggest-ports`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{self, SprayProject};
use crate::torrc::{Listen, Torrc};
use crate::tree::{self, TorInstance};
use crate::Error;

mod ports;
pub mod rules;

pub use ports::{suggest_ports, suggestions_text, InstancePort, PortSuggestion};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Works, but unsafe or unmonitorable; fix soon.
    Warning,
    /// Exposes onion-service data, or breaks tor or nginx; fix now.
    Critical,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
        })
    }
}

/// One problem found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// Which rule ([`rules`]).
    pub rule: &'static str,
    /// The project (file name for a plain torrc).
    pub project: String,
    /// The tor instance (`tor`, a softmap worker, or `config` for a project configuration).
    pub instance: String,
    /// `file:line`.
    pub location: String,
    /// What is wrong and why it matters.
    pub message: String,
    /// What to change.
    pub fix: String,
}

/// Everything one run found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Findings, most severe first.
    pub findings: Vec<Finding>,
    /// Advice that is not a fault and does not change the exit status
    /// (`severity` is `warning` for its shape only): how to add what
    /// onionwatch could read, e.g. a `stub_status` location.
    pub notes: Vec<Finding>,
    /// Tor instances and project configurations checked.
    pub checked: usize,
    /// Files read.
    pub files: Vec<PathBuf>,
}

impl Report {
    /// The worst severity found.
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// Count of findings of a severity.
    pub fn count(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == s).count()
    }

    /// Exit status: 0 clean, 1 warnings only, 2 any critical finding.
    pub fn exit_code(&self) -> u8 {
        match self.worst() {
            None => 0,
            Some(Severity::Warning) => 1,
            Some(Severity::Critical) => 2,
        }
    }

    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for f in &self.findings {
            s.push_str(&format!(
                "{} {} [{}/{}] {}\n  {}\n  fix: {}\n",
                f.severity, f.rule, f.project, f.instance, f.location, f.message, f.fix
            ));
        }
        for f in &self.notes {
            s.push_str(&format!(
                "NOTE {} [{}/{}] {}\n  {}\n  to do: {}\n",
                f.rule, f.project, f.instance, f.location, f.message, f.fix
            ));
        }
        s.push_str(&format!(
            "{} critical, {} warning(s) in {} tor instance(s) and project configuration(s), {} file(s) read\n",
            self.count(Severity::Critical),
            self.count(Severity::Warning),
            self.checked,
            self.files.len()
        ));
        s
    }
}

/// Where an instance's settings come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Source {
    /// A torrc (plain or generated `tor.conf`).
    Torrc,
    /// An Onionspray project configuration (`set …`).
    Config,
}

/// The monitoring-relevant settings of one tor instance or project configuration.
#[derive(Debug, Clone)]
struct Unit {
    project: String,
    instance: String,
    source: Source,
    metrics: Option<(String, String)>,
    policies: Vec<(String, String)>,
    controls: Vec<(Listen, String)>,
    authenticated: bool,
    torrc: Option<Torrc>,
    nginx: Option<PathBuf>,
    /// The Onionspray project configuration it comes from.
    spray: Option<SprayProject>,
}

/// What `collect` gathers besides units: findings and notes on the tree.
#[derive(Debug, Default)]
struct Gathered {
    files: BTreeSet<PathBuf>,
    findings: Vec<Finding>,
    notes: Vec<Finding>,
}

/// Audit `paths`: files (torrc or Onionspray configuration, told apart by
/// content), project directories and installations.
pub fn audit(paths: &[PathBuf]) -> Result<Report, Error> {
    let mut units = Vec::new();
    let mut g = Gathered::default();
    for path in paths {
        collect(path, &mut units, &mut g)?;
    }
    let mut report = Report {
        findings: g.findings,
        notes: g.notes,
        checked: units.len(),
        files: g.files.into_iter().collect(),
    };
    for u in &units {
        rules::check_metrics(u, &mut report.findings);
        rules::check_control(u, &mut report.findings);
        rules::check_export(u, &mut report.findings)?;
        rules::check_circuit_header(u, &mut report.findings);
    }
    rules::check_shared(&units, &mut report.findings);
    report.findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.location.cmp(&b.location))
    });
    Ok(report)
}

fn collect(path: &Path, units: &mut Vec<Unit>, g: &mut Gathered) -> Result<(), Error> {
    let files = &mut g.files;
    if path.is_dir() {
        if tree::is_installation(path) {
            let inst = tree::discover(path)?;
            rules::check_tree(&inst, &mut g.findings, &mut g.notes);
            for p in &inst.projects {
                for t in &p.tors {
                    files.insert(t.conf.clone());
                    units.push(from_tor(&p.name, t, p.nginx_conf.clone()));
                }
                if let Some(n) = &p.nginx_conf {
                    files.insert(n.clone());
                }
            }
            for c in &inst.configs {
                files.insert(c.file.clone());
                units.push(from_config(c));
            }
            // Templates (`.tconf`) are checked as their `.conf` is.
            for file in tree::templates(path) {
                let text = crate::torrc::read_bounded(&file)?;
                files.insert(file.clone());
                units.extend(config::parse_config(&text, &file).iter().map(from_config));
            }
            return Ok(());
        }
        if path.join("tor.conf").is_file() {
            // One project directory.
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("project")
                .trim_end_matches(".d")
                .to_owned();
            let conf = path.join("tor.conf");
            let t = TorInstance {
                name: "tor".into(),
                torrc: Torrc::read(&conf)?,
                conf: conf.clone(),
            };
            let nginx = Some(path.join("nginx.conf")).filter(|p| p.is_file());
            files.insert(conf);
            if let Some(n) = &nginx {
                files.insert(n.clone());
            }
            units.push(from_tor(&name, &t, nginx));
            return Ok(());
        }
        return Err(Error::NotOnionspray {
            path: path.to_owned(),
            reason: "it has neither projects/ nor tor.conf (give a torrc, an Onionspray configuration, a project directory or the installation directory)".into(),
        });
    }
    let text = crate::torrc::read_bounded(path)?;
    files.insert(path.to_owned());
    if config::looks_like_config(&text) {
        units.extend(config::parse_config(&text, path).iter().map(from_config));
    } else {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("torrc")
            .to_owned();
        let t = TorInstance {
            name: "tor".into(),
            torrc: Torrc::read(path)?,
            conf: path.to_owned(),
        };
        units.push(from_tor(&name, &t, None));
    }
    Ok(())
}

fn from_tor(project: &str, t: &TorInstance, nginx: Option<PathBuf>) -> Unit {
    let r = &t.torrc;
    Unit {
        project: project.to_owned(),
        instance: t.name.clone(),
        source: Source::Torrc,
        metrics: r
            .first("MetricsPort")
            .map(|e| (e.value.clone(), e.location())),
        policies: r
            .all("MetricsPortPolicy")
            .map(|e| (e.value.clone(), e.location()))
            .collect(),
        controls: r
            .all("ControlPort")
            .filter_map(|e| Listen::parse(&e.value).map(|l| (l, e.location())))
            .filter(|(l, _)| *l != Listen::Disabled)
            .collect(),
        authenticated: r.flag("CookieAuthentication") == Some(true)
            || r.first("HashedControlPassword").is_some(),
        torrc: Some(r.clone()),
        nginx,
        spray: None,
    }
}

fn from_config(p: &SprayProject) -> Unit {
    let loc = |line: usize| format!("{}:{line}", p.file.display());
    Unit {
        project: p.name.clone(),
        instance: "config".into(),
        source: Source::Config,
        metrics: p
            .setting("tor_metrics_port")
            .map(|(v, l)| (v.to_owned(), loc(l))),
        policies: p
            .setting("tor_metrics_port_policy")
            .map(|(v, l)| vec![(v.to_owned(), loc(l))])
            .unwrap_or_default(),
        // Onionspray always uses a unix control socket.
        controls: Vec::new(),
        authenticated: true,
        torrc: None,
        nginx: None,
        spray: Some(p.clone()),
    }
}
