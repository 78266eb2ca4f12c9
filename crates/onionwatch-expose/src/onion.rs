//! Adding the authenticated onion service on the monitored host's tor.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use onionwatch_tor::control::{AddOnion, ControlClient, ControlError, OnionKey};
use onionwatch_tor::persist;

use crate::keys::{ClientKey, KeyError};

/// The onion service's key, as `ADD_ONION` returned it (`ED25519-V3:…`).
const SERVICE_KEY_FILE: &str = "onion_service.key";
/// The client's `.auth_private` line.
const CLIENT_KEY_FILE: &str = "client.auth_private";

/// The published onion service and what the scraping side needs.
#[derive(Clone)]
pub struct Exposed {
    /// 56 characters, without `.onion`.
    pub address: String,
    /// The client's key as an `.auth_private` line: give it to
    /// `onionwatch scrape-gateway --client-key-file` (or a tor's `ClientOnionAuthDir`).
    pub client_line: String,
    /// The file holding `client_line` (`<key_dir>/client.auth_private`,
    /// mode 0600): what to copy to the scraping side.
    pub client_key_file: PathBuf,
    /// Whether this call wrote `client_line` (a new client key, or the
    /// address changed): the scraping side needs the line (again). `false`
    /// when the stored line was used as it was.
    pub client_key_written: bool,
}

impl std::fmt::Debug for Exposed {
    /// Never prints the client's private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exposed")
            .field("address", &self.address)
            .field("client_line", &"<secret>")
            .field("client_key_file", &self.client_key_file)
            .field("client_key_written", &self.client_key_written)
            .finish()
    }
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

/// Mode of the key directory and of the key files in it.
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// The key directory, made private and read.
struct KeyDir {
    service_path: PathBuf,
    client_path: PathBuf,
    /// The onion service key, if one is stored.
    service_key: Option<String>,
    /// The stored client line, if any, as written.
    client_line: Option<String>,
    /// The stored client key, or a new one.
    client: ClientKey,
}

impl KeyDir {
    /// Create `key_dir` if needed, bring it to mode 0700 and the key files
    /// in it to 0600 (an older version or an operator's `mkdir` may have
    /// left them readable by others), and read the stored keys.
    fn open(key_dir: &Path) -> Result<KeyDir, ExposeError> {
        if let Some(old) = persist::private_dir(key_dir, DIR_MODE).map_err(io("create", key_dir))? {
            tracing::warn!(dir = %key_dir.display(), "the key directory had mode {old:03o}: now 0700");
        }
        let service_path = key_dir.join(SERVICE_KEY_FILE);
        let client_path = key_dir.join(CLIENT_KEY_FILE);
        for path in [&service_path, &client_path] {
            if let Some(old) =
                persist::restrict_file(path, FILE_MODE).map_err(io("protect", path))?
            {
                tracing::warn!(file = %path.display(), "the key file had mode {old:03o}: now 0600");
            }
        }
        let read = |path: &Path| match std::fs::read_to_string(path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", path)(e)),
        };
        let service_key = read(&service_path)?.map(|t| t.trim().to_owned());
        let client_line = read(&client_path)?;
        let client = match &client_line {
            Some(line) => {
                ClientKey::from_auth_private(line)
                    .map_err(|source| ExposeError::Key {
                        path: client_path.clone(),
                        source,
                    })?
                    .1
            }
            None => ClientKey::generate().map_err(|source| ExposeError::Key {
                path: client_path.clone(),
                source,
            })?,
        };
        Ok(KeyDir {
            service_path,
            client_path,
            service_key,
            client_line,
            client,
        })
    }

    /// Keep a service key tor just created.
    fn store_service_key(&self, key: &str) -> Result<(), ExposeError> {
        persist::write_atomic(&self.service_path, key.as_bytes(), FILE_MODE)
            .map_err(io("write", &self.service_path))
    }

    /// The client line for `address`, written unless the stored one is
    /// already it; returns the line and whether it was written.
    fn store_client_line(&self, address: &str) -> Result<(String, bool), ExposeError> {
        let line = self.client.to_auth_private(address);
        if self.client_line.as_deref().map(str::trim) == Some(line.as_str()) {
            return Ok((line, false));
        }
        persist::write_atomic(&self.client_path, line.as_bytes(), FILE_MODE)
            .map_err(io("write", &self.client_path))?;
        Ok((line, true))
    }
}

