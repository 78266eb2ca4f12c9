//! Onionspray (and EOTK) installations: the generated tree
//! (`projects/<name>/tor.conf`, softmap workers `projects/<name>/<worker>/tor.conf`,
//! `nginx.conf`, `log/`) as laid out by Onionspray's templates, and the
//! project configurations in the installation directory ([`crate::config`]).

use std::path::{Path, PathBuf};

use crate::config::{looks_like_config, parse_config, SprayProject};
use crate::nginx_conf::{self, StubStatus};
use crate::torrc::{Listen, Torrc};
use crate::Error;

/// One tor process of a project (the project's own, or a softmap worker).
#[derive(Debug, Clone)]
pub struct TorInstance {
    /// `tor` for the project's tor, the worker directory's name (`hs-1`)
    /// for softmap workers.
    pub name: String,
    /// Its generated `tor.conf`.
    pub conf: PathBuf,
    /// The parsed configuration.
    pub torrc: Torrc,
}

impl TorInstance {
    /// Its `MetricsPort` (first line only, as tor reads it).
    pub fn metrics_port(&self) -> Option<Listen> {
        self.torrc
            .first("MetricsPort")
            .and_then(|e| Listen::parse(&e.value))
            .filter(|l| *l != Listen::Disabled)
    }

    /// Its first `ControlPort`.
    pub fn control_port(&self) -> Option<Listen> {
        self.torrc
            .all("ControlPort")
            .filter_map(|e| Listen::parse(&e.value))
            .find(|l| *l != Listen::Disabled)
    }

    /// Its cookie file, if cookie authentication is on.
    pub fn cookie_file(&self) -> Option<PathBuf> {
        if self.torrc.flag("CookieAuthentication") != Some(true) {
            return None;
        }
        if let Some(e) = self.torrc.first("CookieAuthFile") {
            return Some(PathBuf::from(&e.value));
        }
        self.torrc
            .first("DataDirectory")
            .map(|e| Path::new(&e.value).join("control_auth_cookie"))
    }

    /// Files it logs to (`Log LEVEL file PATH`).
    pub fn log_files(&self) -> Vec<PathBuf> {
        self.torrc
            .all("Log")
            .filter_map(|e| {
                let mut w = e.value.split_whitespace();
                w.next()?;
                (w.next()? == "file").then(|| PathBuf::from(w.collect::<Vec<_>>().join(" ")))
            })
            .collect()
    }
}

/// One project directory of an installation.
#[derive(Debug, Clone)]
pub struct Project {
    /// The project name (directory name without `.d`).
    pub name: String,
    /// `projects/<name>/`.
    pub dir: PathBuf,
    /// Softmap project (has `softmap.conf`).
    pub softmap: bool,
    /// Its tor processes.
    pub tors: Vec<TorInstance>,
    /// Its generated `nginx.conf`, if present.
    pub nginx_conf: Option<PathBuf>,
    /// Its log files (`log/*.log`).
    pub logs: Vec<PathBuf>,
}

impl Project {
    /// Where its nginx and tor write their logs: `log/` (or `log.d/`).
    pub fn log_dir(&self) -> PathBuf {
        ["log", "log.d"]
            .iter()
            .map(|d| self.dir.join(d))
            .find(|d| d.is_dir())
            .unwrap_or_else(|| self.dir.join("log"))
    }

    /// Its nginx access logs, as a glob: `log/nginx-access*.log`, which
    /// covers `log_separate`'s per-domain files but not the rotated
    /// `*.log-DATE[.gz]` ones.
    pub fn access_logs(&self) -> PathBuf {
        self.log_dir().join("nginx-access*.log")
    }

    /// Each tor's log, once per file: the file its `Log … file` line names
    /// when that exists here; otherwise where Onionspray puts it relative
    /// to the tree (which may be mounted elsewhere, e.g. in a container):
    /// `log/tor.log` for the project's tor, `<worker dir>/tor.log` for a
    /// softmap worker.
    pub fn tor_logs(&self) -> Vec<PathBuf> {
        let log_dir = self.log_dir();
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for t in &self.tors {
            let mut files: Vec<PathBuf> =
                t.log_files().into_iter().filter(|f| f.is_file()).collect();
            if files.is_empty() {
                files.push(match t.conf.parent() {
                    Some(dir) if dir != self.dir => dir.join("tor.log"),
                    _ => log_dir.join("tor.log"),
                });
            }
            for file in files {
                let key = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
                if seen.insert(key) {
                    out.push(file);
                }
            }
        }
        out
    }

