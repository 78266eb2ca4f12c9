//! Why a file of an Onionspray tree cannot be read, and what to do about
//! it. Onionspray keeps project, worker, onion-service and log directories
//! at mode 0700 (tor refuses a group-readable `DataDirectory` or
//! `HiddenServiceDir` unless told otherwise), so a monitor running as
//! another user is refused: discovery then names the path, its owner and
//! mode, and the fix, instead of finding nothing.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Something discovery could not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreadable {
    /// What it is: `project directory`, `tor configuration`, ….
    pub what: &'static str,
    /// The project it belongs to (empty for the installation).
    pub project: String,
    /// The path that could not be read.
    pub path: PathBuf,
    /// Why: the error, and for a permission error who may read what.
    pub reason: String,
    /// What to do.
    pub fix: String,
}

impl std::fmt::Display for Unreadable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot read the {} {}: {}; fix: {}",
            self.what,
            self.path.display(),
            self.reason,
            self.fix
        )
    }
}

impl Unreadable {
    /// Diagnose `err`, met reading `path`.
    pub fn new(what: &'static str, project: &str, path: &Path, err: &std::io::Error) -> Self {
        let (reason, fix) = diagnose(path, err);
        Unreadable {
            what,
            project: project.to_owned(),
            path: path.to_owned(),
            reason,
            fix,
        }
    }
}

/// The text of [`crate::Error::Read`]: the path, the error and, for a
/// permission error, owner, mode and fix.
pub fn read_error_text(path: &Path, err: &std::io::Error) -> String {
    if err.kind() == std::io::ErrorKind::PermissionDenied {
        let (reason, fix) = diagnose(path, err);
        format!("cannot read {}: {reason}; fix: {fix}", path.display())
    } else {
        format!(
            "cannot read {}: {err} (check the path and that this user may read it)",
            path.display()
        )
    }
}

/// The reason and the fix for `err` met on `path`.
pub fn diagnose(path: &Path, err: &std::io::Error) -> (String, String) {
    if err.kind() != std::io::ErrorKind::PermissionDenied {
        return (
            err.to_string(),
            "check that the path exists and is readable".into(),
        );
    }
    let me = Me::current();
    // The refusing directory is the nearest of the path and its ancestors
    // whose mode this user can see: a 0700 directory refuses everything
    // under it.
    let Some((blocker, meta)) = path
        .ancestors()
        .find_map(|p| std::fs::metadata(p).ok().map(|m| (p.to_owned(), m)))
    else {
        return (
            format!("{err}"),
            "run onionwatch as the user that owns the Onionspray installation".into(),
        );
    };
    let mode = meta.mode() & 0o7777;
    let owner = user_name(meta.uid());
    let group = group_name(meta.gid());
    let reason = format!(
        "permission denied: {} is owned by {owner}:{group} with mode {mode:04o}, and onionwatch runs as {} (uid {}, groups {})",
        blocker.display(),
        user_name(me.uid),
        me.uid,
        me.groups_text()
    );
    let group_has_access = mode & 0o050 == 0o050 || (meta.is_file() && mode & 0o040 != 0);
    let fix = if group_has_access && !me.in_group(meta.gid()) {
        format!(
            "add onionwatch's user to group {group} (`usermod -aG {group} <user>`, or SupplementaryGroups={group} in its systemd unit) and restart it, or run it as user {owner}"
        )
    } else {
        format!(
            "run onionwatch as user {owner} (User={owner} in its systemd unit), or make the Onionspray tree readable by a group onionwatch is in: `chmod g+rX` on the project and log directories (tor refuses a group-readable DataDirectory and HiddenServiceDir unless `DataDirectoryGroupReadable 1` and `HiddenServiceDirGroupReadable 1`) and SupplementaryGroups={group}"
        )
    };
    (reason, fix)
}

/// This process's user and groups (from `/proc/self/status`).
struct Me {
    uid: u32,
    gids: Vec<u32>,
}

impl Me {
    fn current() -> Me {
        let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| -> Vec<u32> {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| {
                    v.split_whitespace()
                        .filter_map(|w| w.parse().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        let uid = field("Uid:").first().copied().unwrap_or(u32::MAX);
        let mut gids = field("Gid:").into_iter().take(1).collect::<Vec<_>>();
        gids.extend(field("Groups:"));
        gids.sort_unstable();
        gids.dedup();
        Me { uid, gids }
    }

    fn in_group(&self, gid: u32) -> bool {
        self.gids.contains(&gid)
    }

    fn groups_text(&self) -> String {
        if self.gids.is_empty() {
            return "none".into();
        }
        self.gids
            .iter()
            .map(|g| group_name(*g))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The name of `id` in an `/etc/passwd`-like file, else the number.
fn name_in(file: &str, id: u32) -> String {
    use std::io::Read;
    let mut text = String::new();
    // Bounded: a huge or hostile file costs at most 1 MiB.
    if let Ok(f) = std::fs::File::open(file) {
        let _ = f.take(1 << 20).read_to_string(&mut text);
    }
    text.lines()
        .find_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            f.next()?;
            (f.next()?.parse::<u32>().ok()? == id).then(|| name.to_owned())
        })
        .unwrap_or_else(|| id.to_string())
}

fn user_name(uid: u32) -> String {
    name_in("/etc/passwd", uid)
}

fn group_name(gid: u32) -> String {
    name_in("/etc/group", gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_errors_are_passed_through() {
        let err = std::io::Error::from(std::io::ErrorKind::NotFound);
        let (reason, fix) = diagnose(Path::new("/nonexistent/x"), &err);
        assert!(reason.contains("not found"), "{reason}");
        assert!(fix.contains("exists"), "{fix}");
    }

    #[test]
    fn a_permission_error_names_owner_mode_and_user() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let err = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let (reason, fix) = diagnose(&dir.path().join("tor.conf"), &err);
        assert!(
            reason.contains(&format!("{} is owned by", dir.path().display())),
            "{reason}"
        );
        assert!(reason.contains("mode 0700"), "{reason}");
        assert!(fix.contains("run onionwatch as user"), "{fix}");
    }
}
