//! An Onionspray installation written as Onionspray's templates write it
//! (see `research/tor-inside.md` §3.3–3.4): `projects/<name>/` at mode
//! 0700 with its `tor.conf` (`ControlPort unix:…/tor-control.sock`,
//! `HiddenServicePort 80 unix:<hs dir>/port-80.sock`), onion-service
//! directories (0700, `hostname`, keys, real unix sockets), `nginx.conf`
//! listening on those sockets only, `log/` (0700) with `nginx-access.log`,
//! per-domain `nginx-access-<domain>.log` (`log_separate 1`),
//! `nginx-error.log` and `tor.log`; softmap projects with `softmap.conf`
//! and workers `hs-<i>/` each with its own tor; the project configuration
//! `<name>.conf` in the installation directory and the installation's
//! `log/`. Every path written is listed in [`SprayTree::entries`], so a
//! test can check discovery file by file.
//!
//! ```
//! use onionwatch_test_support::onionspray::{SprayProject, SprayTree};
//! let dir = std::env::temp_dir().join(format!("spray-doc-{}", std::process::id()));
//! let tree = SprayTree::build(&dir, &[SprayProject::hardmap("news", &["example.com"])]);
//! assert!(tree.root.join("projects/news/tor.conf").is_file());
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// One project to write.
#[derive(Debug, Clone)]
pub struct SprayProject {
    /// Its name.
    pub name: String,
    /// Its domains, one onion service each (hardmap) or each served by
    /// every worker (softmap).
    pub domains: Vec<String>,
    /// Softmap tor workers (`hs-1` …); 0 for a hardmap project.
    pub workers: usize,
    /// `set tor_export_circuit_id haproxy` (listens get `proxy_protocol`).
    pub export_circuit_id: bool,
    /// `set nginx_x_onion_circuit_id 1`.
    pub x_onion_circuit_id: bool,
    /// `set tor_metrics_port 127.0.0.1:<port>` (a softmap worker `i` gets
    /// `port + i`).
    pub metrics_port: Option<u16>,
    /// `set tor_metrics_port_policy` (and `MetricsPortPolicy`) with a
    /// metrics port. Default `accept 127.0.0.1`.
    pub metrics_policy: String,
    /// Add the status server `onionwatch audit` suggests
    /// (`listen unix:<project>/nginx-status.sock`, `/nginx_status`).
    pub status_socket: bool,
    /// The addresses (56 characters, without `.onion`) written to the
    /// `hostname` files instead of [`onion_of`]'s, in order: one per domain
    /// (hardmap), one per worker (softmap); e.g. a private Tor network's
    /// real onion services, to probe what discovery finds.
    pub onions: Vec<String>,
}

impl SprayProject {
    /// A hardmap project.
    pub fn hardmap(name: &str, domains: &[&str]) -> Self {
        SprayProject {
            name: name.into(),
            domains: domains.iter().map(|d| d.to_string()).collect(),
            workers: 0,
            export_circuit_id: false,
            x_onion_circuit_id: false,
            metrics_port: None,
            metrics_policy: "accept 127.0.0.1".into(),
            status_socket: false,
            onions: Vec::new(),
        }
    }

    /// A softmap project with `workers` tors.
    pub fn softmap(name: &str, domains: &[&str], workers: usize) -> Self {
        SprayProject {
            workers,
            ..SprayProject::hardmap(name, domains)
        }
    }
}

/// What a path written is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A unix socket (bound once, then left as Onionspray's running
    /// processes leave them).
    Socket,
}

/// A written installation.
#[derive(Debug, Clone)]
pub struct SprayTree {
    /// The installation directory.
    pub root: PathBuf,
    /// Every path written (absolute), in order, with its kind and mode.
    pub entries: Vec<(PathBuf, EntryKind, u32)>,
}

/// A deterministic 56-character v3-looking onion address (discovery does
/// not check it).
pub fn onion_of(project: &str, i: usize) -> String {
    let seed: String = format!("{project}{i}")
        .chars()
        .filter(|c| c.is_ascii_lowercase() || ('2'..='7').contains(c))
        .collect();
    let mut s = seed;
    while s.len() < 56 {
        s.push(['a', 'b', 'c', 'd', '2', '3', '4', '5'][s.len() % 8]);
    }
    s.truncate(56);
    s
}

impl SprayTree {
    /// Write `projects` into `root` (created).
    pub fn build(root: &Path, projects: &[SprayProject]) -> SprayTree {
        let mut t = SprayTree {
            root: root.to_owned(),
            entries: Vec::new(),
        };
        t.dir(root, 0o755);
        t.file(&root.join("onionspray"), "#!/bin/sh\n# Onionspray\n", 0o755);
        t.dir(&root.join("projects"), 0o755);
        t.dir(&root.join("log"), 0o755);
        t.file(
            &root.join("log/onionspray.log"),
            "onionspray started\n",
            0o644,
        );
        for p in projects {
            t.project(p);
        }
        t
    }

    /// The paths written of one kind.
    pub fn paths(&self, kind: EntryKind) -> Vec<&Path> {
        self.entries
            .iter()
            .filter(|(_, k, _)| *k == kind)
            .map(|(p, _, _)| p.as_path())
            .collect()
    }

