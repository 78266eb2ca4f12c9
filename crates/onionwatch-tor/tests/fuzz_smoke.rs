//! The fuzz targets' bodies (`fuzz/bodies`) on the seed corpus
//! (`fuzz/seeds`) and on deterministic mutations of it: a few seconds of
//! what `cargo fuzz` does for hours, run by every `cargo test` (README,
//! Testing, says how to fuzz for real).

#[path = "../fuzz/bodies/control_reply.rs"]
mod control_reply;
#[path = "../fuzz/bodies/proxy_header.rs"]
mod proxy_header;

/// Mutated inputs per seed.
const ROUNDS: usize = 10_000;
/// Bytes the parsers treat specially.
const BYTES: &[u8] = b"\r\n +-.=\"\\:~$,0123456789\xff\x00";

/// `body` on every seed of `target`, then on `ROUNDS` mutations of each
/// (insertions, deletions, splices of other seeds), always the same ones.
fn smoke(target: &str, body: fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    let mut rng = fastrand::Rng::with_seed(0x6f6e_696f_6e77_6174);
    for seed in &seeds {
        body(seed);
        for _ in 0..ROUNDS {
            let mut d = seed.clone();
            for _ in 0..rng.usize(1..=8) {
                let at = rng.usize(0..=d.len());
                match rng.u8(0..3) {
                    0 => d.insert(at, BYTES[rng.usize(0..BYTES.len())]),
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

#[test]
fn control_reply_body_survives_mutated_seeds() {
    smoke("control_reply", control_reply::run);
}

#[test]
fn proxy_header_body_survives_mutated_seeds() {
    smoke("proxy_header", proxy_header::run);
}
