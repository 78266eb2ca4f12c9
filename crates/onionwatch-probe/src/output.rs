//! Outputs besides Prometheus: JSON lines, the end-of-round table, and the
//! Nagios/Icinga `--check` verdict.

use crate::probe::ProbeResult;

/// One JSON object (one line, no newline) for a result.
pub fn json_line(r: &ProbeResult) -> String {
    serde_json::to_string(r).unwrap_or_else(|e| format!("{{\"error\":\"cannot encode: {e}\"}}"))
}

fn cell(s: &str, width: usize) -> String {
    let mut out: String = s.chars().take(width).collect();
    let n = out.chars().count();
    if n < width {
        out.push_str(&" ".repeat(width - n));
    }
    out
}

/// `http_status`, or `-` for a probe without failure stage.
fn stage(r: &ProbeResult) -> &'static str {
    r.failure_stage.map_or("-", |s| s.as_str())
}

/// A human-readable table of a round's results, sorted by name and path;
/// a failed probe's STAGE column says where it stopped (the JSON's
/// `failure_stage`).
pub fn table(results: &[ProbeResult]) -> String {
    let mut rows: Vec<&ProbeResult> = results.iter().collect();
    rows.sort_by(|a, b| (&a.name, &a.path).cmp(&(&b.name, &b.path)));
    let name_w = rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 40);
    let path_w = rows
        .iter()
        .map(|r| r.path.as_deref().unwrap_or("-").chars().count())
        .max()
        .unwrap_or(4)
        .clamp(4, 30);
    let stage_w = rows
        .iter()
        .map(|r| stage(r).len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!(
        "{}  {}  {:<5} {:<6} {:>9} {:>9} {:>5}  {}  {}\n",
        cell("NAME", name_w),
        cell("PATH", path_w),
        "RESULT",
        "STATUS",
        "LATENCY",
        "DESC",
        "INTRO",
        cell("STAGE", stage_w),
        "ERROR"
    );
    for r in rows {
        let secs = |v: Option<f64>| v.map(|v| format!("{v:.2}s")).unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{}  {}  {:<6} {:<6} {:>9} {:>9} {:>5}  {}  {}\n",
            cell(&r.name, name_w),
            cell(r.path.as_deref().unwrap_or("-"), path_w),
            if r.passed { "OK" } else { "FAIL" },
            r.status_code
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into()),
            secs(r.latency_seconds),
            secs(r.descriptor_latency_seconds),
            r.introduction_points
                .map(|n| n.to_string())
                .unwrap_or_else(|| "-".into()),
            cell(stage(r), stage_w),
            r.error.as_deref().unwrap_or("")
        ));
    }
    let passed = results.iter().filter(|r| r.passed).count();
    out.push_str(&format!("{passed}/{} probes passed\n", results.len()));
    out
}

/// Nagios plugin states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NagiosState {
    /// 0
    Ok = 0,
    /// 1
    Warning = 1,
    /// 2
    Critical = 2,
    /// 3
    Unknown = 3,
}

impl NagiosState {
    /// `OK`, `WARNING`…
    pub fn as_str(self) -> &'static str {
        match self {
            NagiosState::Ok => "OK",
            NagiosState::Warning => "WARNING",
            NagiosState::Critical => "CRITICAL",
            NagiosState::Unknown => "UNKNOWN",
        }
    }
}

/// Certificates expiring sooner than this are a WARNING: 14 days, the
/// threshold of the shipped alert `OnionServiceCertificateExpiringSoon`
/// and of both dashboards (a test checks they agree; Onionprobe's bundled
/// alert uses 7 days).
pub const CERT_WARNING_SECONDS: i64 = onionwatch_alert::CERT_WARNING_SECONDS;

/// What the verdict says of a failed probe: `name[path]: stage (error)`,
/// the error left out when it only repeats the stage.
fn failure(label: &str, r: &ProbeResult, fallback: &str) -> String {
    let error = r.error.as_deref().unwrap_or(fallback);
    match r.failure_stage.map(|s| s.as_str()) {
        Some(s) if s == error => format!("{label}: {s}"),
        Some(s) => format!("{label}: {s} ({error})"),
        None => format!("{label}: {error}"),
    }
}

/// The verdict and its one-line summary (with performance data), each
/// failed probe named with its failure stage and error:
/// CRITICAL when an onion service is unreachable or its descriptor is
/// missing; WARNING when reachable but with an unexpected status, a missing
/// pattern, or a certificate invalid or expiring within 14 days; OK
/// otherwise; UNKNOWN when nothing was probed.
pub fn nagios(results: &[ProbeResult]) -> (NagiosState, String) {
    nagios_with(results, CERT_WARNING_SECONDS)
}

