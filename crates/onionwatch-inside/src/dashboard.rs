//! The `dashboard:` section of `watch`'s YAML: how much history the
//! built-in dashboard keeps and which ranges its picker offers.
//!
//! ```yaml
//! dashboard:
//!   retention_days: 7            # the longest range offered
//!   full_resolution_points: 240  # kept at the interval (1 h at 15 s)
//!   bucket_seconds: 300          # older points: one mean per 5 minutes
//!   ranges: [1h, 24h, 7d]
//! ```
//!
//! Memory stays bounded whatever is configured: a series holds at most
//! `full_resolution_points + retention / bucket_seconds` points, which
//! must not exceed [`MAX_POINTS_PER_SERIES`] (5,000 points of 16 bytes;
//! with the dashboard's 2,048 series at most, about 164 MB in the worst
//! case, 74 MB with the defaults).

use std::time::Duration;

use serde::Deserialize;

/// Most points one series may hold (full-resolution points plus buckets).
pub const MAX_POINTS_PER_SERIES: usize = 5_000;
/// Longest retention, in days.
pub const MAX_RETENTION_DAYS: u32 = 90;
/// Most ranges in the picker.
pub const MAX_RANGES: usize = 6;

/// The `dashboard:` section of `watch`'s YAML.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DashboardSection {
    /// Days of history kept, 1 to 90: the longest range the picker can
    /// offer. Default 7.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Points kept per series at the probe and scrape interval, newest
    /// first, before they are averaged into buckets; 1 to 5,000. Default
    /// 240 (1 hour at 15 s).
    #[serde(default = "default_full_resolution_points")]
    pub full_resolution_points: usize,
    /// Seconds one averaged point covers, for history older than the
    /// full-resolution points: at least the interval, at most 86,400.
    /// Default 300, or the interval when that is longer.
    #[serde(default)]
    pub bucket_seconds: Option<u64>,
    /// The range picker's choices (and the charts' spans): a whole number
    /// followed by `s`, `m`, `h` or `d`, e.g. `30m`, `1h`, `7d`; 1 to 6 of
    /// them, none longer than the retention. Default `[1h, 24h, 7d]`.
    #[serde(default = "default_ranges")]
    pub ranges: Vec<String>,
}

fn default_retention_days() -> u32 {
    7
}
fn default_full_resolution_points() -> usize {
    240
}
/// `bucket_seconds` unless set (or the interval, when longer).
const DEFAULT_BUCKET_SECONDS: u64 = 300;
fn default_ranges() -> Vec<String> {
    vec!["1h".into(), "24h".into(), "7d".into()]
}

impl Default for DashboardSection {
    fn default() -> Self {
        DashboardSection {
            retention_days: default_retention_days(),
            full_resolution_points: default_full_resolution_points(),
            bucket_seconds: None,
            ranges: default_ranges(),
        }
    }
}

/// The dashboard's history settings, checked ([`DashboardSection::check`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistorySettings {
    /// Points kept per series at the interval.
    pub full_resolution_points: usize,
    /// How far back the history goes.
    pub retention: Duration,
    /// What one older, averaged point covers.
    pub bucket: Duration,
    /// The picker's ranges, as configured.
    pub ranges: Vec<Duration>,
}

impl Default for HistorySettings {
    fn default() -> Self {
        DashboardSection::default()
            .check(Duration::from_secs(15))
            .expect("the default dashboard section is valid")
    }
}

