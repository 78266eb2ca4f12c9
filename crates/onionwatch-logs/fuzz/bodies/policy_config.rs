//! Feed bytes to the abusive-circuit policy's configuration as
//! `PolicyConfig::load` reads it (YAML, then validation), and build a
//! policy from whatever validates. Shared by the `policy_config` fuzz
//! target and `tests/fuzz_smoke.rs`.

use onionwatch_logs::policy::{Policy, PolicyConfig};

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let Ok(config) = serde_saphyr::from_str::<PolicyConfig>(&text) else {
        return;
    };
    match config.validate() {
        Ok(()) => {
            let policy = Policy::new(config.clone()).expect("a validated config builds");
            assert_eq!(policy.config(), &config);
        }
        Err(e) => assert!(Policy::new(config).is_err(), "{e}"),
    }
}
