//! The library on the fixture files: access log counts and severities.

use onionwatch_logs::access::LogFormat;
use onionwatch_logs::analytics::Analytics;
use onionwatch_logs::lines::{Line, LineReader};
use onionwatch_logs::severity::{Severity, SeverityCounter};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn lines(name: &str) -> Vec<Vec<u8>> {
    let data = fixture(name);
    let mut r = LineReader::new(&data[..], 1 << 16);
    let mut out = Vec::new();
    while let Some(Line::Complete(l)) = r.next_line().unwrap() {
        out.push(l.to_vec());
    }
    out
}

#[test]
fn access_fixture_fast_and_general_agree() {
    let mut fast = Analytics::default();
    let mut general = Analytics::default();
    let g = LogFormat::compile_general("combined").unwrap();
    for l in lines("access-small.log") {
        for (a, f) in [(&mut fast, &LogFormat::combined()), (&mut general, &g)] {
            match f.parse(&l) {
                Ok(r) => a.record(&r),
                Err(e) => a.error(&e),
            }
        }
    }
    let s = fast.summary();
    assert_eq!(s, general.summary());
    assert_eq!((s.lines, s.requests, s.parse_errors), (17, 12, 5));
    assert_eq!(s.bytes, 1712);
    assert_eq!(s.unique_circuits, 8);
}

#[test]
fn tor_and_onionbalance_fixtures() {
    let mut tor = SeverityCounter::default();
    for l in lines("tor.log") {
        tor.observe(&l);
    }
    assert_eq!(tor.count(Severity::Notice), 2);
    assert_eq!(tor.count(Severity::Warn), 1);
    assert_eq!(tor.count(Severity::Info), 1);
    assert_eq!(tor.count(Severity::Err), 1);
    assert_eq!(tor.unknown(), 0);
    let recent: Vec<_> = tor.recent().map(|r| r.severity).collect();
    assert_eq!(recent, [Severity::Warn, Severity::Err]);

    let mut ob = SeverityCounter::default();
    for l in lines("onionbalance.log") {
        ob.observe(&l);
    }
    let s = ob.summary();
    assert_eq!(s.lines, 6);
    assert_eq!(s.by_severity["info"], 1);
    assert_eq!(s.by_severity["warn"], 1);
    assert_eq!(s.by_severity["err"], 1);
    assert_eq!(s.by_severity["debug"], 1);
    assert_eq!(s.unknown, 2, "the traceback lines");
    assert!(s.recent[1].text.contains("Unable to connect"));
}
