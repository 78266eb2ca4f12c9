//! The metric model every onionwatch component exports through.
//!
//! Components keep their own state and, when scraped, turn it into
//! [`Family`] values ([`Collect`]). One place then renders them as
//! Prometheus text 0.0.4 or OpenMetrics 1.0 ([`render`]). We keep this model
//! of our own (rather than a registry crate's) because the inside monitor
//! re-exports families parsed from tor's MetricsPort with their original
//! types and HELP, and the prober keeps Onionprobe's exact names; both need
//! families as plain data.
//!
//! ```
//! use onionwatch_metrics::{render, Family, Format};
//! let mut up = Family::gauge("onionwatch_scrape_up", "Whether the last scrape worked.");
//! up.push(&[("project", "news")], 1.0);
//! let text = render(&[up], Format::Prometheus);
//! assert!(text.contains("onionwatch_scrape_up{project=\"news\"} 1\n"));
//! ```

mod encode;
mod histogram;
pub mod parse;

pub use encode::{render, Format};
pub use histogram::Histogram;

/// What a family measures, as the exposition formats name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    /// Monotonic; samples end in `_total` (and optionally `_created`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// `_bucket{le=…}`, `_sum`, `_count`.
    Histogram,
    /// `{quantile=…}`, `_sum`, `_count`.
    Summary,
    /// A constant 1 with informative labels; samples end in `_info`.
    Info,
    /// One sample per state, 1 for the current one (Onionprobe's Enum).
    StateSet,
    /// Untyped.
    Unknown,
}

impl MetricType {
    /// The suffix [`Family::push`] gives a sample of this type.
    pub fn default_suffix(self) -> &'static str {
        match self {
            MetricType::Counter => "_total",
            MetricType::Info => "_info",
            _ => "",
        }
    }
}

/// One labelled value of a family. Its full name is the family name plus `suffix`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// `""`, `_total`, `_bucket`, `_sum`, `_count`, `_created` or `_info`.
    pub suffix: String,
    /// Label pairs in output order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// A metric family: name, help, type and samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// The family name without type suffixes (`onion_service_fetch_error`,
    /// not `…_total`).
    pub name: String,
    /// One line of help text.
    pub help: String,
    /// The type.
    pub kind: MetricType,
    /// The samples, in output order.
    pub samples: Vec<Sample>,
}

impl Family {
    /// An empty family.
    pub fn new(name: impl Into<String>, help: impl Into<String>, kind: MetricType) -> Self {
        Self {
            name: name.into(),
            help: help.into(),
            kind,
            samples: Vec::new(),
        }
    }

    /// An empty counter; `name` without `_total`.
    pub fn counter(name: impl Into<String>, help: impl Into<String>) -> Self {
        Self::new(name, help, MetricType::Counter)
    }

    /// An empty gauge.
    pub fn gauge(name: impl Into<String>, help: impl Into<String>) -> Self {
        Self::new(name, help, MetricType::Gauge)
    }

    /// An empty histogram (fill it with [`Family::push_histogram`]).
    pub fn histogram(name: impl Into<String>, help: impl Into<String>) -> Self {
        Self::new(name, help, MetricType::Histogram)
    }

    /// An empty info family; `name` without `_info`.
    pub fn info(name: impl Into<String>, help: impl Into<String>) -> Self {
        Self::new(name, help, MetricType::Info)
    }

    /// Append a sample with the type's default suffix.
    pub fn push(&mut self, labels: &[(&str, &str)], value: f64) -> &mut Self {
        let suffix = self.kind.default_suffix();
        self.push_suffixed(suffix, labels, value)
    }

    /// Append a sample with an explicit suffix.
    pub fn push_suffixed(
        &mut self,
        suffix: &str,
        labels: &[(&str, &str)],
        value: f64,
    ) -> &mut Self {
        self.samples.push(Sample {
            suffix: suffix.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value,
        });
        self
    }

