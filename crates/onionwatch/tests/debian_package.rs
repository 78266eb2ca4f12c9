//! The systemd units pass `systemd-analyze verify` and rate 2.0 or lower in
//! `systemd-analyze security`, and `scripts/build-deb` makes a package with
//! the binary, units, configuration, man pages, completions, dashboards and
//! rules where Debian expects them. The package is built from this test
//! build's binary (`scripts/build-deb --binary`), so no release build runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use onionwatch_test_support::process::have;

const BIN: &str = env!("CARGO_BIN_EXE_onionwatch");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The shipped units: (file name, text).
fn units() -> Vec<(String, String)> {
    let mut units: Vec<_> = std::fs::read_dir(root().join("contrib/systemd"))
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    units.sort();
    assert_eq!(
        units.len(),
        6,
        "{:?}",
        units.iter().map(|u| &u.0).collect::<Vec<_>>()
    );
    units
}

/// `onionwatch manpages` into `dir/man1`, for `MANPATH=dir`.
fn man_pages(dir: &Path) {
    let out = Command::new(BIN)
        .args(["manpages", "--out-dir"])
        .arg(dir.join("man1"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn every_unit_is_hardened_and_ready_by_notification() {
    for (name, text) in units() {
        let has = |line: &str| text.lines().any(|l| l == line);
        let starts = |prefix: &str| text.lines().any(|l| l.starts_with(prefix));
        for line in [
            "Type=notify",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "PrivateTmp=yes",
            "PrivateDevices=yes",
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectKernelLogs=yes",
            "ProtectControlGroups=yes",
            "SystemCallFilter=@system-service",
            "CapabilityBoundingSet=",
            "MemoryDenyWriteExecute=yes",
            "User=onionwatch",
        ] {
            assert!(has(line), "{name} lacks {line}");
        }
        assert!(
            has("ProtectHome=yes") || has("ProtectHome=read-only"),
            "{name}: ProtectHome"
        );
        assert!(
            starts("RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6"),
            "{name}: RestrictAddressFamilies"
        );
        // Whatever the command writes lives in its StateDirectory.
        for path in text
            .split_whitespace()
            .filter(|w| w.starts_with("/var/lib/"))
        {
            let dir = path.trim_start_matches("/var/lib/");
            assert!(
                text.lines()
                    .filter_map(|l| l.strip_prefix("StateDirectory="))
                    .any(|d| dir.starts_with(d)),
                "{name}: {path} is outside its StateDirectory"
            );
        }
    }
}

#[test]
fn units_pass_systemd_analyze_verify_and_security() {
    if !have("systemd-analyze") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Documentation=man:onionwatch-watch(1) is checked against the pages
    // the binary generates.
    man_pages(&dir.path().join("man"));
    let mut scores = Vec::new();
    for (name, text) in units() {
        // verify checks that ExecStart's program exists: this build's.
        let unit = dir.path().join(&name);
        std::fs::write(&unit, text.replace("/usr/bin/onionwatch", BIN)).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&unit)
            .env("MANPATH", dir.path().join("man"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "systemd-analyze verify {name}: {stderr}"
        );
        let out = Command::new("systemd-analyze")
            .args(["security", "--offline=true", "--no-pager"])
            .arg(&unit)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "security {name}: {out:?}");
        let score: f64 = stdout
            .lines()
            .find_map(|l| l.split(&format!("level for {name}: ")).nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no exposure level for {name}:\n{stdout}"));
        scores.push(format!("{name}: {score}"));
        assert!(score <= 2.0, "{name} rates {score} (over 2.0):\n{stdout}");
    }
    // The figures README's "Install as a service" records.
    eprintln!("systemd-analyze security: {}", scores.join(", "));
}

#[test]
fn the_sysusers_entry_creates_the_user_the_units_run_as() {
    if !have("systemd-sysusers") {
        return;
    }
    let fake = tempfile::tempdir().unwrap();
    std::fs::create_dir(fake.path().join("etc")).unwrap();
    let out = Command::new("systemd-sysusers")
        .arg(format!("--root={}", fake.path().display()))
        .arg(root().join("contrib/debian/onionwatch.sysusers"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let passwd = std::fs::read_to_string(fake.path().join("etc/passwd")).unwrap();
    let user = passwd
        .lines()
        .find(|l| l.starts_with("onionwatch:"))
        .unwrap_or_else(|| panic!("no onionwatch user: {passwd}"));
    assert!(
        user.ends_with(":/var/lib/onionwatch:/usr/sbin/nologin"),
        "{user}"
    );
    let group = std::fs::read_to_string(fake.path().join("etc/group")).unwrap();
    assert!(
        group.lines().any(|l| l.starts_with("onionwatch:")),
        "{group}"
    );
    for (name, text) in units() {
        assert!(text.lines().any(|l| l == "User=onionwatch"), "{name}");
    }
}

/// Paths in the package, from `dpkg-deb --contents` ("./usr/bin/x" → "/usr/bin/x").
fn contents(deb: &Path) -> Vec<String> {
    let out = Command::new("dpkg-deb")
        .arg("--contents")
        .arg(deb)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches('.').to_owned())
        .collect()
}

#[test]
fn the_debian_package_holds_everything_and_its_binary_runs() {
    if !have("cargo-deb") || !have("dpkg-deb") {
        return;
    }
    let target = tempfile::tempdir().unwrap();
    let out = Command::new(root().join("scripts/build-deb"))
        .args(["--binary", BIN, "--fast"])
        .env("CARGO_TARGET_DIR", target.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "scripts/build-deb: {out:?}");
    let debs: Vec<PathBuf> = std::fs::read_dir(target.path().join("debian"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 1, "{debs:?}");
    let deb = &debs[0];
    let file = deb.file_name().unwrap().to_str().unwrap();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        file.starts_with(&format!("onionwatch_{version}-")),
        "{file}"
    );

    let paths = contents(deb);
    let mut expected: Vec<String> = [
        "/usr/bin/onionwatch",
        "/usr/lib/sysusers.d/onionwatch.conf",
        "/etc/onionwatch/watch.yaml",
        "/etc/onionwatch/probe.yaml",
        "/etc/onionwatch/gateway.yaml",
        "/etc/onionwatch/auth.yaml",
        "/etc/onionwatch/logs.env",
        "/usr/share/bash-completion/completions/onionwatch",
        "/usr/share/zsh/vendor-completions/_onionwatch",
        "/usr/share/fish/vendor_completions.d/onionwatch.fish",
        "/usr/share/onionwatch/prometheus/onionwatch-rules.yml",
        "/usr/share/doc/onionwatch/runbooks.md",
    ]
    .map(String::from)
    .into();
    for (name, _) in units() {
        expected.push(format!("/usr/lib/systemd/system/{name}"));
    }
    for sub in ["", "-watch", "-probe", "-logs", "-gateway", "-expose-onion"] {
        expected.push(format!("/usr/share/man/man1/onionwatch{sub}.1.gz"));
    }
    for dashboard in std::fs::read_dir(root().join("contrib/grafana")).unwrap() {
        let name = dashboard.unwrap().file_name();
        expected.push(format!(
            "/usr/share/onionwatch/grafana/{}",
            name.to_str().unwrap()
        ));
    }
    for path in &expected {
        assert!(
            paths.contains(path),
            "{path} is not in the package: {paths:?}"
        );
    }

    let control = tempfile::tempdir().unwrap();
    let out = Command::new("dpkg-deb")
        .arg("--control")
        .arg(deb)
        .arg(control.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let conffiles = std::fs::read_to_string(control.path().join("conffiles")).unwrap();
    for path in expected.iter().filter(|p| p.starts_with("/etc/")) {
        assert!(
            conffiles.lines().any(|l| l == path),
            "{path} is no conffile: {conffiles}"
        );
    }
    let fields = std::fs::read_to_string(control.path().join("control")).unwrap();
    assert!(
        fields.contains("\nDepends: ") && fields.contains(" tor"),
        "{fields}"
    );
    // ExecReload's /bin/kill comes from procps, absent from a minimal Debian
    // (found installing the package into a debootstrap'd system).
    if units().iter().any(|(_, text)| text.contains("/bin/kill")) {
        assert!(fields.contains("procps"), "{fields}");
    }
    assert!(control.path().join("postinst").exists());

    // Every file a unit names is in the package (but the client key, which
    // the operator copies from the monitored host).
    for (name, text) in units() {
        for word in text.split(|c: char| c.is_whitespace() || c == '=') {
            let word = word
                .trim_start_matches('-')
                .trim_end_matches(['.', ',', ':', ')']);
            if (word.starts_with("/etc/onionwatch/") || word.starts_with("/usr/"))
                && !word.ends_with("client.auth_private")
            {
                assert!(
                    paths.iter().any(|p| p == word),
                    "{name} names {word}, not in the package"
                );
            }
        }
    }

    let root = tempfile::tempdir().unwrap();
    let out = Command::new("dpkg-deb")
        .arg("--extract")
        .arg(deb)
        .arg(root.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let out = Command::new(root.path().join("usr/bin/onionwatch"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("onionwatch {version}")
    );
    // The packaged units are the shipped ones.
    for (name, text) in units() {
        let packaged =
            std::fs::read_to_string(root.path().join("usr/lib/systemd/system").join(&name))
                .unwrap();
        assert_eq!(packaged, text, "{name}");
    }
}
