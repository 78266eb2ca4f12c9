//! Validation: the whole configuration checked once, endpoints compiled
//! into [`Target`]s.

use onionwatch_tor::onion::OnionAddress;

use super::client_auth::{check_base64_key, read_auth_private};
use super::{invalid, Config, ConfigError, PathSpec, Protocol};

/// A validated endpoint, ready to probe.
#[derive(Debug, Clone)]
pub struct Target {
    /// The endpoint's name (the `name` label).
    pub name: String,
    /// The address as configured (the `address` label), lower case.
    pub address: OnionAddress,
    /// The protocol.
    pub protocol: Protocol,
    /// The port.
    pub port: u16,
    /// The paths (empty for tcp).
    pub paths: Vec<TargetPath>,
    /// Verify the certificate (https).
    pub tls_verify: bool,
    /// Record TLS/certificate details (https).
    pub test_tls: bool,
    /// Base64 x25519 key for client authorization.
    pub client_auth_key: Option<String>,
}

/// A compiled `pattern`: Rust's `regex` (linear time) when it accepts the
/// text, else `fancy-regex` for the Python `re` syntax it refuses
/// (look-around, back-references), with a bounded backtracking budget.
#[derive(Debug, Clone)]
pub enum Pattern {
    /// Compiled by `regex`.
    Linear(regex::Regex),
    /// Compiled by `fancy-regex`.
    Backtracking(fancy_regex::Regex),
}

/// Steps of backtracking one `pattern` search may take (fancy-regex's
/// default): a pathological pattern ends as "not matched", never hangs.
const BACKTRACK_LIMIT: usize = 1_000_000;
/// Size bound of a compiled pattern.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

impl Pattern {
    /// Compile `text`; the error names what is wrong with it.
    pub fn compile(text: &str) -> Result<Pattern, String> {
        let linear = match regex::RegexBuilder::new(text)
            .size_limit(PATTERN_SIZE_LIMIT)
            .build()
        {
            Ok(re) => return Ok(Pattern::Linear(re)),
            Err(e) => e,
        };
        fancy_regex::RegexBuilder::new(text)
            .backtrack_limit(BACKTRACK_LIMIT)
            .delegate_size_limit(PATTERN_SIZE_LIMIT)
            .build()
            .map(Pattern::Backtracking)
            .map_err(|fancy| match linear {
                // Too big for `regex` is the clearer message.
                regex::Error::CompiledTooBig(_) => linear.to_string(),
                _ => fancy.to_string(),
            })
    }

    /// Whether the pattern occurs in `text` (Python's `re.search`). A search
    /// that exceeds the backtracking budget counts as not found (and is
    /// logged).
    pub fn is_match(&self, text: &str) -> bool {
        match self {
            Pattern::Linear(re) => re.is_match(text),
            Pattern::Backtracking(re) => re.is_match(text).unwrap_or_else(|e| {
                tracing::warn!(pattern = re.as_str(), "pattern search abandoned: {e}");
                false
            }),
        }
    }
}

/// A validated path.
#[derive(Debug, Clone)]
pub struct TargetPath {
    /// The path as configured.
    pub path: String,
    /// The compiled pattern and its text.
    pub pattern: Option<(Pattern, String)>,
    /// Allowed statuses; `None` accepts any.
    pub allowed_statuses: Option<Vec<u16>>,
}

impl Config {
    /// The DER certificates of `tls_ca_file` (empty without it). Refuses a
    /// file that cannot be read or holds no parsable PEM certificate.
    pub fn tls_ca_certificates(&self) -> Result<Vec<Vec<u8>>, ConfigError> {
        let Some(path) = &self.tls_ca_file else {
            return Ok(Vec::new());
        };
        let bad = |m: String| invalid("tls_ca_file", m);
        let data =
            std::fs::read(path).map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
        let mut certs = Vec::new();
        for pem in x509_parser::pem::Pem::iter_from_buffer(&data) {
            let pem = pem.map_err(|e| bad(format!("{}: invalid PEM: {e}", path.display())))?;
            if pem.label != "CERTIFICATE" {
                continue;
            }
            pem.parse_x509().map_err(|e| {
                bad(format!(
                    "{}: a CERTIFICATE block is not X.509: {e}",
                    path.display()
                ))
            })?;
            certs.push(pem.contents);
        }
        if certs.is_empty() {
            return Err(bad(format!(
                "{} holds no PEM CERTIFICATE block",
                path.display()
            )));
        }
        Ok(certs)
    }

    /// Check everything and compile the endpoints, in name order (paths
    /// whose pattern does not compile are left out, see
    /// [`Config::checked_targets`]).
    pub fn targets(&self) -> Result<Vec<Target>, ConfigError> {
        self.checked_targets().map(|(targets, _)| targets)
    }

