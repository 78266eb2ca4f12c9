//! The `alerts:` YAML section: thresholds, windows, `for`, disabled rules,
//! extra labels, the repeat interval, grouping and silences.
//!
//! ```yaml
//! alerts:
//!   repeat_interval: 4h
//!   group_by: [name, project]
//!   labels: {team: web}
//!   rules:
//!     OnionServiceUnreachable: {window: 3 of 5, for: 0 rounds, labels: {severity: page}}
//!     OnionServiceCertificateExpiringSoon: {threshold: 21d}
//!     OnionServiceAbusiveCircuitsInLogs: {disabled: true}
//!   silences:
//!     - matchers: ['name="shop"']
//!       starts_at: 2026-12-02T22:00:00Z
//!       ends_at: 2026-12-03T02:00:00Z
//!       comment: server move
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer};

use crate::rules::{RuleDef, BUILTIN};
use crate::silence::{Matcher, Silence};
use crate::Labels;

/// Why an `alerts:` section is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A rule name that is no built-in rule.
    #[error("alerts.rules: no built-in rule is called `{0}` (known: {known})", known = known_rules())]
    UnknownRule(String),
    /// A window that cannot be satisfied.
    #[error(
        "alerts.rules.{rule}.window: {window} cannot work: give K of N with 1 <= K <= N <= 1000"
    )]
    BadWindow {
        /// The rule.
        rule: String,
        /// The window given.
        window: Window,
    },
    /// A threshold on a rule without one, or not a finite number.
    #[error("alerts.rules.{rule}.threshold: {why}")]
    BadThreshold {
        /// The rule.
        rule: String,
        /// Why.
        why: String,
    },
    /// A label name Prometheus and Alertmanager would refuse.
    #[error("alerts: `{0}` is not a valid label name (letters, digits and _, not starting with a digit)")]
    BadLabel(String),
    /// A repeat interval of zero would notify at every round.
    #[error("alerts.repeat_interval must be at least 1 minute")]
    RepeatInterval,
    /// A silence that ends before it starts.
    #[error("alerts.silences[{0}]: ends_at is not after starts_at")]
    SilenceEnds(usize),
    /// A silence without matchers would silence everything.
    #[error("alerts.silences[{0}]: give at least one matcher (a silence of everything is `rules: {{…: {{disabled: true}}}}`)")]
    SilenceMatchers(usize),
}

fn known_rules() -> String {
    BUILTIN
        .iter()
        .map(|r| r.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The `alerts:` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// How often a group's notification is repeated while it fires
    /// (default 4h).
    #[serde(default = "default_repeat_interval", deserialize_with = "de_duration")]
    pub repeat_interval: Duration,
    /// Alerts with the same values of these labels go into one
    /// notification (default `[name, project]`: one per onion service, one
    /// per project for the alerts of the inside).
    #[serde(default = "default_group_by")]
    pub group_by: Vec<String>,
    /// Labels added to every alert (e.g. `team: web`).
    #[serde(default)]
    pub labels: Labels,
    /// Settings of the built-in rules, by alert name.
    #[serde(default)]
    pub rules: BTreeMap<String, RuleConfig>,
    /// Maintenance windows: matching alerts are still shown but not
    /// notified.
    #[serde(default)]
    pub silences: Vec<SilenceConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            repeat_interval: default_repeat_interval(),
            group_by: default_group_by(),
            labels: Labels::new(),
            rules: BTreeMap::new(),
            silences: Vec::new(),
        }
    }
}

fn default_repeat_interval() -> Duration {
    Duration::from_secs(4 * 3600)
}

fn default_group_by() -> Vec<String> {
    vec!["name".into(), "project".into()]
}

/// The settings of one built-in rule; unset ones keep the rule's defaults.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Do not evaluate this rule.
    #[serde(default)]
    pub disabled: bool,
    /// Fire when the condition held in K of the last N rounds of the
    /// rule's source (`3 of 5`).
    #[serde(default)]
    pub window: Option<Window>,
    /// How long the window's condition must hold before the alert fires:
    /// `2 rounds` or a duration (`10m`).
    #[serde(default, rename = "for")]
    pub for_: Option<For>,
    /// The rule's threshold (certificate expiry: a duration such as `14d`
    /// or seconds; bootstrap: a percentage).
    #[serde(default)]
    pub threshold: Option<Threshold>,
    /// Labels added to this rule's alerts (override `severity`).
    #[serde(default)]
    pub labels: Labels,
}

/// A silence from the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceConfig {
    /// Label matchers, all of which must match: `name="shop"`,
    /// `name=~"shop|news"`, `project!="test"`, `name!~"dev.*"`.
    pub matchers: Vec<Matcher>,
    /// Start (RFC 3339); default: always.
    #[serde(default, deserialize_with = "de_time_opt")]
    pub starts_at: Option<SystemTime>,
    /// End (RFC 3339).
    #[serde(deserialize_with = "de_time")]
    pub ends_at: SystemTime,
    /// Why (shown in `/api/v1/silences`).
    #[serde(default)]
    pub comment: String,
}