/// Add an onion service on `tor` forwarding `virt_port` to `target`, readable
/// only with the client key kept in `key_dir` (both keys are created there
/// on first use and reused afterwards, so the address and the client line
/// stay the same). The service lives as long as `tor`'s connection.
///
/// `key_dir` is kept at mode 0700 and its key files at 0600; they are
/// replaced atomically (temporary file, `fsync`, rename), never rewritten
/// in place, so a crash cannot lose a key.
pub async fn expose(
    tor: &ControlClient,
    target: SocketAddr,
    virt_port: u16,
    key_dir: &Path,
) -> Result<Exposed, ExposeError> {
    let keys = KeyDir::open(key_dir)?;
    let mut req = AddOnion::new(virt_port, Some(&target.to_string()));
    if let Some(key) = &keys.service_key {
        let base64 = key.strip_prefix("ED25519-V3:").unwrap_or(key);
        req.key = OnionKey::Ed25519V3(base64.to_owned());
    }
    req.client_auth_v3 = vec![keys.client.public_base32()];
    let reply = tor.add_onion(&req).await?;
    if let Some(new_key) = &reply.private_key {
        keys.store_service_key(new_key)?;
    }
    let (client_line, client_key_written) = keys.store_client_line(&reply.service_id)?;
    tracing::info!(address = %reply.service_id, %target, "onion service with client authorization added");
    Ok(Exposed {
        address: reply.service_id,
        client_line,
        client_key_file: keys.client_path.clone(),
        client_key_written,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;
    use onionwatch_test_support::{file_names as names, mode};

    const ADDR: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid";
    const OTHER: &str = "ljd3mtwdfhjmrfpetqnkywjqlpzvm6o6dxeuqmvyoxhm3hqlb3rlvkyd";

    #[test]
    fn keys_are_private_kept_and_replaced_atomically() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("keys");
        let keys = KeyDir::open(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        keys.store_service_key("ED25519-V3:AAAA").unwrap();
        let (line, written) = keys.store_client_line(ADDR).unwrap();
        assert!(written, "a new key is written");
        assert_eq!(mode(&keys.client_path), 0o600);
        assert_eq!(mode(&keys.service_path), 0o600);

        // As an older version left them: directory 0755, files 0644.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        for f in [&keys.client_path, &keys.service_path] {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let inode = std::fs::metadata(&keys.client_path).unwrap().ino();
        let again = KeyDir::open(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&again.client_path), 0o600);
        assert_eq!(mode(&again.service_path), 0o600);
        assert_eq!(again.service_key.as_deref(), Some("ED25519-V3:AAAA"));
        // A second start with the same address: the line is not written
        // (nor printed by the command) again.
        let (same, written) = again.store_client_line(ADDR).unwrap();
        assert_eq!((same.as_str(), written), (line.as_str(), false));
        assert_eq!(std::fs::metadata(&again.client_path).unwrap().ino(), inode);

        // Another address (the service key was lost): a new line, through a
        // new file rather than rewriting the old one in place.
        let (other, written) = again.store_client_line(OTHER).unwrap();
        assert!(written);
        assert!(other.starts_with(OTHER));
        assert_eq!(std::fs::read_to_string(&again.client_path).unwrap(), other);
        assert_ne!(std::fs::metadata(&again.client_path).unwrap().ino(), inode);
        assert_eq!(mode(&again.client_path), 0o600);
        assert_eq!(
            names(&dir),
            [CLIENT_KEY_FILE, SERVICE_KEY_FILE],
            "no temp file"
        );
    }

    #[test]
    fn exposed_debug_hides_the_client_key() {
        let root = tempfile::tempdir().unwrap();
        let keys = KeyDir::open(root.path()).unwrap();
        let (line, _) = keys.store_client_line(ADDR).unwrap();
        let exposed = Exposed {
            address: ADDR.into(),
            client_line: line.clone(),
            client_key_file: keys.client_path.clone(),
            client_key_written: true,
        };
        let key = line.rsplit(':').next().unwrap();
        let dbg = format!("{exposed:?}");
        assert!(!dbg.contains(key), "{dbg}");
        assert!(dbg.contains(CLIENT_KEY_FILE), "{dbg}");
    }
}