/// Why the `dashboard:` section cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DashboardError {
    /// Retention out of bounds.
    #[error("dashboard.retention_days must be between 1 and {MAX_RETENTION_DAYS}, not {0}")]
    RetentionDays(u32),
    /// Full-resolution points out of bounds.
    #[error(
        "dashboard.full_resolution_points must be between 1 and {MAX_POINTS_PER_SERIES}, not {0}"
    )]
    Points(usize),
    /// Bucket shorter than the interval or longer than a day.
    #[error("dashboard.bucket_seconds must be between the interval ({interval:?}) and 86400, not {value}")]
    Bucket {
        /// The value given.
        value: u64,
        /// The sampling interval.
        interval: Duration,
    },
    /// Too many points per series.
    #[error("dashboard: {points} full-resolution points plus {buckets} buckets ({days} days / {bucket} s) exceed {MAX_POINTS_PER_SERIES} points per series; raise bucket_seconds or lower retention_days or full_resolution_points")]
    TooManyPoints {
        /// `full_resolution_points`.
        points: usize,
        /// Buckets the retention needs.
        buckets: u64,
        /// `retention_days`.
        days: u32,
        /// `bucket_seconds`.
        bucket: u64,
    },
    /// No range, or too many.
    #[error("dashboard.ranges must list 1 to {MAX_RANGES} ranges, not {0}")]
    RangeCount(usize),
    /// A range that is not `N` followed by s, m, h or d.
    #[error("dashboard.ranges: {0:?} is not a range like 30m, 1h, 24h or 7d (a whole number above 0 followed by s, m, h or d)")]
    RangeSyntax(String),
    /// A range longer than the retention.
    #[error("dashboard.ranges: {range} is longer than the retention ({days} days); raise retention_days or shorten the range")]
    RangeAboveRetention {
        /// The range as written.
        range: String,
        /// `retention_days`.
        days: u32,
    },
}

/// `30m` → 1,800 s; `None` unless a whole number above 0 and a unit.
fn parse_range(text: &str) -> Option<Duration> {
    let text = text.trim();
    let unit = text.chars().last()?;
    let factor = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => return None,
    };
    let digits = &text[..text.len() - 1];
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    (n > 0).then(|| Duration::from_secs(n * factor))
}

