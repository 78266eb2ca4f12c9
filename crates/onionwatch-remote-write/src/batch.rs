//! From families to compressed remote_write batches.

use std::collections::HashSet;

use onionwatch_metrics::{is_valid_label_name, is_valid_metric_name, text_samples, Family};

use crate::proto::{self, TimeSeries};

/// One request body: a snappy-compressed `WriteRequest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Samples in it.
    pub samples: u64,
    /// Bytes before compression.
    pub raw_bytes: u64,
    /// The snappy block-compressed body.
    pub body: Vec<u8>,
}

/// What [`series`] left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Skipped {
    /// Samples with an invalid metric or label name.
    pub invalid: u64,
    /// Samples whose labels repeat an earlier sample's (a receiver would
    /// refuse the whole request for the second value at one timestamp).
    pub duplicate: u64,
}

/// Every sample the Prometheus text exposition writes for `families`, as
/// one series each at `timestamp_ms`: `__name__` is the family name plus
/// the sample's suffix (`_total`, `_bucket`, `_sum`, `_count`, `_info`),
/// labels sorted by name, empty-valued labels left out (as a scrape does).
/// Merge families first (`onionwatch_metrics::merge`).
pub fn series(families: &[Family], timestamp_ms: i64) -> (Vec<TimeSeries>, Skipped) {
    let mut out = Vec::new();
    let mut skipped = Skipped::default();
    let mut seen = HashSet::new();
    for f in families {
        for s in text_samples(f) {
            let name = format!("{}{}", f.name, s.suffix);
            let mut labels: Vec<(String, String)> = Vec::with_capacity(s.labels.len() + 1);
            labels.push(("__name__".into(), name));
            labels.extend(s.labels.iter().filter(|(_, v)| !v.is_empty()).cloned());
            // Stable: of two labels of one name, the first stays (as the
            // text format's parser keeps the first).
            labels.sort_by(|a, b| a.0.cmp(&b.0));
            labels.dedup_by(|b, a| a.0 == b.0);
            let valid = is_valid_metric_name(
                labels
                    .iter()
                    .find(|l| l.0 == "__name__")
                    .map_or("", |l| l.1.as_str()),
            ) && labels
                .iter()
                .all(|(k, _)| k == "__name__" || is_valid_label_name(k));
            if !valid {
                skipped.invalid += 1;
                continue;
            }
            if !seen.insert(labels.clone()) {
                skipped.duplicate += 1;
                continue;
            }
            out.push(TimeSeries {
                labels,
                samples: vec![(s.value, timestamp_ms)],
            });
        }
    }
    (out, skipped)
}

/// Split `series` into requests of at most `batch_size` samples, encoded
/// and compressed.
pub fn batches(series: &[TimeSeries], batch_size: usize) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut raw = Vec::new();
    let mut encoder = snap::raw::Encoder::new();
    // One sample per series here, so a chunk of series is a chunk of samples.
    for chunk in series.chunks(batch_size.max(1)) {
        raw.clear();
        proto::encode(chunk, &mut raw);
        let body = match encoder.compress_vec(&raw) {
            Ok(b) => b,
            // Only for inputs over ~4 GiB, which a chunk cannot reach.
            Err(e) => {
                tracing::error!("remote_write: cannot compress a batch: {e}");
                continue;
            }
        };
        out.push(Batch {
            samples: chunk.iter().map(|s| s.samples.len() as u64).sum(),
            raw_bytes: raw.len() as u64,
            body,
        });
    }
    out
}

/// Decompress and decode a batch body (tests, benchmark).
pub fn decode_body(body: &[u8]) -> Result<Vec<TimeSeries>, String> {
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| format!("not snappy: {e}"))?;
    proto::decode(&raw).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use onionwatch_metrics::{Histogram, MetricType};

    #[test]
    fn names_labels_and_suffixes_follow_the_text_exposition() {
        let mut c = Family::counter("onion_service_fetch_error", "");
        c.push(&[("name", "b"), ("address", "a"), ("empty", "")], 3.0);
        c.push_suffixed("_created", &[("name", "b")], 1.7e9);
        let mut h = Family::histogram("lat_seconds", "");
        let mut hist = Histogram::new(&[1.0]);
        hist.observe(0.5);
        h.push_histogram(&[("name", "b")], &hist);
        let mut i = Family::info("build", "");
        i.push(&[("version", "1")], 1.0);
        let mut summary = Family::new("q", "", MetricType::Summary);
        summary.push_suffixed("", &[("quantile", "0.5")], 2.0);
        summary.push_suffixed("_count", &[], 4.0);
        let (s, skipped) = series(&[c, h, i, summary], 42);
        assert_eq!(skipped, Skipped::default());
        let names: Vec<String> = s
            .iter()
            .map(|t| {
                t.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        assert_eq!(
            names,
            [
                "__name__=onion_service_fetch_error_total,address=a,name=b",
                "__name__=lat_seconds_bucket,le=1,name=b",
                "__name__=lat_seconds_bucket,le=+Inf,name=b",
                "__name__=lat_seconds_sum,name=b",
                "__name__=lat_seconds_count,name=b",
                "__name__=build_info,version=1",
                "__name__=q,quantile=0.5",
                "__name__=q_count",
            ]
        );
        assert!(s
            .iter()
            .all(|t| t.samples.len() == 1 && t.samples[0].1 == 42));
        assert_eq!(s[0].samples[0].0, 3.0);
    }

    #[test]
    fn invalid_and_duplicate_samples_are_left_out() {
        let mut g = Family::gauge("g", "");
        g.push(&[("a", "1")], 1.0)
            .push(&[("a", "1")], 2.0)
            .push(&[("bad-label", "1")], 3.0)
            .push(&[("__name__", "x")], 4.0);
        let bad = Family::gauge("1bad", "");
        let mut bad = bad;
        bad.push(&[], 1.0);
        let (s, skipped) = series(&[g, bad], 0);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0].samples[0].0, 1.0);
        // A `__name__` label in the sample loses to the family's name.
        assert_eq!(s[1].labels, [("__name__".to_string(), "g".to_string())]);
        assert_eq!(
            skipped,
            Skipped {
                invalid: 2,
                duplicate: 1
            }
        );
    }

    #[test]
    fn batches_hold_at_most_batch_size_samples_and_decode_back() {
        let mut g = Family::gauge("g", "");
        for i in 0..2500 {
            g.push(&[("i", &i.to_string())], i as f64);
        }
        let (s, _) = series(&[g], 7);
        let b = batches(&s, 1000);
        assert_eq!(
            b.iter().map(|b| b.samples).collect::<Vec<_>>(),
            [1000, 1000, 500]
        );
        let mut back = Vec::new();
        for batch in &b {
            assert!(batch.body.len() < batch.raw_bytes as usize, "compressed");
            back.extend(decode_body(&batch.body).unwrap());
        }
        assert_eq!(back, s);
    }
}
