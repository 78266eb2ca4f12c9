//! The typed commands (`GETINFO`, `HSFETCH`, `ADD_ONION`...): arguments
//! checked before anything is sent, replies parsed into types.

use super::{invalid, ControlClient};
use crate::control::args::{tokenize, unquote, Token};
use crate::control::reply::Reply;
use crate::control::types::{
    is_word, onion_service_id, AddOnion, AddOnionReply, BootstrapPhase, Circuit, ClientAuthAdded,
    ListenerKind, Signal,
};
use crate::control::ControlError;

fn word(what: &'static str, value: &str) -> Result<(), ControlError> {
    if is_word(value) {
        Ok(())
    } else {
        Err(invalid(
            what,
            value,
            "must be non-empty, without spaces, quotes or control characters",
        ))
    }
}

fn service_id(address: &str) -> Result<String, ControlError> {
    onion_service_id(address).ok_or_else(|| {
        invalid(
            "onion address",
            address,
            "expected a v3 address: 56 base32 characters, with or without .onion",
        )
    })
}
impl ControlClient {
    /// `GETINFO`: `(key, value)` pairs in reply order. Multi-line values
    /// (`250+key=` data blocks) are joined with `\n`.
    pub async fn get_info(&self, keys: &[&str]) -> Result<Vec<(String, String)>, ControlError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        for k in keys {
            word("GETINFO key", k)?;
        }
        let reply = self.command(&format!("GETINFO {}", keys.join(" "))).await?;
        info_pairs(&reply)
    }

    /// `GETINFO` of one key.
    pub async fn get_info_one(&self, key: &str) -> Result<String, ControlError> {
        self.get_info(&[key])
            .await?
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .ok_or_else(|| ControlError::BadReply {
                command: "GETINFO".into(),
                detail: format!("no value for {key}"),
            })
    }

    /// `GETINFO status/bootstrap-phase`.
    pub async fn bootstrap_phase(&self) -> Result<BootstrapPhase, ControlError> {
        let v = self.get_info_one("status/bootstrap-phase").await?;
        BootstrapPhase::parse(&v).ok_or_else(|| ControlError::BadReply {
            command: "GETINFO status/bootstrap-phase".into(),
            detail: format!("not a bootstrap status: {v:?}"),
        })
    }

    /// `GETINFO circuit-status`: every circuit tor knows.
    pub async fn circuit_status(&self) -> Result<Vec<Circuit>, ControlError> {
        let v = self.get_info_one("circuit-status").await?;
        v.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                Circuit::parse(l).ok_or_else(|| ControlError::BadReply {
                    command: "GETINFO circuit-status".into(),
                    detail: format!("not a circuit line: {l:?}"),
                })
            })
            .collect()
    }

    /// Service ids of the onion services added with `ADD_ONION`: those of
    /// this connection (`onions/current`) then the detached ones
    /// (`onions/detached`). Services from torrc are not listed.
    pub async fn onions_current(&self) -> Result<Vec<String>, ControlError> {
        let mut out = self.onion_list("onions/current").await?;
        for id in self.onion_list("onions/detached").await? {
            if !out.contains(&id) {
                out.push(id);
            }
        }
        Ok(out)
    }

    async fn onion_list(&self, key: &str) -> Result<Vec<String>, ControlError> {
        match self.get_info_one(key).await {
            Ok(v) => Ok(v.split_whitespace().map(str::to_owned).collect()),
            // Tor's way of saying "empty".
            Err(ControlError::Tor {
                status: 551,
                message,
                ..
            }) if message.starts_with("No onion services") => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// `GETINFO net/listeners/<kind>`: the addresses tor listens on
    /// (`127.0.0.1:9050`, `unix:/path`).
    pub async fn listeners(&self, kind: ListenerKind) -> Result<Vec<String>, ControlError> {
        let v = self
            .get_info_one(&format!("net/listeners/{}", kind.as_str()))
            .await?;
        Ok(tokenize(&v)
            .into_iter()
            .map(|t| match t {
                Token::Word(w) => w,
                Token::Pair(k, v) => format!("{k}={v}"),
            })
            .collect())
    }

    /// `GETCONF`: `(key, value)` per reply line; keys may repeat (e.g.
    /// `HiddenServiceDir`), `None` means unset/default.
    pub async fn get_conf(
        &self,
        keys: &[&str],
    ) -> Result<Vec<(String, Option<String>)>, ControlError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        for k in keys {
            word("GETCONF key", k)?;
        }
        let reply = self.command(&format!("GETCONF {}", keys.join(" "))).await?;
        Ok(reply
            .lines
            .iter()
            .map(|l| match l.text.split_once('=') {
                Some((k, v)) => {
                    let v = if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
                        String::from_utf8_lossy(&unquote(v.as_bytes()).0).into_owned()
                    } else {
                        v.to_owned()
                    };
                    (k.to_owned(), Some(v))
                }
                None => (l.text.clone(), None),
            })
            .collect())
    }

    /// `SETEVENTS`: receive these events (e.g. `HS_DESC`, `CIRC`); all
    /// others are turned off. An empty list turns every event off.
    pub async fn set_events(&self, events: &[&str]) -> Result<(), ControlError> {
        let mut line = String::from("SETEVENTS");
        for e in events {
            if e.is_empty()
                || !e
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
            {
                return Err(invalid(
                    "event name",
                    e,
                    "event names are upper-case words like HS_DESC",
                ));
            }
            line.push(' ');
            line.push_str(e);
        }
        self.command(&line).await.map(drop)
    }

    /// `SIGNAL`.
    pub async fn signal(&self, signal: Signal) -> Result<(), ControlError> {
        self.command(&format!("SIGNAL {}", signal.as_str()))
            .await
            .map(drop)
    }

    /// `HSFETCH`: fetch a v3 descriptor (address with or without `.onion`),
    /// optionally from given HSDirs (`$FINGERPRINT~nick` or fingerprint).
    /// Results arrive as `HS_DESC`/`HS_DESC_CONTENT` events.
    pub async fn hs_fetch(&self, address: &str, servers: &[String]) -> Result<(), ControlError> {
        let mut line = format!("HSFETCH {}", service_id(address)?);
        for s in servers {
            word("HSFETCH server", s)?;
            line.push_str(" SERVER=");
            line.push_str(s);
        }
        self.command(&line).await.map(drop)
    }

    /// `CLOSECIRCUIT`; an unknown circuit is a [`ControlError::Tor`] with
    /// status 552.
    pub async fn close_circuit(&self, id: u32) -> Result<(), ControlError> {
        self.command(&format!("CLOSECIRCUIT {id}")).await.map(drop)
    }

    /// `ADD_ONION`.
    pub async fn add_onion(&self, req: &AddOnion) -> Result<AddOnionReply, ControlError> {
        let line = req
            .to_command()
            .map_err(|reason| invalid("ADD_ONION", "(request)", &reason))?;
        let reply = self.command(&line).await?;
        let mut out = AddOnionReply {
            service_id: String::new(),
            private_key: None,
            client_auth_v3: Vec::new(),
        };
        for l in &reply.lines {
            match l.text.split_once('=') {
                Some(("ServiceID", v)) => out.service_id = v.to_owned(),
                Some(("PrivateKey", v)) => out.private_key = Some(v.to_owned()),
                Some(("ClientAuthV3", v)) => out.client_auth_v3.push(v.to_owned()),
                _ => {}
            }
        }
        if out.service_id.is_empty() {
            return Err(ControlError::BadReply {
                command: "ADD_ONION".into(),
                detail: "no ServiceID".into(),
            });
        }
        Ok(out)
    }

    /// `DEL_ONION`.
    pub async fn del_onion(&self, service_id: &str) -> Result<(), ControlError> {
        self.command(&format!("DEL_ONION {}", self::service_id(service_id)?))
            .await
            .map(drop)
    }

    /// `ONION_CLIENT_AUTH_ADD <addr> x25519:<key> [ClientName=] [Flags=Permanent]`,
    /// with the base64 x25519 private key.
    pub async fn onion_client_auth_add(
        &self,
        address: &str,
        private_key_base64: &str,
        nickname: Option<&str>,
        permanent: bool,
    ) -> Result<ClientAuthAdded, ControlError> {
        let key_ok = !private_key_base64.is_empty()
            && private_key_base64
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
        if !key_ok {
            return Err(invalid("x25519 private key", "(secret)", "not base64"));
        }
        let mut line = format!(
            "ONION_CLIENT_AUTH_ADD {} x25519:{private_key_base64}",
            service_id(address)?
        );
        if let Some(n) = nickname {
            word("client name", n)?;
            line.push_str(" ClientName=");
            line.push_str(n);
        }
        if permanent {
            line.push_str(" Flags=Permanent");
        }
        let reply = self.command(&line).await?;
        Ok(match reply.status {
            251 => ClientAuthAdded::Replaced,
            252 => ClientAuthAdded::AddedAndDecrypted,
            _ => ClientAuthAdded::Added,
        })
    }

    /// `ONION_CLIENT_AUTH_REMOVE`.
    pub async fn onion_client_auth_remove(&self, address: &str) -> Result<(), ControlError> {
        self.command(&format!(
            "ONION_CLIENT_AUTH_REMOVE {}",
            service_id(address)?
        ))
        .await
        .map(drop)
    }
}

/// `key=value` lines of a GETINFO reply; the final `OK` is skipped.
fn info_pairs(reply: &Reply) -> Result<Vec<(String, String)>, ControlError> {
    let mut out = Vec::new();
    for (i, l) in reply.lines.iter().enumerate() {
        if i + 1 == reply.lines.len() && l.text == "OK" && l.data.is_none() {
            break;
        }
        let Some((k, v)) = l.text.split_once('=') else {
            return Err(ControlError::BadReply {
                command: "GETINFO".into(),
                detail: format!("line without '=': {:?}", l.text),
            });
        };
        let value = match &l.data {
            Some(d) if v.is_empty() => d.clone(),
            Some(d) => format!("{v}\n{d}"),
            None => v.to_owned(),
        };
        out.push((k.to_owned(), value));
    }
    Ok(out)
}