/// K of N rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Rounds in which the condition must hold…
    pub k: u32,
    /// …among the last this many rounds.
    pub n: u32,
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {}", self.k, self.n)
    }
}

impl std::str::FromStr for Window {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is no window: write K of N, e.g. `3 of 5`");
        let (k, n) = s.split_once(" of ").ok_or_else(bad)?;
        Ok(Window {
            k: k.trim().parse().map_err(|_| bad())?,
            n: n.trim().parse().map_err(|_| bad())?,
        })
    }
}

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// How long a condition must hold before its alert fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum For {
    /// This many rounds of the rule's source after the first one the
    /// window's condition held in.
    Rounds(u32),
    /// This much wall time (clock steps backwards count as no time).
    Duration(Duration),
}

impl fmt::Display for For {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            For::Rounds(n) => write!(f, "{n} rounds"),
            For::Duration(d) => write!(f, "{}s", d.as_secs()),
        }
    }
}

impl std::str::FromStr for For {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if let Some(n) = t.strip_suffix("rounds").or_else(|| t.strip_suffix("round")) {
            return n
                .trim()
                .parse()
                .map(For::Rounds)
                .map_err(|_| format!("`{s}`: write N rounds, e.g. `2 rounds`"));
        }
        parse_duration(t).map(For::Duration)
    }
}

impl<'de> Deserialize<'de> for For {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A threshold: a number, or a duration (as seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Threshold(pub f64);

impl<'de> Deserialize<'de> for Threshold {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(Threshold(n)),
            Raw::Text(t) => match t.trim().parse::<f64>() {
                Ok(n) => Ok(Threshold(n)),
                Err(_) => parse_duration(&t)
                    .map(|d| Threshold(d.as_secs_f64()))
                    .map_err(serde::de::Error::custom),
            },
        }
    }
}

/// `90s`, `15m`, `4h`, `14d`, `1h30m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is no duration: write e.g. 90s, 15m, 4h, 14d or 1h30m");
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut any = false;
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        digits.clear();
        any = true;
    }
    if !digits.is_empty() || !any {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse_duration(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// RFC 3339 to a time.
pub fn parse_time(s: &str) -> Result<SystemTime, String> {
    time::OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339)
        .map(SystemTime::from)
        .map_err(|e| format!("`{s}` is no RFC 3339 time (e.g. 2026-12-02T22:00:00Z): {e}"))
}

/// A time as RFC 3339, UTC.
pub fn format_time(t: SystemTime) -> String {
    time::OffsetDateTime::from(t)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn de_time<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
    parse_time(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn de_time_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|s| parse_time(&s).map_err(serde::de::Error::custom))
        .transpose()
}

fn check_label(name: &str) -> Result<(), ConfigError> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::BadLabel(name.to_owned()))
    }
}

/// A built-in rule with the configuration applied.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveRule {
    /// The rule as built in.
    pub def: &'static RuleDef,
    /// Its window.
    pub window: Window,
    /// Its `for`.
    pub for_: For,
    /// Its threshold (unused by rules without one).
    pub threshold: f64,
    /// Labels of its alerts before those of the series: `severity`, the
    /// rule's and the section's labels.
    pub labels: Labels,
}

