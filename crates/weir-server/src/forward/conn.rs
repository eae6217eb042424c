//! One forward connection: optional handshake, then requests in and acks out.
//!
//! The reader decodes requests as bytes arrive and gives each one to the pipeline; what the
//! pipeline answers goes into a bounded queue. The writer takes answers off that queue in
//! request order, waits for each, and writes the ack when the events were accepted. When the
//! queue is full the reader stops reading, so a slow output slows the sender down instead of
//! filling memory. A refusal closes the connection without an ack: the forwarder sends the data
//! again, here or to its standby.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use weir_proto::{
    encode_ack, parse_request, EventTime, FrameDecoder, FrameError, FrameLimits, ParseOptions,
    ProxyError, Request, RequestError,
};

use super::config::ForwardConfig;
use super::proxy::{Peer, Rewind};
use super::records::{add_keys, ExtraKeys};
use super::stats::ForwardStats;
use super::{handshake, proxy, records};
use crate::pipeline::{Accepted, Pipeline, Refused};

/// Deepest nesting of arrays and maps accepted in a request.
const MAX_DEPTH: usize = 256;
/// Room kept free in the read buffer before each read.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes a frame may have after its last large field (the option map after a PackedForward
/// bin, typically under a hundred bytes): a read that finishes a large frame asks for this
/// much more than the frame is known to need.
const FRAME_TRAILER: usize = 1024;
/// The largest guess at a new frame's size: one much larger frame does not make every later
/// read ask for that much memory.
const FRAME_GUESS_MAX: usize = 4 << 20;

/// What every connection of one forward source shares.
pub(crate) struct Shared {
    pub config: ForwardConfig,
    pub pipeline: Arc<Pipeline>,
    pub stats: Arc<ForwardStats>,
    pub shutdown: CancellationToken,
}

/// Why a connection was closed early.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error("malformed request: {0}")]
    Frame(FrameError),
    #[error("request of at least {needed} bytes is larger than chunk_size_limit ({limit} bytes); refused without an ack")]
    TooLarge { limit: usize, needed: usize },
    #[error("invalid request: {0}")]
    Request(#[from] RequestError),
    #[error("handshake failed: {0}")]
    Handshake(String),
    #[error("{refused}; no ack sent for tag '{tag}' ({events} events), closing so the forwarder sends them again")]
    Refused {
        refused: Refused,
        tag: String,
        events: usize,
    },
    #[error("no data for {0:?} in the middle of a request")]
    ReadTimeout(Duration),
    #[error("idle for {0:?}")]
    Idle(Duration),
    #[error("the handshake took longer than {0:?}")]
    HandshakeTimeout(Duration),
    #[error("JSON requests are not supported; forwarders must send msgpack")]
    Json,
    #[error(
        "the connection starts with a PROXY protocol header, but this source does not expect one"
    )]
    UnexpectedProxyHeader,
    #[error("a second PROXY protocol header follows the first one (something in front of the load balancer sent its own); refused")]
    SecondProxyHeader,
    #[error("{0}")]
    Proxy(ProxyError),
    #[error(
        "the peer closed the connection in the middle of the PROXY protocol header ({0} bytes)"
    )]
    ProxyTruncated(usize),
    #[error("no complete PROXY protocol header within {0:?}")]
    ProxyTimeout(Duration),
    #[error("the peer closed the connection")]
    PeerClosed,
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

impl From<FrameError> for ConnError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::TooLarge { limit, needed } => ConnError::TooLarge { limit, needed },
            other => ConnError::Frame(other),
        }
    }
}

impl ConnError {
    /// Logs the reason for closing, quietly where closing is a normal part of life (heartbeat
    /// connections, peers that hang up, idle connections).
    fn log(&self, peer: &Peer, source: &str) {
        match self {
            ConnError::PeerClosed | ConnError::Idle(_) => {
                tracing::debug!(%peer, source = %source, "closing connection: {self}");
            }
            ConnError::Io(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::ConnectionAborted
                ) =>
            {
                tracing::debug!(%peer, source = %source, "connection ended: {self}");
            }
            _ => tracing::warn!(%peer, source = %source, "closing connection: {self}"),
        }
    }
}

/// One request whose ack (if it asked for one) waits for the pipeline's answer.
struct PendingAck {
    chunk: Option<Bytes>,
    accepted: Accepted,
    tag: String,
    events: usize,
}

