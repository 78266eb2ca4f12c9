//! The tor MetricsPort collector: fetch `/metrics`, parse tor's Prometheus
//! text, keep what tor may send ([`keep_tor_families`]: `tor_*` families,
//! tor's types for tor's names), and label every sample with its `project`
//! and `tor_instance`. A MetricsPort is not trusted: whoever runs the tor
//! (or listens on its port) writes the page.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use onionwatch_metrics::parse::{parse_bytes, Limits, ParseError};
use onionwatch_metrics::{exposed_names, Family, MetricType};

use onionwatch_onionspray::tree::TorInstance;

use super::{Collector, Dropped, Endpoint, Scrape};
use crate::http::{self, HttpError, HttpUrl};

/// Largest MetricsPort page accepted (tor with 100 onion services serves
/// about 1 MB).
pub const MAX_BODY: usize = 16 << 20;

/// Most samples accepted from one MetricsPort page by default. tor 0.4.9
/// sends about 280 samples of its own plus 33 per onion service (more with
/// several ports), so about 3,600 with 100 onion services. Each sample kept
/// costs watch a few KB (parsed, cached, merged and rendered), so this bounds
/// what one MetricsPort can make it hold.
pub const DEFAULT_MAX_SAMPLES: usize = 50_000;

/// The largest `max_samples` a target may be given (the parser's own limit).
pub const MAX_MAX_SAMPLES: usize = 200_000;

/// [`DEFAULT_MAX_SAMPLES`], for serde.
pub fn default_max_samples() -> usize {
    DEFAULT_MAX_SAMPLES
}

/// A MetricsPort to scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsPort {
    /// Its address.
    pub addr: SocketAddr,
    /// Most samples one page may hold; a larger page fails the scrape.
    pub max_samples: usize,
}

impl MetricsPort {
    /// `addr` with [`DEFAULT_MAX_SAMPLES`].
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            max_samples: DEFAULT_MAX_SAMPLES,
        }
    }
}

/// Why a MetricsPort scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Nothing listens there.
    #[error("cannot connect to tor's MetricsPort {addr}: {source} (is tor running with `MetricsPort {addr}`?)")]
    Connect {
        /// The MetricsPort.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// tor closed the connection without a word: its policy rejects us.
    #[error("tor's MetricsPort {addr} closed the connection without an answer: its MetricsPortPolicy rejects this address (add `MetricsPortPolicy accept 127.0.0.1` to the torrc, or `set tor_metrics_port_policy accept 127.0.0.1` in Onionspray)")]
    Rejected {
        /// The MetricsPort.
        addr: SocketAddr,
    },
    /// Any other HTTP failure.
    #[error("tor's MetricsPort {addr}: {source}")]
    Http {
        /// The MetricsPort.
        addr: SocketAddr,
        /// The failure.
        source: HttpError,
    },
    /// The page holds more samples than the target's `max_samples`.
    #[error(
        "refused the page of tor's MetricsPort {addr} (project {project}, tor_instance \
         {tor_instance}): more than {limit} samples, this target's max_samples (tor with 100 onion \
         services sends about 3,600; if this tor really sends more, raise max_samples of this tor \
         in watch's YAML)"
    )]
    TooManySamples {
        /// The MetricsPort.
        addr: SocketAddr,
        /// The target's project.
        project: String,
        /// The target's tor instance.
        tor_instance: String,
        /// Its `max_samples`.
        limit: usize,
    },
    /// The page is not valid Prometheus text.
    #[error("tor's MetricsPort {addr} served text that does not parse: {source}")]
    Parse {
        /// The MetricsPort.
        addr: SocketAddr,
        /// The parse error (with its line).
        source: ParseError,
    },
}

/// Scrape one MetricsPort.
pub async fn scrape(port: MetricsPort) -> Result<Vec<Family>, MetricsError> {
    let addr = port.addr;
    let url = HttpUrl {
        host: addr.ip().to_string(),
        port: addr.port(),
        path: "/metrics".into(),
        unix: None,
    };
    let body = http::get(&url, MAX_BODY).await.map_err(|e| match e {
        HttpError::Connect { source, .. } => MetricsError::Connect { addr, source },
        HttpError::NoAnswer { .. } => MetricsError::Rejected { addr },
        source => MetricsError::Http { addr, source },
    })?;
    let limits = Limits {
        max_bytes: MAX_BODY,
        max_samples: port.max_samples,
        ..Limits::default()
    };
    parse_bytes(&body, &limits).map_err(|source| MetricsError::Parse { addr, source })
}

/// The collector of one tor's MetricsPort.
#[derive(Debug, Clone)]
pub struct TorMetrics {
    port: MetricsPort,
    project: String,
    tor_instance: String,
    dropped: Arc<Dropped>,
}

impl TorMetrics {
    /// Scrape `port`, labelling its families with `project` and
    /// `tor_instance`; the families it leaves out are counted in `dropped`.
    pub fn new(
        port: MetricsPort,
        project: String,
        tor_instance: String,
        dropped: Arc<Dropped>,
    ) -> Self {
        Self {
            port,
            project,
            tor_instance,
            dropped,
        }
    }
}