/// [`nagios`] with certificates expiring within `cert_warning_seconds` a
/// WARNING (the `alerts:` section's threshold of
/// `OnionServiceCertificateExpiringSoon`, when set).
pub fn nagios_with(results: &[ProbeResult], cert_warning_seconds: i64) -> (NagiosState, String) {
    if results.is_empty() {
        return (
            NagiosState::Unknown,
            "ONIONWATCH UNKNOWN - nothing was probed".into(),
        );
    }
    let mut critical = Vec::new();
    let mut warning = Vec::new();
    for r in results {
        let label = match &r.path {
            Some(p) if p != "/" => format!("{}{}", r.name, p),
            _ => r.name.clone(),
        };
        if !r.descriptor_reachable || !r.reachable {
            critical.push(failure(&label, r, "unreachable"));
        } else if !r.passed {
            warning.push(failure(&label, r, "failed"));
        } else if let Some(t) = &r.tls {
            if !t.certificate_valid
                || t.certificate_expiry_seconds
                    .is_some_and(|s| s < cert_warning_seconds)
            {
                warning.push(format!("{label}: certificate invalid or expiring"));
            }
        }
    }
    let state = if !critical.is_empty() {
        NagiosState::Critical
    } else if !warning.is_empty() {
        NagiosState::Warning
    } else {
        NagiosState::Ok
    };
    let ok = results.iter().filter(|r| r.passed).count();
    let mut detail: Vec<String> = critical.into_iter().chain(warning).collect();
    if detail.len() > 5 {
        let more = detail.len() - 5;
        detail.truncate(5);
        detail.push(format!("and {more} more"));
    }
    let max_latency = results
        .iter()
        .filter_map(|r| r.latency_seconds)
        .fold(0.0f64, f64::max);
    let line = format!(
        "ONIONWATCH {} - {ok}/{} onion service probes passed{}{} | passed={ok};;;0;{} max_latency={max_latency:.3}s",
        state.as_str(),
        results.len(),
        if detail.is_empty() { "" } else { "; " },
        detail.join(", "),
        results.len()
    );
    (state, line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::{DescriptorOutcome, FailureStage, TlsSummary};
    use crate::Config;

    /// A result of endpoint `name` at `/`, its descriptor fetched.
    fn result(name: &str) -> ProbeResult {
        let yaml = format!(
            "endpoints:\n  {name}:\n    address: 2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion\n    protocol: http\n    port: 80\n    paths:\n      - path: /\n"
        );
        let (config, _) = Config::from_yaml(&yaml, "test").unwrap();
        let t = &config.targets().unwrap()[0];
        let desc = DescriptorOutcome {
            ok: true,
            ..DescriptorOutcome::default()
        };
        ProbeResult::new(1, t, t.paths.first(), &desc)
    }

    fn fixtures() -> Vec<ProbeResult> {
        let mut fine = result("fine-site");
        fine.passed = true;
        fine.reachable = true;
        fine.status_code = Some(200);
        let mut broken = result("broken-site");
        broken.reachable = true;
        broken.status_code = Some(500);
        broken.unexpected_status = Some(true);
        broken.error = Some("unexpected_status".into());
        broken.failure_stage = Some(FailureStage::HttpStatus);
        let mut gone = result("gone-site");
        gone.descriptor_reachable = false;
        gone.error = Some("descriptor_not_found".into());
        gone.failure_stage = Some(FailureStage::DescriptorNotFound);
        vec![gone, broken, fine]
    }

    #[test]
    fn the_table_shows_the_failure_stage_of_failed_probes() {
        let text = table(&fixtures());
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains(" STAGE ") && lines[0].ends_with("ERROR"),
            "{text}"
        );
        let row = |name: &str| *lines.iter().find(|l| l.starts_with(name)).unwrap();
        let broken = row("broken-site");
        assert!(
            broken.contains(" FAIL ")
                && broken.contains(" 500 ")
                && broken.contains(" http_status ")
                && broken.ends_with(" unexpected_status"),
            "{text}"
        );
        assert!(
            row("gone-site").contains(" descriptor_not_found "),
            "{text}"
        );
        let fine = row("fine-site");
        assert!(fine.contains(" OK ") && fine.contains(" - "), "{text}");
        // The columns line up: STAGE starts at the same place in every row.
        let at = lines[0].find("STAGE").unwrap();
        assert_eq!(&broken[at..at + 11], "http_status", "{text}");
        assert_eq!(&fine[at..at + 1], "-", "{text}");
        assert_eq!(lines.last(), Some(&"1/3 probes passed"));
    }

    #[test]
    fn the_check_warns_of_certificates_under_the_configured_threshold() {
        let mut r = result("tls-site");
        r.passed = true;
        r.reachable = true;
        r.tls = Some(TlsSummary {
            version: "TLSv1.3".into(),
            cipher: String::new(),
            certificate_valid: true,
            certificate_error: None,
            certificate_expiry_seconds: Some(20 * 86_400),
            certificate_not_after: None,
            certificate_match_hostname: Some(true),
        });
        let results = [r];
        assert_eq!(nagios(&results).0, NagiosState::Ok);
        let (state, line) = nagios_with(&results, 21 * 86_400);
        assert_eq!(state, NagiosState::Warning, "{line}");
        assert!(line.contains("certificate invalid or expiring"), "{line}");
    }

    #[test]
    fn the_check_line_names_each_failure_stage() {
        let (state, line) = nagios(&fixtures());
        assert_eq!(state, NagiosState::Critical, "{line}");
        assert!(
            line.starts_with(
                "ONIONWATCH CRITICAL - 1/3 onion service probes passed; \
                 gone-site: descriptor_not_found, broken-site: http_status (unexpected_status) |"
            ),
            "{line}"
        );
        // Only the warning left.
        let mut results = fixtures();
        results.remove(0);
        let (state, line) = nagios(&results);
        assert_eq!(state, NagiosState::Warning, "{line}");
        assert!(
            line.contains("; broken-site: http_status (unexpected_status) |"),
            "{line}"
        );
        // A failure without stage keeps its error alone.
        results[0].failure_stage = None;
        let (_, line) = nagios(&results);
        assert!(
            line.contains("; broken-site: unexpected_status |"),
            "{line}"
        );
    }
}
