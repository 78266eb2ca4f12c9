//! PROXY protocol version 1 headers (the haproxy text form).
//!
//! With `HiddenServiceExportCircuitID haproxy`, tor writes one such line
//! before every stream it opens to the backend, e.g.
//! `PROXY TCP6 fc00:dead:beef:4dad::0:23 ::1 35 80\r\n`; the source address
//! carries the circuit id (see [`crate::circuit_id`]).
//!
//! Parsing is strict, as the haproxy specification asks: at most 107 bytes
//! including the CRLF, single spaces, decimal ports, addresses of the family
//! named by the protocol. Version 2 (binary) headers are not supported.
//!
//! ```no_run
//! # async fn demo(mut stream: tokio::net::TcpStream) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use onionwatch_tor::proxy::read_proxy_header;
//! // Bound the wait: a peer that sends nothing would otherwise block forever.
//! let header = tokio::time::timeout(Duration::from_secs(5), read_proxy_header(&mut stream)).await??;
//! if let Some(id) = header.circuit_id() {
//!     println!("request on circuit {id}");
//! }
//! // The bytes after the header (the HTTP request) are still in `stream`.
//! # Ok(()) }
//! ```

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::circuit_id::CircuitId;

/// The longest v1 header, CRLF included (haproxy specification).
pub const MAX_HEADER_LEN: usize = 107;

const SIGNATURE: &[u8] = b"PROXY ";

/// A parsed PROXY v1 header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyHeader {
    /// `PROXY TCP4 ...`
    Tcp4 {
        /// Source address.
        src: Ipv4Addr,
        /// Destination address.
        dst: Ipv4Addr,
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
    },
    /// `PROXY TCP6 ...` (what tor sends).
    Tcp6 {
        /// Source address; for tor, the circuit id lives in its low 32 bits.
        src: Ipv6Addr,
        /// Destination address (`::1` from tor).
        dst: Ipv6Addr,
        /// Source port (tor sets it to the circuit id's low 16 bits).
        src_port: u16,
        /// Destination port (tor sets it to the onion service's virtual port).
        dst_port: u16,
    },
    /// `PROXY UNKNOWN` with anything up to the CRLF: the connection's
    /// origin is not known.
    Unknown,
}

/// Why a PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    /// No CRLF within the first 107 bytes.
    #[error("no PROXY header: no CRLF within the first {MAX_HEADER_LEN} bytes")]
    TooLong,
    /// The line does not end in CRLF (a bare LF, or no line end at all).
    #[error("PROXY header does not end in CRLF")]
    MissingCrlf,
    /// The line does not start with `PROXY `.
    #[error("no PROXY header: the stream starts with {found:?} instead of \"PROXY \" (is `HiddenServiceExportCircuitID haproxy` set for this service? binary v2 headers are not supported)")]
    BadSignature {
        /// The first bytes received, lossily decoded.
        found: String,
    },
    /// The protocol is not `TCP4`, `TCP6` or `UNKNOWN`.
    #[error("PROXY header names protocol {0:?}; expected TCP4, TCP6 or UNKNOWN")]
    BadProtocol(String),
    /// Not exactly `PROXY proto src dst sport dport` with single spaces.
    #[error("PROXY header has {found} space-separated fields, expected 6 (single spaces only)")]
    BadFieldCount {
        /// How many fields were found.
        found: usize,
    },
    /// An address that is not of the protocol's family.
    #[error("PROXY header {which} address {value:?} is not a valid {family} address")]
    BadAddress {
        /// `source` or `destination`.
        which: &'static str,
        /// The text received, lossily decoded.
        value: String,
        /// `IPv4` or `IPv6`.
        family: &'static str,
    },
    /// A port that is not a decimal number in 0..=65535.
    #[error("PROXY header {which} port {value:?} is not a decimal number from 0 to 65535")]
    BadPort {
        /// `source` or `destination`.
        which: &'static str,
        /// The text received, lossily decoded.
        value: String,
    },
    /// The stream ended before a complete header.
    #[error("connection closed after {received} bytes, before a complete PROXY header")]
    Eof {
        /// Bytes received before the end.
        received: usize,
    },
    /// Reading the stream failed.
    #[error("reading the PROXY header failed: {0}")]
    Io(#[from] std::io::Error),
}

