//! Sockets: TCP or unix listeners and streams, reading the PROXY header, and
//! handing the bytes read past it back to the HTTP parser.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use onionwatch_tor::proxy::{read_proxy_header, ProxyHeader, ProxyHeaderError, MAX_HEADER_LEN};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::config::{ListenAddr, ProxyProtocol, UpstreamAddr};
use crate::error::Error;
use crate::metrics::{Metrics, RejectReason};
use crate::timer::LazySleep;

/// A bound listening socket.
#[derive(Debug)]
pub(crate) enum Listener {
    Tcp(TcpListener),
    /// The path is removed when the listener is dropped.
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Bind `addr`; a unix socket gets `mode`, and a stale socket file left
    /// by a dead process is replaced (a live one is an error).
    pub(crate) async fn bind(addr: &ListenAddr, mode: u32) -> Result<Listener, Error> {
        let err = |source| Error::Listen {
            addr: addr.to_string(),
            source,
        };
        match addr {
            ListenAddr::Tcp(a) => TcpListener::bind(a).await.map(Listener::Tcp).map_err(err),
            ListenAddr::Unix(path) => {
                remove_stale_socket(path).await.map_err(err)?;
                let l = UnixListener::bind(path).map_err(err)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                    .map_err(err)?;
                Ok(Listener::Unix(l, path.clone()))
            }
        }
    }

    /// The bound address (the real port when 0 was asked for).
    pub(crate) fn local_addr(&self) -> io::Result<ListenAddr> {
        match self {
            Listener::Tcp(l) => l.local_addr().map(ListenAddr::Tcp),
            Listener::Unix(_, p) => Ok(ListenAddr::Unix(p.clone())),
        }
    }

    /// Accept one connection; its peer's address (TCP only) and its name
    /// for logs.
    pub(crate) async fn accept(&self) -> io::Result<(Stream, Option<IpAddr>, String)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                // Small requests and responses: never wait for Nagle.
                let _ = s.set_nodelay(true);
                Ok((Stream::Tcp(s), Some(peer.ip()), peer.to_string()))
            }
            Listener::Unix(l, _) => {
                let (s, _) = l.accept().await?;
                Ok((Stream::Unix(s), None, "unix".to_owned()))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn remove_stale_socket(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the path exists and is not a socket; remove it or choose another path",
        ));
    }
    match UnixStream::connect(path).await {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "another process is listening on this socket",
        )),
        Err(_) => std::fs::remove_file(path),
    }
}

/// A connected TCP or unix stream.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A connection between runtimes: tokio streams belong to the runtime
/// that registered them, so a connection moves to its worker as a std one.
#[derive(Debug)]
pub(crate) enum StdStream {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Stream {
    /// Detach from this runtime (non-blocking mode kept).
    pub(crate) fn into_std(self) -> io::Result<StdStream> {
        match self {
            Stream::Tcp(s) => s.into_std().map(StdStream::Tcp),
            Stream::Unix(s) => s.into_std().map(StdStream::Unix),
        }
    }

    /// Register with the current runtime.
    pub(crate) fn from_std(s: StdStream) -> io::Result<Stream> {
        match s {
            StdStream::Tcp(s) => TcpStream::from_std(s).map(Stream::Tcp),
            StdStream::Unix(s) => UnixStream::from_std(s).map(Stream::Unix),
        }
    }

    /// Connect to the upstream.
    pub(crate) async fn connect(addr: &UpstreamAddr) -> io::Result<Stream> {
        match addr {
            UpstreamAddr::Tcp(a) => {
                let s = TcpStream::connect(a.as_str()).await?;
                let _ = s.set_nodelay(true);
                Ok(Stream::Tcp(s))
            }
            UpstreamAddr::Unix(p) => UnixStream::connect(p).await.map(Stream::Unix),
        }
    }
}

macro_rules! both {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            Stream::Tcp($s) => $e,
            Stream::Unix($s) => $e,
        }
    };
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        both!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        both!(self, s => Pin::new(s).poll_write(cx, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        both!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        both!(self, s => Pin::new(s).poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        both!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// A stream whose first bytes were already read: they are returned first.
#[derive(Debug)]
pub(crate) struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Vec<u8>, inner: S) -> Self {
        Prefixed {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.pos);
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A client stream whose writes fail once the client has left them blocked
/// (not reading) for `timeout`: a response or tunnel that the client does
/// not read would otherwise hold the connection forever. Reads are not
/// bounded here (hyper bounds request heads, [`crate::body::ReqBody`]
/// request bodies).
#[derive(Debug)]
pub(crate) struct SendDeadline<S> {
    inner: S,
    timeout: Duration,
    /// Made at the first blocked write only.
    timer: Option<LazySleep>,
    blocked: bool,
    expired: bool,
    metrics: Arc<Metrics>,
}

impl<S> SendDeadline<S> {
    pub(crate) fn new(inner: S, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        SendDeadline {
            inner,
            timeout,
            timer: None,
            blocked: false,
            expired: false,
            metrics,
        }
    }

    /// Pass on a write's result; a pending one starts (or keeps) the clock.
    fn check<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if let Poll::Ready(r) = r {
            self.blocked = false;
            return Poll::Ready(r);
        }
        if !self.blocked {
            self.blocked = true;
            let deadline = Instant::now() + self.timeout;
            match &mut self.timer {
                Some(t) => t.set(deadline),
                None => self.timer = Some(LazySleep::until(deadline)),
            }
        }
        let timer = self.timer.as_mut().expect("set while blocked");
        std::task::ready!(Pin::new(timer).poll(cx));
        if !self.expired {
            self.expired = true;
            self.metrics.reject(RejectReason::SendTimeout);
        }
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client did not read for send_timeout_secs",
        )))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for SendDeadline<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for SendDeadline<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.check(cx, r)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.check(cx, r)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.check(cx, r)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.check(cx, r)
    }
}

