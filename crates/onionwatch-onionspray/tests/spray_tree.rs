//! Discovery of an installation laid out exactly as Onionspray's templates
//! lay it out ([`SprayTree`]: hardmap and softmap, unix sockets only, 0700
//! directories, per-domain and error logs), checked file by file: every
//! path the tree holds is either found by discovery or named here as not
//! discovery's business, with the reason.

use std::path::{Path, PathBuf};

use onionwatch_onionspray::audit::{audit, rules, Severity};
use onionwatch_onionspray::torrc::Listen;
use onionwatch_onionspray::tree::{discover, Installation};
use onionwatch_test_support::onionspray::{EntryKind, SprayProject, SprayTree};
use onionwatch_test_support::process::{lines_from, rerun_as_nobody};

fn projects() -> Vec<SprayProject> {
    vec![
        SprayProject {
            export_circuit_id: true,
            x_onion_circuit_id: true,
            metrics_port: Some(9035),
            status_socket: true,
            ..SprayProject::hardmap("news", &["example.com", "example.net"])
        },
        SprayProject {
            metrics_port: Some(9040),
            ..SprayProject::softmap("shop", &["example.org"], 2)
        },
    ]
}

/// What discovery made of `path`, or why it is not discovery's business;
/// `None` when it was missed.
fn account(inst: &Installation, path: &Path, kind: EntryKind) -> Option<&'static str> {
    let name = path.file_name()?.to_str()?;
    let project = inst
        .projects
        .iter()
        .find(|p| path.starts_with(&p.dir) || path == p.dir);
    if path == inst.root || path == inst.root.join("projects") || path == inst.root.join("log") {
        return Some("the installation's directories");
    }
    if path.parent() == Some(&inst.root.join("log")) {
        return inst
            .logs
            .iter()
            .any(|l| l == path)
            .then_some("installation log");
    }
    if path.parent() == Some(inst.root.as_path()) {
        if name == "onionspray" {
            return Some("the onionspray script");
        }
        return inst
            .configs
            .iter()
            .any(|c| c.file == path)
            .then_some("project configuration");
    }
    let p = project?;
    if path == p.dir {
        return Some("project directory");
    }
    let tors = || p.tors.iter();
    match (name, kind) {
        ("tor.conf", _) => tors()
            .any(|t| t.conf == path)
            .then_some("tor configuration"),
        ("tor-control.sock", EntryKind::Socket) => tors()
            .any(|t| t.control_port() == Some(Listen::Unix(path.to_owned())))
            .then_some("control socket"),
        ("nginx-status.sock", EntryKind::Socket) => {
            (p.stub_status()?.unix.as_deref() == Some(path)).then_some("stub_status socket")
        }
        (n, EntryKind::Socket) if n.starts_with("port-") => {
            // An onion service's socket: tor's HiddenServicePort target,
            // never scraped (Tor users reach it).
            let target = format!("unix:{}", path.display());
            let served = tors()
                .flat_map(|t| t.torrc.onion_services())
                .any(|hs| hs.ports().iter().any(|(_, t)| *t == target));
            (served && p.stub_status().and_then(|s| s.unix).as_deref() != Some(path))
                .then_some("onion service socket")
        }
        ("nginx.conf", _) => {
            (p.nginx_conf.as_deref() == Some(path)).then_some("nginx configuration")
        }
        ("nginx-error.log", _) => {
            (p.error_log() == path && p.logs.iter().any(|l| l == path)).then_some("nginx error log")
        }
        (n, EntryKind::File) if n.starts_with("nginx-access") && n.ends_with(".log") => {
            let glob = p.access_logs();
            (path.parent() == glob.parent() && p.logs.iter().any(|l| l == path))
                .then_some("access log (nginx-access*.log)")
        }
        ("tor.log", _) => p.tor_logs().iter().any(|l| l == path).then_some("tor log"),
        (n, EntryKind::File) if n.starts_with("nginx-rdr443-") => p
            .logs
            .iter()
            .any(|l| l == path)
            .then_some("listed; the port-80 redirect's log is not followed (only 301s)"),
        ("tor-startup.log", _) => p.logs.iter().any(|l| l == path).then_some("listed"),
        ("log" | "ssl", EntryKind::Dir) => Some("project subdirectory"),
        ("softmap.conf", _) => p.softmap.then_some("softmap marker"),
        (n, EntryKind::Dir) if n.starts_with("hs-") => tors()
            .any(|t| t.conf.parent() == Some(path))
            .then_some("softmap worker"),
        (n, EntryKind::Dir) if n.ends_with("-v3") => Some("onion service keys: not read"),
        ("hostname" | "hs_ed25519_public_key" | "hs_ed25519_secret_key", _) => {
            Some("onion service keys: not read")
        }
        (n, _) if n.ends_with(".pid") => Some("pid file: not read"),
        (n, _) if n.ends_with(".cert") || n.ends_with(".pem") => Some("TLS keys: not read"),
        ("start.sh", _) => Some("script: not read"),
        _ => None,
    }
}

