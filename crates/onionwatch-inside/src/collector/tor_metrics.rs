//! The tor MetricsPort collector: fetch `/metrics`, parse tor's Prometheus
//! text, and label every sample with its `project` and `tor_instance`.

use std::net::SocketAddr;

use onionwatch_metrics::parse::{parse_bytes, Limits, ParseError};
use onionwatch_metrics::Family;

use onionwatch_onionspray::tree::TorInstance;

use super::{Collector, Endpoint, Scrape};
use crate::http::{self, HttpError, HttpUrl};

/// Largest MetricsPort page accepted (tor with 100 onion services serves
/// about 1 MB).
pub const MAX_BODY: usize = 16 << 20;

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
pub async fn scrape(addr: SocketAddr) -> Result<Vec<Family>, MetricsError> {
    let url = HttpUrl {
        host: addr.ip().to_string(),
        port: addr.port(),
        path: "/metrics".into(),
    };
    let body = http::get(&url, MAX_BODY).await.map_err(|e| match e {
        HttpError::Connect { source, .. } => MetricsError::Connect { addr, source },
        HttpError::NoAnswer { .. } => MetricsError::Rejected { addr },
        source => MetricsError::Http { addr, source },
    })?;
    let limits = Limits {
        max_bytes: MAX_BODY,
        ..Limits::default()
    };
    parse_bytes(&body, &limits).map_err(|source| MetricsError::Parse { addr, source })
}

/// The collector of one tor's MetricsPort.
#[derive(Debug, Clone)]
pub struct TorMetrics {
    addr: SocketAddr,
    project: String,
    tor_instance: String,
}

impl TorMetrics {
    /// Scrape `addr`, labelling its families with `project` and `tor_instance`.
    pub fn new(addr: SocketAddr, project: String, tor_instance: String) -> Self {
        Self {
            addr,
            project,
            tor_instance,
        }
    }
}

impl Collector for TorMetrics {
    fn scrape(&self) -> Scrape<'_> {
        Box::pin(async move {
            let mut f = scrape(self.addr).await?;
            relabel(&mut f, &self.project, &self.tor_instance);
            Ok(f)
        })
    }
}

/// The MetricsPort of a tor found in an Onionspray tree, if it has one on TCP.
pub fn from_tor(t: &TorInstance) -> Option<Endpoint> {
    super::tcp(&t.metrics_port()?).map(Endpoint::Metrics)
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