impl ProxyHeader {
    /// Parse one header line, which must include its terminating CRLF and
    /// nothing after it.
    pub fn parse(line: &[u8]) -> Result<Self, ProxyHeaderError> {
        if line.len() > MAX_HEADER_LEN {
            return Err(ProxyHeaderError::TooLong);
        }
        check_signature(line)?;
        let Some(body) = line.strip_suffix(b"\r\n") else {
            return Err(ProxyHeaderError::MissingCrlf);
        };
        if body.contains(&b'\n') {
            return Err(ProxyHeaderError::MissingCrlf);
        }
        let rest = &body[SIGNATURE.len()..];
        // UNKNOWN may be followed by anything, which receivers must ignore.
        if rest == b"UNKNOWN" || rest.starts_with(b"UNKNOWN ") {
            return Ok(ProxyHeader::Unknown);
        }
        let fields: Vec<&[u8]> = rest.split(|&b| b == b' ').collect();
        let proto = fields[0];
        if proto != b"TCP4" && proto != b"TCP6" {
            return Err(ProxyHeaderError::BadProtocol(lossy(proto)));
        }
        if fields.len() != 5 {
            return Err(ProxyHeaderError::BadFieldCount {
                found: fields.len() + 1,
            });
        }
        let src_port = port(fields[3], "source")?;
        let dst_port = port(fields[4], "destination")?;
        if proto == b"TCP4" {
            Ok(ProxyHeader::Tcp4 {
                src: addr(fields[1], "source", "IPv4")?,
                dst: addr(fields[2], "destination", "IPv4")?,
                src_port,
                dst_port,
            })
        } else {
            Ok(ProxyHeader::Tcp6 {
                src: addr(fields[1], "source", "IPv6")?,
                dst: addr(fields[2], "destination", "IPv6")?,
                src_port,
                dst_port,
            })
        }
    }

    /// The tor circuit id carried by the source address, for a `TCP6` header
    /// from `HiddenServiceExportCircuitID haproxy`.
    pub fn circuit_id(&self) -> Option<CircuitId> {
        match self {
            ProxyHeader::Tcp6 { src, .. } => CircuitId::from_ipv6(src),
            _ => None,
        }
    }

    /// Source address and port, unless `UNKNOWN`.
    pub fn source(&self) -> Option<SocketAddr> {
        match *self {
            ProxyHeader::Tcp4 { src, src_port, .. } => Some((src, src_port).into()),
            ProxyHeader::Tcp6 { src, src_port, .. } => Some((src, src_port).into()),
            ProxyHeader::Unknown => None,
        }
    }

    /// Destination address and port, unless `UNKNOWN`.
    pub fn destination(&self) -> Option<SocketAddr> {
        match *self {
            ProxyHeader::Tcp4 { dst, dst_port, .. } => Some((dst, dst_port).into()),
            ProxyHeader::Tcp6 { dst, dst_port, .. } => Some((dst, dst_port).into()),
            ProxyHeader::Unknown => None,
        }
    }

    /// The header line, CRLF included, e.g. to forward upstream.
    pub fn encode(&self) -> String {
        match self {
            ProxyHeader::Tcp4 {
                src,
                dst,
                src_port,
                dst_port,
            } => format!("PROXY TCP4 {src} {dst} {src_port} {dst_port}\r\n"),
            ProxyHeader::Tcp6 {
                src,
                dst,
                src_port,
                dst_port,
            } => format!("PROXY TCP6 {src} {dst} {src_port} {dst_port}\r\n"),
            ProxyHeader::Unknown => "PROXY UNKNOWN\r\n".to_owned(),
        }
    }
}

/// Fail early when the bytes seen so far cannot start a v1 header.
fn check_signature(seen: &[u8]) -> Result<(), ProxyHeaderError> {
    let n = seen.len().min(SIGNATURE.len());
    if seen[..n] != SIGNATURE[..n] {
        return Err(ProxyHeaderError::BadSignature { found: lossy(seen) });
    }
    Ok(())
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn port(b: &[u8], which: &'static str) -> Result<u16, ProxyHeaderError> {
    let bad = || ProxyHeaderError::BadPort {
        which,
        value: lossy(b),
    };
    if b.is_empty() || b.len() > 5 || !b.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let n = b.iter().fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
    u16::try_from(n).map_err(|_| bad())
}

fn addr<A: std::str::FromStr>(
    b: &[u8],
    which: &'static str,
    family: &'static str,
) -> Result<A, ProxyHeaderError> {
    std::str::from_utf8(b)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ProxyHeaderError::BadAddress {
            which,
            value: lossy(b),
            family,
        })
}

