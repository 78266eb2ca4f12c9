//! The response body type: an upstream body streamed through unchanged, or
//! a small body of our own (errors, 429s, metrics).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use crate::limiter::RequestGuard;

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
