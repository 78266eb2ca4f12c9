//! Onionspray (and EOTK) project configuration files (`.conf`, `.tconf`):
//! `set project NAME`, `set tor_metrics_port …` and the mappings, read in
//! file order as Onionspray reads them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One project of a configuration file (`set project NAME` … mappings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SprayProject {
    /// The project name.
    pub name: String,
    /// The file it is configured in.
    pub file: PathBuf,
    /// Line of its `set project` (or of its first mapping).
    pub line: usize,
    /// Settings in effect for it: name → (value, line). Settings carry over
    /// from earlier projects of the file, as Onionspray reads them in order.
    pub settings: BTreeMap<String, (String, usize)>,
}

impl SprayProject {
    /// A setting's value and line.
    pub fn setting(&self, name: &str) -> Option<(&str, usize)> {
        self.settings.get(name).map(|(v, l)| (v.as_str(), *l))
    }
}

/// Whether `text` looks like an Onionspray/EOTK configuration rather than a torrc.
pub fn looks_like_config(text: &str) -> bool {
    text.lines().map(str::trim).any(|l| {
        l.starts_with("set ")
            || l.starts_with("hardmap ")
            || l.starts_with("softmap ")
            || l.starts_with("foreignmap ")
    })
}

/// Parse an Onionspray project configuration (`.conf` or `.tconf`).
///
/// `set project NAME` starts a project; a file with mappings but no
/// `set project` configures the project `default`, as Onionspray does.
pub fn parse_config(text: &str, file: &Path) -> Vec<SprayProject> {
    let mut settings: BTreeMap<String, (String, usize)> = BTreeMap::new();
    let mut projects: Vec<SprayProject> = Vec::new();
    let mut current: Option<usize> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.split('#').next().unwrap_or("").trim();
        let mut words = l.splitn(3, char::is_whitespace);
        match words.next() {
            Some("set") => {
                let (Some(key), value) = (words.next(), words.next().unwrap_or("").trim()) else {
                    continue;
                };
                if key == "project" {
                    projects.push(SprayProject {
                        name: value.to_owned(),
                        file: file.to_owned(),
                        line,
                        settings: settings.clone(),
                    });
                    current = Some(projects.len() - 1);
                } else {
                    settings.insert(key.to_owned(), (value.to_owned(), line));
                    if let Some(c) = current {
                        projects[c]
                            .settings
                            .insert(key.to_owned(), (value.to_owned(), line));
                    }
                }
            }
            Some("hardmap" | "softmap" | "foreignmap") if current.is_none() => {
                projects.push(SprayProject {
                    name: "default".into(),
                    file: file.to_owned(),
                    line,
                    settings: settings.clone(),
                });
                current = Some(projects.len() - 1);
            }
            _ => {}
        }
    }
    // Settings after the last project's mappings still apply to it.
    if let Some(c) = current {
        for (k, v) in &settings {
            projects[c].settings.entry(k.clone()).or_insert(v.clone());
        }
    }
    projects
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_settings_follow_file_order() {
        let text = "set tor_metrics_port_policy accept 127.0.0.1\n\
                    set project news\n\
                    set tor_metrics_port 127.0.0.1:9035\n\
                    hardmap %NEW_V3_ONION% example.com\n\
                    set project shop # second\n\
                    set tor_metrics_port 127.0.0.1:9036\n\
                    softmap %NEW_V3_ONION% example.org\n";
        let p = parse_config(text, Path::new("x.conf"));
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "news");
        assert_eq!(
            p[0].setting("tor_metrics_port"),
            Some(("127.0.0.1:9035", 3))
        );
        assert_eq!(
            p[0].setting("tor_metrics_port_policy"),
            Some(("accept 127.0.0.1", 1))
        );
        assert_eq!(p[1].name, "shop");
        assert_eq!(
            p[1].setting("tor_metrics_port"),
            Some(("127.0.0.1:9036", 6))
        );
        let d = parse_config("hardmap abc example.com\n", Path::new("y.conf"));
        assert_eq!(d[0].name, "default");
        assert!(looks_like_config(text));
        assert!(!looks_like_config("MetricsPort 9035\n"));
    }
}