impl Collector for TorMetrics {
    fn scrape(&self) -> Scrape<'_> {
        Box::pin(async move {
            let mut f = scrape(self.port).await.map_err(|e| match e {
                MetricsError::Parse {
                    addr,
                    source: ParseError::TooManySamples { limit, .. },
                } => MetricsError::TooManySamples {
                    addr,
                    project: self.project.clone(),
                    tor_instance: self.tor_instance.clone(),
                    limit,
                },
                e => e,
            })?;
            let kept = keep_tor_families(&mut f);
            self.dropped
                .not_tor
                .fetch_add(kept.not_tor, Ordering::Relaxed);
            self.dropped
                .type_conflict
                .fetch_add(kept.type_conflict, Ordering::Relaxed);
            self.dropped
                .name_conflict
                .fetch_add(kept.name_conflict, Ordering::Relaxed);
            relabel(&mut f, &self.project, &self.tor_instance);
            Ok(f)
        })
    }
}

/// The families tor 0.4.9 sends, by name as [`parse_bytes`] reads them (a
/// counter without its `_total`), with their types: a page giving one of
/// these names another type is not tor's, and is not let to decide that
/// name's type for every other tor's page.
pub const TOR_FAMILIES: &[(&str, MetricType)] = &[
    ("tor_bug_reached_count", MetricType::Counter),
    ("tor_hs_app_read_bytes", MetricType::Counter),
    ("tor_hs_app_write_bytes", MetricType::Counter),
    ("tor_hs_intro_circ_build_time", MetricType::Histogram),
    ("tor_hs_intro_established_count", MetricType::Gauge),
    ("tor_hs_intro_num", MetricType::Counter),
    ("tor_hs_intro_rejected_intro_req_count", MetricType::Counter),
    ("tor_hs_pow_suggested_effort", MetricType::Gauge),
    ("tor_hs_rdv_error_count", MetricType::Counter),
    ("tor_hs_rdv_established_count", MetricType::Gauge),
    ("tor_hs_rdv_num", MetricType::Counter),
    ("tor_hs_rdv_pow_pqueue_count", MetricType::Gauge),
    ("tor_hs_rend_circ_build_time", MetricType::Histogram),
    ("tor_relay_circ_proto_violation", MetricType::Counter),
    ("tor_relay_circuits_total", MetricType::Gauge),
    ("tor_relay_congestion_control", MetricType::Gauge),
    ("tor_relay_congestion_control_total", MetricType::Counter),
    ("tor_relay_connections", MetricType::Gauge),
    ("tor_relay_connections_total", MetricType::Counter),
    ("tor_relay_destroy_cell", MetricType::Counter),
    ("tor_relay_dos", MetricType::Counter),
    ("tor_relay_drop_cell", MetricType::Counter),
    ("tor_relay_est_intro", MetricType::Counter),
    ("tor_relay_est_rend", MetricType::Counter),
    ("tor_relay_exit_dns_error", MetricType::Counter),
    ("tor_relay_exit_dns_query", MetricType::Counter),
    ("tor_relay_flag", MetricType::Gauge),
    ("tor_relay_intro1", MetricType::Counter),
    (
        "tor_relay_load_global_rate_limit_reached",
        MetricType::Counter,
    ),
    ("tor_relay_load_onionskins", MetricType::Counter),
    ("tor_relay_load_oom_bytes", MetricType::Counter),
    ("tor_relay_load_socket_total", MetricType::Gauge),
    ("tor_relay_load_tcp_exhaustion", MetricType::Counter),
    ("tor_relay_rend1", MetricType::Counter),
    ("tor_relay_streams", MetricType::Counter),
    ("tor_relay_traffic_bytes", MetricType::Counter),
];

/// What [`keep_tor_families`] left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kept {
    /// Families not named `tor_*`.
    pub not_tor: u64,
    /// Families of tor's names ([`TOR_FAMILIES`]) with another type.
    pub type_conflict: u64,
    /// Families of other names whose samples would be written under a
    /// name one of tor's families writes (a gauge `tor_hs_intro_num_total`).
    pub name_conflict: u64,
}

/// Every sample name tor's families ([`TOR_FAMILIES`]) may write, and the
/// family writing it.
fn tor_sample_names() -> &'static HashMap<String, &'static str> {
    static NAMES: OnceLock<HashMap<String, &'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        TOR_FAMILIES
            .iter()
            .flat_map(|(name, kind)| exposed_names(name, *kind).map(move |n| (n, *name)))
            .collect()
    })
}

