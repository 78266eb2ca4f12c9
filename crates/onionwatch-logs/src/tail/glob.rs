//! The wildcards of tail patterns: `*` and `?` in a path's last component.

use std::path::Path;

/// Whether `p`'s last component holds a wildcard.
pub(super) fn is_glob(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().contains(['*', '?']))
}

/// `*` matches any run of bytes, `?` one byte; nothing else is special.
pub(super) fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(b"*.log", b"nginx-access.log"));
        assert!(glob_match(b"nginx-access*.log", b"nginx-access.log"));
        assert!(glob_match(b"nginx-access*.log", b"nginx-access-a.b.log"));
        assert!(!glob_match(
            b"nginx-access*.log",
            b"nginx-access.log-2024010112"
        ));
        assert!(!glob_match(b"nginx-access*.log", b"nginx-error.log"));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(!glob_match(b"a?c", b"ac"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"**x", b"yyx"));
        assert!(is_glob(Path::new("/a/*.log")));
        assert!(!is_glob(Path::new("/a*/b.log")));
    }
}