/// Takes one accepted connection through the PROXY header (with `proxy_protocol`), TLS (with
/// `<transport tls>`) and then [`serve`]. Each step that fails ends only this connection, with
/// one log line.
pub(crate) async fn accept(
    stream: TcpStream,
    socket_peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
) {
    let limit = shared.config.handshake_timeout;
    let (stream, peer) = if shared.config.proxy_protocol {
        match timeout(limit, proxy::read_header(stream, socket_peer)).await {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => return report(&e, &Peer::direct(socket_peer), &shared),
            Err(_) => {
                return report(
                    &ConnError::ProxyTimeout(limit),
                    &Peer::direct(socket_peer),
                    &shared,
                )
            }
        }
    } else {
        (
            Rewind::new(stream, BytesMut::new()),
            Peer::direct(socket_peer),
        )
    };
    let Some(acceptor) = tls else {
        return serve(stream, peer, shared).await;
    };
    match timeout(limit, acceptor.accept(stream)).await {
        Ok(Ok(tls_stream)) => serve(tls_stream, peer, shared).await,
        Ok(Err(e)) => {
            // Load-balancer checks connect and close without TLS; only a client that really
            // tried and failed is worth a warning.
            if e.kind() == io::ErrorKind::UnexpectedEof {
                tracing::debug!(%peer, "closed before TLS started");
            } else {
                ForwardStats::add(&shared.stats.handshake_failures, 1);
                tracing::warn!(%peer, source = %shared.config.id, "TLS handshake failed: {e}");
            }
        }
        Err(_) => report(&ConnError::HandshakeTimeout(limit), &peer, &shared),
    }
}

/// Serves one connection to its end. Never panics on input; logs one line if it ends for a
/// reason other than the peer hanging up.
async fn serve<S>(stream: S, peer: Peer, shared: Arc<Shared>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    tracing::debug!(%peer, source = %shared.config.id, "connection accepted");
    match serve_inner(stream, &peer, &shared).await {
        Ok(()) => tracing::debug!(%peer, source = %shared.config.id, "connection closed"),
        Err(e) => report(&e, &peer, &shared),
    }
}

/// Counts why a connection ended and logs it.
fn report(e: &ConnError, peer: &Peer, shared: &Shared) {
    match e {
        ConnError::Frame(_)
        | ConnError::TooLarge { .. }
        | ConnError::Request(_)
        | ConnError::Json
        | ConnError::UnexpectedProxyHeader
        | ConnError::SecondProxyHeader
        | ConnError::Proxy(_)
        | ConnError::ProxyTruncated(_)
        | ConnError::ProxyTimeout(_)
        | ConnError::ReadTimeout(_) => ForwardStats::add(&shared.stats.protocol_errors, 1),
        ConnError::Handshake(_) | ConnError::HandshakeTimeout(_) => {
            ForwardStats::add(&shared.stats.handshake_failures, 1)
        }
        ConnError::Refused { .. } => ForwardStats::add(&shared.stats.refused, 1),
        _ => {}
    }
    e.log(peer, &shared.config.id);
}

async fn serve_inner<S>(stream: S, peer: &Peer, shared: &Shared) -> Result<(), ConnError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    if let Some(security) = &shared.config.security {
        let limit = shared.config.handshake_timeout;
        timeout(
            limit,
            handshake::run(
                &mut rd,
                &mut wr,
                &mut buf,
                peer.addr.ip(),
                security,
                !shared.config.deny_keepalive,
            ),
        )
        .await
        .map_err(|_| ConnError::HandshakeTimeout(limit))??;
    }

    let extra = records::extra_keys(&shared.config, peer).await;
    let (tx, rx) = mpsc::channel::<PendingAck>(shared.config.max_pending_acks);
    let reader = read_requests(rd, buf, tx, peer, shared, extra);
    let writer = write_acks(wr, rx, &shared.stats);
    tokio::pin!(reader);
    tokio::pin!(writer);
    let mut reader_result: Option<Result<(), ConnError>> = None;
    loop {
        tokio::select! {
            r = &mut reader, if reader_result.is_none() => reader_result = Some(r),
            w = &mut writer => {
                // The writer ends when the reader is done and every ack is out, or on a
                // refusal or a write error, which end the connection at once.
                w?;
                return reader_result.unwrap_or(Ok(()));
            }
        }
    }
}

