//! Analytics tests: exact counts, HyperLogLog against exact sets, windows,
//! the per-circuit map and its cap.

use std::collections::HashSet;

use super::*;
use crate::access::{LogFormat, Var};

const T0: i64 = 1_704_992_880; // 2024-01-11T17:08:00Z, a minute boundary

fn rec(circuit: Option<u32>, t: Option<i64>) -> AccessRecord<'static> {
    AccessRecord {
        remote_addr: b"127.0.0.1",
        method: b"GET",
        status: Some(200),
        body_bytes_sent: Some(1),
        time: t,
        circuit_header: circuit.map(CircuitId),
        ..AccessRecord::default()
    }
}

#[test]
fn counts_are_exact() {
    let f = LogFormat::combined();
    let mut a = Analytics::default();
    let lines: &[&[u8]] = &[
        br#"fc00:dead:beef:4dad::0:30 - - [11/Jan/2024:17:08:43 +0000] "GET / HTTP/1.1" 200 100 "-" "-""#,
        br#"fc00:dead:beef:4dad::0:30 - - [11/Jan/2024:17:08:44 +0000] "GET /a HTTP/1.1" 404 10 "-" "-""#,
        br#"fc00:dead:beef:4dad::0:31 - - [11/Jan/2024:17:08:45 +0000] "POST /b HTTP/1.1" 502 - "-" "-""#,
        br#"127.0.0.1 - - [11/Jan/2024:17:08:46 +0000] "PROPFIND / HTTP/1.1" 000 7 "-" "-""#,
        br#"::1 - - [11/Jan/2024:17:08:46 +0000] "get / HTTP/1.1" 999 7 "-" "-""#,
        b"",
        b"garbage",
        br#"::1 - - [11/Jan/2024:17:08:46 +0000] "GET / HTTP/1.1" abc 7 "-" "-""#,
    ];
    for l in lines {
        match f.parse(l) {
            Ok(r) => a.record(&r),
            Err(e) => a.error(&e),
        }
    }
    a.error(&ParseError::TooLong { limit: 10 });
    let s = a.summary();
    assert_eq!(s.lines, 9);
    assert_eq!(s.requests, 5);
    assert_eq!(s.parse_errors, 4);
    assert_eq!(a.parse_errors(), 4);
    assert_eq!(
        s.parse_errors_by_reason,
        [
            ("bad_status", 1),
            ("empty", 1),
            ("too_long", 1),
            ("truncated", 1)
        ]
        .map(|(k, v)| (k.to_string(), v))
        .into()
    );
    assert_eq!(
        s.requests_by_status,
        [("000", 1), ("200", 1), ("404", 1), ("502", 1), ("999", 1)]
            .map(|(k, v)| (k.to_string(), v))
            .into()
    );
    assert_eq!(s.requests_by_status_class["2xx"], 1);
    assert_eq!(s.requests_by_status_class["1xx"], 0);
    assert_eq!(s.requests_by_status_class["other"], 2);
    assert_eq!(s.requests_by_method["GET"], 2);
    assert_eq!(s.requests_by_method["POST"], 1);
    assert_eq!(s.requests_by_method["OTHER"], 2);
    assert_eq!(s.bytes, 124);
    assert_eq!(s.unique_circuits, 2);
    assert!(s.unique_circuits_exact);
    assert_eq!(s.requests_without_circuit, 2);
    assert_eq!(s.first_time.as_deref(), Some("2024-01-11T17:08:43Z"));
    assert_eq!(s.last_time.as_deref(), Some("2024-01-11T17:08:46Z"));
    let w = s.unique_circuits_windows.unwrap();
    assert_eq!((w.last_1m, w.last_5m, w.last_1h), (2, 2, 2));
    assert!(s.request_duration.is_none());
    let cw = s.circuit_window.unwrap();
    assert_eq!(cw.start, "2024-01-11T17:08:00Z");
    assert_eq!(cw.end, "2024-01-11T17:09:00Z");
    assert_eq!(cw.requests, 3);
    assert_eq!(cw.circuits, 2);
    assert_eq!(
        cw.top_circuits,
        vec![
            CircuitCount {
                circuit: 48,
                requests: 2
            },
            CircuitCount {
                circuit: 49,
                requests: 1
            }
        ]
    );
    let json = serde_json::to_value(a.summary()).unwrap();
    assert_eq!(json["requests_by_status"]["200"], 1);
    assert_eq!(json["unique_circuits_windows"]["5m"], 2);
}

