//! Control passwords from the command line, a file or the environment.
//!
//! A password in argv can be read by every local user (`ps`,
//! `/proc/PID/cmdline`) and stays in shell history, so each
//! `--control-password`-like flag has a `…-file` twin (and, for
//! `expose-onion`/`scrape-gateway`, the [`PASSWORD_ENV`] variable), and using
//! the flag itself logs a warning.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// The environment variable holding a control password.
pub const PASSWORD_ENV: &str = "ONIONWATCH_CONTROL_PASSWORD";

/// Longest password file read (a password is a line, not a file dump).
const MAX_FILE: u64 = 4096;

/// A control password and what to warn about.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Password {
    /// The password, if one was given anywhere.
    pub password: Option<String>,
    /// Warnings to log (never containing the password).
    pub warnings: Vec<String>,
}

/// Where a command takes its control password from.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// The flag taking the password itself (warned about).
    pub flag: &'a str,
    /// The flag naming a file holding it.
    pub file_flag: &'a str,
    /// The environment variable read when neither flag is given, if any.
    pub env: Option<&'a str>,
}

/// The control password, from the first of: `argv` (the value of
/// `sources.flag`, warned about), `file` (given with `sources.file_flag`),
/// `env` (the value of `sources.env`, if the command reads one). A file
/// holds the password on its first line; one trailing newline is not part
/// of it.
pub fn control_password(
    argv: Option<&str>,
    file: Option<&Path>,
    env: Option<OsString>,
    sources: Sources<'_>,
) -> Result<Password> {
    let Sources {
        flag,
        file_flag,
        env: env_name,
    } = sources;
    let mut warnings = Vec::new();
    if let Some(p) = argv {
        let instead = match env_name {
            Some(name) => format!("{file_flag} FILE or the {name} environment variable"),
            None => format!("{file_flag} FILE"),
        };
        warnings.push(format!(
            "the control password was given with {flag}: every local user can read it in the process list, and it stays in shell history; use {instead}"
        ));
        return Ok(Password {
            password: Some(p.to_owned()),
            warnings,
        });
    }
    if let Some(path) = file {
        let password = read_password_file(path, file_flag, &mut warnings)?;
        return Ok(Password {
            password: Some(password),
            warnings,
        });
    }
    let password = match (env_name, env) {
        (None, _) | (_, None) => None,
        (Some(_), Some(v)) if v.is_empty() => None,
        (Some(name), Some(v)) => Some(
            v.into_string()
                .map_err(|_| anyhow::anyhow!("{name} is not valid UTF-8"))?,
        ),
    };
    Ok(Password { password, warnings })
}

fn read_password_file(path: &Path, flag: &str, warnings: &mut Vec<String>) -> Result<String> {
    use std::io::Read;
    let shown = path.display();
    let file = std::fs::File::open(path).with_context(|| format!("{flag} {shown}: cannot open"))?;
    let meta = file
        .metadata()
        .with_context(|| format!("{flag} {shown}: cannot stat"))?;
    // A pipe is fine (`--control-password-file <(pass show tor)`).
    if meta.is_dir() {
        bail!("{flag} {shown}: a directory, not a password file");
    }
    if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
        warnings.push(format!(
            "{flag} {shown} is readable by other users (mode {:03o}): chmod 600 it",
            meta.permissions().mode() & 0o777
        ));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{flag} {shown}: cannot read"))?;
    if bytes.len() as u64 > MAX_FILE {
        bail!("{flag} {shown}: longer than {MAX_FILE} bytes, not a password file");
    }
    let text = String::from_utf8(bytes).with_context(|| format!("{flag} {shown}: not UTF-8"))?;
    let line = text.strip_suffix('\n').unwrap_or(&text);
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.is_empty() {
        bail!("{flag} {shown}: the file is empty (write the password on its first line)");
    }
    if line.contains('\n') {
        bail!("{flag} {shown}: more than one line (write only the password)");
    }
    Ok(line.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSE: Sources<'static> = Sources {
        flag: "--control-password",
        file_flag: "--control-password-file",
        env: Some(PASSWORD_ENV),
    };

    fn get(argv: Option<&str>, file: Option<&Path>, env: Option<&str>) -> Result<Password> {
        control_password(argv, file, env.map(OsString::from), EXPOSE)
    }

    #[test]
    fn the_command_line_wins_with_a_warning_without_the_password() {
        let p = get(Some("hunter2"), None, Some("from-env")).unwrap();
        assert_eq!(p.password.as_deref(), Some("hunter2"));
        assert_eq!(p.warnings.len(), 1);
        let w = &p.warnings[0];
        assert!(
            w.contains("process list") && w.contains("--control-password-file"),
            "{w}"
        );
        assert!(w.contains(PASSWORD_ENV) && !w.contains("hunter2"), "{w}");

        // A command without the environment variable does not suggest it,
        // nor read it.
        let probe = Sources {
            flag: "--control_password",
            file_flag: "--control_password_file",
            env: None,
        };
        let p = control_password(Some("x"), None, None, probe).unwrap();
        assert!(!p.warnings[0].contains(PASSWORD_ENV), "{:?}", p.warnings);
        assert!(p.warnings[0].contains("--control_password_file"));
        let p = control_password(None, None, Some("from-env".into()), probe).unwrap();
        assert_eq!(p, Password::default());
    }

    #[test]
    fn a_file_then_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret word\r\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let p = get(None, Some(&path), Some("from-env")).unwrap();
        assert_eq!(p.password.as_deref(), Some("s3cret word"));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let p = get(None, Some(&path), None).unwrap();
        assert!(p.warnings[0].contains("chmod 600"), "{:?}", p.warnings);

        let p = get(None, None, Some("from-env")).unwrap();
        assert_eq!(
            p,
            Password {
                password: Some("from-env".into()),
                warnings: vec![]
            }
        );
        assert_eq!(get(None, None, Some("")).unwrap(), Password::default());
        assert_eq!(get(None, None, None).unwrap(), Password::default());
    }

    #[test]
    fn bad_files_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("empty", b"\n".to_vec(), "empty"),
            ("two", b"a\nb\n".to_vec(), "more than one line"),
            ("big", vec![b'a'; 5000], "longer than"),
            ("binary", vec![0xff, 0xfe], "UTF-8"),
        ];
        for (name, content, want) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, content).unwrap();
            let e = format!("{:#}", get(None, Some(&path), None).unwrap_err());
            assert!(e.contains(want) && e.contains(name), "{name}: {e}");
        }
        let e = format!(
            "{:#}",
            get(None, Some(&dir.path().join("missing")), None).unwrap_err()
        );
        assert!(
            e.contains("--control-password-file") && e.contains("missing"),
            "{e}"
        );
        let e = format!("{:#}", get(None, Some(dir.path()), None).unwrap_err());
        assert!(e.contains("a directory"), "{e}");
    }
}
