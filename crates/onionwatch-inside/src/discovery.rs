//! Targets from an Onionspray installation: every project's tor (and
//! softmap workers) with their MetricsPort and ControlPort, and the
//! project's nginx `stub_status` if its `nginx.conf` serves one on TCP.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use onionwatch_logs::follow::{LogKind, Source};
use onionwatch_tor::control::{ControlAddr, ControlTarget};

use crate::http::HttpUrl;
use crate::onionspray::{self, Installation};
use crate::targets::{Endpoint, Origin, Target};
use crate::torrc::Listen;
use crate::Error;

/// Read the installation at `root` and list its targets.
pub fn discover(root: &Path) -> Result<(Installation, Vec<Target>), Error> {
    let inst = onionspray::discover(root)?;
    let targets = targets_of(&inst);
    Ok((inst, targets))
}

/// The targets of an installation already read.
pub fn targets_of(inst: &Installation) -> Vec<Target> {
    let mut out = Vec::new();
    for p in &inst.projects {
        for t in &p.tors {
            let instance = Some(t.name.clone());
            match t.metrics_port() {
                Some(Listen::Tcp(a)) => out.push(Target {
                    project: p.name.clone(),
                    tor_instance: instance.clone(),
                    endpoint: Endpoint::Metrics(a),
                    origin: Origin::Onionspray,
                }),
                Some(Listen::Host(h, port)) if h.eq_ignore_ascii_case("localhost") => {
                    out.push(Target {
                        project: p.name.clone(),
                        tor_instance: instance.clone(),
                        endpoint: Endpoint::Metrics(loopback(port)),
                        origin: Origin::Onionspray,
                    })
                }
                _ => {}
            }
            let control = match t.control_port() {
                Some(Listen::Tcp(a)) => Some(ControlAddr::Tcp(a)),
                Some(Listen::Unix(path)) => Some(ControlAddr::Unix(path)),
                Some(Listen::Host(h, port)) if h.eq_ignore_ascii_case("localhost") => {
                    Some(ControlAddr::Tcp(loopback(port)))
                }
                _ => None,
            };
            if let Some(c) = control {
                out.push(Target {
                    project: p.name.clone(),
                    tor_instance: instance,
                    endpoint: Endpoint::Control(ControlTarget {
                        control_port: c,
                        control_password: None,
                        control_cookie: t.cookie_file(),
                    }),
                    origin: Origin::Onionspray,
                });
            }
        }
        if let Some(conf) = &p.nginx_conf {
            if let Ok(text) = crate::torrc::read_bounded(conf) {
                if let Some(url) = stub_status_urls(&text).into_iter().next() {
                    out.push(Target {
                        project: p.name.clone(),
                        tor_instance: None,
                        endpoint: Endpoint::Nginx(url),
                        origin: Origin::Onionspray,
                    });
                }
            }
        }
    }
    out
}

/// The logs to follow: every project's nginx access logs
/// (`log/nginx-access*.log`, which covers `log_separate`'s per-domain
/// files but not the rotated `*.log-DATE[.gz]` ones), each tor's log, and
/// the installation's `onionbalance/*.log` (no project label: Onionbalance
/// serves the whole installation).
///
/// A tor's log is the file its `Log … file` line names when that exists
/// here; otherwise where Onionspray puts it relative to the tree (which
/// may be mounted elsewhere, e.g. in a container): `log/tor.log` for the
/// project's tor, `<worker dir>/tor.log` for a softmap worker.
pub fn log_sources(inst: &Installation) -> Vec<Source> {
    let mut out = Vec::new();
    for p in &inst.projects {
        let log_dir = ["log", "log.d"]
            .iter()
            .map(|d| p.dir.join(d))
            .find(|d| d.is_dir())
            .unwrap_or_else(|| p.dir.join("log"));
        out.push(Source {
            project: p.name.clone(),
            kind: LogKind::Access,
            pattern: log_dir.join("nginx-access*.log"),
        });
        let mut seen = std::collections::BTreeSet::new();
        for t in &p.tors {
            let mut files: Vec<PathBuf> =
                t.log_files().into_iter().filter(|f| f.is_file()).collect();
            if files.is_empty() {
                files.push(match t.conf.parent() {
                    Some(dir) if dir != p.dir => dir.join("tor.log"),
                    _ => log_dir.join("tor.log"),
                });
            }
            for pattern in files {
                let key = std::fs::canonicalize(&pattern).unwrap_or_else(|_| pattern.clone());
                if seen.insert(key) {
                    out.push(Source {
                        project: p.name.clone(),
                        kind: LogKind::Tor,
                        pattern,
                    });
                }
            }
        }
    }
    out.extend(inst.onionbalance_logs.iter().map(|f| Source {
        project: String::new(),
        kind: LogKind::Onionbalance,
        pattern: f.clone(),
    }));
    out
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

#[derive(Debug)]
struct Directive {
    name: String,
    args: Vec<String>,
    block: Vec<Directive>,
}

fn tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut word = String::new();
        for c in line.chars() {
            match c {
                '{' | '}' | ';' => {
                    if !word.is_empty() {
                        out.push(std::mem::take(&mut word));
                    }
                    out.push(c.to_string());
                }
                c if c.is_whitespace() => {
                    if !word.is_empty() {
                        out.push(std::mem::take(&mut word));
                    }
                }
                c => word.push(c),
            }
        }
        if !word.is_empty() {
            out.push(word);
        }
    }
    out
}