#[test]
fn unique_circuits_match_exact_sets() {
    // Small inputs: the estimate is the exact count, whatever the duplicates.
    let mut rng = 0x1234_5678_u64;
    for n in [0usize, 1, 2, 3, 17, 100, 500] {
        let mut a = Analytics::default();
        let mut exact = HashSet::new();
        for i in 0..n * 3 {
            rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let id = (rng >> 33) as u32 % (n as u32).max(1) + (i as u32 % 2) * 1_000_000;
            exact.insert(id);
            a.record(&rec(Some(id), Some(T0)));
        }
        let s = a.summary();
        assert_eq!(s.unique_circuits, exact.len() as u64, "n = {n}");
        assert!(s.unique_circuits_exact);
    }
    // 100k distinct circuits, each seen twice: within the documented error.
    let mut a = Analytics::default();
    for round in 0..2 {
        for id in 0..100_000u32 {
            a.record(&rec(
                Some(id.wrapping_mul(2_654_435_761)),
                Some(T0 + i64::from(round)),
            ));
        }
    }
    let s = a.summary();
    let err = (s.unique_circuits as f64 - 100_000.0).abs() / 100_000.0;
    assert!(
        err < 0.025,
        "estimate {} is {:.2} % off",
        s.unique_circuits,
        err * 100.0
    );
    assert!(!s.unique_circuits_exact);
    let w = s.unique_circuits_windows.unwrap();
    assert_eq!(w.last_1m, s.unique_circuits, "one minute holds everything");
}

#[test]
fn sliding_windows_follow_record_time() {
    let mut a = Analytics::default();
    // Minute k (0..90) sees circuits 1000*k .. 1000*k+k%7+1.
    let mut per_minute = Vec::new();
    for k in 0..90i64 {
        let n = (k % 7 + 1) as u32;
        per_minute.push(n as u64);
        for j in 0..n {
            a.record(&rec(Some(1000 * k as u32 + j), Some(T0 + k * 60 + 5)));
        }
    }
    let sum = |r: std::ops::Range<usize>| per_minute[r].iter().sum::<u64>();
    let w = a.summary().unique_circuits_windows.unwrap();
    assert_eq!(w.end, format_rfc3339(T0 + 89 * 60 + 5));
    assert_eq!(w.last_1m, sum(89..90));
    assert_eq!(w.last_5m, sum(85..90));
    assert_eq!(w.last_1h, sum(30..90));
    assert_eq!(a.summary().unique_circuits, sum(0..90));
    // A record older than the hour counts overall but in no window.
    a.record(&rec(Some(7_777_777), Some(T0)));
    let s = a.summary();
    assert_eq!(s.unique_circuits, sum(0..90) + 1);
    assert_eq!(s.unique_circuits_windows.unwrap().last_1h, sum(30..90));
    // Moving the clock empties the short windows.
    a.advance_to(T0 + 100 * 60);
    let w = a.summary().unique_circuits_windows.unwrap();
    assert_eq!((w.last_1m, w.last_5m), (0, 0));
    assert_eq!(w.last_1h, sum(41..90));
    a.advance_to(T0); // never backwards
    assert_eq!(a.clock(), Some(T0 + 100 * 60));
}

#[test]
fn records_without_time_use_the_clock() {
    let mut a = Analytics::default();
    a.record(&rec(Some(1), None));
    let s = a.summary();
    assert_eq!(s.unique_circuits, 1);
    assert!(s.unique_circuits_windows.is_none());
    assert!(s.circuit_window.is_none());
    a.advance_to(T0);
    a.record(&rec(Some(2), None));
    a.record(&rec(Some(2), None));
    let s = a.summary();
    assert_eq!(s.unique_circuits, 2);
    assert_eq!(s.unique_circuits_windows.unwrap().last_1m, 1);
    assert_eq!(s.circuit_window.unwrap().top_circuits[0].requests, 2);
}

