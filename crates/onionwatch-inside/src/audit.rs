//! `onionwatch audit`: check tor and Onionspray configurations for unsafe
//! or broken monitoring settings.
//!
//! Inputs are torrc files, Onionspray project configurations (`set
//! tor_metrics_port …`), project directories (`projects/<name>/` with the
//! generated `tor.conf` and `nginx.conf`) and whole installations. Every
//! rule yields a [`Finding`] with a [`Severity`] and a suggested fix.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::onionspray::{self, nginx_listens, SprayProject, TorInstance};
use crate::torrc::{Listen, Torrc};
use crate::Error;

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

/// Rule identifiers (stable; used in JSON output and tests).
pub mod rules {
    /// MetricsPort on an address other hosts can reach.
    pub const METRICS_PORT_EXPOSED: &str = "metrics-port-exposed";
    /// MetricsPort without MetricsPortPolicy (tor rejects every request).
    pub const METRICS_POLICY_MISSING: &str = "metrics-policy-missing";
    /// MetricsPortPolicy set to an empty value.
    pub const METRICS_POLICY_EMPTY: &str = "metrics-policy-empty";
    /// MetricsPortPolicy that accepts every address.
    pub const METRICS_POLICY_ACCEPT_ALL: &str = "metrics-policy-accept-all";
    /// The same MetricsPort in two projects (or tor instances).
    pub const METRICS_PORT_SHARED: &str = "metrics-port-shared";
    /// The same ControlPort in two projects (or tor instances).
    pub const CONTROL_PORT_SHARED: &str = "control-port-shared";
    /// A TCP ControlPort without cookie or password authentication.
    pub const CONTROL_PORT_NO_AUTH: &str = "control-port-no-auth";
    /// HiddenServiceExportCircuitID but nginx does not read the PROXY line.
    pub const EXPORT_WITHOUT_PROXY_PROTOCOL: &str = "export-circuit-id-without-proxy-protocol";
    /// nginx expects a PROXY line that tor does not send.
    pub const PROXY_PROTOCOL_WITHOUT_EXPORT: &str = "proxy-protocol-without-export-circuit-id";
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
}

/// Audit `paths`: files (torrc or Onionspray configuration, told apart by
/// content), project directories and installations.
pub fn audit(paths: &[PathBuf]) -> Result<Report, Error> {
    let mut units = Vec::new();
    let mut files = BTreeSet::new();
    for path in paths {
        collect(path, &mut units, &mut files)?;
    }
    let mut report = Report {
        findings: Vec::new(),
        checked: units.len(),
        files: files.into_iter().collect(),
    };
    for u in &units {
        check_metrics(u, &mut report.findings);
        check_control(u, &mut report.findings);
        check_export(u, &mut report.findings)?;
    }
    check_shared(&units, &mut report.findings);
    report.findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.location.cmp(&b.location))
    });
    Ok(report)
}

