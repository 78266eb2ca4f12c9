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

/// A human-readable table of a round's results, sorted by name and path.
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
    let mut out = format!(
        "{}  {}  {:<5} {:<6} {:>9} {:>9} {:>5}  {}\n",
        cell("NAME", name_w),
        cell("PATH", path_w),
        "RESULT",
        "STATUS",
        "LATENCY",
        "DESC",
        "INTRO",
        "ERROR"
    );
    for r in rows {
        let secs = |v: Option<f64>| v.map(|v| format!("{v:.2}s")).unwrap_or_else(|| "-".into());
        out.push_str(&format!(
            "{}  {}  {:<6} {:<6} {:>9} {:>9} {:>5}  {}\n",
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
pub const CERT_WARNING_SECONDS: i64 = 14 * 86_400;

/// The verdict and its one-line summary (with performance data):
/// CRITICAL when an onion service is unreachable or its descriptor is
/// missing; WARNING when reachable but with an unexpected status, a missing
/// pattern, or a certificate invalid or expiring within 14 days; OK
/// otherwise; UNKNOWN when nothing was probed.
pub fn nagios(results: &[ProbeResult]) -> (NagiosState, String) {
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
            critical.push(format!(
                "{label}: {}",
                r.error.as_deref().unwrap_or("unreachable")
            ));
        } else if !r.passed {
            warning.push(format!(
                "{label}: {}",
                r.error.as_deref().unwrap_or("failed")
            ));
        } else if let Some(t) = &r.tls {
            if !t.certificate_valid
                || t.certificate_expiry_seconds
                    .is_some_and(|s| s < CERT_WARNING_SECONDS)
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