#[test]
fn per_circuit_window_histogram_top_k_and_roll_over() {
    let mut a = Analytics::new(AnalyticsConfig {
        circuit_window_secs: 60,
        max_tracked_circuits: 1000,
        top_k: 3,
    });
    // Circuit c makes c requests, for c in 1..=30, plus one with 1500.
    for c in 1..=30u32 {
        for _ in 0..c {
            a.record(&rec(Some(c), Some(T0 + 10)));
        }
    }
    for _ in 0..1500 {
        a.record(&rec(Some(9999), Some(T0 + 20)));
    }
    let w = a.summary().circuit_window.unwrap();
    assert_eq!(w.circuits, 31);
    assert_eq!(w.requests, 465 + 1500);
    let le: Vec<(String, u64)> = w
        .requests_per_circuit
        .iter()
        .map(|b| (b.le.clone(), b.count))
        .collect();
    assert_eq!(
        le,
        [
            ("1", 1),
            ("2", 2),
            ("5", 5),
            ("10", 10),
            ("20", 20),
            ("50", 30),
            ("100", 30),
            ("200", 30),
            ("500", 30),
            ("1000", 30),
            ("+Inf", 31)
        ]
        .map(|(k, v)| (k.to_string(), v))
        .to_vec()
    );
    assert_eq!(
        w.top_circuits,
        vec![
            CircuitCount {
                circuit: 9999,
                requests: 1500
            },
            CircuitCount {
                circuit: 30,
                requests: 30
            },
            CircuitCount {
                circuit: 29,
                requests: 29
            },
        ]
    );
    assert!(a.summary().previous_circuit_window.is_none());

    // The next window starts empty; the last one is kept as previous.
    a.record(&rec(Some(5), Some(T0 + 61)));
    let s = a.summary();
    let cur = s.circuit_window.unwrap();
    assert_eq!((cur.circuits, cur.requests), (1, 1));
    assert_eq!(cur.start, format_rfc3339(T0 + 60));
    let prev = s.previous_circuit_window.unwrap();
    assert_eq!(prev.top_circuits[0].circuit, 9999);
    // Late lines count as late, not in the window.
    a.record(&rec(Some(6), Some(T0 + 5)));
    let cur = a.summary().circuit_window.unwrap();
    assert_eq!((cur.requests, cur.late_requests), (1, 1));
    assert_eq!(a.summary().unique_circuits, 31);
}

#[test]
fn the_circuit_map_is_capped() {
    let mut a = Analytics::new(AnalyticsConfig {
        circuit_window_secs: 3600,
        max_tracked_circuits: 100,
        top_k: 5,
    });
    for id in 0..150u32 {
        a.record(&rec(Some(id), Some(T0)));
    }
    // Tracked circuits keep counting past the cap.
    for _ in 0..10 {
        a.record(&rec(Some(0), Some(T0)));
    }
    let s = a.summary();
    let w = s.circuit_window.unwrap();
    assert_eq!(w.circuits, 100);
    assert_eq!(w.untracked_requests, 50);
    assert_eq!(w.requests, 160);
    assert_eq!(
        w.top_circuits[0],
        CircuitCount {
            circuit: 0,
            requests: 11
        }
    );
    assert_eq!(s.unique_circuits, 150, "the estimate is not capped");
}

#[test]
fn durations_go_into_buckets() {
    let f = LogFormat::compile("$status $request_time $upstream_response_time").unwrap();
    assert!(f.has(Var::RequestTime));
    let mut a = Analytics::default();
    for l in [
        &b"200 0.005 0.004"[..],
        b"200 0.006 -",
        b"200 12.000 5.0, 5.0",
        b"200 - -",
    ] {
        a.record(&f.parse(l).unwrap());
    }
    let s = a.summary();
    let d = s.request_duration.unwrap();
    assert_eq!(d.count, 3);
    assert!((d.sum_seconds - 12.011).abs() < 1e-9);
    assert_eq!(
        d.buckets[0],
        crate::summary::Bucket {
            le: "0.005".into(),
            count: 1
        }
    );
    assert_eq!(d.buckets[1].le, "0.01");
    assert_eq!(d.buckets[1].count, 2);
    assert_eq!(d.buckets[10].le, "10");
    assert_eq!(d.buckets[10].count, 2);
    assert_eq!(d.buckets[11].count, 3);
    let u = s.upstream_response_duration.unwrap();
    assert_eq!(u.count, 2);
    assert_eq!(u.buckets[10].count, 2, "5 + 5 = 10 s sums the attempts");
    assert_eq!(ms_to_seconds(2500), "2.5");
    assert_eq!(ms_to_seconds(0), "0");
}

