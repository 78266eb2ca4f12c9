//! The mutator of the `fuzz_smoke` tests: a few seconds of what `cargo
//! fuzz` does for hours, on every `cargo test`.

use std::path::Path;

/// `body` on every seed in `<crate_dir>/fuzz/seeds/<target>` (pass
/// `env!("CARGO_MANIFEST_DIR")`), then on `rounds` mutations of each
/// (insertions of `bytes`, deletions, splices of other seeds), always the
/// same ones.
pub fn smoke(crate_dir: &str, target: &str, body: fn(&[u8]), bytes: &[u8], rounds: usize) {
    let dir = Path::new(crate_dir).join("fuzz/seeds").join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    let mut rng = fastrand::Rng::with_seed(0x6f6e_696f_6e77_6174);
    for seed in &seeds {
        body(seed);
        for _ in 0..rounds {
            let mut d = seed.clone();
            for _ in 0..rng.usize(1..=8) {
                let at = rng.usize(0..=d.len());
                match rng.u8(0..3) {
                    0 => d.insert(at, bytes[rng.usize(0..bytes.len())]),
                    1 => drop(d.drain(at..(at + rng.usize(0..16)).min(d.len()))),
                    _ => {
                        let other = &seeds[rng.usize(0..seeds.len())];
                        let from = rng.usize(0..=other.len());
                        let to = (from + rng.usize(0..64)).min(other.len());
                        d.splice(at..at, other[from..to].iter().copied());
                    }
                }
            }
            body(&d);
        }
    }
}