async fn read_requests<R>(
    mut rd: R,
    mut buf: BytesMut,
    tx: mpsc::Sender<PendingAck>,
    peer: &Peer,
    shared: &Shared,
    extra: Option<ExtraKeys>,
) -> Result<(), ConnError>
where
    R: AsyncRead + Unpin,
{
    let cfg = &shared.config;
    let limit = usize::try_from(cfg.chunk_size_limit).unwrap_or(usize::MAX);
    let mut decoder = FrameDecoder::new(FrameLimits {
        chunk_size_limit: limit,
        max_depth: MAX_DEPTH,
    });
    let mut checked_first_byte = shared.config.security.is_some();
    // The size of the last frame: the guess for the next one's.
    let mut last_frame = 0usize;
    loop {
        if !checked_first_byte {
            if let Some(&first) = buf.first() {
                check_first_byte(first, cfg.proxy_protocol)?;
                checked_first_byte = true;
            }
        }
        while let Some(frame) = decoder.next_frame(&mut buf)? {
            last_frame = frame.len();
            let pending = handle_frame(frame, peer, shared, extra.as_ref())?;
            if let Some(pending) = pending {
                if tx.send(pending).await.is_err() {
                    // The writer stopped (a refusal or a write error); it reports why.
                    return Ok(());
                }
                if cfg.deny_keepalive {
                    return Ok(());
                }
            }
        }
        let mid_request = !buf.is_empty() || decoder.pending() > 0;
        if !mid_request && shared.shutdown.is_cancelled() {
            return Ok(());
        }
        // A frame keeps its part of the read buffer's memory until its events are stored, so
        // bytes of the next frame read into that memory are copied when the buffer grows.
        // Frames are read into memory sized for them (the last frame's size is the guess for
        // a new one) and a read that finishes a large frame stops just after it, so that only
        // a few bytes are copied whatever the frames' size.
        let need = decoder.needed_hint();
        let want = if need > 0 {
            need + FRAME_TRAILER
        } else {
            last_frame.min(FRAME_GUESS_MAX) + FRAME_TRAILER
        }
        .clamp(READ_CHUNK, limit.max(READ_CHUNK));
        if buf.capacity() - buf.len() < want {
            buf.reserve(want);
        }
        let max_read = if need >= READ_CHUNK {
            (need + FRAME_TRAILER) as u64
        } else {
            u64::MAX
        };
        let wait = if mid_request {
            cfg.read_timeout
        } else {
            cfg.idle_timeout
        };
        let read = async {
            match timeout(wait, (&mut rd).take(max_read).read_buf(&mut buf)).await {
                Ok(r) => r.map_err(ConnError::from),
                Err(_) if mid_request => Err(ConnError::ReadTimeout(wait)),
                Err(_) => Err(ConnError::Idle(wait)),
            }
        };
        let n = if mid_request {
            // A request in progress is finished even during shutdown.
            read.await?
        } else {
            tokio::select! {
                biased;
                _ = shared.shutdown.cancelled() => return Ok(()),
                r = read => r?,
            }
        };
        if n == 0 {
            if mid_request {
                tracing::debug!(%peer, pending = decoder.pending() + buf.len(), "peer closed in the middle of a request");
            }
            return Ok(());
        }
    }
}

/// Refuses streams that are clearly not msgpack forward requests, with a reason an operator can
/// act on. Each of these first bytes is a positive fixint in msgpack, which can never start a
/// valid request, so one byte decides. `after_proxy_header`: the source reads a PROXY header
/// first, so another one here is a second header.
fn check_first_byte(first: u8, after_proxy_header: bool) -> Result<(), ConnError> {
    match first {
        b'{' | b'[' => Err(ConnError::Json),
        // "\r\n\r\n\0\r\nQUIT\n" starts PROXY v2, "PROXY " starts v1.
        b'\r' | b'P' if after_proxy_header => Err(ConnError::SecondProxyHeader),
        b'\r' | b'P' => Err(ConnError::UnexpectedProxyHeader),
        _ => Ok(()),
    }
}

