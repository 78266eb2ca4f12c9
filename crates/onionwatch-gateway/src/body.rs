//! The response body type: an upstream body streamed through unchanged, or
//! a small body of our own (errors, 429s, metrics); and the request body on
//! its way upstream, cut when the client stalls.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use crate::limiter::RequestGuard;
use crate::metrics::{Metrics, RejectReason};
use crate::timer::LazySleep;

/// A response body.
#[derive(Debug)]
pub(crate) enum Body {
    /// Streamed from the upstream.
    Stream {
        /// The body.
        inner: Incoming,
        /// Releases the circuit's in-flight slot once the body is done.
        _guard: Option<RequestGuard>,
    },
    /// A complete body (`None` once sent).
    Full(Option<Bytes>),
}

impl Body {
    /// A complete body.
    pub(crate) fn full(b: impl Into<Bytes>) -> Body {
        Body::Full(Some(b.into()))
    }

    /// An empty body.
    pub(crate) fn empty() -> Body {
        Body::Full(None)
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Body::Stream { inner, .. } => Pin::new(inner).poll_frame(cx),
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Stream { inner, .. } => inner.is_end_stream(),
            Body::Full(b) => b.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Stream { inner, .. } => inner.size_hint(),
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

/// A request body stalled by the client for longer than `body_timeout_secs`.
#[derive(Debug, thiserror::Error)]
#[error("the client paused its request body for longer than body_timeout_secs")]
pub(crate) struct BodyTimeout;

/// A client's request body, forwarded upstream; it fails with
/// [`BodyTimeout`] when the client keeps the gateway waiting for the next
/// bytes longer than the timeout. Only waits on the client count: while the
/// upstream is slow to take the body, it is not polled.
#[derive(Debug)]
pub(crate) struct ReqBody {
    inner: Incoming,
    timeout: Duration,
    /// Made at the first wait only: most requests never wait for a body.
    timer: Option<LazySleep>,
    waiting: bool,
    metrics: Arc<Metrics>,
}

impl ReqBody {
    pub(crate) fn new(inner: Incoming, timeout: Duration, metrics: Arc<Metrics>) -> ReqBody {
        ReqBody {
            inner,
            timeout,
            timer: None,
            waiting: false,
            metrics,
        }
    }
}

impl http_body::Body for ReqBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.waiting = false;
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        if !this.waiting {
            this.waiting = true;
            let deadline = Instant::now() + this.timeout;
            match &mut this.timer {
                Some(t) => t.set(deadline),
                None => this.timer = Some(LazySleep::until(deadline)),
            }
        }
        let timer = this.timer.as_mut().expect("set while waiting");
        std::task::ready!(Pin::new(timer).poll(cx));
        this.metrics.reject(RejectReason::BodyTimeout);
        Poll::Ready(Some(Err(Box::new(BodyTimeout))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
