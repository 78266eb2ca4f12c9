//! Tests of both access-log parsers, including hostile input and a
//! differential test of the fast path against the general matcher.

use onionwatch_tor::circuit_id::CircuitId;

use crate::access::CircuitSource;

use super::*;

const LINE: &[u8] = br#"fc00:dead:beef:4dad::0:30 - - [11/Jan/2024:17:08:43 +0000] "GET /static/fonts/fontawesome/webfonts/fa-brands-400.woff2 HTTP/1.1" 200 73936 "-" "Mozilla/5.0 (Windows NT 10.0; rv:109.0) Gecko/20100101 Firefox/115.0""#;

fn both(line: &[u8]) -> Result<AccessRecord<'_>, ParseError> {
    let fast = LogFormat::combined().parse(line);
    let general = LogFormat::compile_general(COMBINED).unwrap().parse(line);
    assert_eq!(
        fast,
        general,
        "fast path and general matcher differ on {:?}",
        String::from_utf8_lossy(line)
    );
    fast
}

#[test]
fn the_issue_example_parses() {
    let r = both(LINE).unwrap();
    assert_eq!(r.remote_addr, b"fc00:dead:beef:4dad::0:30");
    assert_eq!(r.remote_user, b"-");
    assert_eq!(r.time, Some(1_704_992_923));
    assert_eq!(r.method, b"GET");
    assert_eq!(
        r.path,
        b"/static/fonts/fontawesome/webfonts/fa-brands-400.woff2"
    );
    assert_eq!(r.protocol, b"HTTP/1.1");
    assert_eq!(r.status, Some(200));
    assert_eq!(r.body_bytes_sent, Some(73936));
    assert_eq!(r.referer, b"-");
    assert!(r.user_agent.starts_with(b"Mozilla/5.0 (Windows"));
    assert!(r.user_agent.ends_with(b"Firefox/115.0"));
    assert_eq!(r.circuit_id(), Some(CircuitId(48)));
    assert_eq!(r.request_time_ms, None);
    assert!(LogFormat::combined().is_fast_path());
    assert!(LogFormat::compile("combined").unwrap().is_fast_path());
    assert!(LogFormat::compile(COMBINED).unwrap().is_fast_path());
    assert!(!LogFormat::compile_general(COMBINED).unwrap().is_fast_path());
    // A trailing CR (CRLF files) is ignored.
    let mut crlf = LINE.to_vec();
    crlf.push(b'\r');
    assert_eq!(both(&crlf).unwrap().user_agent, r.user_agent);
}

