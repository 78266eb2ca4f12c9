//! The nginx/OpenResty collector: `stub_status`, exported under the names
//! of nginx-prometheus-exporter (`nginx_connections_active`,
//! `nginx_http_requests_total`, …) with a `project` label.

use onionwatch_metrics::Family;

use onionwatch_onionspray::tree::Project;

use super::{Collector, Endpoint, Scrape};
use crate::http::{self, HttpError, HttpUrl};
use crate::names;

/// Largest stub_status page accepted (the real one is ~100 bytes).
pub const MAX_BODY: usize = 4096;

/// The numbers of one stub_status page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StubStatus {
    /// Open client connections, idle ones included.
    pub active: u64,
    /// Accepted client connections since start.
    pub accepted: u64,
    /// Handled client connections since start.
    pub handled: u64,
    /// Client requests since start.
    pub requests: u64,
    /// Connections reading the request header.
    pub reading: u64,
    /// Connections writing the response.
    pub writing: u64,
    /// Idle keep-alive connections.
    pub waiting: u64,
}

/// Why a stub_status scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum NginxError {
    /// The GET failed.
    #[error("nginx stub_status {url}: {source} ({})", hint(url, source))]
    Http {
        /// The URL.
        url: String,
        /// The failure.
        source: HttpError,
    },
    /// The page is not a stub_status page.
    #[error("{url} is not an nginx stub_status page: {detail}")]
    NotStubStatus {
        /// The URL.
        url: String,
        /// What was wrong.
        detail: String,
    },
}

/// What to check when a stub_status GET fails.
fn hint(url: &str, e: &HttpError) -> &'static str {
    let unix = url.starts_with("http://unix:");
    match e {
        HttpError::Connect { source, .. }
            if unix && source.kind() == std::io::ErrorKind::PermissionDenied =>
        {
            "onionwatch may not enter the directory of that socket: run it as the Onionspray user, or see `onionwatch audit` for the group setup"
        }
        _ if unix => "is nginx running with `server { listen unix:SOCKET; location = /nginx_status { stub_status; } }`? `onionwatch audit` shows the lines for an Onionspray project",
        _ => "is nginx running with `location = /stub_status { stub_status; allow 127.0.0.1; deny all; }` on that address?",
    }
}

/// Parse the stub_status text:
///
/// ```text
/// Active connections: 291
/// server accepts handled requests
///  16630948 16630948 31070465
/// Reading: 6 Writing: 179 Waiting: 106
/// ```
pub fn parse_stub_status(text: &str) -> Result<StubStatus, String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let number = |s: &str| -> Result<u64, String> {
        s.parse().map_err(|_| format!("{s:?} is not a number"))
    };
    let active = lines
        .next()
        .and_then(|l| l.strip_prefix("Active connections:"))
        .ok_or("no `Active connections:` line")?;
    let active = number(active.trim())?;
    if lines.next() != Some("server accepts handled requests") {
        return Err("no `server accepts handled requests` line".into());
    }
    let counts: Vec<&str> = lines
        .next()
        .ok_or("no counters line")?
        .split_whitespace()
        .collect();
    if counts.len() != 3 {
        return Err(format!("expected 3 counters, found {}", counts.len()));
    }
    let rww: Vec<&str> = lines
        .next()
        .ok_or("no `Reading: … Writing: … Waiting: …` line")?
        .split_whitespace()
        .collect();
    match rww.as_slice() {
        ["Reading:", r, "Writing:", w, "Waiting:", wa] => Ok(StubStatus {
            active,
            accepted: number(counts[0])?,
            handled: number(counts[1])?,
            requests: number(counts[2])?,
            reading: number(r)?,
            writing: number(w)?,
            waiting: number(wa)?,
        }),
        _ => Err("malformed `Reading: … Writing: … Waiting: …` line".into()),
    }
}

/// Scrape one stub_status URL.
pub async fn scrape(url: &HttpUrl) -> Result<StubStatus, NginxError> {
    let body = http::get(url, MAX_BODY)
        .await
        .map_err(|source| NginxError::Http {
            url: url.to_string(),
            source,
        })?;
    let text = String::from_utf8_lossy(&body);
    parse_stub_status(&text).map_err(|detail| NginxError::NotStubStatus {
        url: url.to_string(),
        detail,
    })
}

/// The collector of one project's nginx.
#[derive(Debug, Clone)]
pub struct Nginx {
    url: HttpUrl,
    project: String,
}

