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
/// MetricsPortPolicy accepting a network (private ranges, a subnet)
/// rather than the scraper's hosts.
pub const METRICS_POLICY_WIDE: &str = "metrics-policy-wide";
/// `nginx_x_onion_circuit_id` without `tor_export_circuit_id haproxy`.
pub const CIRCUIT_HEADER_WITHOUT_EXPORT: &str = "x-onion-circuit-id-without-export";
/// `tor_export_circuit_id haproxy` without `nginx_x_onion_circuit_id`.
pub const EXPORT_WITHOUT_CIRCUIT_HEADER: &str = "export-circuit-id-without-x-onion-circuit-id";
/// A project configuration changed after its files were generated.
pub const CONFIGURATION_NOT_APPLIED: &str = "configuration-not-applied";
/// Something of the tree discovery cannot read.
pub const UNREADABLE: &str = "unreadable";
/// Note: a project's nginx serves no `stub_status` onionwatch can read.
pub const NGINX_NO_STATUS: &str = "nginx-no-status";

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
    for (network, ploc) in accepts_networks(&u.policies) {
        out.push(finding(u, Severity::Warning, METRICS_POLICY_WIDE, &ploc,
            format!("{policy_opt} accepts {network}, a whole network: every host in it (any container, VM or compromised machine there) reads onion-service metrics, not only the scraper"),
            format!("{policy_opt} accept <scraper address> for each host that scrapes (accept 127.0.0.1 when onionwatch runs on this machine)")));
    }
}

/// Whether an Onionspray setting is on (`1`, `true`, `yes`, `on`).
fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

/// `nginx_x_onion_circuit_id` and `tor_export_circuit_id haproxy` belong
/// together: nginx's header carries what tor's PROXY line says.
pub(super) fn check_circuit_header(u: &Unit, out: &mut Vec<Finding>) {
    let Some(p) = &u.spray else {
        return;
    };
    let loc = |line: usize| format!("{}:{line}", p.file.display());
    let header = p
        .setting("nginx_x_onion_circuit_id")
        .filter(|(v, _)| truthy(v));
    let export = p
        .setting("tor_export_circuit_id")
        .filter(|(v, _)| v.trim().eq_ignore_ascii_case("haproxy"));
    match (header, export) {
        (Some((_, line)), None) => out.push(finding(u, Severity::Warning, CIRCUIT_HEADER_WITHOUT_EXPORT, &loc(line),
            "set nginx_x_onion_circuit_id asks nginx for an X-Onion-CircuitID header, but tor_export_circuit_id is not haproxy: tor sends no circuit id, so the header carries none and rate limits keyed on it see one client".into(),
            "add `set tor_export_circuit_id haproxy` to this project, then `onionspray config` and restart the project".into())),
        (None, Some((_, line))) => out.push(finding(u, Severity::Warning, EXPORT_WITHOUT_CIRCUIT_HEADER, &loc(line),
            "tor_export_circuit_id haproxy gives nginx each connection's circuit id, but without nginx_x_onion_circuit_id 1 the upstream never sees it (Onionspray's documented pairing for per-circuit rate limits)".into(),
            "add `set nginx_x_onion_circuit_id 1` to this project, then `onionspray config` and restart the project".into())),
        _ => {}
    }
}