#[test]
fn escaped_quotes_stay_inside_their_field() {
    let r = both(br#"::1 - - [11/Jan/2024:17:08:43 +0000] "GET /a\"b\" HTTP/1.1" 200 1 "-" "ua \"quoted\" x\\""#)
        .unwrap();
    assert_eq!(r.path, br#"/a\"b\""#);
    assert_eq!(r.user_agent, br#"ua \"quoted\" x\\"#);
    let r = both(br#"::1 - - [11/Jan/2024:17:08:43 +0000] "GET /a\x22b HTTP/1.1" 200 1 "http://x/\x22" "ua\x22""#)
        .unwrap();
    assert_eq!(r.path, br"/a\x22b");
    assert_eq!(r.referer, br"http://x/\x22");
    assert_eq!(r.user_agent, br"ua\x22");
}

#[test]
fn dashes_and_odd_requests() {
    let r = both(br#"127.0.0.1 - - [11/Jan/2024:17:08:43 +0000] "-" 400 - "-" "-""#).unwrap();
    assert_eq!(r.body_bytes_sent, Some(0));
    assert_eq!(r.method, b"-");
    assert_eq!(r.status, Some(400));
    assert_eq!(r.circuit_id(), None);
    let r = both(br#"127.0.0.1 - - [11/Jan/2024:17:08:43 +0000] "" 400 0 "" """#).unwrap();
    assert_eq!(r.method, b"");
    assert_eq!(r.user_agent, b"");
    let r = both(
        br#"127.0.0.1 - - [11/Jan/2024:17:08:43 +0000] "\x16\x03\x01\x00\xF1\x01" 400 157 "-" "-""#,
    )
    .unwrap();
    assert_eq!(r.method, br"\x16\x03\x01\x00\xF1\x01");
    let r = both(br#"::1 - alice bob [11/Jan/2024:17:08:43 +0000] "GET / HTTP/1.0" 200 1 "-" "-""#)
        .unwrap();
    assert_eq!(r.remote_user, b"alice bob");
}

#[test]
fn invalid_utf8_is_carried_through() {
    let r = both(b"\xff\xfe - \xc3 [11/Jan/2024:17:08:43 +0000] \"G\xffT /\xe2\x28\xa1 HTTP/1.1\" 200 5 \"\xf0\x28\x8c\xbc\" \"\x80\x81\"").unwrap();
    assert_eq!(r.remote_addr, b"\xff\xfe");
    assert_eq!(r.method, b"G\xffT");
    assert_eq!(r.path, b"/\xe2\x28\xa1");
    assert_eq!(r.user_agent, b"\x80\x81");
    assert_eq!(r.circuit_id(), None);
}

#[test]
fn trailing_fields_are_ignored() {
    let mut line = LINE.to_vec();
    line.extend_from_slice(br#" 0.004 "0.003" rt=1 "x\"y" \xff"#);
    let r = both(&line).unwrap();
    assert!(r.user_agent.ends_with(b"Firefox/115.0"));
}

#[test]
fn wrong_types_are_typed_errors() {
    let base = String::from_utf8(LINE.to_vec()).unwrap();
    let cases: &[(&str, &str, ParseError)] = &[
        (" 200 ", " abc ", ParseError::Invalid(Var::Status)),
        (" 200 ", " 20 ", ParseError::Invalid(Var::Status)),
        (" 200 ", " 2000 ", ParseError::Invalid(Var::Status)),
        (" 200 ", " -20 ", ParseError::Invalid(Var::Status)),
        (" 73936 ", " -5 ", ParseError::Invalid(Var::BodyBytesSent)),
        (" 73936 ", " 12a ", ParseError::Invalid(Var::BodyBytesSent)),
        (
            " 73936 ",
            " 99999999999999999999999 ",
            ParseError::Invalid(Var::BodyBytesSent),
        ),
        (
            " 73936 ",
            " 18446744073709551616 ",
            ParseError::Invalid(Var::BodyBytesSent),
        ),
        (
            "11/Jan/2024",
            "11/Jxn/2024",
            ParseError::Invalid(Var::TimeLocal),
        ),
        ("17:08:43", "17:08:99", ParseError::Invalid(Var::TimeLocal)),
        (
            "[11/Jan/2024:17:08:43 +0000]",
            "[yesterday]",
            ParseError::Invalid(Var::TimeLocal),
        ),
        (
            "fc00:dead:beef:4dad::0:30 - -",
            " - -",
            ParseError::Invalid(Var::RemoteAddr),
        ),
        ("] \"GET", "] GET", ParseError::Truncated(Var::TimeLocal)),
    ];
    for (from, to, want) in cases {
        let line = base.replacen(from, to, 1);
        assert_ne!(line, base, "{from}");
        assert_eq!(both(line.as_bytes()), Err(*want), "{line}");
    }
    assert_eq!(
        both(b"18446744073709551615 - - [11/Jan/2024:17:08:43 +0000] \"GET / HTTP/1.1\" 200 18446744073709551615 \"-\" \"-\"")
            .unwrap()
            .body_bytes_sent,
        Some(u64::MAX)
    );
}

#[test]
fn empty_and_blank_lines() {
    for line in [&b""[..], b" ", b"   \t  ", b"\r", b" \r", b"\n"] {
        assert_eq!(both(line), Err(ParseError::Empty), "{line:?}");
    }
    assert_eq!(both(b"x"), Err(ParseError::Truncated(Var::RemoteAddr)));
    assert_eq!(both(b"\xff"), Err(ParseError::Truncated(Var::RemoteAddr)));
    assert_eq!(both(b"\""), Err(ParseError::Truncated(Var::RemoteAddr)));
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    // The closing quote of the user agent is the last byte that matters.
    for len in 0..LINE.len() {
        let r = both(&LINE[..len]);
        assert!(r.is_err(), "prefix of {len} bytes parsed: {r:?}");
    }
    let r = both(&LINE[..LINE.len() - 10]);
    assert_eq!(r, Err(ParseError::Truncated(Var::HttpUserAgent)));
    let cut = LINE.iter().position(|&c| c == b'[').unwrap() + 10;
    assert_eq!(
        both(&LINE[..cut]),
        Err(ParseError::Truncated(Var::TimeLocal))
    );
}

#[test]
fn megabyte_lines_do_not_panic() {
    let mib = 1 << 20;
    let mut long_ua = LINE[..LINE.len() - 1].to_vec();
    long_ua.extend(std::iter::repeat_n(b'a', mib));
    long_ua.push(b'"');
    let ua_len = both(LINE).unwrap().user_agent.len();
    assert_eq!(both(&long_ua).unwrap().user_agent.len(), mib + ua_len);
    for filler in [b' ', b'"', b'\\', b'-', b'[', b']', 0xff, b'0'] {
        let line = vec![filler; mib];
        let r = both(&line);
        assert!(r.is_err(), "{filler}");
    }
    let mut quotes = Vec::new();
    while quotes.len() < mib {
        quotes.extend_from_slice(b"\\\" - [");
    }
    assert!(both(&quotes).is_err());
}

/// A tiny deterministic generator (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn fast_path_equals_general_matcher_on_mutated_lines() {
    let seeds: &[&[u8]] = &[
        LINE,
        br#"::1 - - [01/Feb/2024:00:00:00 -0100] "POST /api?q=\"x\" HTTP/2.0" 503 - "http://a/" "b\x22c" extra"#,
        br#"10.0.0.1 - u [29/Feb/2024:23:59:59 +0530] "-" 400 0 "-" "-""#,
        br#"127.0.0.1 - a] \x22GET / HTTP/1.1\x22 [x - [01/Dec/2026:23:37:40 +0000] "GET / HTTP/1.0" 200 2 "-" "-""#,
    ];
    let alphabet = b" \"\\-[]/:0123456789\xffaZ\t";
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut ok = 0;
    for _ in 0..20_000 {
        let mut line = seeds[rng.below(seeds.len())].to_vec();
        for _ in 0..=rng.below(3) {
            if line.is_empty() {
                break;
            }
            let at = rng.below(line.len());
            match rng.below(4) {
                0 => {
                    line.remove(at);
                }
                1 => line.insert(at, alphabet[rng.below(alphabet.len())]),
                2 => line[at] = alphabet[rng.below(alphabet.len())],
                _ => line.truncate(at),
            }
        }
        if both(&line).is_ok() {
            ok += 1;
        }
    }
    // Many mutations hit free-text fields and still parse.
    assert!(ok > 1000, "{ok}");
}

#[test]
fn general_formats_compile_and_parse() {
    // Onionspray-like: combined plus timing and the circuit header.
    let f = LogFormat::compile(
        r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_time $upstream_response_time "$http_x_onion_circuitid""#,
    )
    .unwrap();
    assert!(!f.is_fast_path());
    assert!(f.has(Var::RequestTime));
    let r = f
        .parse(br#"127.0.0.1 - - [11/Jan/2024:17:08:43 +0000] "GET / HTTP/1.1" 200 10 "-" "curl/8" 0.120 0.100, 0.015 "77""#)
        .unwrap();
    assert_eq!(r.request_time_ms, Some(120));
    assert_eq!(r.upstream_response_time_ms, Some(115));
    assert_eq!(r.circuit_id(), Some(CircuitId(77)));
    let r = f
        .parse(br#"fc00:dead:beef:4dad::0:30 - - [11/Jan/2024:17:08:43 +0000] "GET / HTTP/1.1" 200 10 "-" "curl/8" - - "-""#)
        .unwrap();
    assert_eq!(r.request_time_ms, None);
    assert_eq!(r.upstream_response_time_ms, None);
    assert_eq!(
        r.circuit_id(),
        Some(CircuitId(48)),
        "falls back to the address"
    );
    assert_eq!(
        f.parse(
            br#"::1 - - [11/Jan/2024:17:08:43 +0000] "GET / HTTP/1.1" 200 10 "-" "-" abc - "-""#
        ),
        Err(ParseError::Invalid(Var::RequestTime))
    );
    assert_eq!(
        f.parse(
            br#"::1 - - [11/Jan/2024:17:08:43 +0000] "GET / HTTP/1.1" 200 10 "-" "-" 0.1 x "-""#
        ),
        Err(ParseError::Invalid(Var::UpstreamResponseTime))
    );
    assert_eq!(
        f.parse(br#"::1 - - [11/Jan/2024:17:08:43 +0000] "GET / HTTP/1.1" 200 10 "-" "-""#),
        Err(ParseError::Truncated(Var::HttpUserAgent))
    );

    // Braces, unknown variables, ISO time, PROXY address, bytes_sent.
    let f = LogFormat::compile(
        "${proxy_protocol_addr}|$time_iso8601|$request_method $request_uri $server_protocol|$status|$bytes_sent|$http_x_forwarded_for|$ssl_cipher",
    )
    .unwrap();
    let r = f
        .parse(b"fc00:dead:beef:4dad::1:30|2024-01-11T17:08:43+00:00|HEAD /x?y HTTP/1.1|304|-|1.2.3.4, 5.6.7.8|-")
        .unwrap();
    assert_eq!(r.circuit_id(), Some(CircuitId(0x1_0030)));
    assert_eq!(r.time, Some(1_704_992_923));
    assert_eq!(
        (r.method, r.path, r.protocol),
        (&b"HEAD"[..], &b"/x?y"[..], &b"HTTP/1.1"[..])
    );
    assert_eq!(r.bytes_sent, Some(0));
    assert_eq!(r.body_bytes_sent, None);
    assert_eq!(
        f.parse(b"x|2024-01-11T17:08:43+00:00|GET / HTTP/1.1|200|1|-"),
        Err(ParseError::Truncated(Var::Other))
    );
    assert_eq!(
        f.parse(b"x|2024-13-11T17:08:43+00:00|GET / HTTP/1.1|200|1|-|-"),
        Err(ParseError::Invalid(Var::TimeIso8601))
    );

    // JSON-style format (escape=json): quoted fields with \" inside.
    let f = LogFormat::compile(
        r#"{"addr":"$remote_addr","req":"$request","status":$status,"ua":"$http_user_agent"}"#,
    )
    .unwrap();
    let r = f
        .parse(br#"{"addr":"fc00:dead:beef:4dad::5","req":"GET /\"a\" HTTP/1.1","status":404,"ua":"x\"y"}"#)
        .unwrap();
    assert_eq!(r.path, br#"/\"a\""#);
    assert_eq!(r.user_agent, br#"x\"y"#);
    assert_eq!(r.status, Some(404));
    assert_eq!(r.circuit_id(), Some(CircuitId(5)));
    assert_eq!(f.parse(br#"["addr":"x"]"#), Err(ParseError::Mismatch(None)));
    assert_eq!(
        f.parse(br#"{"add"#),
        Err(ParseError::Truncated(Var::RemoteAddr))
    );

    // A format that ends with a variable takes the rest of the line.
    let f = LogFormat::compile("$status $http_user_agent").unwrap();
    assert_eq!(f.parse(b"200 a b c").unwrap().user_agent, b"a b c");
    assert_eq!(
        f.parse(b"200").unwrap_err(),
        ParseError::Truncated(Var::Status)
    );
    // A literal `$` that starts no name is text.
    let f = LogFormat::compile("$ $status $").unwrap();
    assert_eq!(f.parse(b"$ 200 $").unwrap().status, Some(200));
    assert_eq!(f.parse(b"# 200 $"), Err(ParseError::Mismatch(None)));
    // The literal after a variable is searched for, so a wrong one reads as
    // the variable running to the end of the line.
    assert_eq!(f.parse(b"$ 200 #"), Err(ParseError::Truncated(Var::Status)));
    assert_eq!(f.parse(b"$ 200 "), Err(ParseError::Truncated(Var::Status)));
}

#[test]
fn bad_formats_are_refused_with_reasons() {
    assert_eq!(LogFormat::compile("").unwrap_err(), FormatError::Empty);
    assert_eq!(
        LogFormat::compile("just text").unwrap_err(),
        FormatError::NoVariables
    );
    assert_eq!(
        LogFormat::compile("$remote_addr$status").unwrap_err(),
        FormatError::Adjacent {
            first: "remote_addr".into(),
            second: "status".into()
        }
    );
    assert_eq!(
        LogFormat::compile("${status").unwrap_err(),
        FormatError::UnterminatedBrace { at: 0 }
    );
    assert_eq!(
        LogFormat::compile("a ${}").unwrap_err(),
        FormatError::EmptyName { at: 2 }
    );
    let msg = LogFormat::compile("$a${b}").unwrap_err().to_string();
    assert!(msg.contains("$a is followed directly by $b"), "{msg}");
    // Non-ASCII literals are fine.
    let f = LogFormat::compile("→ $status ←").unwrap();
    assert_eq!(f.parse("→ 201 ←".as_bytes()).unwrap().status, Some(201));
}

#[test]
fn the_address_tor_wrote_comes_before_the_circuit_header() {
    let f = LogFormat::compile(
        r#"$remote_addr $proxy_protocol_addr [$time_local] "$request" $status "$http_x_onion_circuitid""#,
    )
    .unwrap();
    let circuit = |line: &str| f.parse(line.as_bytes()).unwrap().circuit();
    let t = r#"[11/Jan/2024:17:08:43 +0000] "GET / HTTP/1.1" 200"#;
    // A client's header never replaces the id tor wrote.
    assert_eq!(
        circuit(&format!(r#"fc00:dead:beef:4dad::30 - {t} "7""#)),
        Some((CircuitId(48), CircuitSource::Address))
    );
    assert_eq!(
        circuit(&format!(r#"127.0.0.1 fc00:dead:beef:4dad::0:31 {t} "7""#)),
        Some((CircuitId(49), CircuitSource::Address))
    );
    // Only when no address holds an id.
    assert_eq!(
        circuit(&format!(r#"127.0.0.1 127.0.0.1 {t} "7""#)),
        Some((CircuitId(7), CircuitSource::Header))
    );
    assert_eq!(circuit(&format!(r#"127.0.0.1 - {t} "-""#)), None);
}

#[test]
fn a_user_name_cannot_break_its_line() {
    // Lines as nginx 1.22 writes them for `Authorization: Basic` user
    // names `evil [x`, `a] "GET / HTTP/1.1" 200 1 "-" "-`, `\x01\x1b\x7f\xff \ [ ] - \t`
    // and ` - `: spaces, brackets and dashes as sent, `"`, `\` and control
    // bytes escaped.
    let cases: &[(&[u8], &[u8])] = &[
        (
            br#"127.0.0.1 - evil [x [01/Dec/2026:23:37:40 +0000] "GET / HTTP/1.0" 200 2 "-" "-""#,
            b"evil [x",
        ),
        (
            br#"127.0.0.1 - a] \x22GET / HTTP/1.1\x22 200 1 \x22-\x22 \x22- [01/Dec/2026:23:37:40 +0000] "GET / HTTP/1.0" 200 2 "-" "-""#,
            br#"a] \x22GET / HTTP/1.1\x22 200 1 \x22-\x22 \x22-"#,
        ),
        (
            br#"127.0.0.1 - \x01\x1B\x7F\xFF \x5C [ ] - \x09 [01/Dec/2026:23:37:40 +0000] "GET / HTTP/1.0" 200 2 "-" "-""#,
            br"\x01\x1B\x7F\xFF \x5C [ ] - \x09",
        ),
        (
            br#"127.0.0.1 -  -  [01/Dec/2026:23:37:40 +0000] "GET / HTTP/1.0" 200 2 "-" "-""#,
            b" - ",
        ),
        (
            br#"127.0.0.1 - [01/Dec/2026:23:37:40 +0000] [01/Dec/2026:23:37:40 +0000] "GET / HTTP/1.0" 200 2 "-" "-""#,
            b"[01/Dec/2026:23:37:40 +0000]",
        ),
    ];
    for (line, user) in cases {
        let r = both(line).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(line)));
        assert_eq!(r.remote_user, *user);
        assert_eq!(r.remote_addr, b"127.0.0.1");
        assert_eq!(r.time, Some(1_796_168_260));
        assert_eq!((r.method, r.path), (&b"GET"[..], &b"/"[..]));
        assert_eq!((r.status, r.body_bytes_sent), (Some(200), Some(2)));
    }
}

#[test]
fn client_chosen_fields_take_the_slack_in_any_format() {
    // The fields after a client-chosen one are split from the span's end.
    let f = LogFormat::compile("$remote_addr $remote_user $status $body_bytes_sent").unwrap();
    let r = f.parse(b"::1 a b 404 200 5").unwrap();
    assert_eq!(r.remote_user, b"a b 404");
    assert_eq!((r.status, r.body_bytes_sent), (Some(200), Some(5)));
    let f = LogFormat::compile(
        r#"$remote_addr <$http_user_agent> $status ($request_time) "$request" $http_referer"#,
    )
    .unwrap();
    let r = f
        .parse(br#"::1 <x> 1 (2) y> 201 (0.5) "GET /a b HTTP/1.1" r "e" f"#)
        .unwrap();
    assert_eq!(r.user_agent, b"x> 1 (2) y");
    assert_eq!((r.status, r.request_time_ms), (Some(201), Some(500)));
    assert_eq!(r.path, b"/a b");
    assert_eq!(r.referer, br#"r "e" f"#);
    // A missing anchor or literal names the field the plain way.
    assert_eq!(
        f.parse(b"::1 <x> 201 (0.5) GET"),
        Err(ParseError::Truncated(Var::RequestTime))
    );
    assert_eq!(
        f.parse(br#"::1 <x> 201 0.5 "GET / HTTP/1.1" -"#),
        Err(ParseError::Truncated(Var::Status))
    );
    assert_eq!(
        f.parse(br#"::1 <x> 2x1 (0.5) "GET / HTTP/1.1" -"#),
        Err(ParseError::Invalid(Var::Status))
    );
}

#[test]
fn server_port_is_a_port_or_nothing() {
    let f = LogFormat::compile("$server_addr $server_port $status").unwrap();
    let r = f.parse(b"127.0.0.1 8080 200").unwrap();
    assert_eq!(
        (r.server_addr, r.server_port),
        (&b"127.0.0.1"[..], Some(8080))
    );
    // A unix listener has no port: nginx writes `-` (or nothing).
    assert_eq!(
        f.parse(b"unix:/a/port-80.sock - 200").unwrap().server_port,
        None
    );
    for bad in ["70000", "-1", "+80", "8o", "0x50"] {
        let line = format!("127.0.0.1 {bad} 200");
        assert_eq!(
            f.parse(line.as_bytes()).unwrap_err(),
            ParseError::Invalid(Var::ServerPort),
            "{bad}"
        );
    }
}
