//! Golden files: output compared with a file stored in the repository.

use std::path::Path;

/// The path of `name` in the calling crate's `tests/fixtures/` folder.
///
/// A macro so that `CARGO_MANIFEST_DIR` is the caller's.
#[macro_export]
macro_rules! fixture {
    ($name:expr) => {
        ::std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join($name)
    };
}

/// Fail unless `text` equals the file at `path`, showing the lines that
/// differ. With `ONIONWATCH_BLESS` set, write `text` there instead.
#[track_caller]
pub fn assert_golden(path: impl AsRef<Path>, text: &str) {
    let path = path.as_ref();
    if std::env::var_os("ONIONWATCH_BLESS").is_some() {
        std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let want = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        text == want,
        "{} differs (- stored, + now); if the change is intended, rerun with \
         ONIONWATCH_BLESS=1 and review the file's diff:\n{}",
        path.display(),
        diff(&want, text)
    );
}

/// Mask what every endpoint's `/metrics` ends with but varies between
/// builds and runs, after checking it is well-formed: the label values of
/// `onionwatch_build_info` (version, git revision, rustc version) become
/// `<version>`, `<revision>`, `<rustc_version>`, and each `process_*`
/// sample's value `<value>`. HELP and TYPE lines stay, so a renamed or
/// retyped family still shows in the golden diff.
#[track_caller]
pub fn mask_exporter_families(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if let Some(labels) = line.strip_prefix("onionwatch_build_info{") {
            let (labels, value) = labels.rsplit_once("} ").expect(line);
            assert_eq!(value, "1", "{line}");
            let mut masked = Vec::new();
            for pair in labels.split("\",") {
                let (name, value) = pair.split_once("=\"").expect(line);
                let value = value.trim_end_matches('"');
                assert!(!value.is_empty() && !value.contains('"'), "{line}");
                masked.push(format!("{name}=\"<{name}>\""));
            }
            out.push_str(&format!("onionwatch_build_info{{{}}} 1", masked.join(",")));
        } else if line.starts_with("process_") {
            let (name, value) = line.rsplit_once(' ').expect(line);
            let v: f64 = value.parse().expect(line);
            assert!(v >= 0.0, "{line}");
            out.push_str(&format!("{name} <value>"));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// The lines only in `want` (-) or only in `got` (+), with their line
/// numbers, from a longest-common-subsequence alignment; at most 60.
fn diff(want: &str, got: &str) -> String {
    let a: Vec<&str> = want.lines().collect();
    let b: Vec<&str> = got.lines().collect();
    // lcs[i][j]: common lines of a[i..] and b[j..].
    let mut lcs = vec![vec![0u32; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("-{:>4}: {}", i + 1, a[i]));
            i += 1;
        } else {
            out.push(format!("+{:>4}: {}", j + 1, b[j]));
            j += 1;
        }
    }
    if out.is_empty() {
        out.push("(the same lines: only line endings or the final newline differ)".into());
    }
    let total = out.len();
    out.truncate(60);
    if total > 60 {
        out.push(format!("… and {} more changed lines", total - 60));
    }
    out.join("\n")
}

#[cfg(test)]
mod tests {
    use super::{diff, mask_exporter_families};

    #[test]
    fn exporter_families_are_masked_after_being_checked() {
        let text = "# TYPE onionwatch_build_info gauge\n\
                    onionwatch_build_info{version=\"0.1.0\",revision=\"abc\",rustc_version=\"1.89.0\"} 1\n\
                    # TYPE process_open_fds gauge\nprocess_open_fds 12\nother 3\n";
        assert_eq!(
            mask_exporter_families(text),
            "# TYPE onionwatch_build_info gauge\n\
             onionwatch_build_info{version=\"<version>\",revision=\"<revision>\",rustc_version=\"<rustc_version>\"} 1\n\
             # TYPE process_open_fds gauge\nprocess_open_fds <value>\nother 3\n"
        );
        let bad = std::panic::catch_unwind(|| mask_exporter_families("process_open_fds x\n"));
        assert!(bad.is_err(), "a value that is not a number fails");
    }

    #[test]
    fn diff_names_changed_lines() {
        assert_eq!(diff("a\nb\nc\n", "a\nx\nc\n"), "-   2: b\n+   2: x");
        assert_eq!(
            diff("a\n", "a"),
            "(the same lines: only line endings or the final newline differ)"
        );
    }
}
