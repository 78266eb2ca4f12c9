//! Feed bytes to the probe's configuration reader (`Config::from_yaml`:
//! Onionprobe's YAML, unknown keys as warnings, then the targets with their
//! addresses, paths and compiled patterns); whatever it accepts must give
//! its targets again. Shared by the `probe_config` fuzz target and
//! `tests/fuzz_smoke.rs`.

use onionwatch_probe::Config;

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match Config::from_yaml(&text, "fuzz.yaml") {
        Ok((config, warnings)) => {
            let targets = config.targets().expect("from_yaml checked the targets");
            for t in &targets {
                let _ = format!("{t:?}");
            }
            for w in warnings {
                assert!(w.starts_with("fuzz.yaml: "), "{w}");
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