/// How much newer than its generated files a configuration must be to be
/// reported as not applied.
const STALE_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Findings and notes on an installation's tree: what discovery cannot
/// read, configurations not applied, projects without a status location.
pub(super) fn check_tree(
    inst: &crate::tree::Installation,
    out: &mut Vec<Finding>,
    notes: &mut Vec<Finding>,
) {
    let simple = |severity,
                  rule,
                  project: &str,
                  instance: &str,
                  location: String,
                  message: String,
                  fix: String| Finding {
        severity,
        rule,
        project: project.to_owned(),
        instance: instance.to_owned(),
        location,
        message,
        fix,
    };
    for u in &inst.unreadable {
        out.push(simple(
            Severity::Warning,
            UNREADABLE,
            &u.project,
            "tree",
            u.path.display().to_string(),
            format!(
                "cannot read the {}: {} (onionwatch watch would not monitor what is in it)",
                u.what, u.reason
            ),
            u.fix.clone(),
        ));
    }
    let mtime = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    for c in &inst.configs {
        let Some(project) = inst.projects.iter().find(|p| p.name == c.name) else {
            continue;
        };
        let Some(edited) = mtime(&c.file) else {
            continue;
        };
        let generated: Vec<&std::path::Path> = project
            .tors
            .iter()
            .map(|t| t.conf.as_path())
            .chain(project.nginx_conf.as_deref())
            .collect();
        // A margin: a checkout or copy writes the files moments apart in
        // any order; an edit after `onionspray config` comes later.
        let applied_before =
            |g: &&&std::path::Path| mtime(g).is_some_and(|t| t + STALE_MARGIN < edited);
        if let Some(stale) = generated.iter().find(applied_before) {
            out.push(simple(Severity::Warning, CONFIGURATION_NOT_APPLIED, &c.name, "config", format!("{}:{}", c.file.display(), c.line),
                format!("{} was changed after {} was generated from it: the running tor and nginx do not have the change (what audit reads in the project directory is what runs)", c.file.display(), stale.display()),
                format!("./onionspray config {} && ./onionspray bounce {} (in {})", c.file.file_name().and_then(|n| n.to_str()).unwrap_or("PROJECT.conf"), c.name, inst.root.display())));
        }
    }
    for t in crate::tree::templates(&inst.root) {
        let conf = t.with_extension("conf");
        if let (Some(tt), Some(ct)) = (mtime(&t), mtime(&conf)) {
            if ct + STALE_MARGIN < tt {
                out.push(simple(Severity::Warning, CONFIGURATION_NOT_APPLIED, t.file_stem().and_then(|n| n.to_str()).unwrap_or(""), "config", t.display().to_string(),
                    format!("{} was changed after {} was populated from it: the change is in neither the configuration nor the running project", t.display(), conf.display()),
                    format!("./onionspray config {} (it writes {}), then ./onionspray config on that and bounce the project", t.display(), conf.display())));
            }
        }
    }
    for p in &inst.projects {
        let Some(nginx) = &p.nginx_conf else {
            continue;
        };
        if p.stub_status().is_some() {
            continue;
        }
        notes.push(simple(Severity::Warning, NGINX_NO_STATUS, &p.name, "nginx", nginx.display().to_string(),
            "nginx serves no stub_status onionwatch can read (Onionspray's nginx listens on the onion services' unix sockets only, which Tor users reach): nginx_up and the connection counters are missing for this project".into(),
            format!("add inside `http {{ … }}` of {} (after each `onionspray config`, which rewrites it; then `onionspray nxreload {}`): `{}`. onionwatch discovers it; the socket is reachable only by users that may enter {} (run onionwatch as the Onionspray user, or see the README's group setup)",
                nginx.display(), p.name, crate::nginx_conf::status_snippet(&p.dir), p.dir.display())));
    }
}

/// The policy entries accepting more than the hosts that scrape: private
/// ranges (`private`, RFC 1918, `fc00::/7`, …) or any network wider than
/// one address, loopback networks excepted.
fn accepts_networks(policies: &[(String, String)]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (value, loc) in policies {
        for item in value.split(',') {
            let mut w = item.split_whitespace();
            let (Some(action), Some(pattern)) = (w.next(), w.next()) else {
                continue;
            };
            if !action.eq_ignore_ascii_case("accept") && !action.eq_ignore_ascii_case("accept6") {
                continue;
            }
            if network_wider_than_a_host(pattern) {
                out.push((pattern.to_owned(), loc.clone()));
            }
        }
    }
    out
}

/// Whether a policy pattern (`ADDR[/MASK][:PORT]`) names more than one
/// non-loopback address (`*` is [`METRICS_POLICY_ACCEPT_ALL`]'s).
fn network_wider_than_a_host(pattern: &str) -> bool {
    let (addr, rest) = match pattern.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((a, rest)) => (a, rest),
            None => return false,
        },
        None => match pattern.split_once(['/', ':']) {
            Some((a, _)) => (a, &pattern[a.len()..]),
            None => (pattern, ""),
        },
    };
    if addr.eq_ignore_ascii_case("private") {
        return true;
    }
    let Ok(ip) = addr.parse::<IpAddr>() else {
        return false; // `*` and friends, or not an address
    };
    let Some(mask) = rest.strip_prefix('/') else {
        return false;
    };
    let mask = mask.split(':').next().unwrap_or("");
    let bits: u32 = match (mask.parse::<u32>(), mask.parse::<Ipv4Addr>()) {
        (Ok(b), _) => b,
        (_, Ok(m)) => u32::from(m).count_ones(),
        _ => return false,
    };
    let full = if ip.is_ipv4() { 32 } else { 128 };
    bits < full && bits > 0 && !ip.is_loopback()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_wider_than_a_host() {
        for wide in [
            "10.0.0.0/8",
            "192.168.0.0/16:9035",
            "private:*",
            "[fc00::]/7",
            "172.16.0.0/255.240.0.0",
            "203.0.113.0/24",
        ] {
            assert!(network_wider_than_a_host(wide), "{wide}");
        }
        for narrow in [
            "127.0.0.1",
            "127.0.0.0/8",
            "192.168.1.5",
            "192.168.1.5/32",
            "[::1]",
            "[::1]/128",
            "*",
            "10.0.0.1:9035",
        ] {
            assert!(!network_wider_than_a_host(narrow), "{narrow}");
        }
        let p = vec![(
            "accept 127.0.0.1,accept 10.0.0.0/8,reject *".to_owned(),
            "x:1".to_owned(),
        )];
        assert_eq!(
            accepts_networks(&p),
            [("10.0.0.0/8".to_owned(), "x:1".to_owned())]
        );
    }
}
