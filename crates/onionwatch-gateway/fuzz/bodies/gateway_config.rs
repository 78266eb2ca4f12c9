//! Feed bytes to the gateway's configuration reader
//! (`Config::from_yaml`: YAML, then validation); whatever it accepts must
//! give every derived value without error. Shared by the `gateway_config`
//! fuzz target and `tests/fuzz_smoke.rs`.

use onionwatch_gateway::Config;

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let config = match Config::from_yaml(&text) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    config.validate().expect("from_yaml validated it");
    let _ = config.header();
    for t in [
        config.header_timeout(),
        config.request_header_timeout(),
        config.body_timeout(),
        config.send_timeout(),
        config.connect_timeout(),
        config.upstream_timeout(),
        config.shutdown_grace(),
    ] {
        t.expect("a validated config has valid timeouts");
    }
    config
        .unix_mode()
        .expect("a validated config has a valid unix mode");
}