    /// Set owner and group of every path written (numeric ids need not
    /// exist), for tests that read the tree as another user.
    pub fn chown(&self, uid: u32, gid: u32) {
        for (p, _, _) in &self.entries {
            std::os::unix::fs::lchown(p, Some(uid), Some(gid)).unwrap();
        }
    }

    /// Change every mode written: `dir` for directories that were 0700,
    /// `file` for files that were 0600 (the group setup of the README).
    pub fn loosen(&self, dir: u32, file: u32) {
        for (p, k, mode) in &self.entries {
            let new = match (k, mode) {
                (EntryKind::Dir, 0o700) => dir,
                (EntryKind::File, 0o600) => file,
                _ => continue,
            };
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(new)).unwrap();
        }
    }

    fn dir(&mut self, p: &Path, mode: u32) {
        std::fs::create_dir_all(p).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        self.entries.push((p.to_owned(), EntryKind::Dir, mode));
    }

    fn file(&mut self, p: &Path, text: &str, mode: u32) {
        std::fs::write(p, text).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        self.entries.push((p.to_owned(), EntryKind::File, mode));
    }

    fn socket(&mut self, p: &Path) {
        let _ = std::fs::remove_file(p);
        drop(std::os::unix::net::UnixListener::bind(p).unwrap());
        let mode = crate::fs::mode(p);
        self.entries.push((p.to_owned(), EntryKind::Socket, mode));
    }

    fn project(&mut self, p: &SprayProject) {
        let root = self.root.clone();
        let pd = root.join("projects").join(&p.name);
        let pds = pd.display().to_string();
        let log = pd.join("log");
        self.dir(&pd, 0o700);
        self.dir(&log, 0o700);
        self.dir(&pd.join("ssl"), 0o700);

        // The project configuration, as `onionspray config` leaves it.
        let mut conf = format!("set project {}\nset log_separate 1\n", p.name);
        if p.export_circuit_id {
            conf.push_str("set tor_export_circuit_id haproxy\n");
        }
        if p.x_onion_circuit_id {
            conf.push_str("set nginx_x_onion_circuit_id 1\n");
        }
        if let Some(port) = p.metrics_port {
            conf.push_str(&format!(
                "set tor_metrics_port 127.0.0.1:{port}\nset tor_metrics_port_policy {}\n",
                p.metrics_policy
            ));
        }

        // (hs dir, onion) per onion service nginx serves.
        let mut services: Vec<(PathBuf, String, String)> = Vec::new();
        let tor_common = |data: &str, control: &str, pid: &str, logf: &str| {
            format!(
                "# -*- conf -*-\n# eotk (c) 2017-2021 Alec Muffett\n\nDataDirectory {data}\nControlPort unix:{control}\nPidFile {pid}\nLog notice file {logf}\nSafeLogging 1\nHeartbeatPeriod 60 minutes\nLongLivedPorts 80,443\nRunAsDaemon 1\nSocksPort 0\n"
            )
        };
        if p.workers == 0 {
            let mut torrc = tor_common(
                &pds,
                &format!("{pds}/tor-control.sock"),
                &format!("{pds}/tor.pid"),
                &format!("{pds}/log/tor.log"),
            );
            if let Some(port) = p.metrics_port {
                torrc.push_str(&format!(
                    "MetricsPort 127.0.0.1:{port}\nMetricsPortPolicy {}\n",
                    p.metrics_policy
                ));
            }
            for (i, domain) in p.domains.iter().enumerate() {
                let onion = p
                    .onions
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| onion_of(&p.name, i));
                conf.push_str(&format!("hardmap {onion} {domain}\n"));
                let hs = pd.join(format!("{}-v3", &onion[..20]));
                torrc.push_str(&self.onion_service(&hs, &onion, p.export_circuit_id));
                services.push((hs, onion, domain.clone()));
            }
            self.file(&pd.join("tor.conf"), &torrc, 0o600);
            self.socket(&pd.join("tor-control.sock"));
            self.file(&pd.join("tor.pid"), "4242\n", 0o644);
            self.file(
                &log.join("tor.log"),
                "Dec 01 00:00:00.000 [notice] Tor 0.4.9 opening log file.\n",
                0o600,
            );
        } else {
            self.file(&pd.join("softmap.conf"), "", 0o600);
            for w in 1..=p.workers {
                let wd = pd.join(format!("hs-{w}"));
                let wds = wd.display().to_string();
                self.dir(&wd, 0o700);
                let mut torrc = tor_common(
                    &wds,
                    &format!("{wds}/tor-control.sock"),
                    &format!("{wds}/tor.pid"),
                    &format!("{wds}/tor.log"),
                );
                if let Some(port) = p.metrics_port {
                    torrc.push_str(&format!(
                        "MetricsPort 127.0.0.1:{}\nMetricsPortPolicy {}\n",
                        port + w as u16,
                        p.metrics_policy
                    ));
                }
                let onion = p
                    .onions
                    .get(w - 1)
                    .cloned()
                    .unwrap_or_else(|| onion_of(&format!("{}w", p.name), w));
                torrc.push_str(&self.onion_service(&wd, &onion, p.export_circuit_id));
                self.file(&wd.join("tor.conf"), &torrc, 0o600);
                self.socket(&wd.join("tor-control.sock"));
                self.file(&wd.join("tor.pid"), "4243\n", 0o644);
                self.file(
                    &wd.join("tor.log"),
                    "Dec 01 00:00:00.000 [notice] Tor 0.4.9 opening log file.\n",
                    0o600,
                );
                services.push((wd, onion, String::new()));
            }
            for (i, domain) in p.domains.iter().enumerate() {
                conf.push_str(&format!("softmap {} {domain}\n", onion_of(&p.name, i)));
            }
        }
        self.file(&root.join(format!("{}.conf", p.name)), &conf, 0o644);
        self.file(&log.join("tor-startup.log"), "", 0o644);

        // nginx.conf: unix sockets only, as the templates write it.
        let proxy = if p.export_circuit_id {
            " proxy_protocol"
        } else {
            ""
        };
        let mut nginx = format!(
            "# -*- conf -*-\npid {pds}/nginx.pid;\nerror_log {pds}/log/nginx-error.log error;\nworker_processes auto;\nevents {{ worker_connections 1024; }}\nhttp {{\n  allow \"unix:\";\n  deny all;\n  access_log {pds}/log/nginx-access.log;\n  client_body_temp_path /tmp/nginx-body-{n};\n  proxy_temp_path /tmp/nginx-proxy-{n};\n",
            n = p.name
        );
        for domain in &p.domains {
            let listen = |port: u16, ssl: &str| {
                services
                    .iter()
                    .map(|(hs, _, _)| {
                        format!(
                            "    listen unix:{}/port-{port}.sock{ssl}{proxy};\n",
                            hs.display()
                        )
                    })
                    .collect::<String>()
            };
            let onion_names: Vec<String> = services
                .iter()
                .map(|(_, o, _)| format!("{o}.onion"))
                .collect();
            nginx.push_str(&format!(
                "  server {{\n{}    server_name {names};\n    access_log {pds}/log/nginx-rdr443-{domain}.log;\n    return 301 https://$host$request_uri;\n  }}\n",
                listen(80, ""),
                names = onion_names.join(" "),
            ));
            nginx.push_str(&format!(
                "  server {{\n{}    server_name {names};\n    access_log {pds}/log/nginx-access-{domain}.log;\n    location ~ \"^/hello[-_]onion/?$\" {{ return 200 \"Hello, Onion User!\"; }}\n    location / {{ proxy_pass https://{domain}; }}\n  }}\n",
                listen(443, " ssl"),
                names = onion_names.join(" "),
            ));
            self.file(&log.join(format!("nginx-access-{domain}.log")), "", 0o644);
            self.file(&log.join(format!("nginx-rdr443-{domain}.log")), "", 0o644);
        }
        if p.status_socket {
            nginx.push_str(&format!(
                "  server {{ listen unix:{pds}/nginx-status.sock; location = /nginx_status {{ stub_status; }} }}\n"
            ));
            self.socket(&pd.join("nginx-status.sock"));
        }
        nginx.push_str("}\n");
        self.file(&pd.join("nginx.conf"), &nginx, 0o644);
        self.file(&pd.join("nginx.pid"), "4244\n", 0o644);
        self.file(&log.join("nginx-access.log"), "", 0o644);
        self.file(
            &log.join("nginx-error.log"),
            "2026/12/01 00:00:00 [error] 12#12: *1 connect() failed (111: Connection refused) while connecting to upstream\n",
            0o644,
        );
        for (hs, onion, _) in &services {
            self.socket(&hs.join("port-80.sock"));
            self.socket(&hs.join("port-443.sock"));
            if p.workers == 0 {
                self.file(
                    &pd.join("ssl").join(format!("{}-v3.cert", &onion[..20])),
                    "",
                    0o640,
                );
                self.file(
                    &pd.join("ssl").join(format!("{}-v3.pem", &onion[..20])),
                    "",
                    0o600,
                );
            }
        }
        self.file(&pd.join("start.sh"), "#!/bin/sh\n", 0o700);
    }

    /// An onion service directory and its torrc lines.
    fn onion_service(&mut self, hs: &Path, onion: &str, export: bool) -> String {
        if !hs.is_dir() {
            self.dir(hs, 0o700);
        }
        self.file(&hs.join("hostname"), &format!("{onion}.onion\n"), 0o600);
        self.file(&hs.join("hs_ed25519_public_key"), "", 0o600);
        self.file(&hs.join("hs_ed25519_secret_key"), "", 0o600);
        let h = hs.display();
        let mut s = format!(
            "\nHiddenServiceDir {h}\nHiddenServicePort 80 unix:{h}/port-80.sock\nHiddenServicePort 443 unix:{h}/port-443.sock\nHiddenServiceVersion 3\n"
        );
        if export {
            s.push_str("HiddenServiceExportCircuitID haproxy\n");
        }
        s
    }
}
