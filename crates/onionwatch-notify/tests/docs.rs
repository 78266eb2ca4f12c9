//! The `notifiers:` examples of the README and the crate docs parse, so
//! their option names stay right.

use onionwatch_notify::NotifierConfig;

#[derive(serde::Deserialize)]
struct Top {
    notifiers: Vec<NotifierConfig>,
}

/// Every fenced YAML block of `text` starting with `notifiers:` (with
/// `prefix` removed from each line, for `//! ` doc comments).
fn blocks(text: &str, prefix: &str) -> Vec<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(|l| {
            l.strip_prefix(prefix)
                .unwrap_or(l.trim_start_matches("//!"))
        })
        .collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == "```yaml" && lines.get(i + 1) == Some(&"notifiers:") {
            let end = (i + 1..lines.len())
                .find(|&j| lines[j].trim() == "```")
                .unwrap();
            out.push(lines[i + 1..end].join("\n"));
            i = end;
        }
        i += 1;
    }
    out
}

#[test]
fn documented_examples_parse() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let lib = include_str!("../src/lib.rs");
    let found = [blocks(&readme, ""), blocks(lib, "//! ")].concat();
    assert!(found.len() >= 2, "no notifiers: example found");
    for yaml in found {
        let top: Top = serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        assert!(!top.notifiers.is_empty());
    }
}
