//! A HyperLogLog sketch for counting distinct circuits in bounded memory.
//!
//! - Items are 64-bit values (circuit ids); each is scrambled with a fixed,
//!   bijective 64-bit mixer (MurmurHash3's finaliser), so different ids never
//!   collide before the sketch and results are deterministic across runs.
//! - **Sparse (exact) mode:** up to [`SPARSE_LIMIT`] distinct items are kept
//!   in a set and counted exactly (at most ~16 KiB).
//! - **Dense mode:** past that, 2^14 = 16,384 one-byte registers (16 KiB).
//!   The estimate uses Ertl's improved estimator ("New cardinality estimation
//!   algorithms for HyperLogLog sketches", 2017, also used by Redis), which
//!   needs no empirical bias tables and is unbiased from small to huge
//!   cardinalities. Its relative standard error is 1.04/√16384 ≈ **0.81 %**;
//!   about 99.7 % of estimates fall within ±2.5 % (3σ). The tests check
//!   100,000 and 1,000,000 distinct ids against that bound.
//! - Sketches merge losslessly ([`Hll::merge`]): the union's estimate is the
//!   same as if every item had gone into one sketch, which is how sliding
//!   windows are built from per-minute sketches.
//!
//! ```
//! use onionwatch_logs::hll::Hll;
//! let mut h = Hll::new();
//! for id in [1u64, 2, 3, 2, 1] {
//!     h.insert(id);
//! }
//! assert_eq!(h.estimate(), 3);
//! ```

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// log2 of the number of registers.
pub const PRECISION: u32 = 14;
const M: usize = 1 << PRECISION;
/// Register values go up to Q + 1 (64 hash bits minus the index bits).
const Q: u32 = 64 - PRECISION;
/// Distinct items counted exactly before switching to registers.
pub const SPARSE_LIMIT: usize = 1024;

/// MurmurHash3's 64-bit finaliser: a bijection with full avalanche.
pub fn mix64(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^= x >> 33;
    x
}

/// A hasher for values that are already well mixed.
#[derive(Default, Clone, Copy)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; fold anything else in for completeness.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type HashedSet = HashSet<u64, BuildHasherDefault<Prehashed>>;

#[derive(Debug, Clone)]
enum Repr {
    Sparse(HashedSet),
    Dense(Box<[u8; M]>),
}

/// A HyperLogLog sketch (see the module documentation for its error).
#[derive(Debug, Clone)]
pub struct Hll {
    repr: Repr,
}

impl Default for Hll {
    fn default() -> Self {
        Hll::new()
    }
}

impl Hll {
    /// An empty sketch (sparse, allocation-free until the first insert).
    pub fn new() -> Hll {
        Hll {
            repr: Repr::Sparse(HashedSet::default()),
        }
    }

    /// Count an item.
    pub fn insert(&mut self, item: u64) {
        self.insert_hash(mix64(item));
    }

    /// Count an item already scrambled with [`mix64`] (lets a caller hash
    /// once for several sketches).
    pub fn insert_hash(&mut self, hash: u64) {
        match &mut self.repr {
            Repr::Dense(regs) => update(regs, hash),
            Repr::Sparse(set) => {
                if set.insert(hash) && set.len() > SPARSE_LIMIT {
                    self.densify();
                }
            }
        }
    }

    fn densify(&mut self) {
        if let Repr::Sparse(set) = &self.repr {
            let mut regs = Box::new([0u8; M]);
            for &h in set {
                update(&mut regs, h);
            }
            self.repr = Repr::Dense(regs);
        }
    }

    /// Whether the count is still exact.
    pub fn is_exact(&self) -> bool {
        matches!(self.repr, Repr::Sparse(_))
    }

    /// Forget everything (back to an empty sparse sketch).
    pub fn clear(&mut self) {
        match &mut self.repr {
            Repr::Sparse(set) => set.clear(),
            Repr::Dense(_) => *self = Hll::new(),
        }
    }

    /// Add everything `other` counted.
    pub fn merge(&mut self, other: &Hll) {
        match &other.repr {
            Repr::Sparse(set) => {
                for &h in set {
                    self.insert_hash(h);
                }
            }
            Repr::Dense(theirs) => {
                self.densify();
                if let Repr::Dense(mine) = &mut self.repr {
                    for (a, b) in mine.iter_mut().zip(theirs.iter()) {
                        *a = (*a).max(*b);
                    }
                }
            }
        }
    }