    /// Check everything and compile the endpoints, in name order, with a
    /// message for each path left out: a path whose `pattern` compiles
    /// neither as `regex` nor as `fancy-regex` is not probed (an endpoint
    /// left with no path is not either), and the rest of the configuration
    /// still loads. Refused when no endpoint is left.
    pub fn checked_targets(&self) -> Result<(Vec<Target>, Vec<String>), ConfigError> {
        let mut rejected = Vec::new();
        let level = self.log_level.to_ascii_lowercase();
        if !["debug", "info", "warning", "warn", "error", "critical"].contains(&level.as_str()) {
            return Err(invalid(
                "log_level",
                format!(
                    "{:?} is not a level: use debug, info, warning, error or critical",
                    self.log_level
                ),
            ));
        }
        if self.concurrency == 0 || self.concurrency > 4096 {
            return Err(invalid("concurrency", "use 1 to 4096"));
        }
        if self.max_body_bytes == 0 || self.max_body_bytes > 256 << 20 {
            return Err(invalid("max_body_bytes", "use 1 byte to 256 MiB"));
        }
        if self.descriptor_max_retries > 100
            || self.http_connect_max_retries > 100
            || self.tls_connect_max_retries > 100
        {
            return Err(invalid(
                "*_max_retries",
                "retries above 100 are surely a typo",
            ));
        }
        if self.tor_address.trim().is_empty() {
            return Err(invalid("tor_address", "must not be empty"));
        }
        for line in &self.tor_config {
            if line.contains(['\n', '\r', '\0']) {
                return Err(invalid("tor_config", "one torrc line per list item"));
            }
        }
        self.tls_ca_certificates()?;
        self.labels()?;
        for (i, rw) in self.remote_write.iter().enumerate() {
            rw.check(i).map_err(|e| match e {
                onionwatch_remote_write::ConfigError::Invalid {
                    index,
                    key,
                    message,
                    ..
                } => invalid(format!("remote_write[{index}].{key}"), message),
                other => invalid("remote_write", other.to_string()),
            })?;
        }
        let global_verify = self.tls_verify.unwrap_or(true);
        let mut out = Vec::new();
        for (name, e) in self.effective_endpoints() {
            let key = |k: &str| format!("endpoints.{name:?}.{k}");
            if name.is_empty() {
                return Err(invalid("endpoints", "an endpoint name is empty"));
            }
            let address: OnionAddress =
                e.address
                    .trim()
                    .parse()
                    .map_err(|source| ConfigError::Address {
                        name: name.clone(),
                        source,
                    })?;
            let port = e.port.unwrap_or(e.protocol.default_port());
            let specs = e.paths.clone().unwrap_or_else(|| {
                vec![PathSpec {
                    path: "/".into(),
                    pattern: None,
                    allowed_statuses: Some(vec![200]),
                }]
            });
            let mut paths = Vec::new();
            if e.protocol != Protocol::Tcp {
                if specs.is_empty() {
                    return Err(invalid(
                        key("paths"),
                        "is empty: list at least one path, e.g. [{path: /}]",
                    ));
                }
                for (i, p) in specs.iter().enumerate() {
                    let pkey = key(&format!("paths[{i}]"));
                    if !p.path.starts_with('/')
                        || p.path.len() > 8192
                        || p.path.chars().any(|c| c.is_control() || c == ' ')
                    {
                        return Err(invalid(
                            format!("{pkey}.path"),
                            format!("{:?} must start with '/' and contain no spaces or control characters", p.path),
                        ));
                    }
                    if let Some(list) = &p.allowed_statuses {
                        if let Some(bad) = list.iter().find(|s| !(100..=999).contains(*s)) {
                            return Err(invalid(
                                format!("{pkey}.allowed_statuses"),
                                format!("{bad} is not an HTTP status code (100-999)"),
                            ));
                        }
                    }
                    let pattern = match &p.pattern {
                        None => None,
                        Some(text) => match Pattern::compile(text) {
                            Ok(re) => Some((re, text.clone())),
                            Err(err) => {
                                rejected.push(format!(
                                    "{pkey}.pattern: {text:?} is not a valid regular expression \
                                     ({err}); path {:?} of endpoint {name:?} is not probed",
                                    p.path
                                ));
                                continue;
                            }
                        },
                    };
                    paths.push(TargetPath {
                        path: p.path.clone(),
                        pattern,
                        allowed_statuses: p.allowed_statuses.clone(),
                    });
                }
                if paths.is_empty() {
                    rejected.push(format!(
                        "endpoint {name:?} is not probed: none of its paths is usable"
                    ));
                    continue;
                }
            }
            let client_auth_key = match (&e.client_auth_key, &e.client_auth_key_file) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        key("client_auth_key"),
                        "set client_auth_key or client_auth_key_file, not both",
                    ))
                }
                (Some(k), None) => Some(
                    check_base64_key(k.trim()).map_err(|m| invalid(key("client_auth_key"), m))?,
                ),
                (None, Some(path)) => Some(
                    read_auth_private(path, address.service_id())
                        .map_err(|m| invalid(key("client_auth_key_file"), m))?,
                ),
                (None, None) => None,
            };
            out.push(Target {
                name,
                address,
                protocol: e.protocol,
                port,
                paths,
                tls_verify: e.tls_verify.unwrap_or(global_verify),
                test_tls: e.test_tls_connection.unwrap_or(false) || self.test_tls_connection,
                client_auth_key,
            });
        }
        if out.is_empty() {
            return Err(invalid(
                "endpoints",
                format!("no endpoint is left to probe: {}", rejected.join("; ")),
            ));
        }
        Ok((out, rejected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion";

    #[test]
    fn python_patterns_compile_and_match() {
        // Plain syntax stays on the linear engine.
        assert!(matches!(
            Pattern::compile("Tor Project").unwrap(),
            Pattern::Linear(_)
        ));
        let cases = [
            // Look-ahead, look-behind, negative look-ahead, back-reference.
            (r"Tor(?= Project)", "The Tor Project", true),
            (r"Tor(?= Project)", "Tor Browser", false),
            (r"(?<=The )Tor", "The Tor Project", true),
            (r"(?<=The )Tor", "A Tor", false),
            (r"^(?!.*error).*welcome", "welcome home", true),
            (r"^(?!.*error).*welcome", "error: welcome", false),
            (r"<(\w+)>.*</\1>", "<b>bold</b>", true),
            (r"<(\w+)>.*</\1>", "<b>bold</i>", false),
            (r"(?P<word>onion)\s(?P=word)", "onion onion", true),
        ];
        for (pattern, text, expected) in cases {
            let re = Pattern::compile(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
            assert!(matches!(re, Pattern::Backtracking(_)), "{pattern}");
            assert_eq!(re.is_match(text), expected, "{pattern} on {text:?}");
        }
        // Catastrophic backtracking ends as not found, quickly.
        let re = Pattern::compile(r"^(a+)+\1$").unwrap();
        assert!(!re.is_match(&format!("{}b", "a".repeat(64))));
    }

    #[test]
    fn an_invalid_pattern_rejects_only_its_path_or_endpoint() {
        let yaml = format!(
            "endpoints:\n  good:\n    address: {A}\n    paths:\n      - path: /\n        pattern: '(?=ok)ok'\n  \
             broken:\n    address: {A}\n    paths:\n      - path: /\n        pattern: '(unclosed'\n  \
             half:\n    address: {A}\n    paths:\n      - path: /bad\n        pattern: '[z-a]'\n      - path: /fine\n"
        );
        let (c, warnings) = Config::from_yaml(&yaml, "t.yaml").unwrap();
        let t = c.targets().unwrap();
        let names: Vec<&str> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["good", "half"]);
        assert_eq!(t[1].paths.len(), 1);
        assert_eq!(t[1].paths[0].path, "/fine");
        let all = warnings.join("\n");
        assert!(
            all.contains(r#"endpoints."broken".paths[0].pattern: "(unclosed""#)
                && all.contains(r#"endpoint "broken" is not probed"#),
            "{all}"
        );
        assert!(
            all.contains(r#"endpoints."half".paths[0].pattern"#)
                && all.contains(r#"path "/bad" of endpoint "half" is not probed"#),
            "{all}"
        );
        // Nothing left: refused, with the reason.
        let only = format!(
            "endpoints:\n  broken:\n    address: {A}\n    paths:\n      - path: /\n        pattern: '('\n"
        );
        let err = Config::from_yaml(&only, "t.yaml").unwrap_err().to_string();
        assert!(
            err.contains("no endpoint is left") && err.contains("broken"),
            "{err}"
        );
    }

    #[test]
    fn tls_ca_file_is_checked_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = Config::from_yaml(&format!("tls_ca_file: '{}'\n", missing.display()), "t")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tls_ca_file") && err.contains("cannot read"),
            "{err}"
        );
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let err = Config::from_yaml(&format!("tls_ca_file: '{}'\n", empty.display()), "t")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no PEM CERTIFICATE"), "{err}");
        let bad = dir.path().join("bad.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(Config::from_yaml(&format!("tls_ca_file: '{}'\n", bad.display()), "t").is_err());
        let (c, w) = Config::from_yaml("", "t").unwrap();
        assert!(w.is_empty() && c.tls_ca_file.is_none());
        assert!(c.tls_ca_certificates().unwrap().is_empty());
    }
}