impl DashboardSection {
    /// Check the section against the sampling `interval`.
    pub fn check(&self, interval: Duration) -> Result<HistorySettings, DashboardError> {
        let days = self.retention_days;
        if !(1..=MAX_RETENTION_DAYS).contains(&days) {
            return Err(DashboardError::RetentionDays(days));
        }
        let points = self.full_resolution_points;
        if !(1..=MAX_POINTS_PER_SERIES).contains(&points) {
            return Err(DashboardError::Points(points));
        }
        // Unset, the bucket follows a long interval (a default never fails).
        let bucket = self
            .bucket_seconds
            .unwrap_or_else(|| DEFAULT_BUCKET_SECONDS.max(interval.as_secs_f64().ceil() as u64));
        if bucket > 86_400 || Duration::from_secs(bucket) < interval {
            return Err(DashboardError::Bucket {
                value: bucket,
                interval,
            });
        }
        let retention = u64::from(days) * 86_400;
        let buckets = retention / bucket;
        if points as u64 + buckets > MAX_POINTS_PER_SERIES as u64 {
            return Err(DashboardError::TooManyPoints {
                points,
                buckets,
                days,
                bucket,
            });
        }
        if self.ranges.is_empty() || self.ranges.len() > MAX_RANGES {
            return Err(DashboardError::RangeCount(self.ranges.len()));
        }
        let mut ranges = Vec::with_capacity(self.ranges.len());
        for r in &self.ranges {
            let d = parse_range(r).ok_or_else(|| DashboardError::RangeSyntax(r.clone()))?;
            if d.as_secs() > retention {
                return Err(DashboardError::RangeAboveRetention {
                    range: r.clone(),
                    days,
                });
            }
            ranges.push(d);
        }
        Ok(HistorySettings {
            full_resolution_points: points,
            retention: Duration::from_secs(retention),
            bucket: Duration::from_secs(bucket),
            ranges,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIFTEEN: Duration = Duration::from_secs(15);

    fn section(yaml: &str) -> Result<DashboardSection, serde_saphyr::Error> {
        serde_saphyr::from_str(yaml)
    }

    #[test]
    fn defaults_are_seven_days_of_five_minute_buckets_after_an_hour_at_the_interval() {
        let s = section("{}").unwrap();
        assert_eq!(s, DashboardSection::default());
        let h = s.check(FIFTEEN).unwrap();
        assert_eq!(h.full_resolution_points, 240);
        assert_eq!(h.retention, Duration::from_secs(7 * 86_400));
        assert_eq!(h.bucket, Duration::from_secs(300));
        assert_eq!(
            h.ranges,
            [3_600, 86_400, 604_800].map(Duration::from_secs).to_vec()
        );
        assert_eq!(h, HistorySettings::default());
        // watch --interval 3600 with no dashboard section: buckets of an hour.
        let hourly = s.check(Duration::from_secs(3600)).unwrap();
        assert_eq!(hourly.bucket, Duration::from_secs(3600));
    }

    #[test]
    fn parses_every_field() {
        let s = section(
            "retention_days: 30\nfull_resolution_points: 120\nbucket_seconds: 900\nranges: [30m, 6h, 30d, 90s]\n",
        )
        .unwrap();
        let h = s.check(FIFTEEN).unwrap();
        assert_eq!(h.full_resolution_points, 120);
        assert_eq!(h.retention, Duration::from_secs(30 * 86_400));
        assert_eq!(h.bucket, Duration::from_secs(900));
        assert_eq!(
            h.ranges,
            [1_800, 21_600, 2_592_000, 90]
                .map(Duration::from_secs)
                .to_vec()
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let e = section("retention: 7\n").unwrap_err().to_string();
        assert!(e.contains("retention"), "{e}");
    }

    fn error(yaml: &str, interval: Duration) -> String {
        section(yaml)
            .unwrap()
            .check(interval)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn bounds_are_checked_with_clear_errors() {
        for (yaml, wanted) in [
            (
                "retention_days: 0",
                "retention_days must be between 1 and 90",
            ),
            ("retention_days: 91", "not 91"),
            (
                "full_resolution_points: 0",
                "full_resolution_points must be",
            ),
            ("full_resolution_points: 5001", "not 5001"),
            (
                "bucket_seconds: 10",
                "bucket_seconds must be between the interval",
            ),
            ("bucket_seconds: 86401", "not 86401"),
            (
                "bucket_seconds: 60",
                "240 full-resolution points plus 10080 buckets",
            ),
            ("ranges: []", "1 to 6 ranges, not 0"),
            ("ranges: [1h, 2h, 3h, 4h, 5h, 6h, 7h]", "not 7"),
            ("ranges: [1w]", "\"1w\" is not a range"),
            ("ranges: [h]", "\"h\" is not a range"),
            ("ranges: [0h]", "\"0h\" is not a range"),
            ("ranges: [-1h]", "\"-1h\" is not a range"),
            ("ranges: [99999999999d]", "is not a range"),
            (
                "ranges: [1h, 8d]",
                "8d is longer than the retention (7 days)",
            ),
        ] {
            let e = error(yaml, FIFTEEN);
            assert!(e.contains(wanted), "{yaml}: {e}");
        }
        // The bucket follows a longer interval.
        let e = error("bucket_seconds: 300", Duration::from_secs(600));
        assert!(e.contains("interval (600s)"), "{e}");
    }

    #[test]
    fn the_bound_on_points_per_series_is_reachable_and_not_exceeded() {
        // 1 day / 6 min is 240 buckets: 4,760 points reach the bound, 4,761 exceed it.
        let e = error(
            "full_resolution_points: 4761\nretention_days: 1\nbucket_seconds: 360",
            FIFTEEN,
        );
        assert!(e.contains("exceed 5000 points per series"), "{e}");
        let ok = section(
            "full_resolution_points: 4760\nretention_days: 1\nbucket_seconds: 360\nranges: [1d]",
        )
        .unwrap()
        .check(FIFTEEN)
        .unwrap();
        assert_eq!(
            ok.full_resolution_points + 86_400 / 360,
            MAX_POINTS_PER_SERIES
        );
    }
}
