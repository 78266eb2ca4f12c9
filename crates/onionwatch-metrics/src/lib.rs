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

pub use encode::{render, text_samples, Format};
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

/// Why a set of constant labels was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// Not `[a-zA-Z_][a-zA-Z0-9_]*`, or starting with `__` (reserved for
    /// Prometheus's internal labels).
    #[error("{0:?} is not a usable label name: use letters, digits and _, not starting with a digit or __")]
    BadName(String),
    /// The value is empty (Prometheus treats an empty label as absent) or
    /// longer than [`MAX_LABEL_VALUE_BYTES`].
    #[error("label {name:?}: the value must be 1 to {MAX_LABEL_VALUE_BYTES} bytes long")]
    BadValue {
        /// The label.
        name: String,
    },
    /// The same label twice (e.g. `vantage` both from `--vantage` and in
    /// `external_labels`).
    #[error("label {0:?} is given twice: keep one")]
    Duplicate(String),
    /// More than [`MAX_CONST_LABELS`] labels.
    #[error("more than {MAX_CONST_LABELS} constant labels")]
    TooMany,
}

/// Longest constant label value accepted.
pub const MAX_LABEL_VALUE_BYTES: usize = 1024;
/// Most constant labels accepted.
pub const MAX_CONST_LABELS: usize = 32;

/// Labels added to every sample a process exports or pushes: the `vantage`
/// of a prober and the `external_labels` of a configuration. One value,
/// checked once, that the exporter ([`Labelled`]), a remote_write pusher and
/// an alert engine all take, so a series and the alerts about it carry the
/// same labels.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConstLabels {
    pairs: Vec<(String, String)>,
}

impl ConstLabels {
    /// No labels.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add `name="value"` after the labels already there; refuses a bad or
    /// reserved name, an empty or huge value, a name already present.
    pub fn with(mut self, name: &str, value: &str) -> Result<Self, LabelError> {
        if !is_valid_label_name(name) || name.starts_with("__") {
            return Err(LabelError::BadName(name.to_owned()));
        }
        if value.is_empty() || value.len() > MAX_LABEL_VALUE_BYTES {
            return Err(LabelError::BadValue {
                name: name.to_owned(),
            });
        }
        if self.pairs.iter().any(|(k, _)| k == name) {
            return Err(LabelError::Duplicate(name.to_owned()));
        }
        if self.pairs.len() >= MAX_CONST_LABELS {
            return Err(LabelError::TooMany);
        }
        self.pairs.push((name.to_owned(), value.to_owned()));
        Ok(self)
    }

    /// The labels, in the order given.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `true` without labels.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Add the labels to every sample of `families` ([`Family::add_label`]:
    /// a sample's own label of the same name is kept as `exported_<name>`).
    pub fn apply(&self, families: &mut [Family]) {
        for f in families {
            for (k, v) in &self.pairs {
                f.add_label(k, v);
            }
        }
    }
}

/// A [`Collect`] source whose every sample gets [`ConstLabels`]: wrap the
/// root collector of a process once, and whatever reads it (`/metrics`, a
/// remote_write pusher) sees the same labelled series.
pub struct Labelled {
    inner: std::sync::Arc<dyn Collect>,
    labels: ConstLabels,
}

impl std::fmt::Debug for Labelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Labelled")
            .field("labels", &self.labels)
            .finish_non_exhaustive()
    }
}

impl Labelled {
    /// `inner`'s families with `labels` added.
    pub fn new(inner: std::sync::Arc<dyn Collect>, labels: ConstLabels) -> Self {
        Self { inner, labels }
    }

    /// The labels added.
    pub fn labels(&self) -> &ConstLabels {
        &self.labels
    }
}

impl Collect for Labelled {
    fn collect(&self, out: &mut Vec<Family>) {
        let start = out.len();
        self.inner.collect(out);
        self.labels.apply(&mut out[start..]);
    }
}

/// Merge families with the same name, keeping the first one's help and
/// type, samples in order. Needed where one tor prints a family once per
/// onion service, or several sources export the same family. A family of
/// the same name as an earlier one but of another type is dropped (see
/// [`merge_checked`] to count those).
pub fn merge(families: Vec<Family>) -> Vec<Family> {
    merge_checked(families).0
}

/// What [`merge_checked`] dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Families of the name of an earlier one but another type.
    pub type_conflict: u64,
    /// Families whose samples would be written under a name an earlier
    /// family of another name writes (a gauge `x_total` after a counter
    /// `x`, a gauge `x_count` after a histogram `x`).
    pub name_conflict: u64,
}

/// The names the samples of a family of `kind` called `name` may be
/// written under, in either format.
pub fn exposed_names(name: &str, kind: MetricType) -> impl Iterator<Item = String> + '_ {
    let suffixes: &[&str] = match kind {
        MetricType::Counter => &["", "_total", "_created"],
        MetricType::Histogram => &["", "_bucket", "_sum", "_count", "_created"],
        MetricType::Summary => &["", "_sum", "_count", "_created"],
        MetricType::Info => &["", "_info"],
        MetricType::Gauge | MetricType::StateSet | MetricType::Unknown => &[""],
    };
    suffixes.iter().map(move |s| format!("{name}{s}"))
}