#[test]
fn a_tree_laid_out_as_onionspray_writes_it_is_discovered_file_by_file() {
    let dir = tempfile::tempdir().unwrap();
    let tree = SprayTree::build(&dir.path().join("onionspray"), &projects());
    let inst = discover(&tree.root).unwrap();
    assert!(inst.unreadable.is_empty(), "{:?}", inst.unreadable);
    let missed: Vec<&PathBuf> = tree
        .entries
        .iter()
        .filter(|(p, k, _)| account(&inst, p, *k).is_none())
        .map(|(p, _, _)| p)
        .collect();
    assert!(missed.is_empty(), "discovery missed {missed:#?}");

    // The shape: projects, tors, softmap workers, 0700 directories.
    let names: Vec<(&str, bool, Vec<&str>)> = inst
        .projects
        .iter()
        .map(|p| {
            (
                p.name.as_str(),
                p.softmap,
                p.tors.iter().map(|t| t.name.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("news", false, vec!["tor"]),
            ("shop", true, vec!["hs-1", "hs-2"])
        ]
    );
    let news = &inst.projects[0];
    assert_eq!(onionwatch_test_support::mode(&news.dir), 0o700);
    let status = news.stub_status().expect("the status socket is discovered");
    assert_eq!(status.unix, Some(news.dir.join("nginx-status.sock")));
    assert_eq!(status.path, "/nginx_status");
    // shop's nginx listens on onion service sockets only: nothing to scrape.
    assert_eq!(inst.projects[1].stub_status(), None);
    // Each domain's access log and the project's own.
    let access: Vec<&str> = news
        .logs
        .iter()
        .filter_map(|l| l.file_name()?.to_str())
        .filter(|n| n.starts_with("nginx-access"))
        .collect();
    assert_eq!(
        access,
        [
            "nginx-access-example.com.log",
            "nginx-access-example.net.log",
            "nginx-access.log"
        ]
    );
    assert_eq!(inst.logs, [tree.root.join("log/onionspray.log")]);
    assert_eq!(
        tree.paths(EntryKind::Socket).len(),
        // news: control, status, 2 services × 2; shop: 2 workers × (control + 2)
        1 + 1 + 4 + 2 * 3
    );
}

/// Where the permission tests tell [`discovery_as_another_user`] which
/// tree to read.
const CHILD_ROOT: &str = "ONIONWATCH_TEST_SPRAY_ROOT";

/// Run by the permission tests as another user (this test binary again,
/// under `setpriv`): discovers the tree named by [`CHILD_ROOT`] and prints
/// what it found, one line each. Without it, there is nothing to do.
#[test]
#[ignore = "run as another user by the permission tests"]
fn discovery_as_another_user() {
    let Ok(root) = std::env::var(CHILD_ROOT) else {
        return;
    };
    match discover(Path::new(&root)) {
        Ok(inst) => {
            for p in &inst.projects {
                println!(
                    "PROJECT {} tors={} nginx={} logs={}",
                    p.name,
                    p.tors.len(),
                    p.nginx_conf.is_some(),
                    p.logs.len()
                );
            }
            for u in &inst.unreadable {
                println!("UNREADABLE {u}");
            }
            for p in &inst.projects {
                let (found, failed) = p.onion_services();
                for o in found {
                    println!("ONION {} {} {}", o.project, o.tor, o.address);
                }
                for u in failed {
                    println!("NOHOST {u}");
                }
            }
        }
        Err(e) => println!("ERROR {e}"),
    }
    let report = audit(&[PathBuf::from(&root)]).unwrap();
    for f in report
        .findings
        .iter()
        .filter(|f| f.rule == rules::UNREADABLE)
    {
        println!("AUDIT {} {} fix: {}", f.rule, f.location, f.fix);
    }
}

/// Owner and group of the tree (ids without names, as on a fresh CI
/// machine: nothing to create or clean up).
const SPRAY_UID: u32 = 47110;
const SPRAY_GID: u32 = 47120;

/// Discovery of `root` as `nobody`, with `group` as its one supplementary
/// group: the lines [`discovery_as_another_user`] printed (`None`: skipped).
fn as_nobody(dir: &Path, root: &Path, group: Option<u32>) -> Option<String> {
    rerun_as_nobody(
        dir,
        "discovery_as_another_user",
        group,
        &[(CHILD_ROOT, root.as_os_str())],
    )
}

fn lines(out: &str, prefix: &str) -> Vec<String> {
    lines_from(out, prefix)
}

#[test]
fn a_0700_tree_of_another_user_is_reported_with_owner_mode_and_fix() {
    let dir = tempfile::tempdir().unwrap();
    onionwatch_test_support::fs::chmod(dir.path(), 0o755);
    let tree = SprayTree::build(&dir.path().join("onionspray"), &projects());
    tree.chown(SPRAY_UID, SPRAY_GID);
    let Some(out) = as_nobody(dir.path(), &tree.root, Some(SPRAY_GID)) else {
        return;
    };
    // Both projects are listed, with nothing read, and each says why.
    assert_eq!(
        lines(&out, "PROJECT"),
        [
            "PROJECT news tors=0 nginx=false logs=0",
            "PROJECT shop tors=0 nginx=false logs=0"
        ],
        "{out}"
    );
    let unreadable = lines(&out, "UNREADABLE");
    assert_eq!(unreadable.len(), 2, "{out}");
    // audit says the same, as findings.
    let audit_lines = lines(&out, "AUDIT");
    assert_eq!(audit_lines.len(), 2, "{out}");
    assert!(
        audit_lines[0].starts_with(&format!(
            "AUDIT unreadable {} fix: run onionwatch as user {SPRAY_UID}",
            tree.root.join("projects/news").display()
        )),
        "{out}"
    );
    for (u, p) in unreadable.iter().zip(["news", "shop"]) {
        let path = tree.root.join("projects").join(p);
        for want in [
            format!("cannot read the project directory {}", path.display()),
            format!(
                "{} is owned by {SPRAY_UID}:{SPRAY_GID} with mode 0700",
                path.display()
            ),
            "onionwatch runs as nobody".to_owned(),
            format!("run onionwatch as user {SPRAY_UID} (User={SPRAY_UID} in its systemd unit)"),
            "DataDirectoryGroupReadable 1".to_owned(),
        ] {
            assert!(u.contains(&want), "{want:?} missing from {u}");
        }
    }
}

#[test]
fn a_group_readable_tree_is_discovered_by_a_member_of_the_group_only() {
    let dir = tempfile::tempdir().unwrap();
    onionwatch_test_support::fs::chmod(dir.path(), 0o755);
    let tree = SprayTree::build(&dir.path().join("onionspray"), &projects());
    tree.chown(SPRAY_UID, SPRAY_GID);
    // The README's group setup: directories 0750, files 0640.
    tree.loosen(0o750, 0o640);
    let Some(member) = as_nobody(dir.path(), &tree.root, Some(SPRAY_GID)) else {
        return;
    };
    // The same as root reads.
    let inst = discover(&tree.root).unwrap();
    let want: Vec<String> = inst
        .projects
        .iter()
        .map(|p| {
            format!(
                "PROJECT {} tors={} nginx={} logs={}",
                p.name,
                p.tors.len(),
                p.nginx_conf.is_some(),
                p.logs.len()
            )
        })
        .collect();
    assert_eq!(want[0], "PROJECT news tors=1 nginx=true logs=8");
    assert_eq!(lines(&member, "PROJECT"), want, "{member}");
    assert!(lines(&member, "UNREADABLE").is_empty(), "{member}");

    let stranger = as_nobody(dir.path(), &tree.root, None).unwrap();
    let unreadable = lines(&stranger, "UNREADABLE");
    assert_eq!(unreadable.len(), 2, "{stranger}");
    assert!(
        unreadable[0].contains(&format!(
            "add onionwatch's user to group {SPRAY_GID} (`usermod -aG {SPRAY_GID} <user>`, or SupplementaryGroups={SPRAY_GID} in its systemd unit)"
        )),
        "{stranger}"
    );
}

#[test]
fn audit_of_a_tree_checks_circuit_ids_policies_applied_configurations_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let mut news = projects().remove(0);
    news.x_onion_circuit_id = false; // export without the header
    let shop = SprayProject {
        x_onion_circuit_id: true, // header without export
        metrics_port: Some(9040),
        metrics_policy: "accept 127.0.0.1,accept 10.0.0.0/8".into(),
        ..SprayProject::softmap("shop", &["example.org"], 2)
    };
    let tree = SprayTree::build(&dir.path().join("onionspray"), &[news, shop]);
    // The same pairing read in a template; and shop.conf edited after
    // `onionspray config` generated the project.
    std::fs::write(
        tree.root.join("blog.tconf"),
        "set project blog\nset nginx_x_onion_circuit_id 1\nhardmap %NEW_V3_ONION% example.com\n",
    )
    .unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    std::fs::File::options()
        .append(true)
        .open(tree.root.join("shop.conf"))
        .unwrap()
        .set_modified(later)
        .unwrap();

    let r = audit(std::slice::from_ref(&tree.root)).unwrap();
    let mut got: Vec<(&str, &str, &str, Severity)> = r
        .findings
        .iter()
        .map(|f| (f.rule, f.project.as_str(), f.instance.as_str(), f.severity))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            (
                rules::CONFIGURATION_NOT_APPLIED,
                "shop",
                "config",
                Severity::Warning
            ),
            (
                rules::EXPORT_WITHOUT_CIRCUIT_HEADER,
                "news",
                "config",
                Severity::Warning
            ),
            (
                rules::METRICS_POLICY_WIDE,
                "shop",
                "config",
                Severity::Warning
            ),
            (
                rules::METRICS_POLICY_WIDE,
                "shop",
                "hs-1",
                Severity::Warning
            ),
            (
                rules::METRICS_POLICY_WIDE,
                "shop",
                "hs-2",
                Severity::Warning
            ),
            (
                rules::CIRCUIT_HEADER_WITHOUT_EXPORT,
                "blog",
                "config",
                Severity::Warning
            ),
            (
                rules::CIRCUIT_HEADER_WITHOUT_EXPORT,
                "shop",
                "config",
                Severity::Warning
            ),
        ],
        "{}",
        r.to_text()
    );
    let stale = r
        .findings
        .iter()
        .find(|f| f.rule == rules::CONFIGURATION_NOT_APPLIED)
        .unwrap();
    assert!(
        stale.fix.contains("./onionspray config shop.conf"),
        "{stale:?}"
    );
    assert!(stale.location.contains("shop.conf:"), "{stale:?}");
    // shop's nginx has no status location: a note with the lines to add;
    // news has one (discovered over its unix socket).
    assert_eq!(r.notes.len(), 1, "{}", r.to_text());
    let note = &r.notes[0];
    assert_eq!(
        (note.rule, note.project.as_str()),
        (rules::NGINX_NO_STATUS, "shop")
    );
    let shop_dir = tree.root.join("projects/shop");
    assert!(
        note.fix.contains(&format!(
            "`server {{ listen unix:{}/nginx-status.sock; location = /nginx_status {{ stub_status; }} }}`",
            shop_dir.display()
        )),
        "{note:?}"
    );
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn every_onion_service_of_hardmap_and_softmap_projects_is_found_with_its_ports() {
    let dir = tempfile::tempdir().unwrap();
    let tree = SprayTree::build(&dir.path().join("onionspray"), &projects());
    let inst = discover(&tree.root).unwrap();
    let mut found = Vec::new();
    for p in &inst.projects {
        let (services, failed) = p.onion_services();
        assert!(failed.is_empty(), "{failed:?}");
        found.extend(services);
    }
    // Every hostname file the tree holds, and nothing else.
    let mut hostnames: Vec<&Path> = tree
        .paths(EntryKind::File)
        .into_iter()
        .filter(|p| p.ends_with("hostname"))
        .collect();
    hostnames.sort();
    let mut read: Vec<PathBuf> = found.iter().map(|o| o.dir.join("hostname")).collect();
    read.sort();
    assert_eq!(read, hostnames);
    let summary: Vec<(String, String, String, Vec<u16>)> = found
        .iter()
        .map(|o| {
            (
                o.project.clone(),
                o.tor.clone(),
                o.address.clone(),
                o.ports.clone(),
            )
        })
        .collect();
    let onion = |p: &str, i| {
        format!(
            "{}.onion",
            onionwatch_test_support::onionspray::onion_of(p, i)
        )
    };
    assert_eq!(
        summary,
        [
            ("news".into(), "tor".into(), onion("news", 0), vec![80, 443]),
            ("news".into(), "tor".into(), onion("news", 1), vec![80, 443]),
            (
                "shop".into(),
                "hs-1".into(),
                onion("shopw", 1),
                vec![80, 443]
            ),
            (
                "shop".into(),
                "hs-2".into(),
                onion("shopw", 2),
                vec![80, 443]
            ),
        ]
    );
}

