//! Records the git revision and the compiler version for
//! `onionwatch_build_info` (main.rs hands them to onionwatch-server's
//! `exporter::set_build`). Here, in the binary crate, so that a new commit
//! rebuilds only the binary, not every library under it. Packagers building from
//! a tarball set `ONIONWATCH_REVISION` (and, if they like,
//! `ONIONWATCH_RUSTC_VERSION`); without git or the variable it is "unknown".

use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_owned())
}

/// Only characters that read well in a label value.
fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(100)
        .collect()
}

fn main() {
    println!("cargo:rerun-if-env-changed=ONIONWATCH_REVISION");
    println!("cargo:rerun-if-env-changed=ONIONWATCH_RUSTC_VERSION");
    let revision = std::env::var("ONIONWATCH_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| output("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".into());
    // Rebuild when HEAD moves (in a worktree too: git names the files).
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = output("git", &["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(branch) = output("git", &["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = output("git", &["rev-parse", "--git-path", &branch]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let rustc_version = std::env::var("ONIONWATCH_RUSTC_VERSION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| output(&rustc, &["--version"]))
        // "rustc 1.89.0 (29483883e 2025-08-04)" → "1.89.0"
        .map(|v| {
            v.strip_prefix("rustc ")
                .and_then(|v| v.split_whitespace().next())
                .map_or(v.clone(), str::to_owned)
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=ONIONWATCH_REVISION={}", clean(&revision));
    println!(
        "cargo:rustc-env=ONIONWATCH_RUSTC_VERSION={}",
        clean(&rustc_version)
    );
}