impl Nginx {
    /// Scrape `url`, labelling the families with `project`.
    pub fn new(url: HttpUrl, project: String) -> Self {
        Self { url, project }
    }
}

impl Collector for Nginx {
    fn scrape(&self) -> Scrape<'_> {
        Box::pin(async move {
            let s = scrape(&self.url).await?;
            Ok(families(&self.project, Some(&s)))
        })
    }

    /// `nginx_up` 0, so that a down nginx reads as one rather than as absent.
    fn down(&self) -> Vec<Family> {
        families(&self.project, None)
    }
}

/// The `stub_status` an Onionspray project's `nginx.conf` serves, on TCP
/// or a unix socket that is not an onion service's.
pub fn from_project(p: &Project) -> Option<Endpoint> {
    p.stub_status().map(|s| Endpoint::Nginx(s.into()))
}

/// The families of one project's nginx: `nginx_up` always, the others when
/// the scrape worked.
pub fn families(project: &str, status: Option<&StubStatus>) -> Vec<Family> {
    let l = [("project", project)];
    let mut up = Family::gauge(names::NGINX_UP, "Status of the last metric scrape");
    up.push(&l, if status.is_some() { 1.0 } else { 0.0 });
    let Some(s) = status else {
        return vec![up];
    };
    let gauge = |name: &str, help: &str, v: u64| {
        let mut f = Family::gauge(name, help);
        f.push(&l, v as f64);
        f
    };
    // nginx-prometheus-exporter's counters: two without `_total`.
    let counter = |name: &str, help: &str, v: u64| {
        let mut f = Family::counter(name, help);
        f.push_suffixed("", &l, v as f64);
        f
    };
    let mut requests = Family::counter("nginx_http_requests", "Total http requests");
    requests.push(&l, s.requests as f64);
    vec![
        up,
        counter(
            "nginx_connections_accepted",
            "Accepted client connections",
            s.accepted,
        ),
        gauge(
            "nginx_connections_active",
            "Active client connections",
            s.active,
        ),
        counter(
            "nginx_connections_handled",
            "Handled client connections",
            s.handled,
        ),
        gauge(
            "nginx_connections_reading",
            "Connections where NGINX is reading the request header",
            s.reading,
        ),
        gauge(
            "nginx_connections_waiting",
            "Idle client connections",
            s.waiting,
        ),
        gauge(
            "nginx_connections_writing",
            "Connections where NGINX is writing the response back to the client",
            s.writing,
        ),
        requests,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use onionwatch_metrics::{render, Format};

    const PAGE: &str = "Active connections: 291 \nserver accepts handled requests\n 16630948 16630948 31070465 \nReading: 6 Writing: 179 Waiting: 106 \n";

    #[test]
    fn parses_the_real_page() {
        let s = parse_stub_status(PAGE).unwrap();
        assert_eq!(s.active, 291);
        assert_eq!(s.requests, 31070465);
        assert_eq!((s.reading, s.writing, s.waiting), (6, 179, 106));
    }

    #[test]
    fn rejects_other_pages() {
        for bad in ["", "<html>", "Active connections: x\n", "Active connections: 1\nserver accepts handled requests\n 1 2\nReading: 0 Writing: 1 Waiting: 0\n", "Active connections: 1\nserver accepts handled requests\n 1 2 3\nReading: 0\n"] {
            assert!(parse_stub_status(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn exporter_names() {
        let text = render(
            &families("news", Some(&parse_stub_status(PAGE).unwrap())),
            Format::Prometheus,
        );
        for line in [
            "nginx_up{project=\"news\"} 1",
            "nginx_connections_active{project=\"news\"} 291",
            "nginx_connections_accepted{project=\"news\"} 16630948",
            "nginx_connections_handled{project=\"news\"} 16630948",
            "nginx_http_requests_total{project=\"news\"} 31070465",
            "nginx_connections_reading{project=\"news\"} 6",
            "nginx_connections_writing{project=\"news\"} 179",
            "nginx_connections_waiting{project=\"news\"} 106",
            "# TYPE nginx_http_requests_total counter",
            "# TYPE nginx_connections_accepted counter",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        let down = render(&families("news", None), Format::Prometheus);
        assert_eq!(
            down.lines()
                .filter(|l| !l.starts_with('#'))
                .collect::<Vec<_>>(),
            ["nginx_up{project=\"news\"} 0"]
        );
    }
}