/// Keep only what a MetricsPort may export: families named `tor_*` (tor
/// names all of its own so), and of tor's type for the names in
/// [`TOR_FAMILIES`]. Anything else on the page (say an
/// `onionwatch_scrape_up` histogram or an `onion_service_reachable` gauge)
/// would pose as onionwatch's own families, the prober's or nginx's, or
/// poison a family every other tor exports (same name, another type; or
/// samples written under one of its names): it is dropped and counted.
/// Unknown `tor_*` names (a newer tor's) pass; [`onionwatch_metrics::merge`]
/// still drops a family whose type differs from an earlier one's.
pub fn keep_tor_families(families: &mut Vec<Family>) -> Kept {
    let mut kept = Kept::default();
    families.retain(|f| {
        if !f.name.starts_with("tor_") {
            kept.not_tor += 1;
            return false;
        }
        match TOR_FAMILIES.iter().find(|(name, _)| *name == f.name) {
            Some((_, kind)) if *kind != f.kind => {
                kept.type_conflict += 1;
                false
            }
            Some(_) => true,
            None => {
                let tor = tor_sample_names();
                let clash = exposed_names(&f.name, f.kind).any(|n| tor.contains_key(&n));
                kept.name_conflict += u64::from(clash);
                !clash
            }
        }
    });
    kept
}

/// The MetricsPort of a tor found in an Onionspray tree, if it has one on TCP.
pub fn from_tor(t: &TorInstance) -> Option<Endpoint> {
    super::tcp(&t.metrics_port()?).map(|a| Endpoint::Metrics(MetricsPort::new(a)))
}

/// Add `project` and `tor_instance` to every sample (families from tor
/// keep their names, types, HELP and histogram structure); labels of those
/// names on the page become `exported_project`/`exported_tor_instance`.
pub fn relabel(families: &mut [Family], project: &str, tor_instance: &str) {
    for f in families {
        f.add_label("project", project);
        f.add_label("tor_instance", tor_instance);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onionwatch_metrics::parse::parse;
    use onionwatch_metrics::{render, Format};

    #[test]
    fn a_page_cannot_pose_as_another_project() {
        let page = "# TYPE tor_hs_intro_num_total counter\n\
                    tor_hs_intro_num_total{onion=\"a\",project=\"bank\",tor_instance=\"hs-9\"} 7\n";
        let mut f = parse(page, &Limits::default()).unwrap();
        relabel(&mut f, "news", "tor");
        let text = render(&f, Format::Prometheus);
        assert!(
            text.contains("tor_hs_intro_num_total{onion=\"a\",exported_project=\"bank\",exported_tor_instance=\"hs-9\",project=\"news\",tor_instance=\"tor\"} 7\n"),
            "{text}"
        );
    }

    #[test]
    fn tor_families_match_what_tor_sends() {
        let page = onionwatch_test_support::TOR_METRICSPORT_PAGE;
        let mut f = parse(page, &Limits::default()).unwrap();
        let mut seen: Vec<(String, MetricType)> =
            f.iter().map(|f| (f.name.clone(), f.kind)).collect();
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        seen.dedup();
        let table: Vec<(String, MetricType)> = TOR_FAMILIES
            .iter()
            .map(|(n, k)| ((*n).to_owned(), *k))
            .collect();
        assert_eq!(seen, table, "TOR_FAMILIES is tor's page, sorted");
        let before = f.len();
        assert_eq!(keep_tor_families(&mut f), Kept::default());
        assert_eq!(f.len(), before, "a real page loses nothing");
    }

    #[test]
    fn only_tor_families_of_tor_types_are_kept() {
        let page = "# TYPE onionwatch_scrape_up histogram\n\
                    onionwatch_scrape_up_bucket{le=\"+Inf\"} 1\n\
                    onionwatch_scrape_up_sum 1\n\
                    onionwatch_scrape_up_count 1\n\
                    # TYPE onion_service_reachable gauge\n\
                    onion_service_reachable{name=\"fake\"} 1\n\
                    # TYPE tor_hs_app_write_bytes histogram\n\
                    tor_hs_app_write_bytes_count 5\n\
                    # TYPE tor_hs_intro_num_total gauge\n\
                    tor_hs_intro_num_total 5\n\
                    # TYPE tor_hs_new_thing counter\n\
                    tor_hs_new_thing_total 2\n";
        let mut f = parse(page, &Limits::default()).unwrap();
        let kept = keep_tor_families(&mut f);
        assert_eq!(
            kept,
            Kept {
                not_tor: 2,
                type_conflict: 1,
                name_conflict: 1
            }
        );
        let names: Vec<&str> = f.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["tor_hs_new_thing"]);
    }

    #[test]
    fn summaries_keep_their_structure_when_relabelled() {
        let page = "# TYPE s summary\n\
                    s{quantile=\"0.5\"} 1\n\
                    s_sum 3\n\
                    s_count 2\n";
        let mut f = parse(page, &Limits::default()).unwrap();
        relabel(&mut f, "news", "hs-1");
        assert_eq!(
            render(&f, Format::Prometheus),
            "# HELP s \n# TYPE s summary\n\
             s{quantile=\"0.5\",project=\"news\",tor_instance=\"hs-1\"} 1\n\
             s_sum{project=\"news\",tor_instance=\"hs-1\"} 3\n\
             s_count{project=\"news\",tor_instance=\"hs-1\"} 2\n"
        );
    }
}
