//! Feed bytes to the access-log parsers: every line goes through the
//! `combined` fast path and the general matcher compiled from the same
//! format, which must agree; then through one of several compiled formats
//! (quoted, `escape=json`, ISO time, client-chosen fields taking the slack,
//! PROXY address) picked by the first byte, or, for the last pick, through
//! a format read from the input itself (`FORMAT\nLINE`). Shared by the
//! `access_line` fuzz target and `tests/fuzz_smoke.rs`.

use std::sync::OnceLock;

use onionwatch_logs::access::combined::COMBINED;
use onionwatch_logs::access::{
    circuit_from_addr, split_request, AccessRecord, LogFormat, Method, ParseError,
};
use onionwatch_tor::circuit_id::CircuitId;

/// Formats that exercise each matching path; index 0 is `combined`.
const FORMATS: &[&str] = &[
    COMBINED,
    // Onionspray-like: combined plus timings and the circuit header.
    r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_time $upstream_response_time "$http_x_onion_circuitid""#,
    // Braces, ISO time, split request, PROXY address, no quotes at all.
    "${proxy_protocol_addr}|$time_iso8601|$request_method $request_uri $server_protocol|$status|$bytes_sent|$http_x_forwarded_for|$ssl_cipher",
    // escape=json: quoted fields holding \".
    r#"{"addr":"$remote_addr","req":"$request","status":$status,"ua":"$http_user_agent","t":"$time_iso8601","rt":$request_time,"c":"$http_x_onion_circuitid"}"#,
    // Client-chosen fields without quotes: the slack goes to them.
    "$remote_addr $remote_user $status $body_bytes_sent",
    r#"$remote_addr <$http_user_agent> $status ($request_time) "$request" $http_referer"#,
    // The address tor wrote before the header a client sends.
    r#"$remote_addr $proxy_protocol_addr [$time_local] "$request" $status "$http_x_onion_circuitid""#,
    // nginx's `main` example: combined plus a quoted trailing field.
    r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_forwarded_for""#,
];

fn formats() -> &'static [(LogFormat, Option<LogFormat>)] {
    static F: OnceLock<Vec<(LogFormat, Option<LogFormat>)>> = OnceLock::new();
    F.get_or_init(|| {
        FORMATS
            .iter()
            .map(|f| {
                let compiled = LogFormat::compile(f).expect("a built-in format compiles");
                // For `combined`, the general matcher to compare with.
                let general = compiled
                    .is_fast_path()
                    .then(|| LogFormat::compile_general(f).expect("combined compiles"));
                (compiled, general)
            })
            .collect()
    })
}

pub fn run(data: &[u8]) {
    let formats = formats();
    // Every input is a combined line too: the two matchers must agree.
    let (combined, general) = &formats[0];
    differential(combined, general.as_ref().expect("combined is fast"), data);

    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let pick = usize::from(pick) % (formats.len() + 1);
    if let Some((format, general)) = formats.get(pick) {
        match general {
            Some(g) => differential(format, g, rest),
            None => check(format.parse(rest)),
        }
        return;
    }
    // A format from the input: compiling must not panic, and neither may
    // parsing with whatever compiles.
    let (format, line) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &b""[..]),
    };
    let format = String::from_utf8_lossy(format);
    if let Ok(f) = LogFormat::compile(&format) {
        let _ = f.source();
        let r = f.parse(line);
        if f.is_fast_path() {
            let g = LogFormat::compile_general(&format).expect("compiled once already");
            assert_eq!(r, g.parse(line), "fast path and general matcher differ");
        }
        check(r);
    }
}

fn differential(fast: &LogFormat, general: &LogFormat, line: &[u8]) {
    let r = fast.parse(line);
    assert_eq!(
        r,
        general.parse(line),
        "fast path and general matcher differ on {:?}",
        String::from_utf8_lossy(line)
    );
    check(r);
}

/// What a parsed record promises, and the code that reads it after.
fn check(r: Result<AccessRecord<'_>, ParseError>) {
    let rec = match r {
        Ok(rec) => rec,
        Err(e) => {
            let _ = (e.to_string(), e.reason().as_str());
            return;
        }
    };
    if let Some(s) = rec.status {
        assert!(s <= 999, "status {s}");
    }
    for addr in [rec.remote_addr, rec.proxy_protocol_addr] {
        assert_eq!(circuit_from_addr(addr), CircuitId::from_addr_bytes(addr));
    }
    let _ = rec.circuit().map(|(id, src)| (id.to_ipv6(), src.as_str()));
    let _ = Method::from_bytes(rec.method).as_str();
    let _ = split_request(rec.path);
}