fn collect(path: &Path, units: &mut Vec<Unit>, files: &mut BTreeSet<PathBuf>) -> Result<(), Error> {
    if path.is_dir() {
        if onionspray::is_installation(path) {
            let inst = onionspray::discover(path)?;
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
    if onionspray::looks_like_config(&text) {
        units.extend(
            onionspray::parse_config(&text, path)
                .iter()
                .map(from_config),
        );
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
    }
}

fn names(u: &Unit) -> (&'static str, &'static str) {
    match u.source {
        Source::Torrc => ("MetricsPort", "MetricsPortPolicy"),
        Source::Config => ("set tor_metrics_port", "set tor_metrics_port_policy"),
    }
}

fn finding(
    u: &Unit,
    severity: Severity,
    rule: &'static str,
    location: &str,
    message: String,
    fix: String,
) -> Finding {
    Finding {
        severity,
        rule,
        project: u.project.clone(),
        instance: u.instance.clone(),
        location: location.to_owned(),
        message,
        fix,
    }
}

fn check_metrics(u: &Unit, out: &mut Vec<Finding>) {
    let Some((value, loc)) = &u.metrics else {
        return;
    };
    let (port_opt, policy_opt) = names(u);
    let listen = Listen::parse(value);
    if listen == Some(Listen::Disabled) {
        return;
    }
    let port = listen.as_ref().and_then(Listen::port).unwrap_or(9035);
    let local = match &listen {
        Some(l @ Listen::Host(h, _)) if !l.is_local() => {
            out.push(finding(u, Severity::Warning, rules::METRICS_PORT_EXPOSED, loc,
                format!("{port_opt} {value} names the host {h:?}: onionwatch cannot tell whether it is a loopback address"),
                format!("use an IP address: {port_opt} 127.0.0.1:{port}")));
            true
        }
        Some(l) if !l.is_local() => {
            out.push(finding(u, Severity::Critical, rules::METRICS_PORT_EXPOSED, loc,
                format!("{port_opt} {value} listens on a non-loopback address: whoever can reach it reads onion-service metrics that can help deanonymise Tor users (and MetricsPort is plain HTTP)"),
                format!("{port_opt} 127.0.0.1:{port} (reach it over SSH, or scrape it locally with onionwatch watch)")));
            false
        }
        _ => true,
    };
    if u.policies.is_empty() {
        out.push(finding(u, Severity::Warning, rules::METRICS_POLICY_MISSING, loc,
            format!("{port_opt} is set but {policy_opt} is not: tor rejects every request by default, so nothing can scrape these metrics"),
            format!("{policy_opt} accept 127.0.0.1")));
        return;
    }
    for (policy, ploc) in &u.policies {
        if policy.trim().is_empty() {
            out.push(finding(u, Severity::Warning, rules::METRICS_POLICY_EMPTY, ploc,
                format!("{policy_opt} is empty: tor rejects every request, so nothing can scrape these metrics"),
                format!("{policy_opt} accept 127.0.0.1")));
        }
    }
    if let Some((policy, ploc)) = accepts_everyone(&u.policies) {
        let (severity, why) = if local {
            (Severity::Warning, "only local users and processes can connect today, but the policy is the only guard left if the address ever changes")
        } else {
            (Severity::Critical, "together with a non-loopback address, anyone who can reach the port reads the metrics")
        };
        out.push(finding(u, severity, rules::METRICS_POLICY_ACCEPT_ALL, &ploc,
            format!("{policy_opt} {policy} accepts every address: {why}"),
            format!("{policy_opt} accept 127.0.0.1 (list the one scraper address; everything else is rejected)")));
    }
}

/// The first policy entry that accepts every address before any `reject *`.
fn accepts_everyone(policies: &[(String, String)]) -> Option<(String, String)> {
    for (value, loc) in policies {
        for item in value.split(',') {
            let mut w = item.split_whitespace();
            let (Some(action), Some(pattern)) = (w.next(), w.next()) else {
                continue;
            };
            let addr = pattern.split(':').next().unwrap_or(pattern);
            let everyone = matches!(addr, "*" | "*4" | "*6" | "0.0.0.0/0" | "[::]/0" | "::/0")
                || pattern.starts_with("[::]/0");
            if everyone {
                return action
                    .eq_ignore_ascii_case("accept")
                    .then(|| (value.clone(), loc.clone()));
            }
        }
    }
    None
}

fn check_control(u: &Unit, out: &mut Vec<Finding>) {
    if u.authenticated {
        return;
    }
    for (listen, loc) in &u.controls {
        if matches!(listen, Listen::Unix(_)) {
            continue; // file permissions guard a unix socket (Onionspray's way)
        }
        let (severity, who) = if listen.is_local() {
            (Severity::Warning, "any local user or process")
        } else {
            (Severity::Critical, "anyone who can reach it")
        };
        out.push(finding(u, severity, rules::CONTROL_PORT_NO_AUTH, loc,
            format!("ControlPort {listen} is a TCP port without authentication: {who} can control this tor, read its circuits and close them, or take its onion-service keys"),
            "CookieAuthentication 1 (or ControlPort unix:<data dir>/tor-control.sock as Onionspray does)".into()));
    }
}

fn check_export(u: &Unit, out: &mut Vec<Finding>) -> Result<(), Error> {
    let (Some(torrc), Some(nginx)) = (&u.torrc, &u.nginx) else {
        return Ok(()); // not detectable without both configurations
    };
    let text = crate::torrc::read_bounded(nginx)?;
    let listens = nginx_listens(&text);
    for hs in torrc.onion_services() {
        let export = hs
            .export_circuit_id()
            .filter(|e| e.value.trim().eq_ignore_ascii_case("haproxy"));
        // (virtual port -> target, nginx listen, nginx location) per mismatch kind.
        let mut missing_proxy = Vec::new();
        let mut unexpected_proxy = Vec::new();
        for (virt, target) in hs.ports() {
            let Some((line, words)) = listens
                .iter()
                .find(|(_, w)| w.first().is_some_and(|a| same_endpoint(a, &target)))
            else {
                continue;
            };
            let proxy = words.iter().any(|w| w == "proxy_protocol");
            let item = (
                virt,
                target,
                words.join(" "),
                format!("{}:{line}", nginx.display()),
            );
            match (export.is_some(), proxy) {
                (true, false) => missing_proxy.push(item),
                (false, true) => unexpected_proxy.push(item),
                _ => {}
            }
        }
        let describe = |items: &[(String, String, String, String)]| {
            items
                .iter()
                .map(|(virt, _, listen, loc)| format!("port {virt}: `listen {listen}` ({loc})"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        if let (Some(e), false) = (export, missing_proxy.is_empty()) {
            out.push(finding(u, Severity::Critical, rules::EXPORT_WITHOUT_PROXY_PROTOCOL, &e.location(),
                format!("HiddenServiceExportCircuitID haproxy makes tor send a PROXY line first on every connection of onion service {}, but nginx does not expect it ({}): nginx answers every request with 400 Bad Request", hs.dir.value, describe(&missing_proxy)),
                "add proxy_protocol to those listen directives, e.g. `listen unix:…/port-80.sock proxy_protocol;` (Onionspray: set tor_export_circuit_id haproxy and regenerate the project)".into()));
        }
        if !unexpected_proxy.is_empty() {
            out.push(finding(u, Severity::Critical, rules::PROXY_PROTOCOL_WITHOUT_EXPORT, &unexpected_proxy[0].3,
                format!("nginx expects a PROXY line ({}), but onion service {} does not send one (no HiddenServiceExportCircuitID haproxy): nginx drops every connection", describe(&unexpected_proxy), hs.dir.value),
                format!("add `HiddenServiceExportCircuitID haproxy` after `HiddenServiceDir {}`, or remove proxy_protocol from those listen directives", hs.dir.value)));
        }
    }
    Ok(())
}

/// Whether an nginx `listen` address and a tor `HiddenServicePort` target
/// name the same endpoint.
fn same_endpoint(nginx: &str, tor: &str) -> bool {
    if let (Some(a), Some(b)) = (nginx.strip_prefix("unix:"), tor.strip_prefix("unix:")) {
        return a == b;
    }
    let tor_addr: Option<SocketAddr> = tor.parse().ok().or_else(|| {
        tor.parse::<u16>()
            .ok()
            .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p))
    });
    let nginx_addr: Option<(Option<IpAddr>, u16)> = match nginx.parse::<SocketAddr>() {
        Ok(a) => Some((Some(a.ip()), a.port())),
        Err(_) => nginx.parse::<u16>().ok().map(|p| (None, p)).or_else(|| {
            nginx
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse().ok())
                .map(|p| (None, p))
        }),
    };
    match (tor_addr, nginx_addr) {
        (Some(t), Some((ip, port))) => {
            t.port() == port && ip.is_none_or(|ip| ip == t.ip() || ip.is_unspecified())
        }
        _ => false,
    }
}

fn check_shared(units: &[Unit], out: &mut Vec<Finding>) {
    for source in [Source::Torrc, Source::Config] {
        let mut metrics: BTreeMap<String, Vec<(&Unit, &str)>> = BTreeMap::new();
        let mut controls: BTreeMap<String, Vec<(&Unit, &str)>> = BTreeMap::new();
        for u in units.iter().filter(|u| u.source == source) {
            if let Some((v, loc)) = &u.metrics {
                if let Some(key) = Listen::parse(v).and_then(|l| endpoint_key(&l)) {
                    metrics.entry(key).or_default().push((u, loc));
                }
            }
            for (l, loc) in &u.controls {
                if let Some(key) = endpoint_key(l) {
                    controls.entry(key).or_default().push((u, loc));
                }
            }
        }
        for (what, rule, map) in [
            ("MetricsPort", rules::METRICS_PORT_SHARED, &metrics),
            ("ControlPort", rules::CONTROL_PORT_SHARED, &controls),
        ] {
            for (endpoint, users) in map {
                let distinct: BTreeSet<(&str, &str)> = users
                    .iter()
                    .map(|(u, _)| (u.project.as_str(), u.instance.as_str()))
                    .collect();
                if distinct.len() < 2 {
                    continue;
                }
                let who: Vec<String> = users
                    .iter()
                    .map(|(u, loc)| format!("{}/{} ({loc})", u.project, u.instance))
                    .collect();
                for (u, loc) in users.iter().skip(1) {
                    let fix = if what == "MetricsPort" {
                        "give every project its own loopback port: `onionwatch audit --suggest-ports <onionspray dir>` prints an assignment".to_owned()
                    } else {
                        "give every tor its own ControlPort (Onionspray: the default unix:<project dir>/tor-control.sock)".to_owned()
                    };
                    out.push(finding(u, Severity::Critical, rule, loc,
                        format!("{what} on {endpoint} is used by {}: only the first tor can bind it, the others fail to start or a scraper reads the wrong project", who.join(", ")),
                        fix));
                }
            }
        }
    }
}

/// A key under which two listeners conflict (ports on a wildcard address
/// conflict with any address on the same port).
fn endpoint_key(l: &Listen) -> Option<String> {
    match l {
        Listen::Tcp(a) => Some(format!("port {}", a.port())),
        Listen::Host(_, p) => Some(format!("port {p}")),
        Listen::Unix(p) => Some(format!("unix:{}", p.display())),
        Listen::Auto | Listen::Disabled => None,
    }
}

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
    let inst = onionspray::discover(root)?;
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
