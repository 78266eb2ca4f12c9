//! Adding the authenticated onion service on the monitored host's tor.

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use onionwatch_tor::control::{AddOnion, ControlClient, ControlError, OnionKey};

use crate::keys::{ClientKey, KeyError};

/// The onion service's key, as `ADD_ONION` returned it (`ED25519-V3:…`).
const SERVICE_KEY_FILE: &str = "onion_service.key";
/// The client's `.auth_private` line.
const CLIENT_KEY_FILE: &str = "client.auth_private";

/// The published onion service and what the scraping side needs.
#[derive(Debug, Clone)]
pub struct Exposed {
    /// 56 characters, without `.onion`.
    pub address: String,
    /// The client's key as an `.auth_private` line: give it to
    /// `onionwatch scrape-gateway --client-key-file` (or a tor's `ClientOnionAuthDir`).
    pub client_line: String,
}

/// Why the onion service could not be added.
#[derive(Debug, thiserror::Error)]
pub enum ExposeError {
    /// A key file could not be read or written.
    #[error("{action} {}: {source} (check that the key directory is writable and private)", path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A stored key is unusable.
    #[error("stored key in {}: {source}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: KeyError,
    },
    /// tor refused the command or the connection failed.
    #[error("tor could not add the onion service: {0}")]
    Tor(#[from] ControlError),
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ExposeError + 'a {
    move |source| ExposeError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Write a secret file readable by its owner only.
fn write_private(path: &Path, text: &str) -> Result<(), ExposeError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io("write", path))?;
    f.write_all(text.as_bytes()).map_err(io("write", path))
}

/// Add an onion service on `tor` forwarding `virt_port` to `target`, readable
/// only with the client key kept in `key_dir` (both keys are created there
/// on first use and reused afterwards, so the address and the client line
/// stay the same). The service lives as long as `tor`'s connection.
pub async fn expose(
    tor: &ControlClient,
    target: SocketAddr,
    virt_port: u16,
    key_dir: &Path,
) -> Result<Exposed, ExposeError> {
    std::fs::create_dir_all(key_dir).map_err(io("create", key_dir))?;
    let service_path = key_dir.join(SERVICE_KEY_FILE);
    let client_path = key_dir.join(CLIENT_KEY_FILE);

    let stored_service = match std::fs::read_to_string(&service_path) {
        Ok(text) => Some(text.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io("read", &service_path)(e)),
    };
    let client = match std::fs::read_to_string(&client_path) {
        Ok(line) => {
            ClientKey::from_auth_private(&line)
                .map_err(|source| ExposeError::Key {
                    path: client_path.clone(),
                    source,
                })?
                .1
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            ClientKey::generate().map_err(|source| ExposeError::Key {
                path: client_path.clone(),
                source,
            })?
        }
        Err(e) => return Err(io("read", &client_path)(e)),
    };

    let mut req = AddOnion::new(virt_port, Some(&target.to_string()));
    if let Some(key) = &stored_service {
        let base64 = key.strip_prefix("ED25519-V3:").unwrap_or(key);
        req.key = OnionKey::Ed25519V3(base64.to_owned());
    }
    req.client_auth_v3 = vec![client.public_base32()];
    let reply = tor.add_onion(&req).await?;
    if let Some(new_key) = &reply.private_key {
        write_private(&service_path, new_key)?;
    }
    let client_line = client.to_auth_private(&reply.service_id);
    write_private(&client_path, &client_line)?;
    tracing::info!(address = %reply.service_id, %target, "onion service with client authorization added");
    Ok(Exposed {
        address: reply.service_id,
        client_line,
    })
}