/// [`merge`], and what it dropped. Merging families of one name but two
/// types would give, say, a gauge `_bucket` samples; two families writing
/// samples of one name give two `# TYPE` lines for it, and Prometheus then
/// refuses the whole scrape. Either is a way for one source (a hostile
/// MetricsPort) to corrupt the others' families or the whole exposition:
/// the later family is dropped, the earlier one kept.
pub fn merge_checked(families: Vec<Family>) -> (Vec<Family>, Dropped) {
    let mut out: Vec<Family> = Vec::with_capacity(families.len());
    // Family name -> its index in `out`.
    let mut index = std::collections::HashMap::new();
    // Every name a kept family may write samples under -> that family's name.
    let mut exposed: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut dropped = Dropped::default();
    for mut f in families {
        if let Some(&i) = index.get(&f.name) {
            let existing: &mut Family = &mut out[i];
            if existing.kind == f.kind {
                existing.samples.append(&mut f.samples);
            } else {
                dropped.type_conflict += 1;
            }
            continue;
        }
        // A family writes `_created` lines only from `_created` samples of its
        // own; without them, a gauge `X_created` beside counter `X` is the
        // 0.0.4 text form of its creation times (Onionprobe's, the prober's).
        let created = format!("{}_created", f.name);
        let writes_created = f.samples.iter().any(|s| s.suffix == "_created");
        let names: Vec<String> = exposed_names(&f.name, f.kind)
            .filter(|n| writes_created || *n != created)
            .collect();
        if names.iter().any(|n| exposed.contains_key(n)) {
            dropped.name_conflict += 1;
            continue;
        }
        for n in names {
            exposed.insert(n, f.name.clone());
        }
        index.insert(f.name.clone(), out.len());
        out.push(f);
    }
    (out, dropped)
}

/// The counter of families left out of the exposition, by `reason`
/// (rendered `onionwatch_scrape_dropped_families_total{reason=…}`), for
/// all sources together: no per-target labels, so a hostile source cannot
/// grow it. Exported once a family has been dropped. Reasons:
/// [`DROPPED_NOT_TOR`], [`DROPPED_TYPE_CONFLICT`], [`DROPPED_NAME_CONFLICT`].
pub const DROPPED_FAMILIES: &str = "onionwatch_scrape_dropped_families";
/// The HELP of [`DROPPED_FAMILIES`].
pub const DROPPED_FAMILIES_HELP: &str = "Families not exported, by reason: not_tor (a tor MetricsPort sent a family not named tor_*), type_conflict (the name of another family or of tor's own, another type), name_conflict (samples named like another family's); conflicts are counted at every collection.";
/// A tor MetricsPort sent a family whose name does not start with `tor_`.
pub const DROPPED_NOT_TOR: &str = "not_tor";
/// A family has the name of another one (earlier, or tor's own) but not its type.
pub const DROPPED_TYPE_CONFLICT: &str = "type_conflict";
/// A family's samples would be written under a name another family writes.
pub const DROPPED_NAME_CONFLICT: &str = "name_conflict";

