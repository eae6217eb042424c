//! An optional PROXY protocol header in front of the admin endpoint's HTTP.
//!
//! A Network Load Balancer with Proxy Protocol v2 turned on sends the header on every
//! connection to its targets, health checks included, and a target group has one setting for
//! all its ports. So that `GET /healthz` keeps working behind such a target group, the admin
//! endpoint accepts a connection that starts with a v1 or v2 header and one that does not. The
//! header is checked strictly and then dropped: the admin endpoint's access control is its
//! token, never the client address, so a forged header gains nothing.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use weir_proto::{parse_proxy_header, ProxyParse, PROXY_V2_SIGNATURE};

/// The largest header the endpoint waits for; a v2 header from a load balancer is far smaller.
const MAX_HEADER: usize = 4096;

/// `PROXY ` opens a v1 header.
const V1_PREFIX: &[u8] = b"PROXY ";

/// Accepts TCP connections and hands each to HTTP with any PROXY header taken off.
pub struct ProxyTolerantListener {
    inner: TcpListener,
}

impl ProxyTolerantListener {
    /// Wraps a bound listener.
    pub fn new(inner: TcpListener) -> Self {
        ProxyTolerantListener { inner }
    }
}

impl axum::serve::Listener for ProxyTolerantListener {
    type Io = ProxyStripped;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    return (ProxyStripped::new(stream, peer), peer);
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!("admin endpoint: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// What a connection has shown of its first bytes.
enum State {
    /// Still reading the first bytes: they could be a PROXY header.
    Sniffing(Vec<u8>),
    /// Handing the bytes read while sniffing to HTTP.
    Replay(Vec<u8>, usize),
    /// Reading straight from the socket.
    Pass,
}

/// How the first bytes of a connection look.
#[derive(Debug, PartialEq, Eq)]
enum Opening {
    /// Not a PROXY header: HTTP starts here.
    Http,
    /// Could still be either; read more.
    Undecided,
    /// A PROXY header of this many bytes (the rest is HTTP).
    Header(usize),
}

/// Decides what `buf` (the first bytes of a connection) starts with.
fn opening(buf: &[u8]) -> Result<Opening, weir_proto::ProxyError> {
    let could_be = |prefix: &[u8]| {
        let n = buf.len().min(prefix.len());
        buf[..n] == prefix[..n]
    };
    if !could_be(V1_PREFIX) && !could_be(&PROXY_V2_SIGNATURE) {
        return Ok(Opening::Http);
    }
    match parse_proxy_header(buf)? {
        ProxyParse::Incomplete { .. } => Ok(Opening::Undecided),
        ProxyParse::Complete(h) => Ok(Opening::Header(h.len)),
    }
}

/// A connection with its PROXY header (if any) removed.
pub struct ProxyStripped {
    stream: TcpStream,
    peer: std::net::SocketAddr,
    state: State,
}

impl ProxyStripped {
    fn new(stream: TcpStream, peer: std::net::SocketAddr) -> Self {
        ProxyStripped {
            stream,
            peer,
            state: State::Sniffing(Vec::new()),
        }
    }
}

impl AsyncRead for ProxyStripped {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Pass => return Pin::new(&mut this.stream).poll_read(cx, out),
                State::Replay(buf, pos) => {
                    let rest = buf.get(*pos..).unwrap_or_default();
                    if rest.is_empty() {
                        this.state = State::Pass;
                        continue;
                    }
                    let n = rest.len().min(out.remaining());
                    out.put_slice(&rest[..n]);
                    *pos += n;
                    return Poll::Ready(Ok(()));
                }
                State::Sniffing(buf) => {
                    let mut chunk = [0u8; 512];
                    let mut rb = ReadBuf::new(&mut chunk);
                    match Pin::new(&mut this.stream).poll_read(cx, &mut rb) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Ready(Ok(())) => {}
                    }
                    let eof = rb.filled().is_empty();
                    if eof && buf.is_empty() {
                        // Closed before a byte: a TCP health check or a port probe.
                        return Poll::Ready(Ok(()));
                    }
                    buf.extend_from_slice(rb.filled());
                    let decided = match opening(buf) {
                        Ok(Opening::Http) => 0,
                        Ok(Opening::Header(len)) => {
                            tracing::debug!(peer = %this.peer, "admin endpoint: PROXY protocol header skipped");
                            len
                        }
                        Ok(Opening::Undecided) if eof || buf.len() > MAX_HEADER => {
                            let e = "the connection ended or grew too long inside a PROXY protocol header";
                            tracing::warn!(peer = %this.peer, "admin endpoint: {e}");
                            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                        }
                        Ok(Opening::Undecided) => continue,
                        Err(e) => {
                            tracing::warn!(peer = %this.peer, "admin endpoint: closing connection: {e}");
                            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
                        }
                    };
                    let bytes = std::mem::take(buf);
                    this.state = State::Replay(bytes, decided);
                }
            }
        }
    }
}

