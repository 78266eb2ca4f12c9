//! Splitting the endpoint list among several probers (`--shard I/N`,
//! `shard: I/N`) by rendezvous hashing (highest random weight): every
//! prober scores every (shard, endpoint name) pair with the same stable
//! hash and an endpoint belongs to the shard with the highest score. No
//! coordination is needed, each prober decides alone from the same list,
//! and going from N to N+1 probers moves only the endpoints the new shard
//! wins (about 1/(N+1) of them), all to it.
//!
//! The hash is SHA-256 over `"onionwatch-shard\0"`, the shard number (1 to
//! N, 4 bytes big-endian) and the endpoint name's UTF-8 bytes; the score is
//! the digest's first 8 bytes, big-endian. It is the same on every
//! platform and version (unlike std's randomly keyed `DefaultHasher`), so
//! probers built at different times still agree.

use std::fmt;
use std::str::FromStr;

use digest::Digest;
use serde::{Deserialize, Deserializer};

/// Most shards accepted: more than probers anyone runs, few enough that
/// scoring stays cheap (N hashes per endpoint).
pub const MAX_SHARDS: u32 = 1024;

/// One shard of N: `index` in `1..=count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// This prober's shard, from 1.
    pub index: u32,
    /// How many probers share the list.
    pub count: u32,
}

/// Why a shard was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid shard {0:?}: use I/N with 1 <= I <= N <= 1024, e.g. 1/3 for the first of three probers")]
pub struct ShardError(pub String);

impl FromStr for Shard {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ShardError(s.chars().take(64).collect());
        let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let parse = |t: &str| {
            let t = t.trim();
            // u32's parser takes a leading '+'; a shard number is digits only.
            (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .then(|| t.parse::<u32>().ok())
                .flatten()
                .ok_or_else(bad)
        };
        let (index, count) = (parse(i)?, parse(n)?);
        if index == 0 || index > count || count > MAX_SHARDS {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl<'de> Deserialize<'de> for Shard {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// The score of `name` for shard `index` (see the module documentation).
pub fn score(index: u32, name: &str) -> u64 {
    let mut h = sha2::Sha256::new();
    h.update(b"onionwatch-shard\0");
    h.update(index.to_be_bytes());
    h.update(name.as_bytes());
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().expect("a SHA-256 digest has 32 bytes"))
}

/// The shard (1 to `count`) that `name` belongs to among `count` shards.
/// Ties (never seen with a 64-bit score) go to the lower shard number.
pub fn owner(name: &str, count: u32) -> u32 {
    (1..=count.max(1))
        .max_by_key(|&i| (score(i, name), std::cmp::Reverse(i)))
        .unwrap_or(1)
}

impl Shard {
    /// Whether this shard probes the endpoint called `name`.
    pub fn covers(&self, name: &str) -> bool {
        owner(name, self.count) == self.index
    }

    /// The items of `all` whose name (by `name_of`) this shard covers, in
    /// their order.
    pub fn select<T>(&self, all: Vec<T>, name_of: impl Fn(&T) -> &str) -> Vec<T> {
        all.into_iter()
            .filter(|t| self.covers(name_of(t)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("endpoint {i}.example")).collect()
    }

    #[test]
    fn parses_i_of_n_and_refuses_the_rest() {
        assert_eq!(
            "2/3".parse::<Shard>().unwrap(),
            Shard { index: 2, count: 3 }
        );
        assert_eq!(" 1 / 1 ".parse::<Shard>().unwrap().to_string(), "1/1");
        for bad in [
            "",
            "0/3",
            "4/3",
            "1/0",
            "3",
            "a/b",
            "1/2/3",
            "+1/2",
            "-1/2",
            "1/1025",
            "99999999999/1",
            "1/3\u{0}",
        ] {
            let err = bad.parse::<Shard>().unwrap_err();
            assert!(err.to_string().contains("I/N"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_n_shards_cover_every_endpoint_exactly_once() {
        let all = names(500);
        for count in [1, 2, 3, 7] {
            let mut seen = std::collections::BTreeMap::new();
            for index in 1..=count {
                let shard = Shard { index, count };
                for n in shard.select(all.clone(), |s| s) {
                    *seen.entry(n).or_insert(0) += 1;
                }
            }
            assert_eq!(seen.len(), all.len(), "{count} shards");
            assert!(seen.values().all(|&c| c == 1), "{count} shards");
        }
    }

    #[test]
    fn adding_a_prober_moves_only_endpoints_to_the_new_shard_about_its_share() {
        let all = names(3000);
        for count in [1u32, 2, 3, 5] {
            let mut moved = 0;
            for n in &all {
                let (before, after) = (owner(n, count), owner(n, count + 1));
                if before != after {
                    assert_eq!(after, count + 1, "{n} moved between old shards");
                    moved += 1;
                }
            }
            // Its share is 1/(count+1) of the list; allow wide statistical room.
            let share = all.len() as f64 / f64::from(count + 1);
            assert!(
                (moved as f64) > share * 0.8 && (moved as f64) < share * 1.2,
                "{count} -> {}: {moved} moved, share {share}",
                count + 1
            );
        }
    }

    #[test]
    fn the_hash_is_stable() {
        // Pinned (computed independently with Python's hashlib): a change
        // here would reshuffle every deployment's shards.
        assert_eq!(score(1, "www.torproject.org"), 0xb302798c94039acb);
        let pinned: Vec<u32> = ["a", "b", "c", "d", "e", "f", "g", "h"]
            .iter()
            .map(|n| owner(n, 3))
            .collect();
        assert_eq!(pinned, PINNED);
    }

    const PINNED: [u32; 8] = [2, 3, 3, 1, 2, 3, 2, 1];
}
