//! The inside monitor of onionwatch: what runs next to the tor daemons and
//! web servers of onion services (Onionspray projects, or any torrc).
//!
//! - [`watch`]: the `onionwatch watch` runtime: one scrape task per
//!   target, each running its [`collector`] (tor MetricsPort, tor control
//!   port, nginx `stub_status`, one file each behind one trait) on an
//!   interval, re-exported on one endpoint; targets come from [`targets`]
//!   (YAML and flags) and [`discovery`] (an Onionspray tree, read by
//!   `onionwatch-onionspray`). [`names`] holds the names of the families
//!   it exports itself.
//! - [`probe`]: the `probe:` section of `watch`'s file (outside probing,
//!   run by `onionwatch-site`); discovery also reads each onion service's
//!   `hostname` for it ([`watch::Watcher::onion_services`]).
//!
//! Reading torrc files and Onionspray trees, and `onionwatch audit`, live
//! in `onionwatch-onionspray`: they read files, this crate scrapes. The
//! access-log policy's actions (closing abusive circuits) are executed by
//! `onionwatch_logs::guard`, not here: this crate only tells it each
//! project's tors, their control ports and listeners
//! ([`watch::Watcher::project_tors`]).

use std::path::PathBuf;
use std::time::Duration;

use onionwatch_tor::control::ParseControlAddrError;

use crate::collector::Kind;
use crate::http::UrlError;

pub mod collector;
pub mod dashboard;
pub mod discovery;
pub mod http;
pub mod names;
pub mod probe;
pub mod targets;
pub mod watch;

/// Why the watch settings or targets cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An Onionspray tree or a torrc could not be read.
    #[error(transparent)]
    Onionspray(#[from] onionwatch_onionspray::Error),
    /// The `dashboard:` section is out of bounds.
    #[error(transparent)]
    Dashboard(#[from] dashboard::DashboardError),
    /// A `remote_write:` receiver (or `--remote-write`) is unusable.
    #[error(transparent)]
    RemoteWrite(#[from] onionwatch_remote_write::ConfigError),
    /// The `--config` file is not a valid watch configuration.
    #[error("invalid watch configuration {origin}: {source}")]
    ConfigFile {
        /// The file, as given.
        origin: String,
        /// What the YAML reader found (with its line and column).
        source: Box<serde_saphyr::Error>,
    },
    /// A project or tor instance name that cannot be a label value.
    #[error("invalid {what} name {name:?}: use 1 to 64 letters, digits, '_', '-' or '.'")]
    Name {
        /// `project` or `tor instance`.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// A target flag that is not `PROJECT[/INSTANCE]=VALUE`.
    #[error(
        "{flag} {value:?}: expected PROJECT=VALUE or PROJECT/INSTANCE=VALUE, e.g. {flag} {example}"
    )]
    FlagSyntax {
        /// The flag (`--metrics-port`, …).
        flag: &'static str,
        /// Its value.
        value: String,
        /// A valid value.
        example: &'static str,
    },
    /// A log flag that is not `PROJECT=FILE`.
    #[error("{flag} {value:?}: expected PROJECT=FILE, e.g. {flag} news=/var/log/news.log")]
    LogFlag {
        /// `--access-log` or `--tor-log`.
        flag: &'static str,
        /// Its value.
        value: String,
    },
    /// A duration out of range.
    #[error("{what} must be a number of seconds between 0 and 86400, not {value}")]
    Seconds {
        /// The setting (`interval`, `timeout`, `rediscover_seconds`).
        what: &'static str,
        /// The value given.
        value: f64,
    },
    /// A scrape timeout longer than the interval.
    #[error("the scrape timeout ({timeout:?}) must not exceed the interval ({interval:?})")]
    TimeoutAboveInterval {
        /// The timeout.
        timeout: Duration,
        /// The interval.
        interval: Duration,
    },
    /// A configured tor with nothing to scrape.
    #[error("project {project}, tor {instance}: give metrics_port, control_port or both")]
    TorWithoutPort {
        /// The project.
        project: String,
        /// The tor instance.
        instance: String,
    },
    /// A configured `control_port` that does not parse.
    #[error("project {project}: {source}")]
    ControlPort {
        /// The project.
        project: String,
        /// Why.
        source: ParseControlAddrError,
    },
    /// A `--control-port` value that does not parse.
    #[error("--control-port {value:?}: {source}")]
    ControlPortFlag {
        /// The flag's value.
        value: String,
        /// Why.
        source: ParseControlAddrError,
    },
    /// A configured `nginx_status` that is not an http:// URL.
    #[error("project {project}: nginx_status {source}")]
    NginxStatus {
        /// The project.
        project: String,
        /// Why.
        source: UrlError,
    },
    /// A `--nginx-status` URL that is not an http:// URL.
    #[error("--nginx-status: {source}")]
    NginxStatusFlag {
        /// Why.
        source: UrlError,
    },
    /// A tor's `max_samples` out of range.
    #[error(
        "projects.{project}.tors (instance {instance}): max_samples must be between 1 and 200000, \
         not {value}"
    )]
    MaxSamples {
        /// The project.
        project: String,
        /// The tor instance.
        instance: String,
        /// The value given.
        value: usize,
    },
    /// A `--nginx-status` value naming a tor instance.
    #[error("--nginx-status {value:?}: nginx has no tor instance; use PROJECT=URL")]
    NginxInstance {
        /// The flag's value.
        value: String,
    },
    /// A `--metrics-port` address that is not an IP address and a port.
    #[error("--metrics-port {value:?}: {addr:?} is not HOST:PORT (an IP address and a port)")]
    MetricsPortFlag {
        /// The flag's value.
        value: String,
        /// The address part.
        addr: String,
    },
    /// Two targets of one collector for the same project and tor instance.
    #[error("project {project} has two {} targets for tor instance {instance:?}: name them apart with PROJECT/INSTANCE=…", .collector.as_str())]
    DuplicateTarget {
        /// The project.
        project: String,
        /// The collector.
        collector: Kind,
        /// The tor instance (empty for nginx).
        instance: String,
    },
    /// The `--log-format` / `log_format:` string does not compile.
    #[error("log_format: {source} (give the format string of nginx's log_format directive, or combined)")]
    LogFormat {
        /// Why.
        source: onionwatch_logs::access::FormatError,
    },
    /// No Onionspray tree, target or log was given.
    #[error("nothing to watch: give an Onionspray directory (--onionspray DIR), a target (--metrics-port, --control-port, --nginx-status) or a log (--access-log, --tor-log), on the command line or in the configuration file")]
    NothingGiven,
    /// The Onionspray trees given hold nothing to scrape or follow.
    #[error("{}", watch::nothing_found(.trees, *.follow_onionspray_logs, .unreadable))]
    NothingFound {
        /// Each tree and its number of projects.
        trees: Vec<(PathBuf, usize)>,
        /// Whether the projects' logs would be followed.
        follow_onionspray_logs: bool,
        /// What could not be read in them (a 0700 directory of another
        /// user), with why and the fix.
        unreadable: Vec<String>,
    },
}