fn handle_frame(
    frame: Bytes,
    peer: &Peer,
    shared: &Shared,
    extra: Option<&ExtraKeys>,
) -> Result<Option<PendingAck>, ConnError> {
    let cfg = &shared.config;
    let stats = &shared.stats;
    let size = frame.len() as u64;
    ForwardStats::add(&stats.requests, 1);
    ForwardStats::add(&stats.bytes, size);
    if let Some(warn) = cfg.chunk_size_warn_limit {
        if size > warn {
            tracing::warn!(%peer, size, limit = warn, "request is larger than chunk_size_warn_limit");
        }
    }
    let opts = ParseOptions {
        skip_invalid_event: cfg.skip_invalid_event,
        decompression_size_limit: usize::try_from(cfg.decompression_size_limit)
            .unwrap_or(usize::MAX),
        now: EventTime::now(),
    };
    let request = match parse_request(frame, &opts)? {
        Request::KeepAlive => return Ok(None),
        Request::Events(r) => r,
    };
    tracing::trace!(%peer, tag = %request.tag, events = request.events.len(), ack = request.chunk.is_some(), "request");
    if request.invalid_events > 0 {
        ForwardStats::add(&stats.invalid_events, request.invalid_events as u64);
        tracing::warn!(%peer, tag = %request.tag, skipped = request.invalid_events, "skipped invalid events");
    }
    let tag = match (&cfg.tag, &cfg.add_tag_prefix) {
        (Some(fixed), _) => fixed.clone(),
        (None, Some(prefix)) => format!("{prefix}.{}", request.tag),
        (None, None) => request.tag,
    };
    let (accepted, events) = if request.fluent_signal != 0 {
        // Metrics and traces are not log records: acknowledge them so the sender does not
        // retry forever, and drop them.
        ForwardStats::add(&stats.signal_requests_dropped, 1);
        tracing::debug!(%peer, %tag, signal = request.fluent_signal, "dropped a metrics/traces request");
        (Accepted::ok(), 0)
    } else {
        let events = match extra {
            Some(keys) => add_keys(&request.events, keys),
            None => request.events,
        };
        ForwardStats::add(&stats.events, events.len() as u64);
        (shared.pipeline.emit(&tag, &events), events.len())
    };
    Ok(Some(PendingAck {
        chunk: request.chunk,
        accepted,
        tag,
        events,
    }))
}

async fn write_acks<W>(
    mut wr: W,
    mut rx: mpsc::Receiver<PendingAck>,
    stats: &ForwardStats,
) -> Result<(), ConnError>
where
    W: AsyncWrite + Unpin,
{
    let mut unflushed = false;
    loop {
        let pending = if unflushed {
            match rx.try_recv() {
                Ok(p) => Some(p),
                Err(_) => {
                    wr.flush().await?;
                    unflushed = false;
                    rx.recv().await
                }
            }
        } else {
            rx.recv().await
        };
        let Some(pending) = pending else { break };
        match pending.accepted.wait().await {
            Ok(()) => {
                if let Some(chunk) = pending.chunk {
                    // Counted first: the peer may read the ack (and ask the metrics) before
                    // this task runs again.
                    ForwardStats::add(&stats.acks_sent, 1);
                    wr.write_all(&encode_ack(&chunk)).await?;
                    unflushed = true;
                }
            }
            Err(refused) => {
                return Err(ConnError::Refused {
                    refused,
                    tag: pending.tag,
                    events: pending.events,
                });
            }
        }
    }
    wr.flush().await?;
    // A clean end: FIN (or TLS close_notify). The peer may be gone already; that is fine.
    let _ = wr.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_proxy_headers_are_recognised() {
        for after in [false, true] {
            assert!(matches!(
                check_first_byte(b'{', after),
                Err(ConnError::Json)
            ));
            assert!(matches!(
                check_first_byte(b'[', after),
                Err(ConnError::Json)
            ));
            for ok in [0x93u8, 0x94, 0x92, 0xc0, 0xdc] {
                assert!(check_first_byte(ok, after).is_ok());
            }
        }
        for first in [b'\r', b'P'] {
            assert!(matches!(
                check_first_byte(first, false),
                Err(ConnError::UnexpectedProxyHeader)
            ));
            assert!(matches!(
                check_first_byte(first, true),
                Err(ConnError::SecondProxyHeader)
            ));
        }
    }
}