/// A softmap project: one nginx, two tors. The same circuit id on two
/// workers is two circuits; ports 80 and 443 of one worker are one onion
/// service (the redirect keeps the circuit): counted once.
#[test]
fn circuit_ids_are_counted_per_tor_when_the_log_names_the_listener() {
    let f =
        LogFormat::compile(r#"$server_addr $proxy_protocol_addr [$time_local] "$request" $status"#)
            .unwrap();
    let mut a = Analytics::default();
    let lines: &[&[u8]] = &[
        br#"unix:/p/shop/hs-1/port-80.sock fc00:dead:beef:4dad::0:30 [11/Jan/2024:17:08:43 +0000] "GET / HTTP/1.1" 301"#,
        br#"unix:/p/shop/hs-1/port-443.sock fc00:dead:beef:4dad::0:30 [11/Jan/2024:17:08:43 +0000] "GET / HTTP/1.1" 200"#,
        br#"unix:/p/shop/hs-2/port-443.sock fc00:dead:beef:4dad::0:30 [11/Jan/2024:17:08:44 +0000] "GET / HTTP/1.1" 200"#,
        br#"unix:/p/shop/hs-2/port-443.sock fc00:dead:beef:4dad::0:31 [11/Jan/2024:17:08:44 +0000] "GET / HTTP/1.1" 200"#,
    ];
    for l in lines {
        a.record(&f.parse(l).unwrap());
    }
    let s = a.summary();
    assert_eq!(
        s.unique_circuits_by_listener
            .into_iter()
            .collect::<Vec<_>>(),
        [
            ("unix:/p/shop/hs-1".to_owned(), 1),
            ("unix:/p/shop/hs-2".to_owned(), 2)
        ]
    );
    // Merged by id alone it would read 2.
    assert_eq!(s.unique_circuits, 3);
    assert!(!s.unique_circuits_exact);
    // Without $server_addr nothing changes.
    let plain = Analytics::default().summary();
    assert!(plain.unique_circuits_by_listener.is_empty());
    assert!(!serde_json::to_string(&plain)
        .unwrap()
        .contains("by_listener"));
}

#[test]
fn listeners_are_capped() {
    let f = LogFormat::compile(r#"$server_addr $proxy_protocol_addr $status"#).unwrap();
    let mut a = Analytics::default();
    for i in 0..MAX_LISTENERS + 10 {
        let line = format!("unix:/p/hs-{i}/port-80.sock fc00:dead:beef:4dad::0:30 200");
        a.record(&f.parse(line.as_bytes()).unwrap());
    }
    let s = a.summary();
    assert_eq!(s.unique_circuits_by_listener.len(), MAX_LISTENERS);
    assert_eq!(s.unique_circuits, MAX_LISTENERS as u64);
}

/// Workers whose `HiddenServicePort` lines point at TCP ports of one
/// address: told apart by `$server_port`.
#[test]
fn tcp_listeners_are_told_apart_by_their_port() {
    let f =
        LogFormat::compile(r#"$server_addr $server_port $proxy_protocol_addr $status"#).unwrap();
    let mut a = Analytics::default();
    let long = format!("{} 80 fc00:dead:beef:4dad::0:30 200", "1".repeat(100));
    for l in [
        "127.0.0.1 8081 fc00:dead:beef:4dad::0:30 200",
        "127.0.0.1 8082 fc00:dead:beef:4dad::0:30 200",
        "127.0.0.1 8082 fc00:dead:beef:4dad::0:31 200",
        "unix:/p/hs-1/port-80.sock - fc00:dead:beef:4dad::0:30 200",
        &long,
    ] {
        a.record(&f.parse(l.as_bytes()).unwrap());
    }
    let s = a.summary();
    let keys: Vec<(String, u64)> = s.unique_circuits_by_listener.into_iter().collect();
    assert_eq!(
        keys,
        [
            ("1".repeat(100), 1),
            ("127.0.0.1:8081".to_owned(), 1),
            ("127.0.0.1:8082".to_owned(), 2),
            ("unix:/p/hs-1".to_owned(), 1),
        ]
    );
}