/// Read a v1 header from the start of `r`, consuming exactly the header:
/// bytes after the CRLF stay unread in `r`.
///
/// Reads one byte at a time (at most 107 reads), so it is correct for any
/// `AsyncRead`; wrap an unbuffered socket in a `BufReader` to save system
/// calls. It stops at the first byte that cannot belong to a header, and
/// never waits by itself: wrap it in `tokio::time::timeout`.
pub async fn read_proxy_header<R: AsyncRead + Unpin>(
    r: &mut R,
) -> Result<ProxyHeader, ProxyHeaderError> {
    let mut buf = [0u8; MAX_HEADER_LEN];
    let mut len = 0;
    loop {
        if len == MAX_HEADER_LEN {
            return Err(ProxyHeaderError::TooLong);
        }
        let n = r.read(&mut buf[len..len + 1]).await?;
        if n == 0 {
            return Err(ProxyHeaderError::Eof { received: len });
        }
        len += 1;
        check_signature(&buf[..len])?;
        if buf[len - 1] == b'\n' {
            // A bare LF ends the line too; `parse` reports it.
            return ProxyHeader::parse(&buf[..len]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::Pin;
    use std::task::{Context, Poll};
    use tokio::io::{AsyncWriteExt, ReadBuf};

    fn p(s: &str) -> Result<ProxyHeader, ProxyHeaderError> {
        ProxyHeader::parse(s.as_bytes())
    }

    #[test]
    fn parses_tor_header() {
        let h = p("PROXY TCP6 fc00:dead:beef:4dad::0:23 ::1 35 80\r\n").unwrap();
        assert_eq!(h.circuit_id(), Some(CircuitId(35)));
        assert_eq!(h.destination().unwrap().port(), 80);
        assert_eq!(h.source().unwrap().port(), 35);
        let again = ProxyHeader::parse(h.encode().as_bytes()).unwrap();
        assert_eq!(again, h);
        assert_eq!(
            h.encode(),
            "PROXY TCP6 fc00:dead:beef:4dad::23 ::1 35 80\r\n"
        );

        // The issue's example: the low 32 bits are the circuit id.
        let h = p("PROXY TCP6 fc00:dead:beef:4dad::AABB:CCDD ::1 65535 42\r\n").unwrap();
        assert_eq!(h.circuit_id(), Some(CircuitId(0xAABB_CCDD)));
        assert_eq!(h.source().unwrap().port(), 65535);
        assert_eq!(h.destination().unwrap().port(), 42);
    }

    #[test]
    fn parses_tcp4_and_unknown() {
        let h = p("PROXY TCP4 192.0.2.1 198.51.100.2 65535 0\r\n").unwrap();
        assert_eq!(
            h,
            ProxyHeader::Tcp4 {
                src: Ipv4Addr::new(192, 0, 2, 1),
                dst: Ipv4Addr::new(198, 51, 100, 2),
                src_port: 65535,
                dst_port: 0
            }
        );
        assert_eq!(h.circuit_id(), None);
        assert_eq!(ProxyHeader::parse(h.encode().as_bytes()).unwrap(), h);
        assert_eq!(p("PROXY UNKNOWN\r\n").unwrap(), ProxyHeader::Unknown);
        assert_eq!(
            p("PROXY UNKNOWN ::1 ::1 1 2\r\n").unwrap(),
            ProxyHeader::Unknown
        );
        assert_eq!(ProxyHeader::Unknown.encode(), "PROXY UNKNOWN\r\n");
        assert_eq!(ProxyHeader::Unknown.source(), None);
    }

    #[test]
    fn rejects_malformed_lines() {
        use ProxyHeaderError as E;
        let bad = |s: &str| p(s).unwrap_err();
        assert!(matches!(bad("PROXY TCP6 ::1 ::1 1 2\n"), E::MissingCrlf));
        assert!(matches!(bad("PROXY TCP6 ::1 ::1 1 2"), E::MissingCrlf));
        assert!(matches!(
            bad("PROXY TCP6 ::1 ::1 1 2\r\n\r\n"),
            E::MissingCrlf
        ));
        assert!(matches!(
            bad("PROXY TCP6 ::1\r::1 1 2\r\n"),
            E::BadFieldCount { .. }
        ));
        assert!(matches!(bad("GET / HTTP/1.1\r\n"), E::BadSignature { .. }));
        assert!(matches!(
            bad("proxy TCP6 ::1 ::1 1 2\r\n"),
            E::BadSignature { .. }
        ));
        assert!(matches!(
            bad("PROXY  TCP6 ::1 ::1 1 2\r\n"),
            E::BadProtocol(_)
        ));
        assert!(matches!(
            bad("PROXY UDP4 ::1 ::1 1 2\r\n"),
            E::BadProtocol(_)
        ));
        assert!(matches!(
            bad("PROXY TCP6 ::1 ::1  1 2\r\n"),
            E::BadFieldCount { found: 7 }
        ));
        assert!(matches!(
            bad("PROXY TCP6 ::1 ::1 1\r\n"),
            E::BadFieldCount { found: 5 }
        ));
        assert!(matches!(
            bad("PROXY TCP6 ::1 ::1 1 2 \r\n"),
            E::BadFieldCount { .. }
        ));
        assert!(matches!(
            bad("PROXY TCP6 127.0.0.1 ::1 1 2\r\n"),
            E::BadAddress {
                which: "source",
                ..
            }
        ));
        assert!(matches!(
            bad("PROXY TCP4 127.0.0.1 ::1 1 2\r\n"),
            E::BadAddress {
                which: "destination",
                ..
            }
        ));
        assert!(matches!(
            bad("PROXY TCP4 1.2.3.04 1.2.3.4 1 2\r\n"),
            E::BadAddress { .. }
        ));
        assert!(matches!(
            bad("PROXY TCP6 [::1] ::1 1 2\r\n"),
            E::BadAddress { .. }
        ));
        for port in ["65536", "+1", "-1", "", "1a", "0x10", "000001", "99999"] {
            let line = format!("PROXY TCP6 ::1 ::1 {port} 80\r\n");
            assert!(
                matches!(
                    p(&line),
                    Err(E::BadPort {
                        which: "source",
                        ..
                    })
                ),
                "{port}"
            );
        }
        let long = format!("PROXY TCP6 ::1 ::1 1 {}\r\n", "1".repeat(100));
        assert!(matches!(p(&long), Err(E::TooLong)));
        let e = ProxyHeader::parse(b"PROXY TCP6 \xff\xfe ::1 1 2\r\n").unwrap_err();
        assert!(matches!(e, E::BadAddress { .. }), "{e}");
        assert!(e.to_string().contains("source address"), "{e}");
        assert!(matches!(ProxyHeader::parse(b""), Err(E::MissingCrlf)));
    }

    #[test]
    fn max_length_header_is_accepted() {
        // The longest legal TCP6 line is exactly 104 bytes; pad UNKNOWN to 107.
        let mut line = "PROXY UNKNOWN ".to_owned();
        line.push_str(&"x".repeat(MAX_HEADER_LEN - line.len() - 2));
        line.push_str("\r\n");
        assert_eq!(line.len(), MAX_HEADER_LEN);
        assert_eq!(p(&line).unwrap(), ProxyHeader::Unknown);
        let full = "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert!(full.len() <= MAX_HEADER_LEN);
        assert!(p(full).is_ok());
    }

    /// A reader that hands out its data in fixed pieces and counts the bytes
    /// it has given away.
    struct Pieces {
        data: Vec<u8>,
        pos: usize,
        piece: usize,
    }

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let n = self
                .piece
                .min(buf.remaining())
                .min(self.data.len() - self.pos);
            let start = self.pos;
            buf.put_slice(&self.data[start..start + n]);
            self.pos += n;
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn reader_leaves_the_request_in_the_stream() {
        let mut data = b"PROXY TCP6 fc00:dead:beef:4dad::0:36 ::1 54 80\r\n".to_vec();
        data.extend_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        for piece in [1, 3, 64, 4096] {
            let mut r = Pieces {
                data: data.clone(),
                pos: 0,
                piece,
            };
            let h = read_proxy_header(&mut r).await.unwrap();
            assert_eq!(h.circuit_id(), Some(CircuitId(54)));
            let mut rest = Vec::new();
            r.read_to_end(&mut rest).await.unwrap();
            assert_eq!(rest, b"GET / HTTP/1.1\r\n\r\n", "piece {piece}");
        }
    }

    #[tokio::test]
    async fn reader_handles_header_split_across_writes() {
        let (mut client, mut server) = tokio::io::duplex(16);
        let writer = tokio::spawn(async move {
            for part in [
                &b"PRO"[..],
                b"XY TCP6 fc00:dead:beef:4",
                b"dad::0:30 ::1 48 8",
                b"0\r",
                b"\nbody",
            ] {
                client.write_all(part).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let h = read_proxy_header(&mut server).await.unwrap();
        assert_eq!(h.circuit_id(), Some(CircuitId(48)));
        writer.await.unwrap();
        let mut rest = [0u8; 4];
        server.read_exact(&mut rest).await.unwrap();
        assert_eq!(&rest, b"body");
    }

    #[tokio::test]
    async fn reader_refuses_garbage_early_and_bounds_reads() {
        // HTTP without a header: refused at the first byte.
        let mut r = Pieces {
            data: b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            pos: 0,
            piece: 1,
        };
        let e = read_proxy_header(&mut r).await.unwrap_err();
        assert!(matches!(e, ProxyHeaderError::BadSignature { .. }), "{e}");
        assert_eq!(r.pos, 1);

        // 1 MiB after a valid signature: stops at 107 bytes.
        let mut data = b"PROXY ".to_vec();
        data.resize(1 << 20, b'a');
        let mut r = Pieces {
            data,
            pos: 0,
            piece: 1 << 20,
        };
        let e = read_proxy_header(&mut r).await.unwrap_err();
        assert!(matches!(e, ProxyHeaderError::TooLong), "{e}");
        assert_eq!(r.pos, MAX_HEADER_LEN);

        // 1 MiB of binary garbage.
        let mut r = Pieces {
            data: vec![0xff; 1 << 20],
            pos: 0,
            piece: 4096,
        };
        let e = read_proxy_header(&mut r).await.unwrap_err();
        assert!(matches!(e, ProxyHeaderError::BadSignature { .. }));
        assert!(r.pos <= MAX_HEADER_LEN);

        // Invalid UTF-8 inside the header.
        let mut r = Pieces {
            data: b"PROXY TCP6 \xc3\x28 ::1 1 2\r\nrest".to_vec(),
            pos: 0,
            piece: 7,
        };
        let e = read_proxy_header(&mut r).await.unwrap_err();
        assert!(matches!(e, ProxyHeaderError::BadAddress { .. }), "{e}");

        // A v2 binary signature.
        let mut r = Pieces {
            data: b"\r\n\r\n\0\r\nQUIT\n".to_vec(),
            pos: 0,
            piece: 100,
        };
        assert!(matches!(
            read_proxy_header(&mut r).await,
            Err(ProxyHeaderError::BadSignature { .. })
        ));
    }

    #[tokio::test]
    async fn reader_reports_eof() {
        for data in [&b""[..], b"PROX", b"PROXY TCP6 ::1 ::1 1 2\r"] {
            let mut r = Pieces {
                data: data.to_vec(),
                pos: 0,
                piece: 5,
            };
            match read_proxy_header(&mut r).await {
                Err(ProxyHeaderError::Eof { received }) => assert_eq!(received, data.len()),
                other => panic!("{other:?}"),
            }
        }
        let e = ProxyHeaderError::Eof { received: 3 };
        assert!(e.to_string().contains("before a complete PROXY header"));
    }

    #[tokio::test]
    async fn reader_refuses_bare_lf() {
        let mut r = Pieces {
            data: b"PROXY TCP6 ::1 ::1 1 2\nGET".to_vec(),
            pos: 0,
            piece: 1,
        };
        assert!(matches!(
            read_proxy_header(&mut r).await,
            Err(ProxyHeaderError::MissingCrlf)
        ));
    }
}
