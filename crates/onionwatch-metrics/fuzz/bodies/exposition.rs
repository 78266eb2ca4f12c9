//! Feed bytes to the Prometheus text parser; whatever parses must render
//! and parse again to the same families (NaN values aside). Shared by the
//! `exposition` fuzz target and `tests/fuzz_smoke.rs`.

use onionwatch_metrics::parse::{parse, parse_bytes, Limits};
use onionwatch_metrics::{render, Format};

pub fn run(data: &[u8]) {
    // Small limits so the size checks are reached too.
    let limits = Limits {
        max_bytes: 64 * 1024,
        max_samples: 1000,
        max_labels: 8,
        max_line: 4096,
    };
    let Ok(families) = parse_bytes(data, &limits) else {
        return;
    };
    let text = render(&families, Format::Prometheus);
    let _ = render(&families, Format::OpenMetrics);
    let again = parse(&text, &Limits::default()).expect("our own rendering parses");
    if families
        .iter()
        .all(|f| f.samples.iter().all(|s| !s.value.is_nan()))
    {
        assert_eq!(again.len(), families.len());
    }
}
