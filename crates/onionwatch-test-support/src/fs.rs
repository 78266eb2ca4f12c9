//! Files for tests: growing logs, copied fixture trees, what a directory
//! holds and a file's mode.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Append `text` to `path` (created if missing).
pub fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// A copy of the fixture tree `src` under `tmp` (an integration test's
/// `env!("CARGO_TARGET_TMPDIR")`), made afresh once per test binary, in
/// which every file is as old as the copy. Git checks files out in any
/// order and at any time, so rules that compare modification times
/// (Onionspray's "configuration not applied") must not read the checkout.
pub fn fresh_copy(src: &Path, tmp: &str) -> PathBuf {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static COPIES: OnceLock<Mutex<HashMap<PathBuf, PathBuf>>> = OnceLock::new();
    let mut copies = COPIES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    copies
        .entry(src.to_owned())
        .or_insert_with(|| {
            // Named after the test binary and the tree, replaced at each run.
            let exe = std::env::current_exe().unwrap();
            let exe = exe.file_name().unwrap().to_string_lossy();
            let tree = src.file_name().unwrap().to_string_lossy();
            let dir = Path::new(tmp).join(format!("{exe}-{tree}"));
            let _ = std::fs::remove_dir_all(&dir);
            copy_tree(src, &dir);
            dir
        })
        .clone()
}

/// Copy a directory tree (a fixture to a temporary directory).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// The names in `dir`, sorted (to see that no temporary file is left).
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The permission bits of `path` (`0o600`, …).
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

/// Set the permission bits of `path`.
pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}
