//! Directory-authority keys and relay fingerprints.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::error::{Error, Result};

/// Identity of one directory authority, as `DirAuthority` lines need it.
#[derive(Debug, Clone)]
pub(crate) struct AuthorityIdentity {
    /// The v3 identity (the certificate's `fingerprint` line), 40 hex digits.
    pub v3ident: String,
    /// The relay identity fingerprint, 40 hex digits.
    pub fingerprint: String,
}

/// Longest run of a helper command (`tor-gencert`, `tor --list-fingerprint`,
/// `tor --hash-password`): each takes about a second, more on a busy machine.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Run `program args` with `stdin`, killing it after [`COMMAND_TIMEOUT`]
/// (or when the future is dropped, e.g. on Ctrl-C during start-up).
async fn run(program: &Path, args: &[&str], stdin: &[u8]) -> Result<String> {
    let command = format!("{} {}", program.display(), args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| Error::TorMissing {
            program: program.display().to_string(),
            error,
        })?;
    let output = async {
        if let Some(mut input) = child.stdin.take() {
            input
                .write_all(stdin)
                .await
                .map_err(Error::io(format!("write stdin of `{command}`")))?;
        }
        child
            .wait_with_output()
            .await
            .map_err(Error::io(format!("wait for `{command}`")))
    };
    let out = tokio::time::timeout(COMMAND_TIMEOUT, output)
        .await
        .map_err(|_| Error::Command {
            command: command.clone(),
            detail: format!("no result after {COMMAND_TIMEOUT:?}; killed it"),
        })??;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(Error::Command {
            command,
            detail: format!(
                "{}: {}{}",
                out.status,
                stdout,
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(stdout)
}

/// Create authority keys in `datadir/keys` and read back both identities.
///
/// `tor_gencert` is the `tor-gencert` program, `tor` the tor binary.
pub(crate) async fn make_authority(
    tor: &Path,
    tor_gencert: &Path,
    datadir: &Path,
    dir_port: u16,
) -> Result<AuthorityIdentity> {
    let keys = datadir.join("keys");
    crate::node::private_dir(&keys)?;
    let p = |name: &str| keys.join(name).display().to_string();
    let address = format!("127.0.0.1:{dir_port}");
    run(
        tor_gencert,
        &[
            "--create-identity-key",
            "-m",
            "12",
            "-a",
            &address,
            "-i",
            &p("authority_identity_key"),
            "-s",
            &p("authority_signing_key"),
            "-c",
            &p("authority_certificate"),
            "--passphrase-fd",
            "0",
        ],
        b"\n",
    )
    .await?;
    let cert_path = keys.join("authority_certificate");
    let cert = std::fs::read_to_string(&cert_path)
        .map_err(Error::io(format!("read {}", cert_path.display())))?;
    let v3ident = parse_cert_fingerprint(&cert).ok_or_else(|| Error::Command {
        command: "tor-gencert".into(),
        detail: format!("no fingerprint line in {}", cert_path.display()),
    })?;
    let fingerprint = relay_fingerprint(tor, datadir).await?;
    Ok(AuthorityIdentity {
        v3ident,
        fingerprint,
    })
}

/// Have tor create the relay identity key in `datadir` and print its fingerprint.
async fn relay_fingerprint(tor: &Path, datadir: &Path) -> Result<String> {
    let out = run(
        tor,
        &[
            "--list-fingerprint",
            "--orport",
            "1",
            "--dirserver",
            "x 127.0.0.1:1 ffffffffffffffffffffffffffffffffffffffff",
            "--datadirectory",
            &datadir.display().to_string(),
            "--ignore-missing-torrc",
            "-f",
            "/dev/null",
        ],
        b"",
    )
    .await?;
    parse_list_fingerprint(&out).ok_or_else(|| Error::Command {
        command: "tor --list-fingerprint".into(),
        detail: format!("no fingerprint in its output: {out}"),
    })
}

/// `HashedControlPassword` value for `password` (`16:…`).
pub(crate) async fn hash_password(tor: &Path, password: &str) -> Result<String> {
    let out = run(tor, &["--quiet", "--hash-password", password], b"").await?;
    out.lines()
        .map(str::trim)
        .find(|l| l.starts_with("16:"))
        .map(str::to_owned)
        .ok_or_else(|| Error::Command {
            command: "tor --hash-password".into(),
            detail: out.clone(),
        })
}

/// The `fingerprint XXXX` line of an authority certificate.
fn parse_cert_fingerprint(cert: &str) -> Option<String> {
    cert.lines()
        .find_map(|l| l.strip_prefix("fingerprint "))
        .map(|fp| fp.trim().to_owned())
        .filter(|fp| is_fingerprint(fp))
}

/// The last line of `tor --list-fingerprint`: `Nickname XXXX XXXX … XXXX`.
fn parse_list_fingerprint(out: &str) -> Option<String> {
    out.lines().rev().find_map(|line| {
        let mut words = line.split_whitespace();
        words.next()?;
        let fp: String = words.collect();
        is_fingerprint(&fp).then_some(fp)
    })
}

fn is_fingerprint(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_certificate_fingerprint() {
        let cert = "dir-key-certificate-version 3\ndir-address 127.0.0.1:5000\nfingerprint 0123456789ABCDEF0123456789ABCDEF01234567\ndir-key-published 2026-01-01\n";
        assert_eq!(
            parse_cert_fingerprint(cert).unwrap(),
            "0123456789ABCDEF0123456789ABCDEF01234567"
        );
        assert_eq!(parse_cert_fingerprint("fingerprint nothex"), None);
        assert_eq!(parse_cert_fingerprint(""), None);
    }

    #[test]
    fn parses_list_fingerprint_output() {
        let out = "Nov 25 09:00:00.000 [notice] Tor 0.4.9.11 running\nUnnamed 0123 4567 89AB CDEF 0123 4567 89AB CDEF 0123 4567\n";
        assert_eq!(
            parse_list_fingerprint(out).unwrap(),
            "0123456789ABCDEF0123456789ABCDEF01234567"
        );
        assert_eq!(parse_list_fingerprint("garbage\n"), None);
    }
}
