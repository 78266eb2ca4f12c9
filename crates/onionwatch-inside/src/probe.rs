//! The `probe:` section of `onionwatch watch`'s configuration: outside
//! probing in the same process, read with `onionwatch-probe`'s Onionprobe
//! parser (the options and `endpoints:` of an Onionprobe YAML, inline), or
//! from an Onionprobe file:
//!
//! ```yaml
//! probe:
//!   launch_tor: false          # any Onionprobe option, same meaning
//!   socks_port: 9050
//!   control_port: 9051
//!   sleep: 60
//!   endpoints:
//!     news:
//!       address: 2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion
//!       paths: [{path: /, pattern: 'Tor Project', allowed_statuses: [200]}]
//! # or: probe: {config: /etc/onionwatch/onionprobe.yaml}
//! # and: probe: {discover: false} to probe only the endpoints named
//! ```
//!
//! Besides Onionprobe's keys the section takes `config` (an Onionprobe YAML
//! file, instead of inline options) and `discover` (probe the onion
//! services found in the Onionspray trees, default true). Unlike an
//! Onionprobe file, where unknown keys are only warned about, an unknown
//! key here is refused, as everywhere else in watch's file.

use std::path::PathBuf;

use onionwatch_probe::config::KNOWN_KEYS;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// The `probe:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSection {
    /// An Onionprobe YAML file holding the options and endpoints (re-read
    /// at each rediscovery and on SIGHUP); not with inline options.
    pub config: Option<PathBuf>,
    /// Probe every onion service found in the Onionspray trees. Default
    /// true.
    pub discover: bool,
    /// The Onionprobe options and endpoints given inline, checked.
    pub inline: Option<InlineProbe>,
}

impl Default for ProbeSection {
    fn default() -> Self {
        ProbeSection {
            config: None,
            discover: true,
            inline: None,
        }
    }
}

/// Onionprobe options and endpoints written inside watch's file.
#[derive(Debug, Clone)]
pub struct InlineProbe {
    /// The options, parsed and validated by [`onionwatch_probe::Config::from_yaml`].
    pub options: onionwatch_probe::Config,
    /// What the parser warned about.
    pub warnings: Vec<String>,
    /// The section as parsed (JSON), to compare two sections.
    text: String,
}

