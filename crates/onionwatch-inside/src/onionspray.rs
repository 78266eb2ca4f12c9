//! Onionspray (and EOTK) installations: project configuration files
//! (`set tor_metrics_port …`) and the generated tree
//! (`projects/<name>/tor.conf`, softmap workers `projects/<name>/<worker>/tor.conf`,
//! `nginx.conf`, `log/`), as laid out by Onionspray's templates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::torrc::{Listen, Torrc};
use crate::Error;

/// One project of a configuration file (`set project NAME` … mappings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SprayProject {
    /// The project name.
    pub name: String,
    /// The file it is configured in.
    pub file: PathBuf,
    /// Line of its `set project` (or of its first mapping).
    pub line: usize,
    /// Settings in effect for it: name → (value, line). Settings carry over
    /// from earlier projects of the file, as Onionspray reads them in order.
    pub settings: BTreeMap<String, (String, usize)>,
}

impl SprayProject {
    /// A setting's value and line.
    pub fn setting(&self, name: &str) -> Option<(&str, usize)> {
        self.settings.get(name).map(|(v, l)| (v.as_str(), *l))
    }
}

/// Whether `text` looks like an Onionspray/EOTK configuration rather than a torrc.
pub fn looks_like_config(text: &str) -> bool {
    text.lines().map(str::trim).any(|l| {
        l.starts_with("set ")
            || l.starts_with("hardmap ")
            || l.starts_with("softmap ")
            || l.starts_with("foreignmap ")
    })
}

/// Parse an Onionspray project configuration (`.conf` or `.tconf`).
///
/// `set project NAME` starts a project; a file with mappings but no
/// `set project` configures the project `default`, as Onionspray does.
pub fn parse_config(text: &str, file: &Path) -> Vec<SprayProject> {
    let mut settings: BTreeMap<String, (String, usize)> = BTreeMap::new();
    let mut projects: Vec<SprayProject> = Vec::new();
    let mut current: Option<usize> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.split('#').next().unwrap_or("").trim();
        let mut words = l.splitn(3, char::is_whitespace);
        match words.next() {
            Some("set") => {
                let (Some(key), value) = (words.next(), words.next().unwrap_or("").trim()) else {
                    continue;
                };
                if key == "project" {
                    projects.push(SprayProject {
                        name: value.to_owned(),
                        file: file.to_owned(),
                        line,
                        settings: settings.clone(),
                    });
                    current = Some(projects.len() - 1);
                } else {
                    settings.insert(key.to_owned(), (value.to_owned(), line));
                    if let Some(c) = current {
                        projects[c]
                            .settings
                            .insert(key.to_owned(), (value.to_owned(), line));
                    }
                }
            }
            Some("hardmap" | "softmap" | "foreignmap") if current.is_none() => {
                projects.push(SprayProject {
                    name: "default".into(),
                    file: file.to_owned(),
                    line,
                    settings: settings.clone(),
                });
                current = Some(projects.len() - 1);
            }
            _ => {}
        }
    }
    // Settings after the last project's mappings still apply to it.
    if let Some(c) = current {
        for (k, v) in &settings {
            projects[c].settings.entry(k.clone()).or_insert(v.clone());
        }
    }
    projects
}

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

/// `listen` directives of an nginx configuration: (line, the words after
/// `listen`). Comments are skipped; `include` is not followed.
pub fn nginx_listens(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let l = raw.split('#').next().unwrap_or("");
        for stmt in l.split([';', '{', '}']) {
            let mut words = stmt.split_whitespace();
            if words.next() == Some("listen") {
                out.push((i + 1, words.map(str::to_owned).collect()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_settings_follow_file_order() {
        let text = "set tor_metrics_port_policy accept 127.0.0.1\n\
                    set project news\n\
                    set tor_metrics_port 127.0.0.1:9035\n\
                    hardmap %NEW_V3_ONION% example.com\n\
                    set project shop # second\n\
                    set tor_metrics_port 127.0.0.1:9036\n\
                    softmap %NEW_V3_ONION% example.org\n";
        let p = parse_config(text, Path::new("x.conf"));
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "news");
        assert_eq!(
            p[0].setting("tor_metrics_port"),
            Some(("127.0.0.1:9035", 3))
        );
        assert_eq!(
            p[0].setting("tor_metrics_port_policy"),
            Some(("accept 127.0.0.1", 1))
        );
        assert_eq!(p[1].name, "shop");
        assert_eq!(
            p[1].setting("tor_metrics_port"),
            Some(("127.0.0.1:9036", 6))
        );
        let d = parse_config("hardmap abc example.com\n", Path::new("y.conf"));
        assert_eq!(d[0].name, "default");
        assert!(looks_like_config(text));
        assert!(!looks_like_config("MetricsPort 9035\n"));
    }

    #[test]
    fn nginx_listen_directives() {
        let text = "server {\n  listen unix:/p/port-80.sock proxy_protocol; # x\n  listen 127.0.0.1:8080;\n  # listen 1.2.3.4:1;\n}\n";
        let l = nginx_listens(text);
        assert_eq!(l.len(), 2);
        assert_eq!(
            l[0],
            (
                2,
                vec![
                    "unix:/p/port-80.sock".to_owned(),
                    "proxy_protocol".to_owned()
                ]
            )
        );
    }
}
