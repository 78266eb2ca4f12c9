//! Onionspray (and EOTK) installations: the generated tree
//! (`projects/<name>/tor.conf`, softmap workers `projects/<name>/<worker>/tor.conf`,
//! `nginx.conf`, `log/`) as laid out by Onionspray's templates, and the
//! project configurations in the installation directory ([`crate::config`]).

use std::path::{Path, PathBuf};

use crate::access::Unreadable;
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

    /// Its nginx error log: `log/nginx-error.log`, as Onionspray's
    /// template names it.
    pub fn error_log(&self) -> PathBuf {
        self.log_dir().join("nginx-error.log")
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

    /// The first `stub_status` its `nginx.conf` serves, over TCP or a
    /// unix socket, if the file is there and readable. A server listening
    /// on an onion service's socket (a tor's `HiddenServicePort` target, or
    /// Onionspray's `port-N.sock`) is left out: Tor users reach it, and
    /// the generated `allow "unix:"` lets them read it.
    pub fn stub_status(&self) -> Option<StubStatus> {
        let text = crate::torrc::read_bounded(self.nginx_conf.as_ref()?).ok()?;
        let onion_facing: Vec<String> = self
            .tors
            .iter()
            .flat_map(|t| t.torrc.onion_services())
            .flat_map(|hs| hs.ports())
            .filter_map(|(_, target)| target.strip_prefix("unix:").map(str::to_owned))
            .collect();
        nginx_conf::stub_status_urls(&text).into_iter().find(|s| {
            s.unix.as_ref().is_none_or(|u| {
                let name = u.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let port_sock = name
                    .strip_prefix("port-")
                    .and_then(|n| n.strip_suffix(".sock"))
                    .is_some_and(|n| n.parse::<u16>().is_ok());
                !port_sock && !onion_facing.iter().any(|o| Path::new(o) == u)
            })
        })
    }
}

/// An onion service of a project, as its tor hosts it: the address tor
/// wrote to the `hostname` file of its `HiddenServiceDir`, and the virtual
/// ports its `HiddenServicePort` lines expose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnionService {
    /// The project.
    pub project: String,
    /// The tor hosting it (`tor`, or a softmap worker's name).
    pub tor: String,
    /// Its `HiddenServiceDir`.
    pub dir: PathBuf,
    /// Its address, `<56 characters>.onion`.
    pub address: String,
    /// The virtual ports exposed, sorted, each once.
    pub ports: Vec<u16>,
}

/// Largest `hostname` file read: tor writes 63 bytes.
const MAX_HOSTNAME_BYTES: u64 = 1024;

impl Project {
    /// Its onion services, softmap workers' included: each `HiddenServiceDir`
    /// of each tor's configuration (a relative one is taken from the
    /// `tor.conf`'s directory) with the address in its `hostname` file.
    /// A `hostname` that cannot be read (a 0700 directory of another user,
    /// not written yet because tor never started) or does not hold a v3
    /// address is returned as an [`Unreadable`] naming the file, the reason
    /// and the fix, never skipped silently.
    pub fn onion_services(&self) -> (Vec<OnionService>, Vec<Unreadable>) {
        let (mut found, mut unreadable) = (Vec::new(), Vec::new());
        for tor in &self.tors {
            for hs in tor.torrc.onion_services() {
                let mut dir = PathBuf::from(hs.dir.value.trim());
                if dir.is_relative() {
                    if let Some(base) = tor.conf.parent() {
                        dir = base.join(dir);
                    }
                }
                let file = dir.join("hostname");
                let address = match read_hostname(&file) {
                    Ok(a) => a,
                    Err(e) => {
                        let mut u =
                            Unreadable::new("onion service hostname file", &self.name, &file, &e);
                        match e.kind() {
                            std::io::ErrorKind::NotFound => {
                                u.fix = format!("start the project's tor (`onionspray start {}`) so that it writes the file, or correct the HiddenServiceDir at {}", self.name, hs.dir.location());
                            }
                            std::io::ErrorKind::InvalidData => {
                                u.fix = format!("correct the HiddenServiceDir at {} (tor writes hostname from the directory's keys when it starts)", hs.dir.location());
                            }
                            _ => {}
                        }
                        unreadable.push(u);
                        continue;
                    }
                };
                let mut ports: Vec<u16> = hs
                    .ports()
                    .iter()
                    .filter_map(|(virt, _)| virt.parse().ok())
                    .filter(|p| *p != 0)
                    .collect();
                ports.sort_unstable();
                ports.dedup();
                found.push(OnionService {
                    project: self.name.clone(),
                    tor: tor.name.clone(),
                    dir,
                    address,
                    ports,
                });
            }
        }
        (found, unreadable)
    }
}

