//! Durable writes of the small files onionwatch keeps (keys, positions).
//!
//! [`write_atomic`] replaces a file so that a crash or power loss leaves
//! either the old or the new content, never a truncated mix:
//! temporary file in the same directory → write → `fsync` → rename over
//! the target → `fsync` of the directory (without the last step the rename
//! itself may be lost). [`private_dir`] and [`restrict_file`] bring
//! directories and files that already exist down to the mode they should
//! have had (an earlier version, an operator's `mkdir`).
//!
//! Unix only, like the rest of onionwatch.

use std::ffi::OsString;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Replace `path` with `data`, atomically and durably, as a file of mode
/// `mode` (e.g. `0o600` for a key).
///
/// The temporary file is `.<name>.tmp` beside `path` (a stale one from a
/// crash is replaced) and is removed when anything fails, so an error
/// leaves `path` exactly as it was.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let (dir, tmp) = temp_path(path)?;
    // A leftover of a crash: never write through it (it may have another
    // mode), start from a new inode.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have removed bits; the mode asked for is the mode.
        f.set_permissions(Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(&dir)
}

/// `fsync` a directory, making renames and creations in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The directory of `path` (`.` for a bare name) and the temporary file
/// [`write_atomic`] uses.
fn temp_path(path: &Path) -> io::Result<(PathBuf, PathBuf)> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(".tmp");
    Ok((dir.clone(), dir.join(tmp)))
}

/// Create `dir` (and its parents) if missing, and give it exactly `mode`
/// (e.g. `0o700`) whether it was just created or already there. Returns
/// the mode it had when it had another one (for a log line).
pub fn private_dir(dir: &Path, mode: u32) -> io::Result<Option<u32>> {
    match std::fs::metadata(dir) {
        Ok(_) => set_mode(dir, mode),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            // Created private (no window where it is open to others), then
            // the exact mode whatever the umask.
            std::fs::DirBuilder::new().mode(mode).create(dir)?;
            std::fs::set_permissions(dir, Permissions::from_mode(mode))?;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Give an existing file exactly `mode` (e.g. `0o600`); a missing file is
/// left missing. Returns the mode it had when it had another one.
pub fn restrict_file(path: &Path, mode: u32) -> io::Result<Option<u32>> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
        Ok(_) => set_mode(path, mode),
    }
}

fn set_mode(path: &Path, mode: u32) -> io::Result<Option<u32>> {
    let old = std::fs::metadata(path)?.permissions().mode() & 0o7777;
    if old == mode {
        return Ok(None);
    }
    std::fs::set_permissions(path, Permissions::from_mode(mode))?;
    Ok(Some(old))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use onionwatch_test_support::{file_names as names, mode};

    #[test]
    fn replaces_through_a_new_file_with_the_mode_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.auth_private");
        write_atomic(&path, b"old", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert_eq!(mode(&path), 0o600);

        // An existing file of a looser mode, as an older version left it.
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let old_inode = std::fs::metadata(&path).unwrap().ino();
        // Someone holding the old file open still reads the old content:
        // it was never truncated in place.
        let held = File::open(&path).unwrap();
        write_atomic(&path, b"new content", 0o600).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new content");
        assert_eq!(mode(&path), 0o600);
        assert_ne!(std::fs::metadata(&path).unwrap().ino(), old_inode);
        assert_eq!(held.metadata().unwrap().len(), 3);
        assert_eq!(names(dir.path()), ["client.auth_private"], "no temp file");
    }

    #[test]
    fn a_failed_write_leaves_the_old_content_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        // A stale temp file of a crash, readable by all: replaced, not reused.
        let stale = dir.path().join(".state.json.tmp");
        std::fs::write(&stale, b"half a wri").unwrap();
        std::fs::set_permissions(&stale, Permissions::from_mode(0o666)).unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"{}", 0o644).unwrap();
        assert_eq!(names(dir.path()), ["state.json"]);
        assert_eq!(mode(&path), 0o644);

        // The rename cannot replace a directory: the error comes back, the
        // target is untouched and the temp file is gone.
        let blocked = dir.path().join("blocked");
        std::fs::create_dir(&blocked).unwrap();
        std::fs::write(blocked.join("inside"), b"kept").unwrap();
        assert!(write_atomic(&blocked, b"new", 0o600).is_err());
        assert_eq!(std::fs::read(blocked.join("inside")).unwrap(), b"kept");
        assert_eq!(names(dir.path()), ["blocked", "state.json"]);

        // A directory that does not exist: an error, nothing created.
        let missing = dir.path().join("missing/state.json");
        assert_eq!(
            write_atomic(&missing, b"x", 0o600).unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
        assert!(write_atomic(Path::new("/"), b"x", 0o600).is_err());
    }

    #[test]
    fn a_bare_file_name_is_written_in_the_current_directory() {
        let (dir, tmp) = temp_path(Path::new("state.json")).unwrap();
        assert_eq!(dir, Path::new("."));
        assert_eq!(tmp, Path::new("./.state.json.tmp"));
    }

    #[test]
    fn modes_of_existing_directories_and_files_are_fixed() {
        let root = tempfile::tempdir().unwrap();
        let keys = root.path().join("a/keys");
        assert_eq!(private_dir(&keys, 0o700).unwrap(), None, "created");
        assert_eq!(mode(&keys), 0o700);
        std::fs::set_permissions(&keys, Permissions::from_mode(0o755)).unwrap();
        assert_eq!(private_dir(&keys, 0o700).unwrap(), Some(0o755));
        assert_eq!(mode(&keys), 0o700);
        assert_eq!(private_dir(&keys, 0o700).unwrap(), None);

        let key = keys.join("onion_service.key");
        assert_eq!(restrict_file(&key, 0o600).unwrap(), None, "missing");
        assert!(!key.exists());
        std::fs::write(&key, b"k").unwrap();
        std::fs::set_permissions(&key, Permissions::from_mode(0o644)).unwrap();
        assert_eq!(restrict_file(&key, 0o600).unwrap(), Some(0o644));
        assert_eq!(mode(&key), 0o600);
        assert_eq!(restrict_file(&key, 0o600).unwrap(), None);
    }
}
