//! `GET /probe?target=…`: probes scheduled by Prometheus (the
//! blackbox_exporter model). The component answers one request with the
//! families of one probe run now ([`OnDemand`]); this module bounds it:
//!
//! - in time, by the scrape timeout Prometheus sends in
//!   `X-Prometheus-Scrape-Timeout-Seconds` minus [`OnDemandLimits::margin`]
//!   (so the answer arrives before Prometheus gives up), or
//!   [`OnDemandLimits::default_timeout`] without the header, never above
//!   [`OnDemandLimits::max_timeout`];
//! - in number: at most [`OnDemandLimits::max_in_flight`] probes at once;
//!   one more gets `503 Service Unavailable` at once (Prometheus records
//!   `up 0` for that scrape) instead of queueing behind the others.
//!
//! A bad request (unknown target, bad parameter) gets `400` with a message
//! saying what is wrong; the route sits behind the endpoint's TLS,
//! authentication and `Host` check like `/metrics`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use onionwatch_metrics::{Family, Format};
use tokio::sync::Semaphore;

/// The header Prometheus sends with its scrape timeout.
pub const SCRAPE_TIMEOUT_HEADER: &str = "x-prometheus-scrape-timeout-seconds";

/// Most query parameters read from one request.
const MAX_PARAMS: usize = 16;

/// What a component answers a `/probe` request with.
pub type OnDemandFuture = Pin<Box<dyn Future<Output = Result<Vec<Family>, OnDemandError>> + Send>>;

/// A component that runs one probe now for `/probe`.
pub trait OnDemand: Send + Sync + 'static {
    /// Run the probe the query `params` name and return its families,
    /// within `timeout` (answer what is known when it runs out).
    fn probe(&self, params: Vec<(String, String)>, timeout: Duration) -> OnDemandFuture;
}

/// Why a `/probe` request got no families.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OnDemandError {
    /// The request is wrong (400): unknown target, bad parameter.
    #[error("{0}")]
    BadRequest(String),
    /// The component cannot probe now (503), e.g. its tor is not up yet.
    #[error("{0}")]
    Unavailable(String),
}

/// The bounds of `/probe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnDemandLimits {
    /// Probes running at once; more requests get 503.
    pub max_in_flight: usize,
    /// Subtracted from Prometheus's scrape timeout (0.5 s, as
    /// blackbox_exporter's `--timeout-offset`).
    pub margin: Duration,
    /// Without the header (a scraper other than Prometheus): 10 s,
    /// Prometheus's default scrape timeout.
    pub default_timeout: Duration,
    /// Upper bound whatever the header says (120 s).
    pub max_timeout: Duration,
}

impl Default for OnDemandLimits {
    fn default() -> Self {
        Self {
            max_in_flight: 32,
            margin: Duration::from_millis(500),
            default_timeout: Duration::from_secs(10),
            max_timeout: Duration::from_secs(120),
        }
    }
}

impl OnDemandLimits {
    /// The time a probe gets for a request with these headers; `None` for
    /// an unusable header value.
    pub fn timeout(&self, headers: &HeaderMap) -> Option<Duration> {
        let Some(v) = headers.get(SCRAPE_TIMEOUT_HEADER) else {
            return Some(self.default_timeout.min(self.max_timeout));
        };
        let secs: f64 = v.to_str().ok()?.trim().parse().ok()?;
        if !secs.is_finite() || secs <= 0.0 {
            return None;
        }
        let given = Duration::from_secs_f64(secs.min(self.max_timeout.as_secs_f64()));
        // A timeout shorter than twice the margin keeps half of itself.
        Some(given.saturating_sub(self.margin).max(given / 2))
    }
}

struct OnDemandState {
    handler: Arc<dyn OnDemand>,
    limits: OnDemandLimits,
    in_flight: Arc<Semaphore>,
}

/// `GET /probe` answered by `handler` within `limits`; merge it into the
/// component's router before [`crate::start`] so TLS and authentication
/// apply.
pub fn on_demand_router(handler: Arc<dyn OnDemand>, limits: OnDemandLimits) -> Router {
    let state = Arc::new(OnDemandState {
        handler,
        limits,
        in_flight: Arc::new(Semaphore::new(limits.max_in_flight.max(1))),
    });
    Router::new().route("/probe", get(probe)).with_state(state)
}

fn text(status: StatusCode, message: String) -> Response {
    (status, format!("{message}\n")).into_response()
}

