//! [`ControlTarget`]: a control port and how to authenticate to it, as
//! configurations name it.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use super::{
    Auth, CircuitCloser, ConnectOptions, ControlAddr, ControlClient, ControlError, EventStream,
};

/// A tor's control port and its credentials. In YAML (unknown keys are
/// refused):
///
/// ```yaml
/// control_port: unix:/opt/onionspray/projects/shop/tor-control.sock
/// control_cookie: /opt/onionspray/projects/shop/tor-control.cookie   # optional
/// ```
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlTarget {
    /// The control port: `IP:PORT` or `unix:PATH`. Required.
    #[serde(deserialize_with = "de_control_addr")]
    pub control_port: ControlAddr,
    /// Control-port password (`HashedControlPassword`); otherwise cookie
    /// authentication. Default none.
    #[serde(default)]
    pub control_password: Option<String>,
    /// Cookie file to use instead of the one tor names (e.g. tor in a
    /// container). Default none.
    #[serde(default)]
    pub control_cookie: Option<PathBuf>,
}

fn de_control_addr<'de, D: Deserializer<'de>>(d: D) -> Result<ControlAddr, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}

impl fmt::Debug for ControlTarget {
    /// Never prints the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControlTarget")
            .field("control_port", &self.control_port)
            .field(
                "control_password",
                &self.control_password.as_ref().map(|_| "<secret>"),
            )
            .field("control_cookie", &self.control_cookie)
            .finish()
    }
}

impl ControlTarget {
    /// `control_port` with whatever authentication tor offers.
    pub fn new(control_port: ControlAddr) -> Self {
        ControlTarget {
            control_port,
            control_password: None,
            control_cookie: None,
        }
    }

    /// The authentication: the password if given, else SAFECOOKIE with
    /// `control_cookie`, else whatever tor offers ([`Auth::Auto`]).
    pub fn auth(&self) -> Auth {
        match (&self.control_password, &self.control_cookie) {
            (Some(p), _) => Auth::Password(p.clone()),
            (None, Some(path)) => Auth::SafeCookie {
                path: Some(path.clone()),
            },
            (None, None) => Auth::Auto { password: None },
        }
    }

    /// Connect and authenticate with [`ControlTarget::auth`].
    pub async fn connect(
        &self,
        options: ConnectOptions,
    ) -> Result<(ControlClient, EventStream), ControlError> {
        ControlClient::connect_with(&self.control_port, self.auth(), options).await
    }

    /// A closer for this control port (not connected yet).
    pub fn closer(&self) -> CircuitCloser {
        CircuitCloser::new(self.control_port.clone(), self.auth())
    }

    /// Whether `closer` already talks to this control port with these
    /// credentials (a reloaded configuration may name another).
    pub fn is_target_of(&self, closer: &CircuitCloser) -> bool {
        closer.targets(&self.control_port, &self.auth())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_targets_parse_and_hide_the_password() {
        let t: ControlTarget = serde_saphyr::from_str(
            "control_port: unix:/run/tor/control\ncontrol_cookie: /run/tor/control.authcookie\n",
        )
        .unwrap();
        assert_eq!(t.control_port, ControlAddr::Unix("/run/tor/control".into()));
        assert_eq!(
            t.auth(),
            Auth::SafeCookie {
                path: Some("/run/tor/control.authcookie".into())
            }
        );
        let t: ControlTarget =
            serde_saphyr::from_str("control_port: 127.0.0.1:9051\ncontrol_password: hunter2\n")
                .unwrap();
        assert_eq!(t.auth(), Auth::Password("hunter2".into()));
        assert!(!format!("{t:?}").contains("hunter2"));
        assert_eq!(t.closer().addr(), &t.control_port);
        assert!(t.is_target_of(&t.closer()));
        assert!(!ControlTarget::new(t.control_port.clone()).is_target_of(&t.closer()));
        let t: ControlTarget = serde_saphyr::from_str("control_port: 127.0.0.1:9051\n").unwrap();
        assert_eq!(t.auth(), Auth::Auto { password: None });
        assert_eq!(t, ControlTarget::new(t.control_port.clone()));
        for bad in [
            "control_port: 9051\n",
            "control_port: unix:\n",
            "control_port: 127.0.0.1:9051\ncontrol_pasword: x\n",
            "control_password: x\n",
        ] {
            assert!(
                serde_saphyr::from_str::<ControlTarget>(bad).is_err(),
                "{bad}"
            );
        }
    }
}