fn parse_block(tokens: &[String], pos: &mut usize, depth: usize) -> Vec<Directive> {
    let mut out = Vec::new();
    let mut words: Vec<String> = Vec::new();
    while *pos < tokens.len() {
        let t = &tokens[*pos];
        *pos += 1;
        match t.as_str() {
            ";" => {
                if !words.is_empty() {
                    let name = words.remove(0);
                    out.push(Directive {
                        name,
                        args: std::mem::take(&mut words),
                        block: Vec::new(),
                    });
                }
            }
            "{" => {
                let block = if depth < 32 {
                    parse_block(tokens, pos, depth + 1)
                } else {
                    Vec::new()
                };
                if !words.is_empty() {
                    let name = words.remove(0);
                    out.push(Directive {
                        name,
                        args: std::mem::take(&mut words),
                        block,
                    });
                }
            }
            "}" => return out,
            w => words.push(w.to_owned()),
        }
    }
    out
}

/// `stub_status` URLs an nginx configuration serves over TCP: every
/// `location` holding `stub_status` in a `server` with a TCP `listen`.
pub fn stub_status_urls(text: &str) -> Vec<HttpUrl> {
    let toks = tokens(text);
    let mut pos = 0;
    let tree = parse_block(&toks, &mut pos, 0);
    let mut out = Vec::new();
    visit(&tree, &mut out);
    out
}

fn visit(dirs: &[Directive], out: &mut Vec<HttpUrl>) {
    for d in dirs {
        if d.name == "server" {
            let listens: Vec<(String, u16)> = d
                .block
                .iter()
                .filter(|c| c.name == "listen")
                .filter_map(|c| c.args.first())
                .filter_map(|a| listen_host_port(a))
                .collect();
            let mut paths = Vec::new();
            stub_locations(&d.block, &mut paths);
            for (host, port) in listens.iter().take(1) {
                for path in &paths {
                    out.push(HttpUrl {
                        host: host.clone(),
                        port: *port,
                        path: path.clone(),
                    });
                }
            }
        } else {
            visit(&d.block, out);
        }
    }
}

fn stub_locations(dirs: &[Directive], out: &mut Vec<String>) {
    for d in dirs.iter().filter(|d| d.name == "location") {
        let path = match d.args.as_slice() {
            [p] => Some(p),
            [m, p] if m == "=" || m == "^~" => Some(p),
            _ => None, // regex locations have no one path to fetch
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            if d.block.iter().any(|c| c.name == "stub_status") {
                out.push(p.clone());
            }
        }
        stub_locations(&d.block, out);
    }
}

fn listen_host_port(a: &str) -> Option<(String, u16)> {
    if a.starts_with("unix:") {
        return None;
    }
    if let Ok(port) = a.parse::<u16>() {
        return Some(("127.0.0.1".into(), port));
    }
    if let Ok(s) = a.parse::<SocketAddr>() {
        let ip = if s.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            s.ip()
        };
        return Some((ip.to_string(), s.port()));
    }
    let (h, p) = a.rsplit_once(':')?;
    let port = p.parse().ok()?;
    let host = if h == "*" { "127.0.0.1" } else { h };
    Some((host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_stub_status_on_tcp_servers_only() {
        let conf = "http {\n  allow \"unix:\"; deny all;\n  server {\n    listen unix:/p/port-80.sock;\n    location = /stub_status { stub_status; }\n  }\n  server {\n    listen 127.0.0.1:8081; # status\n    location = /nginx_status {\n      stub_status;\n      allow 127.0.0.1;\n      deny all;\n    }\n    location / { return 404; }\n  }\n}\n";
        let urls = stub_status_urls(conf);
        assert_eq!(urls.len(), 1);
        assert_eq!(urls[0].to_string(), "http://127.0.0.1:8081/nginx_status");
        assert!(stub_status_urls("http { server { listen 80; } }").is_empty());
        assert!(stub_status_urls("}}}{{{ ; ; server").is_empty());
    }
}
