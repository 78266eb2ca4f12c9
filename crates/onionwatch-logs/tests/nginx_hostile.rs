//! What a real nginx (Debian's, `combined` format) writes for hostile
//! requests parses, with every field where it belongs: Basic-auth user
//! names, request targets, referers and user agents holding spaces,
//! brackets, quotes, dashes and control bytes, sent over a raw TCP socket.
//! A client must not be able to make its own request's line unparseable
//! (it would then be neither counted nor policed).
//!
//! Needs `nginx` (apt-get install nginx).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use onionwatch_logs::access::combined::COMBINED;
use onionwatch_logs::access::{split_request, LogFormat};
use onionwatch_test_support::poll::wait_for;
use onionwatch_testnet::nginx::{Nginx, NginxConfig};

/// One request and what its log line must hold.
struct Case {
    // A Basic-auth user name ends at its first `:`, so none has one.
    /// The raw request line, without CRLF.
    request: &'static [u8],
    user: Option<&'static [u8]>,
    referer: Option<&'static [u8]>,
    user_agent: Option<&'static [u8]>,
    /// nginx refuses the request line (400) and logs no header.
    rejected: bool,
}

const CASES: &[Case] = &[
    Case {
        request: b"GET / HTTP/1.0",
        user: Some(b"evil [x"),
        referer: None,
        user_agent: None,
        rejected: false,
    },
    Case {
        request: b"GET / HTTP/1.0",
        user: Some(b"a] \"GET / HTTP/1.1\" 200 1 \"-\" \"-"),
        referer: None,
        user_agent: None,
        rejected: false,
    },
    Case {
        request: b"GET / HTTP/1.0",
        user: Some(b"\x01\x1b\x7f\xff \\ [ ] - \t \" [ "),
        referer: None,
        user_agent: None,
        rejected: false,
    },
    Case {
        request: b"GET / HTTP/1.0",
        user: Some(b" - "),
        referer: None,
        user_agent: None,
        rejected: false,
    },
    Case {
        request: b"GET / HTTP/1.0",
        user: Some(b"[01/Jan/2020 +0000] \"GET /x HTTP/1.1\" 200 9 \"-\" \"-\" - [ "),
        referer: None,
        user_agent: None,
        rejected: false,
    },
    Case {
        request: b"GET /a[b]\"c\"]?q=]\"-[&r=\\ HTTP/1.1",
        user: Some(b"] \""),
        referer: Some(b"x\" \"y [z] ] \" - \x01\x7f"),
        user_agent: Some(b"u] \"v [w] \x1b\xe9 \"-\" \" 200 5"),
        rejected: false,
    },
    Case {
        request: b"POST /\"200\"1\"-\"[-]\"?\"] HTTP/1.1",
        user: None,
        referer: Some(b"\" \""),
        user_agent: Some(b"\\\"\\"),
        rejected: false,
    },
    // Rejected by nginx (400) and logged with the request line as sent
    // and no header.
    Case {
        request: b"GET /a\" 200 1 \"-\" \"-\" [c] HTTP/1.0",
        user: Some(b"evil [x"),
        referer: Some(b"] \""),
        user_agent: None,
        rejected: true,
    },
    Case {
        request: b"GET /a\x01b\x7f HTTP/1.0",
        user: None,
        referer: None,
        user_agent: Some(b"x [y"),
        rejected: true,
    },
    Case {
        request: b"\x16\x03\x01 [x] \" - [",
        user: None,
        referer: None,
        user_agent: None,
        rejected: true,
    },
];

/// nginx's default log escaping: `"`, `\`, control bytes and bytes above
/// 126 as `\xXX`.
fn escape(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &c in b {
        if c == b'"' || c == b'\\' || !(0x20..0x7f).contains(&c) {
            out.extend_from_slice(format!("\\x{c:02X}").as_bytes());
        } else {
            out.push(c);
        }
    }
    out
}

/// A logged header: `-` when absent or empty.
fn logged(v: Option<&[u8]>) -> Vec<u8> {
    match v {
        Some(v) if !v.is_empty() => escape(v),
        _ => b"-".to_vec(),
    }
}

