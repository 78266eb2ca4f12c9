//! Golden test: a real MetricsPort page of tor 0.4.9.11 hosting two onion
//! services (captured from `onionwatch testnet up --onions 2
//! --onions-per-tor 2` with curl), parsed and rendered again.

use std::collections::BTreeSet;

use onionwatch_metrics::parse::{parse, Limits};
use onionwatch_metrics::{render, Format, MetricType};
use onionwatch_test_support::{assert_golden, fixture, TOR_METRICSPORT_PAGE as SAMPLE};

fn sample_lines(text: &str) -> BTreeSet<&str> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect()
}

#[test]
fn real_tor_output_parses_merges_and_renders_back() {
    let families = parse(SAMPLE, &Limits::default()).expect("tor's own output parses");
    // tor prints each onion-service family twice (once per service): merged.
    let names: BTreeSet<&str> = families.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names.len(), families.len(), "one family per name");
    let helps = SAMPLE.lines().filter(|l| l.starts_with("# HELP ")).count();
    assert!(
        helps > families.len(),
        "the sample repeats HELP lines: {helps}"
    );

    let intro = families
        .iter()
        .find(|f| f.name == "tor_hs_intro_num")
        .unwrap();
    assert_eq!(intro.kind, MetricType::Counter);
    assert_eq!(intro.samples.len(), 2);
    let hist = families
        .iter()
        .find(|f| f.name == "tor_hs_rend_circ_build_time")
        .unwrap();
    assert_eq!(hist.kind, MetricType::Histogram);
    assert_eq!(hist.samples.len(), 2 * (6 + 2));
    let traffic = families
        .iter()
        .find(|f| f.name == "tor_relay_traffic_bytes")
        .unwrap();
    assert_eq!(traffic.kind, MetricType::Counter);
    assert!(traffic.samples.iter().all(|s| s.suffix.is_empty()));

    let text = render(&families, Format::Prometheus);
    // Every sample line of tor's page is in ours, byte for byte, and no other.
    assert_eq!(sample_lines(&text), sample_lines(SAMPLE));
    // One HELP and one TYPE per family.
    assert_eq!(text.matches("# TYPE ").count(), families.len());
    assert_golden(
        fixture!("tor-0.4.9-metricsport-2onions.rendered.txt"),
        &text,
    );

    // Our output parses to the same families.
    assert_eq!(parse(&text, &Limits::default()).unwrap(), families);
    // OpenMetrics rendering keeps every family too.
    let om = render(&families, Format::OpenMetrics);
    assert_eq!(om.matches("# TYPE ").count(), families.len());
    assert!(om.ends_with("# EOF\n"));
}
