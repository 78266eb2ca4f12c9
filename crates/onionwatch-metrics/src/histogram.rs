//! A fixed-bucket histogram, cheap to observe into.

/// Counts per upper bound, plus sum and count; rendered cumulatively by
/// [`crate::Family::push_histogram`].
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// Buckets with these upper bounds (sorted, finite; `+Inf` is implicit).
    ///
    /// # Panics
    /// If the bounds are not strictly increasing finite numbers: they are
    /// constants in the code, so that is a programming error.
    pub fn new(bounds: &[f64]) -> Self {
        assert!(
            bounds.windows(2).all(|w| w[0] < w[1]) && bounds.iter().all(|b| b.is_finite()),
            "histogram bounds must be increasing and finite: {bounds:?}"
        );
        Self {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len()],
            sum: 0.0,
            count: 0,
        }
    }

    /// A histogram from counts kept elsewhere (e.g. atomics on a hot path):
    /// non-cumulative `counts` per bound, values above the last bound only
    /// in `count`. A `count` below the buckets' total is raised to it, so
    /// the rendered `+Inf` bucket never falls below the last finite one.
    ///
    /// # Panics
    /// As [`Histogram::new`], and if `counts` and `bounds` differ in length.
    pub fn from_parts(bounds: &[f64], counts: &[u64], sum: f64, count: u64) -> Self {
        assert_eq!(bounds.len(), counts.len(), "one count per bound");
        let mut h = Self::new(bounds);
        h.counts.copy_from_slice(counts);
        h.sum = sum;
        h.count = count.max(counts.iter().sum());
        h
    }

    /// Buckets for latencies in seconds over Tor: 50 ms to 60 s.
    pub fn tor_latency() -> Self {
        Self::new(&[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0])
    }

    /// Record one value.
    pub fn observe(&mut self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i] += 1;
        }
        self.sum += v;
        self.count += 1;
    }

    /// Upper bounds.
    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    /// Non-cumulative counts per bound (values above the last bound are
    /// only in [`Histogram::count`]).
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Sum of observed values.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// Number of observed values.
    pub fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_parts_keeps_inf_at_or_above_the_buckets() {
        let h = Histogram::from_parts(&[1.0, 2.0], &[3, 4], 9.5, 5);
        assert_eq!(h.counts(), &[3, 4]);
        assert_eq!(h.count(), 7);
        assert_eq!(Histogram::from_parts(&[1.0], &[1], 0.5, 2).count(), 2);
    }
    use crate::Family;

    #[test]
    fn renders_cumulative_buckets() {
        let mut h = Histogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 9.0] {
            h.observe(v);
        }
        let mut f = Family::histogram("d", "");
        f.push_histogram(&[("p", "x")], &h);
        let values: Vec<(String, f64)> = f
            .samples
            .iter()
            .map(|s| {
                (
                    format!("{}{:?}", s.suffix, s.labels.last().unwrap().1),
                    s.value,
                )
            })
            .collect();
        assert_eq!(values[0], ("_bucket\"1\"".into(), 2.0));
        assert_eq!(values[1], ("_bucket\"2\"".into(), 3.0));
        assert_eq!(values[2], ("_bucket\"+Inf\"".into(), 4.0));
        assert_eq!(f.samples[3].value, 12.0);
        assert_eq!(f.samples[4].value, 4.0);
    }

    #[test]
    #[should_panic]
    fn unsorted_bounds_are_a_bug() {
        Histogram::new(&[2.0, 1.0]);
    }
}