    /// The first `stub_status` its `nginx.conf` serves over TCP, if the
    /// file is there and readable.
    pub fn stub_status(&self) -> Option<StubStatus> {
        let text = crate::torrc::read_bounded(self.nginx_conf.as_ref()?).ok()?;
        nginx_conf::stub_status_urls(&text).into_iter().next()
    }
}

/// An Onionspray installation.
#[derive(Debug, Clone)]
pub struct Installation {
    /// The installation directory.
    pub root: PathBuf,
    /// Projects, sorted by name.
    pub projects: Vec<Project>,
    /// Project configuration files in the root (`*.conf` with `set` lines).
    pub configs: Vec<SprayProject>,
    /// Onionbalance logs (`onionbalance/*.log`).
    pub onionbalance_logs: Vec<PathBuf>,
}

/// Whether `dir` is an Onionspray/EOTK installation (has `projects/`).
pub fn is_installation(dir: &Path) -> bool {
    dir.join("projects").is_dir() || dir.join("projects.d").is_dir()
}

/// Read an installation's layout and every generated tor configuration.
/// A project whose `tor.conf` cannot be read is an error naming the file.
pub fn discover(root: &Path) -> Result<Installation, Error> {
    // Read first: a missing or unreadable directory says so, not "no projects/".
    let root_confs = files_ending(root, ".conf")?;
    let projects_dir = ["projects", "projects.d"]
        .iter()
        .map(|d| root.join(d))
        .find(|d| d.is_dir())
        .ok_or_else(|| Error::NotOnionspray {
            path: root.to_owned(),
            reason: "it has no projects/ directory (give the Onionspray installation directory, e.g. /home/onionspray/onionspray)".into(),
        })?;
    let mut projects = Vec::new();
    for dir in sorted_entries(&projects_dir)?
        .into_iter()
        .filter(|p| p.is_dir())
    {
        let Some(name) = dir.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let name = name.strip_suffix(".d").unwrap_or(name).to_owned();
        if name.starts_with('.') {
            continue;
        }
        let mut tors = Vec::new();
        let main = dir.join("tor.conf");
        if main.is_file() {
            tors.push(TorInstance {
                name: "tor".into(),
                torrc: Torrc::read(&main)?,
                conf: main,
            });
        }
        for sub in sorted_entries(&dir)?.into_iter().filter(|p| p.is_dir()) {
            let conf = sub.join("tor.conf");
            if conf.is_file() {
                let worker = sub.file_name().and_then(|n| n.to_str()).unwrap_or("worker");
                tors.push(TorInstance {
                    name: worker.strip_suffix(".d").unwrap_or(worker).to_owned(),
                    torrc: Torrc::read(&conf)?,
                    conf,
                });
            }
        }
        let log_dir = ["log", "log.d"]
            .iter()
            .map(|d| dir.join(d))
            .find(|d| d.is_dir());
        let logs = match log_dir {
            Some(d) => files_ending(&d, ".log")?,
            None => Vec::new(),
        };
        projects.push(Project {
            softmap: dir.join("softmap.conf").exists(),
            nginx_conf: Some(dir.join("nginx.conf")).filter(|p| p.is_file()),
            name,
            dir,
            tors,
            logs,
        });
    }
    let mut configs = Vec::new();
    for file in root_confs {
        let text = crate::torrc::read_bounded(&file)?;
        if looks_like_config(&text) {
            configs.extend(parse_config(&text, &file));
        }
    }
    let onionbalance_logs = ["onionbalance", "onionbalance.d"]
        .iter()
        .map(|d| root.join(d))
        .find(|d| d.is_dir())
        .map(|d| files_ending(&d, ".log"))
        .transpose()?
        .unwrap_or_default();
    Ok(Installation {
        root: root.to_owned(),
        projects,
        configs,
        onionbalance_logs,
    })
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| Error::Read {
            path: dir.to_owned(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

fn files_ending(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>, Error> {
    Ok(sorted_entries(dir)?
        .into_iter()
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(suffix))
        })
        .collect())
}
