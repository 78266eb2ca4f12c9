//! The built-in rules: the alerts of `contrib/prometheus/onionwatch-rules.yml`
//! that onionwatch can evaluate on its own families, under the same names,
//! with the same thresholds and runbooks (a test of the `onionwatch` crate
//! compares both).
//!
//! Their default windows count rounds of their source, not wall time, so
//! they fit any probe or scrape interval: an onion service is unreachable
//! when 3 of the last 5 probe rounds failed, which one lost circuit never
//! is.

use crate::config::{For, Window};

/// Seconds before a certificate's expiry from which it is reported: 14
/// days. `probe --check`, the dashboards and
/// `OnionServiceCertificateExpiringSoon` use this one value.
pub const CERT_WARNING_SECONDS: i64 = 14 * 86_400;

/// Which rounds feed a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Probe rounds (`probe`, and the outside probing of `watch`).
    Probe,
    /// Scrape cycles of `watch` (tor MetricsPort, control port, nginx, logs).
    Watch,
}

/// When a series is bad in a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// The value equals the threshold (0 for "not reachable").
    Equals,
    /// The value is below the threshold.
    Below,
    /// The counter grew since the series' previous round (a counter reset
    /// to a non-zero value counts as growth).
    Increased,
}

/// A built-in rule.
#[derive(Debug, PartialEq)]
pub struct RuleDef {
    /// Alert name, as in the shipped Prometheus rules.
    pub name: &'static str,
    /// The rounds it is evaluated on.
    pub source: Source,
    /// The series it reads (full name, with `_total` for counters).
    pub metric: &'static str,
    /// Bad when.
    pub condition: Condition,
    /// The default threshold, for rules that have one the user may change.
    pub threshold: Option<f64>,
    /// The value [`Condition::Equals`] compares with.
    pub equals: f64,
    /// Sum the series by these labels first (`None`: each series alone).
    pub by: Option<&'static [&'static str]>,
    /// Default window.
    pub window: Window,
    /// Default `for`.
    pub for_: For,
    /// `severity` label.
    pub severity: &'static str,
    /// `summary` annotation (`{{ $labels.x }}` and `{{ $value }}` expanded).
    pub summary: &'static str,
    /// `description` annotation.
    pub description: &'static str,
}

impl RuleDef {
    /// The `runbook_url` annotation, the shipped rules' one.
    pub fn runbook_url(&self) -> String {
        format!(
            "https://example.invalid/onionwatch/blob/main/docs/runbooks.md#{}",
            self.name.to_ascii_lowercase()
        )
    }
}

const ROUNDS_3_OF_5: Window = Window { k: 3, n: 5 };

/// The built-in rules.
pub const BUILTIN: &[RuleDef] = &[
    RuleDef {
        name: "OnionServiceUnreachable",
        source: Source::Probe,
        metric: "onion_service_reachable",
        condition: Condition::Equals,
        threshold: None,
        equals: 0.0,
        by: None,
        window: ROUNDS_3_OF_5,
        for_: For::Rounds(0),
        severity: "critical",
        summary: "Onion service {{ $labels.name }} ({{ $labels.address }}{{ $labels.path }}) is unreachable",
        description: "The prober has not reached {{ $labels.address }}{{ $labels.path }} through Tor in most of its last rounds: Tor users cannot either.",
    },
    RuleDef {
        name: "OnionServiceDescriptorUnreachable",
        source: Source::Probe,
        metric: "onion_service_descriptor_reachable",
        condition: Condition::Equals,
        threshold: None,
        equals: 0.0,
        by: None,
        window: ROUNDS_3_OF_5,
        for_: For::Rounds(0),
        severity: "critical",
        summary: "Descriptor of onion service {{ $labels.name }} ({{ $labels.address }}) cannot be fetched",
        description: "No HSDir has served a descriptor of {{ $labels.address }} in most of the prober's last rounds: clients cannot find its introduction points.",
    },
    RuleDef {
        name: "OnionServiceCertificateExpiringSoon",
        source: Source::Probe,
        metric: "onion_service_certificate_expiry_seconds",
        condition: Condition::Below,
        threshold: Some(CERT_WARNING_SECONDS as f64),
        equals: 0.0,
        by: None,
        window: Window { k: 2, n: 3 },
        for_: For::Rounds(0),
        severity: "warning",
        summary: "TLS certificate of onion service {{ $labels.name }} ({{ $labels.address }}) expires in {{ $value }} s",
        description: "The certificate served on {{ $labels.address }}:{{ $labels.port }} expires within the threshold and has not been renewed.",
    },
    RuleDef {
        name: "OnionwatchScrapeTargetDown",
        source: Source::Watch,
        metric: "onionwatch_scrape_up",
        condition: Condition::Equals,
        threshold: None,
        equals: 0.0,
        by: None,
        window: ROUNDS_3_OF_5,
        for_: For::Rounds(0),
        severity: "critical",
        summary: "onionwatch cannot scrape {{ $labels.project }}/{{ $labels.tor_instance }}",
        description: "onionwatch watch has failed to scrape the {{ $labels.collector }} target of project {{ $labels.project }} in most of its last scrapes (see /api/v1/targets for the error).",
    },
    RuleDef {
        name: "OnionwatchTorNotBootstrapped",
        source: Source::Watch,
        metric: "onionwatch_tor_bootstrap_percent",
        condition: Condition::Below,
        threshold: Some(100.0),
        equals: 0.0,
        by: None,
        window: ROUNDS_3_OF_5,
        for_: For::Rounds(0),
        severity: "critical",
        summary: "tor {{ $labels.project }}/{{ $labels.tor_instance }} is not fully bootstrapped ({{ $value }}%)",
        description: "The tor of project {{ $labels.project }} has not finished bootstrapping: it cannot publish its onion services' descriptors or build their circuits.",
    },
    RuleDef {
        name: "OnionServiceAbusiveCircuitsInLogs",
        source: Source::Watch,
        metric: "onionwatch_log_abusive_circuits_total",
        condition: Condition::Increased,
        threshold: None,
        equals: 0.0,
        by: Some(&["project"]),
        window: Window { k: 1, n: 5 },
        for_: For::Rounds(0),
        severity: "warning",
        summary: "The access-log policy found abusive circuits of project {{ $labels.project }}",
        description: "Circuits of project {{ $labels.project }} made more requests than the policy's max_requests per window.",
    },
];

/// Expand `{{ $labels.x }}` and `{{ $value }}` (a missing label is empty).
pub fn render(template: &str, labels: &crate::Labels, value: f64) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            rest = &rest[start..];
            break;
        };
        let inner = rest[start + 2..start + end].trim();
        if inner == "$value" {
            out.push_str(&onionwatch_metrics::format_value(value));
        } else if let Some(name) = inner.strip_prefix("$labels.") {
            out.push_str(labels.get(name.trim()).map_or("", String::as_str));
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_expand_labels_and_value() {
        let labels = crate::Labels::from([("name".into(), "shop".into())]);
        assert_eq!(
            render(
                "{{ $labels.name }}/{{ $labels.nope }} {{ $value }} {{",
                &labels,
                2.5
            ),
            "shop/ 2.5 {{"
        );
    }

    #[test]
    fn names_are_unique() {
        for (i, r) in BUILTIN.iter().enumerate() {
            assert!(BUILTIN[..i].iter().all(|o| o.name != r.name), "{}", r.name);
        }
    }
}