impl AlertsConfig {
    /// Check everything and apply the settings to the built-in rules: the
    /// rules to evaluate.
    pub fn validate(&self) -> Result<Vec<EffectiveRule>, ConfigError> {
        for name in self.rules.keys() {
            if !BUILTIN.iter().any(|r| r.name == name) {
                return Err(ConfigError::UnknownRule(name.clone()));
            }
        }
        if self.repeat_interval < Duration::from_secs(60) {
            return Err(ConfigError::RepeatInterval);
        }
        for l in self.group_by.iter().chain(self.labels.keys()) {
            check_label(l)?;
        }
        for (i, s) in self.silences.iter().enumerate() {
            if s.matchers.is_empty() {
                return Err(ConfigError::SilenceMatchers(i));
            }
            if s.starts_at.is_some_and(|start| start >= s.ends_at) {
                return Err(ConfigError::SilenceEnds(i));
            }
        }
        let mut rules = Vec::new();
        for def in BUILTIN {
            let c = self.rules.get(def.name).cloned().unwrap_or_default();
            if c.disabled {
                continue;
            }
            let window = c.window.unwrap_or(def.window);
            if window.k == 0 || window.k > window.n || window.n > 1000 {
                return Err(ConfigError::BadWindow {
                    rule: def.name.into(),
                    window,
                });
            }
            let threshold = match (c.threshold, def.threshold) {
                (None, t) => t.unwrap_or(0.0),
                (Some(_), None) => {
                    return Err(ConfigError::BadThreshold {
                        rule: def.name.into(),
                        why: "this rule has no threshold".into(),
                    })
                }
                (Some(Threshold(t)), Some(_)) if t.is_finite() => t,
                (Some(_), Some(_)) => {
                    return Err(ConfigError::BadThreshold {
                        rule: def.name.into(),
                        why: "not a finite number".into(),
                    })
                }
            };
            let mut labels = Labels::new();
            labels.insert("severity".into(), def.severity.into());
            for l in c.labels.keys() {
                check_label(l)?;
            }
            labels.extend(c.labels);
            for (k, v) in &self.labels {
                labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
            rules.push(EffectiveRule {
                def,
                window,
                for_: c.for_.unwrap_or(def.for_),
                threshold,
                labels,
            });
        }
        Ok(rules)
    }

    /// Seconds before a certificate's expiry from which it is reported: the
    /// `threshold` of `OnionServiceCertificateExpiringSoon`, else
    /// [`crate::CERT_WARNING_SECONDS`]. `probe --check` and the dashboard
    /// use it too.
    pub fn certificate_warning_seconds(&self) -> i64 {
        self.rules
            .get("OnionServiceCertificateExpiringSoon")
            .and_then(|r| r.threshold)
            .filter(|t| t.0.is_finite())
            .map_or(crate::CERT_WARNING_SECONDS, |t| t.0 as i64)
    }

    /// The silences of the configuration, with ids `config-1`, `config-2`…
    pub fn silences(&self) -> Vec<Silence> {
        self.silences
            .iter()
            .enumerate()
            .map(|(i, s)| Silence {
                id: format!("config-{}", i + 1),
                matchers: s.matchers.clone(),
                starts_at: s.starts_at.unwrap_or(SystemTime::UNIX_EPOCH),
                ends_at: s.ends_at,
                created_by: "configuration".into(),
                comment: s.comment.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<AlertsConfig, String> {
        serde_saphyr::from_str::<AlertsConfig>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn the_documented_example_loads() {
        let doc = include_str!("config.rs");
        let yaml: String = doc
            .lines()
            .skip_while(|l| !l.starts_with("//! alerts:"))
            .skip(1)
            .take_while(|l| !l.starts_with("//! ```"))
            .map(|l| {
                format!(
                    "{}\n",
                    l.trim_start_matches("//! ").trim_start_matches("//!")
                )
            })
            .collect();
        let c = load(&yaml).unwrap();
        let rules = c.validate().unwrap();
        assert!(!rules
            .iter()
            .any(|r| r.def.name == "OnionServiceAbusiveCircuitsInLogs"));
        let cert = rules
            .iter()
            .find(|r| r.def.name == "OnionServiceCertificateExpiringSoon")
            .unwrap();
        assert_eq!(cert.threshold, 21.0 * 86_400.0);
        assert_eq!(c.certificate_warning_seconds(), 21 * 86_400);
        assert_eq!(
            AlertsConfig::default().certificate_warning_seconds(),
            crate::CERT_WARNING_SECONDS
        );
        let down = rules
            .iter()
            .find(|r| r.def.name == "OnionServiceUnreachable")
            .unwrap();
        assert_eq!(down.labels["severity"], "page");
        assert_eq!(down.labels["team"], "web");
        assert_eq!(c.silences()[0].matchers.len(), 1);
    }

    #[test]
    fn mistakes_are_refused_with_what_to_do() {
        for (yaml, says) in [
            ("rules: {OnionServiceDown: {}}", "no built-in rule"),
            ("rules: {OnionServiceUnreachable: {window: 6 of 5}}", "K of N"),
            ("rules: {OnionServiceUnreachable: {window: 0 of 5}}", "K of N"),
            ("rules: {OnionServiceUnreachable: {threshold: 3}}", "no threshold"),
            ("repeat_interval: 0s", "at least 1 minute"),
            ("labels: {'1x': a}", "not a valid label"),
            (
                "silences: [{matchers: [], ends_at: 2026-01-01T00:00:00Z}]",
                "at least one matcher",
            ),
            (
                "silences: [{matchers: ['a=\"b\"'], starts_at: 2026-01-02T00:00:00Z, ends_at: 2026-01-01T00:00:00Z}]",
                "not after",
            ),
        ] {
            let err = load(yaml).unwrap().validate().unwrap_err().to_string();
            assert!(err.contains(says), "{yaml}: {err}");
        }
        for (yaml, says) in [
            ("repeat_intervall: 4h", "unknown field"),
            (
                "rules: {OnionServiceUnreachable: {window: three}}",
                "K of N",
            ),
            (
                "rules: {OnionServiceUnreachable: {for: soon}}",
                "no duration",
            ),
            ("repeat_interval: 99999999999999999999d", "no duration"),
            (
                "silences: [{matchers: ['a'], ends_at: 2026-01-01T00:00:00Z}]",
                "matcher",
            ),
            (
                "silences: [{matchers: ['a=\"b\"'], ends_at: tomorrow}]",
                "RFC 3339",
            ),
        ] {
            let err = load(yaml).unwrap_err();
            assert!(err.contains(says), "{yaml}: {err}");
        }
    }

    #[test]
    fn durations_and_fors_parse() {
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("14d").unwrap(),
            Duration::from_secs(14 * 86_400)
        );
        assert!(parse_duration("").is_err() && parse_duration("5").is_err());
        assert_eq!("2 rounds".parse::<For>().unwrap(), For::Rounds(2));
        assert_eq!("1 round".parse::<For>().unwrap(), For::Rounds(1));
        assert_eq!(
            "10m".parse::<For>().unwrap(),
            For::Duration(Duration::from_secs(600))
        );
    }
}
