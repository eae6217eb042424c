//! `proxy_protocol`: the PROXY protocol header (v1 or v2) a load balancer sends before anything
//! else on a connection, and who the peer is once it has been read.
//!
//! The header is read from the raw TCP stream, before TLS (an NLB TCP listener puts it in front
//! of the client's TLS handshake). Bytes read past the header are replayed first by [`Rewind`],
//! so TLS or the forward protocol see the stream exactly as the client sent it.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use weir_proto::{parse_proxy_header, ProxyCommand, ProxyHeader, ProxyParse};

use super::conn::ConnError;

/// Who is at the other end of a connection.
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    /// The client: the PROXY header's source address, or else the socket's peer.
    pub addr: SocketAddr,
    /// The socket's peer (the load balancer) when a PROXY header named another client.
    pub via: Option<SocketAddr>,
    /// The AWS VPC endpoint id from the PROXY header (PrivateLink).
    pub vpce_id: Option<String>,
}

impl Peer {
    /// A connection with no PROXY header, or one whose header says to use the socket's peer.
    pub fn direct(addr: SocketAddr) -> Peer {
        Peer {
            addr,
            via: None,
            vpce_id: None,
        }
    }

    /// The peer a header describes for a connection from `socket`.
    pub fn from_header(socket: SocketAddr, header: &ProxyHeader) -> Peer {
        match header.client() {
            Some(client) => Peer {
                addr: client,
                via: Some(socket),
                vpce_id: header.aws_vpce_id.clone(),
            },
            None => Peer {
                vpce_id: header.aws_vpce_id.clone(),
                ..Peer::direct(socket)
            },
        }
    }
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.addr)?;
        if let Some(via) = self.via {
            write!(f, " via {via}")?;
        }
        if let Some(id) = &self.vpce_id {
            write!(f, " ({id})")?;
        }
        Ok(())
    }
}

/// Reads the PROXY header at the start of `stream` (the caller bounds the time). Returns the
/// peer it describes and the stream with whatever was read past the header put back in front.
pub(crate) async fn read_header<S>(
    mut stream: S,
    socket: SocketAddr,
) -> Result<(Rewind<S>, Peer), ConnError>
where
    S: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(512);
    loop {
        match parse_proxy_header(&buf).map_err(ConnError::Proxy)? {
            ProxyParse::Complete(header) => {
                buf.advance(header.len);
                let peer = Peer::from_header(socket, &header);
                if header.command == ProxyCommand::Local {
                    tracing::debug!(%peer, "PROXY header with the LOCAL command (a load balancer health check)");
                } else {
                    tracing::debug!(%peer, version = ?header.version, "PROXY header read");
                }
                return Ok((Rewind::new(stream, buf), peer));
            }
            ProxyParse::Incomplete { needed } => {
                buf.reserve(needed.max(256));
                if stream.read_buf(&mut buf).await? == 0 {
                    return Err(if buf.is_empty() {
                        // Plain TCP health checks connect and close without sending anything.
                        ConnError::PeerClosed
                    } else {
                        ConnError::ProxyTruncated(buf.len())
                    });
                }
            }
        }
    }
}

/// A stream whose first bytes come from a buffer, then from the stream itself.
pub(crate) struct Rewind<S> {
    prefix: BytesMut,
    inner: S,
}

impl<S> Rewind<S> {
    /// `prefix` is read before anything from `inner`.
    pub fn new(inner: S, prefix: BytesMut) -> Rewind<S> {
        Rewind { prefix, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.prefix.is_empty() {
            return Pin::new(&mut self.inner).poll_read(cx, buf);
        }
        let n = self.prefix.len().min(buf.remaining());
        buf.put_slice(&self.prefix[..n]);
        self.prefix.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use weir_proto::ProxyError;

    const SOCKET: &str = "10.0.0.5:40000";

    async fn read(parts: &[&[u8]]) -> Result<(Vec<u8>, Peer), ConnError> {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        for part in parts {
            client.write_all(part).await.unwrap();
        }
        drop(client);
        let (mut stream, peer) = read_header(server, SOCKET.parse().unwrap()).await?;
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        Ok((rest, peer))
    }

    #[tokio::test]
    async fn v1_header_then_data_in_one_write() {
        let (rest, peer) = read(&[b"PROXY TCP4 198.51.100.7 10.0.0.1 5555 24224\r\n\x93\xa1a"])
            .await
            .unwrap();
        assert_eq!(rest, b"\x93\xa1a");
        assert_eq!(peer.addr, "198.51.100.7:5555".parse().unwrap());
        assert_eq!(peer.via, Some(SOCKET.parse().unwrap()));
        assert_eq!(peer.to_string(), "198.51.100.7:5555 via 10.0.0.5:40000");
    }

    #[tokio::test]
    async fn header_split_over_reads() {
        let mut h = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x1a".to_vec();
        h.extend_from_slice(&[192, 0, 2, 9, 10, 0, 0, 1, 0x30, 0x39, 0x5e, 0xa0]);
        h.extend_from_slice(&[0xea, 0x00, 0x0b, 0x01]);
        h.extend_from_slice(b"vpce-0abc1");
        let (rest, peer) = read(&[&h[..3], &h[3..20], &h[20..], b"data"])
            .await
            .unwrap();
        assert_eq!(rest, b"data");
        assert_eq!(peer.addr, "192.0.2.9:12345".parse().unwrap());
        assert_eq!(peer.vpce_id.as_deref(), Some("vpce-0abc1"));
        assert_eq!(
            peer.to_string(),
            "192.0.2.9:12345 via 10.0.0.5:40000 (vpce-0abc1)"
        );
    }

    #[tokio::test]
    async fn local_keeps_the_socket_peer() {
        let (rest, peer) = read(&[b"\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00"])
            .await
            .unwrap();
        assert!(rest.is_empty());
        assert_eq!(peer.addr, SOCKET.parse().unwrap());
        assert_eq!(peer.via, None);
    }

    #[tokio::test]
    async fn bad_missing_and_truncated_headers() {
        assert!(matches!(
            read(&[b"\x93\xa1a"]).await,
            Err(ConnError::Proxy(ProxyError::Missing))
        ));
        assert!(matches!(
            read(&[b"PROXY TCP4 1.2.3.4\r\n"]).await,
            Err(ConnError::Proxy(ProxyError::V1Syntax(_)))
        ));
        assert!(matches!(
            read(&[b"PROXY TCP4 1.2.3.4"]).await,
            Err(ConnError::ProxyTruncated(18))
        ));
        assert!(matches!(read(&[]).await, Err(ConnError::PeerClosed)));
    }
}