impl PartialEq for InlineProbe {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl<'de> Deserialize<'de> for ProbeSection {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Some(mut map) = Option::<serde_json::Map<String, Value>>::deserialize(d)? else {
            return Ok(ProbeSection::default());
        };
        let config = match map.remove("config") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() => Some(PathBuf::from(s)),
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "probe.config: expected the path of an Onionprobe YAML file, found {other}"
                )))
            }
        };
        let discover = match map.remove("discover") {
            None => true,
            Some(Value::Bool(b)) => b,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "probe.discover: expected true or false, found {other}"
                )))
            }
        };
        // watch has its own `alerts:` and `notifiers:` (top level): the
        // probe's would be ignored, so they are refused here.
        if let Some(k) = map
            .keys()
            .find(|k| k.as_str() == "alerts" || k.as_str() == "notifiers")
        {
            return Err(D::Error::custom(format!(
                "probe.{k}: give `{k}:` at the top level of watch's configuration, where it covers the probes and the inside alike"
            )));
        }
        if let Some(k) = map.keys().find(|k| !KNOWN_KEYS.contains(&k.as_str())) {
            return Err(D::Error::custom(format!(
                "probe: unknown key {k:?}: the section takes Onionprobe's options and `endpoints`, `config` (an Onionprobe YAML file) and `discover`"
            )));
        }
        if config.is_some() && !map.is_empty() {
            let keys: Vec<&str> = map.keys().map(String::as_str).collect();
            return Err(D::Error::custom(format!(
                "probe: give Onionprobe's options either in the file named by `config` or inline, not both (inline: {})",
                keys.join(", ")
            )));
        }
        let inline = if map.is_empty() {
            None
        } else {
            // JSON is YAML: the probe crate's own parser reads the section,
            // with its leniency, defaults and checks.
            let text = serde_json::to_string_pretty(&Value::Object(map))
                .map_err(|e| D::Error::custom(format!("probe: {e}")))?;
            let (options, warnings) = onionwatch_probe::Config::from_yaml(&text, "probe")
                .map_err(|e| D::Error::custom(format!("probe: {e}")))?;
            Some(InlineProbe {
                options,
                warnings,
                text,
            })
        };
        Ok(ProbeSection {
            config,
            discover,
            inline,
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::targets::Config;

    const A: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid";

    #[test]
    fn inline_options_and_endpoints_are_read_by_the_onionprobe_parser() {
        let yaml = format!(
            "projects: {{}}\nprobe:\n  launch_tor: false\n  socks_port: '9050'\n  control_port: unix:/run/tor/control\n  sleep: 5\n  loop: true\n  endpoints:\n    news:\n      address: {A}.onion\n      protocol: https\n      paths:\n        - path: /\n          pattern: 'Tor Project'\n          allowed_statuses: [200]\n"
        );
        let c = Config::from_yaml(&yaml, "w.yaml").unwrap();
        let p = c.probe.unwrap();
        assert!(p.discover && p.config.is_none());
        let inline = p.inline.unwrap();
        let o = &inline.options;
        assert!(!o.launch_tor && o.loop_);
        assert_eq!((o.socks_port, o.sleep), (9050, 5.0));
        assert_eq!(
            o.control_port,
            onionwatch_probe::config::ControlPort::Unix("/run/tor/control".into())
        );
        let t = o.targets().unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!((t[0].name.as_str(), t[0].port), ("news", 443));
        assert_eq!(t[0].paths[0].allowed_statuses, Some(vec![200]));
        assert!(inline.warnings.is_empty(), "{:?}", inline.warnings);
    }

    #[test]
    fn a_file_discover_and_the_defaults() {
        let c = Config::from_yaml("probe: {config: /etc/ow/probe.yaml}\n", "w.yaml").unwrap();
        let p = c.probe.unwrap();
        assert_eq!(p.config, Some("/etc/ow/probe.yaml".into()));
        assert!(p.discover && p.inline.is_none());

        let c = Config::from_yaml("probe: {discover: false}\n", "w.yaml").unwrap();
        let p = c.probe.unwrap();
        assert!(!p.discover && p.inline.is_none() && p.config.is_none());

        // `probe:` alone and `probe: {}` are the defaults.
        assert!(Config::from_yaml("probe:\n", "w.yaml")
            .unwrap()
            .probe
            .is_none());
        let c = Config::from_yaml("probe: {}\n", "w.yaml").unwrap();
        assert_eq!(c.probe.unwrap(), super::ProbeSection::default());
        assert!(Config::from_yaml("listen: 127.0.0.1:1\n", "w.yaml")
            .unwrap()
            .probe
            .is_none());
    }

    #[test]
    fn discover_false_stops_reading_hostnames() {
        use crate::targets::{Flags, Settings};
        let on = Config::from_yaml("probe: {launch_tor: false}\n", "w.yaml").unwrap();
        assert!(
            Settings::build(Some(on), &Flags::default())
                .unwrap()
                .discover_onion_services
        );
        let off = Config::from_yaml("probe: {discover: false}\n", "w.yaml").unwrap();
        assert!(
            !Settings::build(Some(off), &Flags::default())
                .unwrap()
                .discover_onion_services
        );
        assert!(
            Settings::build(None, &Flags::default())
                .unwrap()
                .discover_onion_services
        );
    }

    #[test]
    fn the_readme_example_is_a_valid_watch_configuration() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("# onionwatch watch --config /etc/onionwatch/watch.yaml\n")
            .expect("the README's watch example");
        let block = &readme[start..];
        let block = &block[..block.find("```").unwrap()];
        let c = Config::from_yaml(block, "README.md").unwrap();
        let inline = c.probe.unwrap().inline.unwrap();
        assert!(!inline.options.launch_tor);
        assert_eq!(inline.options.targets().unwrap()[0].name, "www");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_the_key_named() {
        for (yaml, want) in [
            ("probe: {sokcs_port: 9050}\n".to_owned(), "\"sokcs_port\""),
            ("probe: {discover: maybe}\n".to_owned(), "probe.discover"),
            ("probe: {config: [a]}\n".to_owned(), "probe.config"),
            (
                "probe: {config: /p.yaml, socks_port: 9050}\n".to_owned(),
                "not both (inline: socks_port)",
            ),
            ("probe: {socks_port: 70000}\n".to_owned(), "socks_port"),
            (
                "probe: {endpoints: {x: {address: nope.onion}}}\n".to_owned(),
                "endpoints.\"x\".address",
            ),
            (
                format!("probe: {{endpoints: {{x: {{address: {A}.onion, paths: [{{path: /, pattern: '('}}]}}}}}}\n"),
                "pattern",
            ),
            ("probes: {}\n".to_owned(), "probes"),
            ("probe: [1]\n".to_owned(), "w.yaml"),
        ] {
            let err = Config::from_yaml(&yaml, "w.yaml")
                .err()
                .unwrap_or_else(|| panic!("{yaml:?} accepted"))
                .to_string();
            assert!(err.contains(want), "{yaml:?}: {want:?} missing from {err}");
            assert!(err.contains("w.yaml"), "{err}");
        }
    }
}