    /// Append the `_bucket`, `_sum` and `_count` samples of `h` under `labels`.
    pub fn push_histogram(&mut self, labels: &[(&str, &str)], h: &Histogram) -> &mut Self {
        let mut cumulative = 0;
        for (bound, count) in h.bounds().iter().zip(h.counts()) {
            cumulative += count;
            let le = format_value(*bound);
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self.push_suffixed("_bucket", &l, cumulative as f64);
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        self.push_suffixed("_bucket", &l, h.count() as f64);
        self.push_suffixed("_sum", labels, h.sum());
        self.push_suffixed("_count", labels, h.count() as f64)
    }

    /// Add `(name, value)` to every sample's labels (e.g. `project`),
    /// after the existing ones. A sample that already has `name` keeps its
    /// value as `exported_<name>` (more `exported_` prefixes if that is
    /// taken too), as Prometheus does with `honor_labels: false`: a scraped
    /// page cannot pose as another project.
    pub fn add_label(&mut self, name: &str, value: &str) {
        for s in &mut self.samples {
            if let Some(i) = s.labels.iter().position(|(k, _)| k == name) {
                let mut renamed = format!("exported_{name}");
                while s.labels.iter().any(|(k, _)| *k == renamed) {
                    renamed.insert_str(0, "exported_");
                }
                s.labels[i].0 = renamed;
            }
            s.labels.push((name.to_owned(), value.to_owned()));
        }
    }
}

/// A source of families, asked at every scrape.
pub trait Collect: Send + Sync {
    /// Append this source's current families to `out`.
    fn collect(&self, out: &mut Vec<Family>);
}

/// Merge families with the same name, keeping the first one's help and
/// type, samples in order. Needed where one tor prints a family once per
/// onion service, or several sources export the same family.
pub fn merge(families: Vec<Family>) -> Vec<Family> {
    let mut out: Vec<Family> = Vec::with_capacity(families.len());
    let mut index = std::collections::HashMap::new();
    for f in families {
        match index.get(&f.name) {
            Some(&i) => {
                let existing: &mut Family = &mut out[i];
                existing.samples.extend(f.samples);
            }
            None => {
                index.insert(f.name.clone(), out.len());
                out.push(f);
            }
        }
    }
    out
}

/// `true` for a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// `true` for a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A sample value as both formats write it: integers without a fraction,
/// `+Inf`, `-Inf`, `NaN`.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v == v.trunc() && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_joins_families_of_the_same_name() {
        let mut a = Family::counter("x", "first help");
        a.push(&[("s", "1")], 1.0);
        let mut b = Family::counter("x", "second help");
        b.push(&[("s", "2")], 2.0);
        let g = Family::gauge("y", "");
        let merged = merge(vec![a, g, b]);
        assert_eq!(merged.len(), 2);
        assert_eq!(merged[0].help, "first help");
        assert_eq!(merged[0].samples.len(), 2);
    }

    #[test]
    fn names_and_values() {
        assert!(is_valid_metric_name("tor_hs_app_write_bytes_total"));
        assert!(is_valid_metric_name("a:b"));
        assert!(!is_valid_metric_name("1a"));
        assert!(!is_valid_metric_name(""));
        assert!(!is_valid_label_name("a:b"));
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(0.25), "0.25");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(-3.0), "-3");
        assert_eq!(format_value(1e20), "100000000000000000000");
    }

    #[test]
    fn add_label_renames_a_scraped_label_of_the_same_name() {
        let l = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect()
        };
        let mut f = Family::gauge("g", "");
        f.push(&[("project", "a")], 1.0)
            .push(&[], 2.0)
            .push(&[("project", "a"), ("exported_project", "c")], 3.0);
        f.add_label("project", "b");
        assert_eq!(
            f.samples[0].labels,
            l(&[("exported_project", "a"), ("project", "b")])
        );
        assert_eq!(f.samples[1].labels, l(&[("project", "b")]));
        assert_eq!(
            f.samples[2].labels,
            l(&[
                ("exported_exported_project", "a"),
                ("exported_project", "c"),
                ("project", "b")
            ])
        );
    }
}