/// Add `count` families dropped for `reason` to the [`DROPPED_FAMILIES`]
/// family in `out`: to its sample for `reason` when there is one (several
/// sources count the same reason; the sum of counters is a counter), else
/// a new sample, in a new family if needed. Nothing happens for 0.
pub fn push_dropped(out: &mut Vec<Family>, reason: &str, count: u64) {
    if count == 0 {
        return;
    }
    let i = match out
        .iter()
        .position(|f| f.name == DROPPED_FAMILIES && f.kind == MetricType::Counter)
    {
        Some(i) => i,
        None => {
            out.push(Family::counter(DROPPED_FAMILIES, DROPPED_FAMILIES_HELP));
            out.len() - 1
        }
    };
    let f = &mut out[i];
    let same = f.samples.iter_mut().find(|s| {
        s.suffix == "_total"
            && s.labels.len() == 1
            && s.labels[0] == ("reason".into(), reason.into())
    });
    match same {
        Some(s) => s.value += count as f64,
        None => {
            f.push(&[("reason", reason)], count as f64);
        }
    }
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
    fn merge_drops_a_family_of_the_same_name_but_another_type() {
        let mut up = Family::gauge("onionwatch_scrape_up", "ours");
        up.push(&[("project", "a")], 1.0);
        let mut fake = Family::histogram("onionwatch_scrape_up", "theirs");
        let mut h = Histogram::new(&[1.0]);
        h.observe(0.5);
        fake.push_histogram(&[], &h);
        let mut again = Family::gauge("onionwatch_scrape_up", "");
        again.push(&[("project", "b")], 0.0);
        let (merged, dropped) = merge_checked(vec![up, fake.clone(), again]);
        assert_eq!(
            dropped,
            Dropped {
                type_conflict: 1,
                name_conflict: 0
            }
        );
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].kind, MetricType::Gauge);
        assert!(
            merged[0].samples.iter().all(|s| s.suffix.is_empty()),
            "{merged:?}"
        );
        assert_eq!(merged[0].samples.len(), 2);
        assert_eq!(merge(vec![fake.clone(), fake]).len(), 1, "same type merges");
    }

    #[test]
    fn a_created_gauge_stays_beside_a_counter_without_created_samples() {
        // Onionprobe's 0.0.4 text (and the prober's): counter `x`, gauge `x_created`.
        let mut x = Family::counter("x", "");
        x.push(&[], 1.0);
        let mut created = Family::gauge("x_created", "");
        created.push(&[], 1.7e9);
        let (merged, dropped) = merge_checked(vec![x.clone(), created.clone()]);
        assert_eq!(dropped, Dropped::default());
        assert_eq!(merged.len(), 2);
        // A counter writing `_created` lines itself keeps the name.
        x.push_suffixed("_created", &[], 1.7e9);
        let (merged, dropped) = merge_checked(vec![x, created]);
        assert_eq!(dropped.name_conflict, 1);
        assert_eq!(merged.len(), 1);
    }

    #[test]
    fn merge_drops_a_family_writing_samples_under_another_family_s_name() {
        let mut bytes = Family::counter("tor_hs_app_write_bytes", "tor's");
        bytes.push(&[], 1.0);
        let mut fake_total = Family::gauge("tor_hs_app_write_bytes_total", "");
        fake_total.push(&[], 2.0);
        let mut h = Family::histogram("tor_x", "");
        h.push_histogram(&[], &Histogram::new(&[1.0]));
        let mut fake_count = Family::gauge("tor_x_count", "");
        fake_count.push(&[], 3.0);
        // Both orders: whichever comes first stays.
        let mut ok = Family::gauge("tor_relay_connections", "");
        ok.push(&[], 4.0);
        let mut ok_total = Family::counter("tor_relay_connections_total", "");
        ok_total.push(&[], 5.0);
        let (merged, dropped) = merge_checked(vec![
            bytes,
            fake_total,
            fake_count.clone(),
            h.clone(),
            ok,
            ok_total,
        ]);
        assert_eq!(
            dropped,
            Dropped {
                type_conflict: 0,
                name_conflict: 2
            }
        );
        let names: Vec<&str> = merged.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "tor_hs_app_write_bytes",
                "tor_x_count",
                "tor_relay_connections",
                "tor_relay_connections_total"
            ]
        );
        let text = render(&merged, Format::Prometheus);
        assert_eq!(text.matches("# TYPE tor_x_count ").count(), 1, "{text}");
    }

    #[test]
    fn dropped_families_are_one_aggregate_counter() {
        let mut out = Vec::new();
        push_dropped(&mut out, DROPPED_NOT_TOR, 0);
        assert!(out.is_empty(), "nothing before the first drop");
        push_dropped(&mut out, DROPPED_NOT_TOR, 3);
        push_dropped(&mut out, DROPPED_TYPE_CONFLICT, 1);
        push_dropped(&mut out, DROPPED_TYPE_CONFLICT, 2);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].samples.len(), 2, "one sample per reason");
        let text = render(&out, Format::Prometheus);
        assert!(
            text.contains("onionwatch_scrape_dropped_families_total{reason=\"not_tor\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("{reason=\"type_conflict\"} 3\n"), "{text}");
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

    #[test]
    fn const_labels_are_checked_and_added_to_every_sample() {
        let labels = ConstLabels::new()
            .with("vantage", "eu-1")
            .unwrap()
            .with("region", "eu")
            .unwrap();
        assert_eq!(labels.get("vantage"), Some("eu-1"));
        for (name, value) in [
            ("__x", "v"),
            ("1a", "v"),
            ("a-b", "v"),
            ("", "v"),
            ("ok", ""),
        ] {
            assert!(
                ConstLabels::new().with(name, value).is_err(),
                "{name:?}={value:?}"
            );
        }
        let long = "x".repeat(MAX_LABEL_VALUE_BYTES + 1);
        assert!(ConstLabels::new().with("a", &long).is_err());
        assert_eq!(
            labels.clone().with("vantage", "again").unwrap_err(),
            LabelError::Duplicate("vantage".into())
        );
        struct Source;
        impl Collect for Source {
            fn collect(&self, out: &mut Vec<Family>) {
                let mut f = Family::gauge("g", "");
                f.push(&[("vantage", "forged")], 1.0).push(&[], 2.0);
                out.push(f);
            }
        }
        let wrapped = Labelled::new(std::sync::Arc::new(Source), labels);
        let mut out = vec![Family::gauge("before", "")];
        out[0].push(&[], 0.0);
        wrapped.collect(&mut out);
        assert!(
            out[0].samples[0].labels.is_empty(),
            "earlier families untouched"
        );
        let text = render(&out[1..], Format::Prometheus);
        assert!(
            text.contains("g{exported_vantage=\"forged\",vantage=\"eu-1\",region=\"eu\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("g{vantage=\"eu-1\",region=\"eu\"} 2\n"),
            "{text}"
        );
    }
}