/// The v3 address in a `hostname` file; an `InvalidData` error when the
/// file holds anything else.
fn read_hostname(file: &Path) -> Result<String, std::io::Error> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(file)?
        .take(MAX_HOSTNAME_BYTES)
        .read_to_string(&mut text)?;
    let address = text.trim();
    let valid = address.strip_suffix(".onion").is_some_and(|id| {
        id.len() == 56
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
    });
    if !valid {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "it does not hold a v3 onion address (<56 characters>.onion) but {:?}",
                address.chars().take(80).collect::<String>()
            ),
        ));
    }
    Ok(address.to_owned())
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
    /// The installation's own logs (`log/*.log`).
    pub logs: Vec<PathBuf>,
    /// What could not be read (a 0700 directory of another user, …), with
    /// the reason and the fix: discovery goes on with the rest, and
    /// `watch` and `audit` report these.
    pub unreadable: Vec<Unreadable>,
}

/// Whether `dir` is an Onionspray/EOTK installation (has `projects/`).
pub fn is_installation(dir: &Path) -> bool {
    dir.join("projects").is_dir() || dir.join("projects.d").is_dir()
}

/// Read an installation's layout and every generated tor configuration.
///
/// The installation directory and its `projects/` must be readable (else
/// an error naming the path, its owner and mode, and the fix); anything
/// below that cannot be read (a project, worker or log directory, a
/// `tor.conf`, `nginx.conf`) is listed in [`Installation::unreadable`]
/// and the rest is still read. A `tor.conf` that is not a valid
/// configuration is an error naming the file.
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
    let mut unreadable = Vec::new();
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
        projects.push(read_project(name, dir, &mut unreadable)?);
    }
    let mut configs = Vec::new();
    for file in root_confs {
        let text = crate::torrc::read_bounded(&file)?;
        if looks_like_config(&text) {
            configs.extend(parse_config(&text, &file));
        }
    }
    let onionbalance_logs = match ["onionbalance", "onionbalance.d"]
        .iter()
        .map(|d| root.join(d))
        .find(|d| d.is_dir())
    {
        Some(d) => files_ending(&d, ".log").unwrap_or_else(|e| {
            unreadable.extend(as_unreadable("Onionbalance directory", "", e));
            Vec::new()
        }),
        None => Vec::new(),
    };
    let logs = match ["log", "log.d"]
        .iter()
        .map(|d| root.join(d))
        .find(|d| d.is_dir())
    {
        Some(d) => files_ending(&d, ".log").unwrap_or_else(|e| {
            unreadable.extend(as_unreadable("installation log directory", "", e));
            Vec::new()
        }),
        None => Vec::new(),
    };
    Ok(Installation {
        root: root.to_owned(),
        projects,
        configs,
        onionbalance_logs,
        logs,
        unreadable,
    })
}

/// The project templates (`*.tconf`) in an installation directory,
/// sorted (none when it cannot be read).
pub fn templates(root: &Path) -> Vec<PathBuf> {
    files_ending(root, ".tconf").unwrap_or_default()
}

/// A read error as an [`Unreadable`] (`None` for other errors).
fn as_unreadable(what: &'static str, project: &str, e: Error) -> Option<Unreadable> {
    match e {
        Error::Read { path, source } => Some(Unreadable::new(what, project, &path, &source)),
        _ => None,
    }
}

