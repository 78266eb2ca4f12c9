//! What onionwatch reads in nginx configurations (Onionspray's generated
//! `nginx.conf`): the `listen` directives, for the audit's PROXY-protocol
//! check, and the `stub_status` locations, over TCP or a unix socket, for
//! discovery. `include` is not followed.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

/// `listen` directives of an nginx configuration: (line, the words after
/// `listen`). Comments are skipped; `include` is not followed.
pub fn listens(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.split('#').next().unwrap_or("");
        for stmt in l.split([';', '{', '}']) {
            let mut words = stmt.split_whitespace();
            if words.next() == Some("listen") {
                out.push((i + 1, words.map(str::to_owned).collect()));
            }
        }
    }
    out
}

/// Where an nginx configuration serves `stub_status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StubStatus {
    /// Host name or IP address (IPv6 without brackets; a wildcard listen
    /// address becomes 127.0.0.1); `localhost` for a unix socket.
    pub host: String,
    /// The TCP port (80 for a unix socket, only the `Host` header uses it).
    pub port: u16,
    /// The location's path, starting with `/`.
    pub path: String,
    /// The unix socket the server listens on (`listen unix:PATH`), as
    /// Onionspray's generated servers do; `None` for TCP.
    pub unix: Option<PathBuf>,
}

/// A status location an Onionspray project can add to its `nginx.conf`
/// (inside `http { … }`) for onionwatch to read: a server of its own on a
/// unix socket in the project directory, which the generated
/// `allow "unix:"; deny all;` already admits and Tor users cannot reach
/// (tor only connects to the `port-*.sock` sockets).
pub fn status_snippet(project_dir: &std::path::Path) -> String {
    format!(
        "server {{ listen unix:{}/nginx-status.sock; location = /nginx_status {{ stub_status; }} }}",
        project_dir.display()
    )
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

/// Where an nginx configuration serves `stub_status`: every `location`
/// holding `stub_status`, once per `listen` of its `server` (TCP first, in
/// file order, then unix sockets). Callers drop the listeners Tor users
/// reach (an onion service's `HiddenServicePort` socket).
pub fn stub_status_urls(text: &str) -> Vec<StubStatus> {
    let toks = tokens(text);
    let mut pos = 0;
    let tree = parse_block(&toks, &mut pos, 0);
    let mut out = Vec::new();
    visit(&tree, &mut out);
    out
}

fn visit(dirs: &[Directive], out: &mut Vec<StubStatus>) {
    for d in dirs {
        if d.name == "server" {
            let args = || {
                d.block
                    .iter()
                    .filter(|c| c.name == "listen")
                    .filter_map(|c| c.args.first())
            };
            let tcp = args().filter_map(|a| listen_host_port(a)).take(1);
            let unix = args().filter_map(|a| a.strip_prefix("unix:"));
            let listens: Vec<(String, u16, Option<PathBuf>)> = tcp
                .map(|(h, p)| (h, p, None))
                .chain(unix.map(|u| ("localhost".to_owned(), 80, Some(PathBuf::from(u)))))
                .collect();
            let mut paths = Vec::new();
            stub_locations(&d.block, &mut paths);
            for (host, port, unix) in &listens {
                for path in &paths {
                    out.push(StubStatus {
                        host: host.clone(),
                        port: *port,
                        path: path.clone(),
                        unix: unix.clone(),
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
    fn nginx_listen_directives() {
        let text = "server {\n  listen unix:/p/port-80.sock proxy_protocol; # x\n  listen 127.0.0.1:8080;\n  # listen 1.2.3.4:1;\n}\n";
        let l = listens(text);
        assert_eq!(l.len(), 2);
        assert_eq!(
            l[0],
            (
                2,
                vec![
                    "unix:/p/port-80.sock".to_owned(),
                    "proxy_protocol".to_owned()
                ]
            )
        );
    }

    #[test]
    fn finds_stub_status_on_tcp_and_unix_servers() {
        let conf = "http {\n  allow \"unix:\"; deny all;\n  server {\n    listen unix:/p/port-80.sock;\n    location = /stub_status { stub_status; }\n  }\n  server {\n    listen 127.0.0.1:8081; # status\n    location = /nginx_status {\n      stub_status;\n      allow 127.0.0.1;\n      deny all;\n    }\n    location / { return 404; }\n  }\n}\n";
        let urls = stub_status_urls(conf);
        assert_eq!(
            urls,
            [
                StubStatus {
                    host: "localhost".into(),
                    port: 80,
                    path: "/stub_status".into(),
                    unix: Some("/p/port-80.sock".into()),
                },
                StubStatus {
                    host: "127.0.0.1".into(),
                    port: 8081,
                    path: "/nginx_status".into(),
                    unix: None,
                }
            ]
        );
        let snippet = format!("http {{ {} }}", status_snippet(std::path::Path::new("/p")));
        assert_eq!(
            stub_status_urls(&snippet),
            [StubStatus {
                host: "localhost".into(),
                port: 80,
                path: "/nginx_status".into(),
                unix: Some("/p/nginx-status.sock".into()),
            }]
        );
        assert!(stub_status_urls("http { server { listen 80; } }").is_empty());
        assert!(stub_status_urls("}}}{{{ ; ; server").is_empty());
    }
}
