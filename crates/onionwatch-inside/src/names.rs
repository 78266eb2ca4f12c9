//! Names of the families `onionwatch watch` exports itself, for readers
//! (the dashboard) to import rather than spell out. tor's own families
//! (`tor_*`) are re-exported under tor's names, and only those (see
//! [`crate::collector::tor_metrics::keep_tor_families`]), nginx's under
//! nginx-prometheus-exporter's (`nginx_*`, see [`crate::collector::nginx`]).
//! Families a scrape left out are counted in
//! [`onionwatch_metrics::DROPPED_FAMILIES`].

/// Whether the last scrape of a target worked (labels `collector`,
/// `project`, `tor_instance`).
pub const SCRAPE_UP: &str = "onionwatch_scrape_up";
/// How long the last scrape of a target took.
pub const SCRAPE_DURATION_SECONDS: &str = "onionwatch_scrape_duration_seconds";
/// A tor's bootstrap progress, from its control port.
pub const TOR_BOOTSTRAP_PERCENT: &str = "onionwatch_tor_bootstrap_percent";
/// A tor's version (info).
pub const TOR_VERSION: &str = "onionwatch_tor_version";
/// Onion services a tor hosts.
pub const TOR_ONION_SERVICES: &str = "onionwatch_tor_onion_services";
/// A tor's circuits by status and purpose.
pub const TOR_CIRCUITS: &str = "onionwatch_tor_circuits";
/// Whether the last scrape of a project's nginx `stub_status` worked.
pub const NGINX_UP: &str = "nginx_up";