/// What `path` is: `Ok(None)` when it does not exist, the error when it
/// cannot be looked at (a 0700 parent of another user).
fn probe(path: &Path) -> Result<Option<std::fs::Metadata>, std::io::Error> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// One project directory; what cannot be read goes to `unreadable`.
fn read_project(
    name: String,
    dir: PathBuf,
    unreadable: &mut Vec<Unreadable>,
) -> Result<Project, Error> {
    let mut tors = Vec::new();
    let mut note = |what, path: &Path, e: &std::io::Error| {
        unreadable.push(Unreadable::new(what, &name, path, e));
    };
    // A torrc that is there but unreadable is noted; an invalid one is an error.
    let mut read_tor = |tor_name: String,
                        conf: PathBuf,
                        note: &mut dyn FnMut(&'static str, &Path, &std::io::Error)|
     -> Result<(), Error> {
        match probe(&conf) {
            Ok(Some(m)) if m.is_file() => match Torrc::read(&conf) {
                Ok(torrc) => tors.push(TorInstance {
                    name: tor_name,
                    torrc,
                    conf,
                }),
                Err(Error::Read { path, source }) => note("tor configuration", &path, &source),
                Err(e) => return Err(e),
            },
            Ok(_) => {}
            Err(e) => note("tor configuration", &conf, &e),
        }
        Ok(())
    };
    // A project directory this user may not enter: say so once, not for
    // each file in it.
    let entries = match std::fs::read_dir(&dir) {
        Ok(_) => sorted_entries(&dir).unwrap_or_default(),
        Err(e) => {
            note("project directory", &dir, &e);
            return Ok(Project {
                softmap: false,
                nginx_conf: None,
                name,
                dir,
                tors,
                logs: Vec::new(),
            });
        }
    };
    read_tor("tor".into(), dir.join("tor.conf"), &mut note)?;
    for sub in entries.iter().filter(|p| p.is_dir()) {
        let worker = sub.file_name().and_then(|n| n.to_str()).unwrap_or("worker");
        let worker = worker.strip_suffix(".d").unwrap_or(worker).to_owned();
        let conf = sub.join("tor.conf");
        match std::fs::read_dir(sub) {
            Ok(_) => read_tor(worker, conf, &mut note)?,
            // A softmap worker (it has a tor.conf Onionspray wrote) that
            // this user may not enter; other 0700 directories (onion
            // service keys, ssl/) are not discovery's business.
            Err(e) if looks_like_worker(sub) => note("softmap worker directory", sub, &e),
            Err(_) => {}
        }
    }
    let log_dir = ["log", "log.d"]
        .iter()
        .map(|d| dir.join(d))
        .find(|d| d.is_dir());
    let logs = match log_dir {
        Some(d) => match files_ending(&d, ".log") {
            Ok(l) => l,
            Err(Error::Read { path, source }) => {
                note("log directory", &path, &source);
                Vec::new()
            }
            Err(e) => return Err(e),
        },
        None => Vec::new(),
    };
    let nginx = dir.join("nginx.conf");
    let nginx_conf = match probe(&nginx) {
        Ok(Some(m)) if m.is_file() => {
            if let Err(e) = std::fs::File::open(&nginx) {
                note("nginx configuration", &nginx, &e);
            }
            Some(nginx)
        }
        Ok(_) => None,
        Err(e) => {
            note("nginx configuration", &nginx, &e);
            None
        }
    };
    Ok(Project {
        softmap: dir.join("softmap.conf").exists(),
        nginx_conf,
        name,
        dir,
        tors,
        logs,
    })
}

/// Whether a directory of a project is a softmap worker (`hs-1`, named by
/// Onionspray's `tor_worker_prefix`, `hs` by default).
fn looks_like_worker(dir: &Path) -> bool {
    dir.file_name()
        .and_then(|n| n.to_str())
        .map(|n| n.strip_suffix(".d").unwrap_or(n))
        .and_then(|n| n.rsplit_once('-'))
        .is_some_and(|(_, i)| i.parse::<u32>().is_ok())
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
