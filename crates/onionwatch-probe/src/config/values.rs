//! The lenient forms of Onionprobe's values: ports as integers or strings,
//! seconds as integers or floats, `control_password: false`, `metrics_port`
//! off as `''`, null or 0.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

/// What to connect to after the descriptor step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 GET (the default).
    #[default]
    Http,
    /// HTTP/1.1 GET over TLS.
    Https,
    /// A plain TCP connection (onionwatch extension): reachable when the
    /// stream opens.
    Tcp,
}

impl Protocol {
    /// `http`, `https` or `tcp`.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Https => "https",
            Protocol::Tcp => "tcp",
        }
    }

    /// 80 for http (and tcp), 443 for https.
    pub fn default_port(self) -> u16 {
        match self {
            Protocol::Https => 443,
            _ => 80,
        }
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.to_ascii_lowercase().as_str() {
            "http" => Ok(Protocol::Http),
            "https" => Ok(Protocol::Https),
            "tcp" => Ok(Protocol::Tcp),
            other => Err(serde::de::Error::custom(format!(
                "unknown protocol {other:?}: use http, https or tcp"
            ))),
        }
    }
}

/// `control_password`: a password, or `false` (cookie or no authentication).
/// Its `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub enum ControlPassword {
    /// `HASHEDPASSWORD` authentication with this password.
    Password(String),
    /// `false` in YAML: cookie or no authentication (Onionprobe would then
    /// prompt; onionwatch never prompts and uses what tor offers).
    Disabled,
}

impl fmt::Debug for ControlPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlPassword::Password(_) => f.write_str("Password(<secret>)"),
            ControlPassword::Disabled => f.write_str("Disabled"),
        }
    }
}

impl<'de> Deserialize<'de> for ControlPassword {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            B(bool),
            S(String),
            N(i64),
        }
        Ok(match Raw::deserialize(d)? {
            // Only `false` is documented; `true` names no password either.
            Raw::B(false | true) => ControlPassword::Disabled,
            Raw::S(s) => ControlPassword::Password(s),
            Raw::N(n) => ControlPassword::Password(n.to_string()),
        })
    }
}

/// `control_port`: a TCP port on `tor_address`, or (onionwatch extension)
/// `unix:/path/to/control.sock`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlPort {
    /// A TCP port on `tor_address`.
    Tcp(u16),
    /// A unix socket.
    Unix(PathBuf),
}

impl std::str::FromStr for ControlPort {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err("unix: needs a socket path, e.g. unix:/run/tor/control".into());
            }
            return Ok(ControlPort::Unix(PathBuf::from(p)));
        }
        parse_port(s).map(ControlPort::Tcp)
    }
}

impl<'de> Deserialize<'de> for ControlPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match PortLike::deserialize(d)? {
            PortLike::N(n) => port_from_int(n)
                .map(ControlPort::Tcp)
                .map_err(serde::de::Error::custom),
            PortLike::S(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PortLike {
    N(i64),
    S(String),
}

fn port_from_int(n: i64) -> Result<u16, String> {
    u16::try_from(n)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("port {n} is out of range: use 1 to 65535"))
}

fn parse_port(s: &str) -> Result<u16, String> {
    s.trim()
        .parse::<i64>()
        .map_err(|_| format!("port {s:?} is not a number: use 1 to 65535"))
        .and_then(port_from_int)
}

pub(super) fn lenient_port<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    match PortLike::deserialize(d)? {
        PortLike::N(n) => port_from_int(n),
        PortLike::S(s) => parse_port(&s),
    }
    .map_err(serde::de::Error::custom)
}

pub(super) fn lenient_opt_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    lenient_port(d).map(Some)
}

pub(super) fn lenient_seconds<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        F(f64),
        S(String),
    }
    let v = match Raw::deserialize(d)? {
        Raw::F(f) => f,
        Raw::S(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a number of seconds")))?,
    };
    if !v.is_finite() || !(0.0..=86_400.0 * 365.0).contains(&v) {
        return Err(serde::de::Error::custom(format!(
            "{v} seconds is out of range: use 0 to one year"
        )));
    }
    Ok(v)
}

/// `metrics_port`: `''`, null or 0 disable it; a port or `ADDR:PORT` enables it.
pub(super) fn lenient_metrics_port<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(i64),
        S(String),
        Nothing(()),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        None | Some(Raw::Nothing(())) => None,
        Some(Raw::N(0)) => None,
        Some(Raw::N(n)) => Some(n.to_string()),
        Some(Raw::S(s)) if s.trim().is_empty() || s.trim() == "0" => None,
        Some(Raw::S(s)) => Some(s),
    })
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    #[test]
    fn metrics_port_and_control_port_forms() {
        let (c, _) = Config::from_yaml("metrics_port: 9936", "t").unwrap();
        assert_eq!(c.metrics_port.as_deref(), Some("9936"));
        let (c, _) = Config::from_yaml("metrics_port: '0.0.0.0:9936'", "t").unwrap();
        assert_eq!(c.metrics_port.as_deref(), Some("0.0.0.0:9936"));
        let (c, _) = Config::from_yaml("metrics_port: 0", "t").unwrap();
        assert!(c.metrics_port.is_none());
        let (c, _) = Config::from_yaml("metrics_port: null", "t").unwrap();
        assert!(c.metrics_port.is_none());
        let (c, _) = Config::from_yaml("control_port: unix:/run/tor/control", "t").unwrap();
        assert_eq!(c.control_port, ControlPort::Unix("/run/tor/control".into()));
        let (c, _) = Config::from_yaml("control_password: s3cret", "t").unwrap();
        assert_eq!(
            c.control_password,
            Some(ControlPassword::Password("s3cret".into()))
        );
        // Debug (of the whole configuration too) hides it.
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