    /// The estimated number of distinct items (exact in sparse mode).
    pub fn estimate(&self) -> u64 {
        match &self.repr {
            Repr::Sparse(set) => set.len() as u64,
            Repr::Dense(regs) => ertl_estimate(regs),
        }
    }

    /// Approximate heap memory in bytes.
    pub fn heap_bytes(&self) -> usize {
        match &self.repr {
            Repr::Sparse(set) => set.capacity() * (std::mem::size_of::<u64>() + 1),
            Repr::Dense(_) => M,
        }
    }
}

fn update(regs: &mut [u8; M], hash: u64) {
    let idx = (hash >> Q) as usize;
    let rest = hash << PRECISION;
    let rank = rest.leading_zeros().min(Q) + 1;
    let r = &mut regs[idx];
    if *r < rank as u8 {
        *r = rank as u8;
    }
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let prev = z;
        z += x * y;
        y += y;
        if prev == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let prev = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if prev == z {
            return z / 3.0;
        }
    }
}

fn ertl_estimate(regs: &[u8; M]) -> u64 {
    let mut hist = [0u32; Q as usize + 2];
    for &r in regs.iter() {
        hist[r as usize] += 1;
    }
    let m = M as f64;
    let mut z = m * tau((m - f64::from(hist[Q as usize + 1])) / m);
    for k in (1..=Q as usize).rev() {
        z = 0.5 * (z + f64::from(hist[k]));
    }
    z += m * sigma(f64::from(hist[0]) / m);
    let alpha_inf = 1.0 / (2.0 * std::f64::consts::LN_2);
    (alpha_inf * m * m / z).round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel_err(est: u64, exact: u64) -> f64 {
        (est as f64 - exact as f64).abs() / exact as f64
    }

    #[test]
    fn small_sets_are_exact() {
        let mut h = Hll::new();
        assert_eq!(h.estimate(), 0);
        for n in 1..=SPARSE_LIMIT as u64 {
            h.insert(n * 7919);
            h.insert(n * 7919); // duplicates do not count
            assert_eq!(h.estimate(), n);
        }
        assert!(h.is_exact());
        h.insert(u64::MAX);
        assert!(!h.is_exact());
        assert!(rel_err(h.estimate(), SPARSE_LIMIT as u64 + 1) < 0.02);
        h.clear();
        assert_eq!(h.estimate(), 0);
        assert!(h.is_exact());
    }

    #[test]
    fn large_sets_stay_within_the_documented_error() {
        // Several disjoint ranges of consecutive ids (as tor assigns them).
        for (start, n) in [
            (0u64, 2_000u64),
            (48, 10_000),
            (1 << 20, 100_000),
            (7, 1_000_000),
        ] {
            let mut h = Hll::new();
            for id in start..start + n {
                h.insert(id);
            }
            // Re-inserting changes nothing.
            for id in start..start + n / 10 {
                h.insert(id);
            }
            let e = rel_err(h.estimate(), n);
            assert!(
                e < 0.025,
                "{n} distinct ids estimated {} ({:.2} %)",
                h.estimate(),
                e * 100.0
            );
        }
    }

    #[test]
    fn merge_equals_one_sketch() {
        let mut a = Hll::new();
        let mut b = Hll::new();
        let mut all = Hll::new();
        for id in 0..60_000u64 {
            if id % 3 == 0 {
                a.insert(id);
            } else {
                b.insert(id);
            }
            all.insert(id);
        }
        let mut small = Hll::new();
        for id in 0..10u64 {
            small.insert(id);
        }
        let mut u = Hll::new();
        u.merge(&small);
        assert_eq!(u.estimate(), 10);
        u.merge(&a);
        u.merge(&b);
        assert_eq!(u.estimate(), all.estimate());
        let mut v = small.clone();
        v.merge(&small);
        assert_eq!(v.estimate(), 10);
    }

    #[test]
    fn extreme_hashes_are_safe() {
        let mut h = Hll::new();
        h.densify();
        h.insert_hash(0);
        h.insert_hash(u64::MAX);
        h.insert_hash(1);
        assert!(h.estimate() >= 1);
        assert!(!sigma(0.5).is_nan());
        assert_eq!(tau(0.0), 0.0);
    }
}