#[test]
fn a_missing_or_garbled_hostname_file_is_reported_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let tree = SprayTree::build(
        &dir.path().join("onionspray"),
        &[SprayProject::softmap("shop", &["example.org"], 2)],
    );
    let inst = discover(&tree.root).unwrap();
    let (found, _) = inst.projects[0].onion_services();
    std::fs::remove_file(found[0].dir.join("hostname")).unwrap();
    std::fs::write(found[1].dir.join("hostname"), "not an address\n").unwrap();
    let (none, failed) = inst.projects[0].onion_services();
    assert!(none.is_empty(), "{none:?}");
    let texts: Vec<String> = failed.iter().map(|u| u.to_string()).collect();
    assert_eq!(texts.len(), 2, "{texts:?}");
    let missing = found[0].dir.join("hostname");
    assert!(
        texts[0].starts_with(&format!(
            "cannot read the onion service hostname file {}",
            missing.display()
        )) && texts[0].contains("onionspray start shop"),
        "{}",
        texts[0]
    );
    assert!(
        texts[1].contains("does not hold a v3 onion address")
            && texts[1].contains("\"not an address\"")
            && texts[1].contains("tor.conf:"),
        "{}",
        texts[1]
    );
}

#[test]
fn a_0700_onion_service_directory_in_a_readable_project_is_reported_hostname_by_name() {
    let dir = tempfile::tempdir().unwrap();
    onionwatch_test_support::fs::chmod(dir.path(), 0o755);
    let tree = SprayTree::build(&dir.path().join("onionspray"), &projects());
    let inst = discover(&tree.root).unwrap();
    // The hardmap project's: a softmap worker's directory is its onion
    // service directory, so a 0700 one hides its tor.conf too (reported as
    // such by discovery).
    let hs_dirs: Vec<PathBuf> = inst.projects[0]
        .onion_services()
        .0
        .into_iter()
        .map(|o| o.dir)
        .collect();
    assert_eq!(hs_dirs.len(), 2);
    tree.chown(SPRAY_UID, SPRAY_GID);
    // The group setup, but tor's onion service directories kept at 0700
    // (tor's default, without HiddenServiceDirGroupReadable).
    tree.loosen(0o750, 0o640);
    for d in &hs_dirs {
        onionwatch_test_support::fs::chmod(d, 0o700);
    }
    let Some(out) = as_nobody(dir.path(), &tree.root, Some(SPRAY_GID)) else {
        return;
    };
    // The softmap workers' onion services are read, the hardmap ones are
    // each reported.
    assert_eq!(lines(&out, "ONION ").len(), 2, "{out}");
    assert!(lines(&out, "ONION news").is_empty(), "{out}");
    let failed = lines(&out, "NOHOST");
    assert_eq!(failed.len(), 2, "{out}");
    for (line, d) in failed.iter().zip(&hs_dirs) {
        for want in [
            format!(
                "cannot read the onion service hostname file {}",
                d.join("hostname").display()
            ),
            format!(
                "{} is owned by {SPRAY_UID}:{SPRAY_GID} with mode 0700",
                d.display()
            ),
            "HiddenServiceDirGroupReadable 1".to_owned(),
        ] {
            assert!(line.contains(&want), "{want:?} missing from {line}");
        }
    }
}