impl AsyncWrite for ProxyStripped {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v2 LOCAL header as an NLB health check sends it (TCP4 family, zeroed addresses).
    fn v2_local() -> Vec<u8> {
        let mut h = PROXY_V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x20, 0x11, 0x00, 0x0c]);
        h.extend_from_slice(&[0; 12]);
        h
    }

    #[test]
    fn http_methods_are_http() {
        for req in [
            "GET /healthz HTTP/1.1\r\n",
            "POST /api",
            "PUT /x",
            "PATCH /y",
            "P",
        ] {
            let got = opening(req.as_bytes()).unwrap_or(Opening::Undecided);
            if req == "P" {
                assert_eq!(got, Opening::Undecided, "{req}");
            } else {
                assert_eq!(got, Opening::Http, "{req}");
            }
        }
    }

    #[test]
    fn headers_are_found_and_measured() {
        let v1 = b"PROXY TCP4 198.51.100.7 10.0.0.5 54321 24220\r\nGET / HTTP/1.1\r\n";
        assert_eq!(opening(v1).ok(), Some(Opening::Header(46)));
        let mut v2 = v2_local();
        let len = v2.len();
        v2.extend_from_slice(b"GET /healthz HTTP/1.1\r\n");
        assert_eq!(opening(&v2).ok(), Some(Opening::Header(len)));
        assert_eq!(opening(&v2[..5]).ok(), Some(Opening::Undecided));
        assert!(opening(b"PROXY BOGUS\r\n").is_err());
    }

    async fn served() -> std::net::SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let app = axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok\n" }));
        tokio::spawn(async move {
            let _ = axum::serve(ProxyTolerantListener::new(l), app).await;
        });
        addr
    }

    async fn ask(addr: std::net::SocketAddr, prefix: &[u8]) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = TcpStream::connect(addr).await.expect("connect");
        let mut req = prefix.to_vec();
        req.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        // Byte by byte: the header may arrive in pieces.
        for b in req {
            s.write_all(&[b]).await.expect("write");
        }
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp).await;
        resp
    }

    #[tokio::test]
    async fn healthz_with_and_without_a_proxy_header() {
        let addr = served().await;
        assert!(ask(addr, b"").await.starts_with("HTTP/1.1 200"));
        assert!(ask(addr, &v2_local()).await.starts_with("HTTP/1.1 200"));
        let v1 = b"PROXY TCP4 198.51.100.7 10.0.0.5 54321 24220\r\n";
        assert!(ask(addr, v1).await.starts_with("HTTP/1.1 200"));
        // A damaged header closes the connection without an answer.
        assert_eq!(ask(addr, b"PROXY TCP4 nonsense\r\n").await, "");
        // A connection that closes before sending anything is not an error.
        drop(TcpStream::connect(addr).await.expect("connect"));
        assert!(ask(addr, b"").await.starts_with("HTTP/1.1 200"));
    }
}
