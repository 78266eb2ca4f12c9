//! Golden test: summary families (quantiles, `_sum`, `_count`), declared
//! twice like tor declares its per-service families, and rendered. (The
//! inside monitor's relabelling of them is tested in onionwatch-inside.)

use onionwatch_metrics::parse::{parse, Limits};
use onionwatch_metrics::{render, Format, MetricType};
use onionwatch_test_support::{assert_golden, fixture};

const PAGE: &str = include_str!("fixtures/summary-page.txt");

#[test]
fn summaries_parse_and_render() {
    let families = parse(PAGE, &Limits::default()).unwrap();
    let kinds: Vec<(&str, MetricType, usize)> = families
        .iter()
        .map(|f| (f.name.as_str(), f.kind, f.samples.len()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("rpc_duration_seconds", MetricType::Summary, 9),
            ("up_seconds", MetricType::Gauge, 1),
            ("go_gc_duration_seconds", MetricType::Summary, 4),
        ]
    );
    let text = render(&families, Format::Prometheus);
    assert_golden(fixture!("summary-page.rendered.txt"), &text);
    // Parsed again, the structure is the same.
    let again = parse(&text, &Limits::default()).unwrap();
    assert_eq!(render(&again, Format::Prometheus), text);
    let om = render(&families, Format::OpenMetrics);
    assert!(om.contains("# TYPE rpc_duration_seconds summary\n"), "{om}");
    assert!(om.contains("go_gc_duration_seconds_count 94\n"), "{om}");
}