async fn probe(
    State(state): State<Arc<OnDemandState>>,
    headers: HeaderMap,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    // The query's size is bounded by the request head's.
    let params = match query {
        Ok(Query(p)) if p.len() <= MAX_PARAMS => p,
        Ok(_) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("too many query parameters (at most {MAX_PARAMS})"),
            )
        }
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("bad query string: {e}")),
    };
    let Some(timeout) = state.limits.timeout(&headers) else {
        return text(
            StatusCode::BAD_REQUEST,
            format!("{SCRAPE_TIMEOUT_HEADER} must be a positive number of seconds"),
        );
    };
    let Ok(_permit) = state.in_flight.clone().try_acquire_owned() else {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{} probes are already running (the limit): try again later, scrape less \
                 often or raise the limit",
                state.limits.max_in_flight
            ),
        );
    };
    let format = Format::from_accept(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    // The component answers within `timeout`; this bound only guards
    // against one that does not.
    let run = state.handler.probe(params, timeout);
    match tokio::time::timeout(timeout + state.limits.margin, run).await {
        Ok(Ok(families)) => (
            [(header::CONTENT_TYPE, format.content_type())],
            onionwatch_metrics::render(&families, format),
        )
            .into_response(),
        Ok(Err(OnDemandError::BadRequest(m))) => text(StatusCode::BAD_REQUEST, m),
        Ok(Err(OnDemandError::Unavailable(m))) => text(StatusCode::SERVICE_UNAVAILABLE, m),
        Err(_) => text(
            StatusCode::GATEWAY_TIMEOUT,
            format!("the probe did not answer within {timeout:?}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::Notify;

    /// Answers with one gauge naming its parameters, or waits for `release`
    /// when the target is `slow`.
    struct Fake {
        release: Arc<Notify>,
    }

    impl OnDemand for Fake {
        fn probe(&self, params: Vec<(String, String)>, timeout: Duration) -> OnDemandFuture {
            let release = self.release.clone();
            Box::pin(async move {
                let target = params
                    .iter()
                    .find(|(k, _)| k == "target")
                    .map(|(_, v)| v.clone())
                    .ok_or_else(|| OnDemandError::BadRequest("target is required".into()))?;
                if target == "slow" {
                    release.notified().await;
                }
                let mut f = Family::gauge("fake_timeout_seconds", "");
                f.push(&[("target", &target)], timeout.as_secs_f64());
                Ok(vec![f])
            })
        }
    }

    async fn get(app: &Router, uri: &str, timeout: Option<&str>) -> (StatusCode, String) {
        use tower_service::Service;
        let mut req = axum::http::Request::get(uri);
        if let Some(t) = timeout {
            req = req.header(SCRAPE_TIMEOUT_HEADER, t);
        }
        let req = req.body(axum::body::Body::empty()).unwrap();
        let resp = app.clone().call(req).await.unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn answers_within_the_scrape_timeout_and_the_concurrency_limit() {
        let release = Arc::new(Notify::new());
        let limits = OnDemandLimits {
            max_in_flight: 1,
            ..OnDemandLimits::default()
        };
        let app = on_demand_router(
            Arc::new(Fake {
                release: release.clone(),
            }),
            limits,
        );
        let (status, body) = get(&app, "/probe?target=a%20b", Some("4")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            body.contains("fake_timeout_seconds{target=\"a b\"} 3.5\n"),
            "the header minus the margin: {body}"
        );
        let (_, body) = get(&app, "/probe?target=x", None).await;
        assert!(body.contains("} 10\n"), "default: {body}");
        let (_, body) = get(&app, "/probe?target=x", Some("1000")).await;
        assert!(body.contains("} 119.5\n"), "capped: {body}");
        let (_, body) = get(&app, "/probe?target=x", Some("0.6")).await;
        assert!(body.contains("} 0.3\n"), "half of a short one: {body}");
        for bad in ["0", "-1", "NaN", "inf", "soon"] {
            let (status, body) = get(&app, "/probe?target=x", Some(bad)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        }
        let (status, body) = get(&app, "/probe", None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(body.contains("target is required"), "{body}");
        let many: String = (0..20).map(|i| format!("p{i}=1&")).collect();
        let (status, _) = get(&app, &format!("/probe?{many}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);

        // One probe in flight: the next request is refused at once.
        let slow = tokio::spawn({
            let app = app.clone();
            async move { get(&app, "/probe?target=slow", Some("30")).await }
        });
        let mut busy = None;
        for _ in 0..100_000 {
            let (status, body) = get(&app, "/probe?target=x", None).await;
            if status == StatusCode::SERVICE_UNAVAILABLE {
                busy = Some(body);
                break;
            }
            tokio::task::yield_now().await;
        }
        let busy = busy.expect("a second probe is refused while the slow one runs");
        assert!(busy.contains("already running"), "{busy}");
        release.notify_one();
        assert_eq!(slow.await.unwrap().0, StatusCode::OK);
        assert_eq!(get(&app, "/probe?target=x", None).await.0, StatusCode::OK);
    }
}