/// Read the PROXY header at the start of `stream`.
///
/// Returns the header (`None` when absent and `mode` is optional) and the
/// bytes read after it, which belong to the HTTP request. Reads in chunks
/// (not byte by byte) and never holds more than a few hundred bytes, so a
/// slow or hostile peer costs bounded memory; the caller bounds the time.
pub(crate) async fn read_header<S: AsyncRead + Unpin>(
    stream: &mut S,
    mode: ProxyProtocol,
) -> Result<(Option<ProxyHeader>, Vec<u8>), ProxyHeaderError> {
    // One read may bring the header and the start of the request.
    let mut buf = Vec::with_capacity(4 * MAX_HEADER_LEN);
    loop {
        if !buf.is_empty() {
            let mut cursor: &[u8] = &buf;
            // Over a slice this completes at once; `Eof` means "need more".
            match read_proxy_header(&mut cursor).await {
                Ok(header) => {
                    let used = buf.len() - cursor.len();
                    buf.drain(..used);
                    return Ok((Some(header), buf));
                }
                Err(ProxyHeaderError::Eof { .. }) => {}
                Err(ProxyHeaderError::BadSignature { .. }) if mode == ProxyProtocol::Optional => {
                    return Ok((None, buf));
                }
                Err(e) => return Err(e),
            }
        }
        if buf.len() == buf.capacity() {
            // Unreachable (TooLong comes first), but never grow.
            return Err(ProxyHeaderError::TooLong);
        }
        let n = stream.read_buf(&mut buf).await?;
        if n == 0 {
            return Err(ProxyHeaderError::Eof {
                received: buf.len(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn header_then_request_bytes_are_kept() {
        let mut data: &[u8] =
            b"PROXY TCP6 fc00:dead:beef:4dad::0:30 ::1 48 80\r\nGET / HTTP/1.1\r\n\r\n";
        let (h, rest) = read_header(&mut data, ProxyProtocol::Require)
            .await
            .unwrap();
        assert_eq!(h.unwrap().circuit_id().unwrap().0, 48);
        assert_eq!(rest, b"GET / HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn optional_mode_passes_plain_http_through() {
        let mut data: &[u8] = b"GET / HTTP/1.1\r\n\r\n";
        let (h, rest) = read_header(&mut data, ProxyProtocol::Optional)
            .await
            .unwrap();
        assert!(h.is_none());
        assert_eq!(rest, b"GET / HTTP/1.1\r\n\r\n");
        let mut data: &[u8] = b"PROPFIND / HTTP/1.1\r\n\r\n";
        let (h, rest) = read_header(&mut data, ProxyProtocol::Optional)
            .await
            .unwrap();
        assert!(h.is_none());
        assert_eq!(rest, b"PROPFIND / HTTP/1.1\r\n\r\n");
        let mut data: &[u8] = b"GET / HTTP/1.1\r\n\r\n";
        assert!(matches!(
            read_header(&mut data, ProxyProtocol::Require).await,
            Err(ProxyHeaderError::BadSignature { .. })
        ));
    }

    #[tokio::test]
    async fn prefixed_returns_prefix_then_stream() {
        let (mut a, b) = tokio::io::duplex(64);
        a.write_all(b" world").await.unwrap();
        drop(a);
        let mut p = Prefixed::new(b"hello".to_vec(), b);
        let mut out = String::new();
        p.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }
}
