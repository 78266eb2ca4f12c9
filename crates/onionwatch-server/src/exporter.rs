//! What every Prometheus exporter serves besides its own families:
//! `onionwatch_build_info{version,revision,rustc_version}` (always 1) and
//! the standard `process_*` families, read from `/proc/self` on Linux (the
//! names and meanings of the official client libraries, so existing
//! dashboards and alerts work; other systems get none).
//!
//! [`router`](crate::router)'s `/metrics` appends them to the registry's
//! families, so every command's endpoint has them.

use onionwatch_metrics::Family;

/// The crate version (the workspace's, so the binary's).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

static BUILD: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();

/// Record the git revision and rustc version of the build (the binary's
/// build script finds them, so a commit rebuilds only the binary). Until
/// called, and after the first call, `onionwatch_build_info` keeps what it
/// has: "unknown" before.
pub fn set_build(revision: &str, rustc_version: &str) {
    let _ = BUILD.set((revision.to_owned(), rustc_version.to_owned()));
}

/// The revision and rustc version given to [`set_build`], or "unknown".
pub fn build() -> (&'static str, &'static str) {
    BUILD
        .get()
        .map_or(("unknown", "unknown"), |(r, v)| (r.as_str(), v.as_str()))
}

/// `onionwatch_build_info`.
pub fn build_info() -> Family {
    let mut f = Family::gauge(
        "onionwatch_build_info",
        "A metric with a constant '1' value labeled by the version, git revision and rustc version onionwatch was built from.",
    );
    let (revision, rustc_version) = build();
    f.push(
        &[
            ("version", VERSION),
            ("revision", revision),
            ("rustc_version", rustc_version),
        ],
        1.0,
    );
    f
}

/// `onionwatch_build_info` and the `process_*` families.
pub fn families() -> Vec<Family> {
    let mut out = vec![build_info()];
    out.extend(process_families());
    out
}

/// What `/proc/self/stat` says, in the units it uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcStat {
    /// User plus system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Start time after boot, in clock ticks.
    pub start_ticks: u64,
    /// Virtual memory size in bytes.
    pub vsize: u64,
    /// Resident set size in pages.
    pub rss_pages: u64,
}

/// Parse `/proc/self/stat`. The command name (field 2) is in parentheses
/// and may itself hold spaces and parentheses, so fields are counted after
/// the last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let (_, rest) = text.rsplit_once(')')?;
    // rest[0] is field 3 (state).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(ProcStat {
        cpu_ticks: field(14)?.checked_add(field(15)?)?,
        start_ticks: field(22)?,
        vsize: field(23)?,
        rss_pages: field(24)?,
    })
}

/// The soft "Max open files" limit of `/proc/self/limits` (`+Inf` for
/// "unlimited").
pub fn parse_max_fds(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        Some(f64::INFINITY)
    } else {
        soft.parse::<u64>().ok().map(|v| v as f64)
    }
}

/// The boot time (`btime`) of `/proc/stat`, in seconds since the epoch.
pub fn parse_boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn gauge(name: &str, help: &str, value: f64) -> Family {
    let mut f = Family::gauge(name, help);
    f.push(&[], value);
    f
}

/// The `process_*` families of this process; empty where `/proc` is
/// missing. A file that cannot be read leaves its families out rather
/// than export a wrong value.
pub fn process_families() -> Vec<Family> {
    #[cfg(target_os = "linux")]
    return linux_process_families();
    #[cfg(not(target_os = "linux"))]
    return Vec::new();
}

#[cfg(target_os = "linux")]
fn linux_process_families() -> Vec<Family> {
    let mut out = Vec::new();
    // SAFETY: sysconf has no preconditions; it returns -1 on error.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let stat = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|t| parse_stat(&t));
    if let (Some(stat), true) = (stat, ticks > 0 && page > 0) {
        let ticks = ticks as f64;
        let mut cpu = Family::counter(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds.",
        );
        cpu.push(&[], stat.cpu_ticks as f64 / ticks);
        out.push(cpu);
        out.push(gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            (stat.rss_pages as f64) * page as f64,
        ));
        out.push(gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            stat.vsize as f64,
        ));
        let boot = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| parse_boot_time(&t));
        if let Some(boot) = boot {
            out.push(gauge(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                boot as f64 + stat.start_ticks as f64 / ticks,
            ));
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        // The directory's own descriptor is counted too, as the Go and
        // Python clients do.
        out.push(gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            dir.count() as f64,
        ));
    }
    let max = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|t| parse_max_fds(&t));
    if let Some(max) = max {
        out.push(gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            max,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with spaces and a closing parenthesis.
        let line = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 50 0 0 20 0 4 0 12345 104857600 2560 18446744073709551615 \
                    1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                cpu_ticks: 300,
                start_ticks: 12345,
                vsize: 104857600,
                rss_pages: 2560,
            })
        );
        assert_eq!(parse_stat("4242 (cmd) S 1 2"), None, "too short");
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn limits_and_boot_time() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_fds(limits), Some(1024.0));
        let unlimited = limits.replace("1024      ", "unlimited ");
        assert_eq!(parse_max_fds(&unlimited), Some(f64::INFINITY));
        assert_eq!(parse_max_fds("Max cpu time 1 1 seconds"), None);
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_boot_time("cpu 1\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_every_family() {
        let text = onionwatch_metrics::render(&families(), onionwatch_metrics::Format::Prometheus);
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_virtual_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            let value = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing:\n{text}"));
            let v: f64 = value.parse().unwrap();
            // A fresh test process may not have used a clock tick yet.
            let min = if name == "process_cpu_seconds_total" {
                0.0
            } else {
                1.0
            };
            assert!(v >= min && v.is_finite(), "{name} {v}");
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = onionwatch_test_value(&text, "process_start_time_seconds ");
        assert!(
            start <= now + 1.0 && start > now - 86400.0 * 365.0,
            "{start}"
        );
        let (revision, rustc) = build();
        assert!(text.contains(&format!(
            "onionwatch_build_info{{version=\"{VERSION}\",revision=\"{revision}\",rustc_version=\"{rustc}\"}} 1\n"
        )), "{text}");
    }

    fn onionwatch_test_value(text: &str, prefix: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap()
            .parse()
            .unwrap()
    }
}
