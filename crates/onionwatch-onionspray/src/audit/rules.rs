//! The audit rules: their stable identifiers (used in JSON output and
//! tests) and the checks that yield their findings.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::{Finding, Severity, Source, Unit};
use crate::nginx_conf;
use crate::torrc::Listen;
use crate::Error;

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

pub(super) fn check_metrics(u: &Unit, out: &mut Vec<Finding>) {
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
            out.push(finding(u, Severity::Warning, METRICS_PORT_EXPOSED, loc,
                format!("{port_opt} {value} names the host {h:?}: onionwatch cannot tell whether it is a loopback address"),
                format!("use an IP address: {port_opt} 127.0.0.1:{port}")));
            true
        }
        Some(l) if !l.is_local() => {
            out.push(finding(u, Severity::Critical, METRICS_PORT_EXPOSED, loc,
                format!("{port_opt} {value} listens on a non-loopback address: whoever can reach it reads onion-service metrics that can help deanonymise Tor users (and MetricsPort is plain HTTP)"),
                format!("{port_opt} 127.0.0.1:{port} (reach it over SSH, or scrape it locally with onionwatch watch)")));
            false
        }
        _ => true,
    };
    if u.policies.is_empty() {
        out.push(finding(u, Severity::Warning, METRICS_POLICY_MISSING, loc,
            format!("{port_opt} is set but {policy_opt} is not: tor rejects every request by default, so nothing can scrape these metrics"),
            format!("{policy_opt} accept 127.0.0.1")));
        return;
    }
    for (policy, ploc) in &u.policies {
        if policy.trim().is_empty() {
            out.push(finding(u, Severity::Warning, METRICS_POLICY_EMPTY, ploc,
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
        out.push(finding(u, severity, METRICS_POLICY_ACCEPT_ALL, &ploc,
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

pub(super) fn check_control(u: &Unit, out: &mut Vec<Finding>) {
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
        out.push(finding(u, severity, CONTROL_PORT_NO_AUTH, loc,
            format!("ControlPort {listen} is a TCP port without authentication: {who} can control this tor, read its circuits and close them, or take its onion-service keys"),
            "CookieAuthentication 1 (or ControlPort unix:<data dir>/tor-control.sock as Onionspray does)".into()));
    }
}

pub(super) fn check_export(u: &Unit, out: &mut Vec<Finding>) -> Result<(), Error> {
    let (Some(torrc), Some(nginx)) = (&u.torrc, &u.nginx) else {
        return Ok(()); // not detectable without both configurations
    };
    let text = crate::torrc::read_bounded(nginx)?;
    let listens = nginx_conf::listens(&text);
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
            out.push(finding(u, Severity::Critical, EXPORT_WITHOUT_PROXY_PROTOCOL, &e.location(),
                format!("HiddenServiceExportCircuitID haproxy makes tor send a PROXY line first on every connection of onion service {}, but nginx does not expect it ({}): nginx answers every request with 400 Bad Request", hs.dir.value, describe(&missing_proxy)),
                "add proxy_protocol to those listen directives, e.g. `listen unix:…/port-80.sock proxy_protocol;` (Onionspray: set tor_export_circuit_id haproxy and regenerate the project)".into()));
        }
        if !unexpected_proxy.is_empty() {
            out.push(finding(u, Severity::Critical, PROXY_PROTOCOL_WITHOUT_EXPORT, &unexpected_proxy[0].3,
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

pub(super) fn check_shared(units: &[Unit], out: &mut Vec<Finding>) {
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
            ("MetricsPort", METRICS_PORT_SHARED, &metrics),
            ("ControlPort", CONTROL_PORT_SHARED, &controls),
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
