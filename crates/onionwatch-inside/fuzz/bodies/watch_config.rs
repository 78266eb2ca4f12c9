//! Feed bytes to the watch configuration as `onionwatch watch --config`
//! reads it: `Config::from_yaml`, then `Settings::build` (names, ports,
//! URLs, durations, duplicates) and the abusive-circuit policy's
//! validation. Shared by the `watch_config` fuzz target and
//! `tests/fuzz_smoke.rs`.

use onionwatch_inside::targets::{Config, Flags, Settings};

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let config = match Config::from_yaml(&text, "fuzz.yaml") {
        Ok(c) => c,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    if let Some(p) = &config.policy {
        let _ = p.validate().map_err(|e| e.to_string());
    }
    match Settings::build(Some(config), &Flags::default()) {
        Ok(s) => {
            let _ = format!("{s:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}
