//! Silences: label matchers and a time span, as in Alertmanager. A
//! silenced alert is still evaluated and listed, but not notified.

use std::time::SystemTime;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::{format_time, parse_time};
use crate::Labels;

/// Longest regular expression accepted in a matcher (they come from the
/// API too).
const MAX_PATTERN: usize = 1024;

/// One label matcher: `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Value or regular expression.
    pub value: String,
    /// `value` is a regular expression, anchored at both ends.
    pub is_regex: bool,
    /// Match when equal (or matching); `false` for `!=` and `!~`.
    pub is_equal: bool,
    regex: Option<regex::Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Self) -> bool {
        (&self.name, &self.value, self.is_regex, self.is_equal)
            == (&o.name, &o.value, o.is_regex, o.is_equal)
    }
}

impl Matcher {
    /// A matcher; a regular expression is compiled (and refused when bad).
    pub fn new(name: &str, value: &str, is_regex: bool, is_equal: bool) -> Result<Matcher, String> {
        if name.is_empty() {
            return Err("a matcher needs a label name".into());
        }
        let regex = if is_regex {
            if value.len() > MAX_PATTERN {
                return Err(format!(
                    "matcher {name}: regular expression longer than {MAX_PATTERN} bytes"
                ));
            }
            Some(
                regex::RegexBuilder::new(&format!("^(?:{value})$"))
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| format!("matcher {name}: bad regular expression: {e}"))?,
            )
        } else {
            None
        };
        Ok(Matcher {
            name: name.to_owned(),
            value: value.to_owned(),
            is_regex,
            is_equal,
            regex,
        })
    }

    /// Whether `labels` match (a missing label is the empty string).
    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.name).map_or("", String::as_str);
        let hit = match &self.regex {
            Some(r) => r.is_match(v),
            None => v == self.value,
        };
        hit == self.is_equal
    }
}

impl std::str::FromStr for Matcher {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("`{s}` is no matcher: write name=\"value\", name!=\"value\", name=~\"regex\" or name!~\"regex\"")
        };
        let at = s.find(['=', '!']).ok_or_else(bad)?;
        let name = s[..at].trim();
        let rest = &s[at..];
        let (op, value) = ["=~", "!~", "!=", "="]
            .iter()
            .find_map(|op| rest.strip_prefix(op).map(|v| (*op, v)))
            .ok_or_else(bad)?;
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        Matcher::new(name, value, op.ends_with('~'), !op.starts_with('!'))
    }
}

/// Alertmanager's JSON form of a matcher.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MatcherJson {
    name: String,
    value: String,
    #[serde(default)]
    is_regex: bool,
    #[serde(default = "yes")]
    is_equal: bool,
}

fn yes() -> bool {
    true
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Json(MatcherJson),
        }
        let m = match Raw::deserialize(d)? {
            Raw::Text(t) => t.parse(),
            Raw::Json(j) => Matcher::new(&j.name, &j.value, j.is_regex, j.is_equal),
        };
        m.map_err(serde::de::Error::custom)
    }
}

impl Serialize for Matcher {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        MatcherJson {
            name: self.name.clone(),
            value: self.value.clone(),
            is_regex: self.is_regex,
            is_equal: self.is_equal,
        }
        .serialize(s)
    }
}

/// A silence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Silence {
    /// Its id (`config-N` for the configuration's).
    pub id: String,
    /// All must match.
    pub matchers: Vec<Matcher>,
    /// Start.
    #[serde(with = "rfc3339")]
    pub starts_at: SystemTime,
    /// End.
    #[serde(with = "rfc3339")]
    pub ends_at: SystemTime,
    /// Who made it.
    #[serde(default)]
    pub created_by: String,
    /// Why.
    #[serde(default)]
    pub comment: String,
}

impl Silence {
    /// Whether it silences `labels` at `now`.
    pub fn silences(&self, labels: &Labels, now: SystemTime) -> bool {
        self.starts_at <= now
            && now < self.ends_at
            && self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// Times as RFC 3339 in JSON.
pub(crate) mod rfc3339 {
    use super::*;

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_time(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        parse_time(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_parse_and_match() {
        let labels = Labels::from([("name".into(), "shop".into())]);
        for (m, hit) in [
            ("name=\"shop\"", true),
            ("name = shop", true),
            ("name!=\"shop\"", false),
            ("name=~\"sh.*\"", true),
            ("name=~\"h\"", false),
            ("name!~\"news|blog\"", true),
            ("project=\"\"", true),
        ] {
            assert_eq!(m.parse::<Matcher>().unwrap().matches(&labels), hit, "{m}");
        }
        for bad in ["name", "=\"x\"", "name=~\"(\""] {
            assert!(bad.parse::<Matcher>().is_err(), "{bad}");
        }
        let long = format!("name=~\"{}\"", "a".repeat(MAX_PATTERN + 1));
        assert!(long.parse::<Matcher>().is_err());
    }
}