fn base64(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | u32::from(c) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Send one request on a connection of its own; the response's status.
fn send(addr: SocketAddr, case: &Case) -> u16 {
    let mut req = case.request.to_vec();
    req.extend_from_slice(b"\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(user) = case.user {
        let mut cred = user.to_vec();
        cred.extend_from_slice(b":pw");
        req.extend_from_slice(format!("Authorization: Basic {}\r\n", base64(&cred)).as_bytes());
    }
    for (name, v) in [("Referer", case.referer), ("User-Agent", case.user_agent)] {
        if let Some(v) = v {
            req.extend_from_slice(name.as_bytes());
            req.extend_from_slice(b": ");
            req.extend_from_slice(v);
            req.extend_from_slice(b"\r\n");
        }
    }
    req.extend_from_slice(b"\r\n");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&req).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let head = String::from_utf8_lossy(&resp);
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"))
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn hostile_requests_logged_by_real_nginx_parse_with_the_right_fields() {
    let nginx =
        Nginx::start(&NginxConfig::default()).expect("nginx starts (apt-get install nginx)");
    let start = now();
    let statuses: Vec<u16> = CASES.iter().map(|c| send(nginx.addr(), c)).collect();
    // nginx writes the line when it frees the request, which may be after
    // the client saw the connection end.
    let log = wait_for(Duration::from_secs(10), || {
        let text = std::fs::read(nginx.access_log()).ok()?;
        (text.iter().filter(|&&c| c == b'\n').count() >= CASES.len()).then_some(text)
    })
    .expect("nginx logged every request");
    let end = now();
    let lines: Vec<&[u8]> = log
        .strip_suffix(b"\n")
        .unwrap()
        .split(|&c| c == b'\n')
        .collect();
    assert_eq!(lines.len(), CASES.len());
    let fast = LogFormat::combined();
    let general = LogFormat::compile_general(COMBINED).unwrap();
    for ((case, line), status) in CASES.iter().zip(&lines).zip(&statuses) {
        let show = String::from_utf8_lossy(line);
        let r = fast.parse(line).unwrap_or_else(|e| panic!("{e}: {show}"));
        assert_eq!(general.parse(line), Ok(r), "{show}");
        assert_eq!(r.remote_addr, b"127.0.0.1", "{show}");
        let header = |v| {
            if case.rejected {
                logged(None)
            } else {
                logged(v)
            }
        };
        assert_eq!(r.remote_user, header(case.user), "{show}");
        let request = escape(case.request);
        assert_eq!(
            (r.method, r.path, r.protocol),
            split_request(&request),
            "{show}"
        );
        assert_eq!(r.status, Some(*status), "{show}");
        assert_eq!(*status == 400, case.rejected, "{show}");
        assert_eq!(r.referer, header(case.referer), "{show}");
        assert_eq!(r.user_agent, header(case.user_agent), "{show}");
        let t = r.time.unwrap();
        assert!(
            (start..=end).contains(&t),
            "{t} not in {start}..={end}: {show}"
        );
    }
}

/// One request over a PROXY v1 connection from `source`, as tor's
/// `HiddenServiceExportCircuitID haproxy` sends it, carrying a circuit
/// header the client chose; the response's status.
fn send_proxied(addr: SocketAddr, source: &str, header: &str) -> u16 {
    let family = if source.contains(':') { "TCP6" } else { "TCP4" };
    let dest = if source.contains(':') {
        "::1"
    } else {
        "127.0.0.1"
    };
    let req = format!(
        "PROXY {family} {source} {dest} 48 80\r\nGET / HTTP/1.0\r\nX-Onion-CircuitID: {header}\r\n\r\n"
    );
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(req.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap()
}

#[test]
fn a_circuit_header_sent_through_tor_never_names_the_circuit_to_close() {
    use onionwatch_logs::access::CircuitSource;
    use onionwatch_logs::policy::{Action, Policy, PolicyConfig};
    use onionwatch_tor::circuit_id::CircuitId;

    let format = r#"$remote_addr $proxy_protocol_addr [$time_local] "$request" $status "$http_x_onion_circuitid""#;
    let nginx = Nginx::start(&NginxConfig {
        proxy_protocol: true,
        log_format: Some(format.into()),
        ..NginxConfig::default()
    })
    .expect("nginx starts (apt-get install nginx)");
    // The issue's reproduction: six requests on tor circuit 48 carrying
    // `X-Onion-CircuitID: 7`; then six from an address that holds no
    // circuit id, where only the header names one.
    for source in ["fc00:dead:beef:4dad::0:30", "127.0.0.1"] {
        for _ in 0..6 {
            assert_eq!(send_proxied(nginx.addr(), source, "7"), 200);
        }
    }
    let log = wait_for(Duration::from_secs(10), || {
        let text = std::fs::read(nginx.access_log()).ok()?;
        (text.iter().filter(|&&c| c == b'\n').count() >= 12).then_some(text)
    })
    .expect("nginx logged every request");
    let format = LogFormat::compile(format).unwrap();
    let mut policy = Policy::new(PolicyConfig {
        max_requests: 5,
        action: Action::Close,
        i_understand_closing_circuits: true,
        ..PolicyConfig::default()
    })
    .unwrap();
    let mut decisions = Vec::new();
    for line in log.strip_suffix(b"\n").unwrap().split(|&c| c == b'\n') {
        let show = String::from_utf8_lossy(line);
        let r = format.parse(line).unwrap_or_else(|e| panic!("{e}: {show}"));
        decisions.extend(policy.observe_record(&r));
    }
    let found: Vec<_> = decisions
        .iter()
        .map(|d| (d.circuit, d.source, d.should_close()))
        .collect();
    assert_eq!(
        found,
        vec![
            (CircuitId(48), CircuitSource::Address, true),
            (CircuitId(7), CircuitSource::Header, false),
        ]
    );
    assert_eq!(policy.counters().untrusted_not_closed, 1);
}
