//! Binding the forward port (TCP and UDP) and accepting connections.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::ForwardConfig;
use super::conn::{accept, Shared};
use super::stats::ForwardStats;
use super::tls;
use crate::pipeline::Pipeline;

/// Fluentd reads heartbeats of up to this size; the content does not matter.
const HEARTBEAT_MAX: usize = 1024;

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// `bind` did not resolve to an address.
    #[error("cannot resolve bind address '{0}'")]
    Resolve(String),
    /// The TCP or UDP port could not be bound.
    #[error("cannot listen on {addr} ({proto}): {source}")]
    Bind {
        addr: SocketAddr,
        proto: &'static str,
        source: io::Error,
    },
    /// TLS files could not be loaded.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Starts forward sources.
pub struct ForwardListener;

/// A forward source with its ports bound, ready to run.
pub struct BoundForward {
    tcp: TcpListener,
    udp: UdpSocket,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    local: SocketAddr,
}

impl ForwardListener {
    /// Binds the TCP port and the UDP heartbeat port. Port 0 picks a free port (the same
    /// number for both), which tests use.
    pub async fn bind(
        config: ForwardConfig,
        pipeline: Arc<Pipeline>,
        shutdown: CancellationToken,
    ) -> Result<BoundForward, ListenError> {
        let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
        let addr = (config.bind.as_str(), config.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| ListenError::Resolve(config.bind.clone()))?;
        let tcp_error = |source| ListenError::Bind {
            addr,
            proto: "tcp",
            source,
        };
        let tcp = bind_tcp(addr).map_err(tcp_error)?;
        let local = tcp
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .ok_or_else(|| tcp_error(io::Error::other("the bound socket has no address")))?;
        // UDP is bound before TCP listens: a client never reaches a port whose start-up is
        // about to fail on the UDP half.
        let udp = bind_udp(local).map_err(|source| ListenError::Bind {
            addr: local,
            proto: "udp",
            source,
        })?;
        let tcp = listen(tcp, config.backlog).map_err(tcp_error)?;
        Self::assemble(config, pipeline, shutdown, tls, tcp, udp, local)
    }

    /// Like [`ForwardListener::bind`], on sockets that are already bound: those of the
    /// previous config, from [`BoundForward::try_clone_sockets`], so that a config reload
    /// keeps the port open and forwarders see no refused connection.
    pub fn adopt(
        config: ForwardConfig,
        pipeline: Arc<Pipeline>,
        shutdown: CancellationToken,
        sockets: (std::net::TcpListener, std::net::UdpSocket),
    ) -> Result<BoundForward, ListenError> {
        let tls = config.tls.as_ref().map(tls::acceptor).transpose()?;
        let (tcp, udp) = sockets;
        let fail = |proto, source| ListenError::Bind {
            addr: SocketAddr::from(([0, 0, 0, 0], config.port)),
            proto,
            source,
        };
        let local = tcp.local_addr().map_err(|e| fail("tcp", e))?;
        let tcp = tcp
            .set_nonblocking(true)
            .and_then(|()| TcpListener::from_std(tcp))
            .map_err(|e| fail("tcp", e))?;
        let udp = udp
            .set_nonblocking(true)
            .and_then(|()| UdpSocket::from_std(udp))
            .map_err(|e| fail("udp", e))?;
        Self::assemble(config, pipeline, shutdown, tls, tcp, udp, local)
    }

    fn assemble(
        config: ForwardConfig,
        pipeline: Arc<Pipeline>,
        shutdown: CancellationToken,
        tls: Option<TlsAcceptor>,
        tcp: TcpListener,
        udp: UdpSocket,
        local: SocketAddr,
    ) -> Result<BoundForward, ListenError> {
        tracing::info!(source = %config.id, addr = %local, tls = tls.is_some(), shared_key = config.security.is_some(), "listening for forward connections");
        Ok(BoundForward {
            tcp,
            udp,
            tls,
            local,
            shared: Arc::new(Shared {
                config,
                pipeline,
                stats: Arc::new(ForwardStats::default()),
                shutdown,
            }),
        })
    }
}

/// A TCP socket bound to `addr`, not listening yet.
fn bind_tcp(addr: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // `::` serves IPv4 peers too, as Ruby's sockets do.
        let _ = socket.set_only_v6(false);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

fn listen(socket: Socket, backlog: Option<u32>) -> io::Result<TcpListener> {
    socket.listen(backlog.map_or(1024, |b| i32::try_from(b).unwrap_or(i32::MAX)))?;
    TcpListener::from_std(socket.into())
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        let _ = socket.set_only_v6(false);
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

impl BoundForward {
    /// The address the TCP and UDP sockets are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The source's counters.
    pub fn stats(&self) -> Arc<ForwardStats> {
        Arc::clone(&self.shared.stats)
    }

    /// Duplicates the listening TCP and UDP sockets (see [`ForwardListener::adopt`]).
    pub fn try_clone_sockets(&self) -> io::Result<(std::net::TcpListener, std::net::UdpSocket)> {
        let tcp = SockRef::from(&self.tcp).try_clone()?;
        let udp = SockRef::from(&self.udp).try_clone()?;
        Ok((tcp.into(), udp.into()))
    }

    /// Serves until the shutdown token fires; then stops accepting, lets every connection
    /// finish the request it is reading and send its acks, and returns when all have closed or
    /// `drain` has passed.
    pub async fn run(self, drain: Duration) {
        let BoundForward {
            tcp,
            udp,
            tls,
            shared,
            ..
        } = self;
        let heartbeat = tokio::spawn(answer_heartbeats(udp, Arc::clone(&shared)));
        let tracker = TaskTracker::new();
        let slots = Arc::new(Semaphore::new(shared.config.max_connections));
        loop {
            let permit = tokio::select! {
                _ = shared.shutdown.cancelled() => break,
                p = Arc::clone(&slots).acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let accepted = tokio::select! {
                _ = shared.shutdown.cancelled() => break,
                a = tcp.accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::error!(source = %shared.config.id, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            set_socket_options(&stream, &shared.config);
            let shared = Arc::clone(&shared);
            let tls = tls.clone();
            tracker.spawn(async move {
                ForwardStats::add(&shared.stats.connections_total, 1);
                ForwardStats::add(&shared.stats.connections_open, 1);
                accept(stream, peer, tls, Arc::clone(&shared)).await;
                shared
                    .stats
                    .connections_open
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                drop(permit);
            });
        }
        drop(tcp);
        tracker.close();
        if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
            tracing::warn!(source = %shared.config.id, open = tracker.len(), "connections still open after the drain time; closing them");
        }
        heartbeat.abort();
    }
}

fn set_socket_options(stream: &TcpStream, cfg: &ForwardConfig) {
    let _ = stream.set_nodelay(true);
    let sock = SockRef::from(stream);
    if cfg.send_keepalive_packet {
        let ka = TcpKeepalive::new()
            .with_time(cfg.keepalive_idle)
            .with_interval(cfg.keepalive_interval)
            .with_retries(cfg.keepalive_count);
        if let Err(e) = sock.set_tcp_keepalive(&ka) {
            tracing::debug!("cannot set TCP keepalive: {e}");
        }
    }
    if let Some(secs) = cfg.linger_timeout {
        let _ = sock.set_linger(Some(Duration::from_secs(u64::from(secs))));
    }
}

/// Answers every datagram on the forward port with one zero byte, as in_forward does.
async fn answer_heartbeats(udp: UdpSocket, shared: Arc<Shared>) {
    let mut buf = [0u8; HEARTBEAT_MAX];
    loop {
        match udp.recv_from(&mut buf).await {
            Ok((_, from)) => {
                ForwardStats::add(&shared.stats.heartbeats, 1);
                if let Err(e) = udp.send_to(&[0u8], from).await {
                    tracing::debug!(%from, "heartbeat reply failed: {e}");
                }
            }
            Err(e) => {
                tracing::debug!("heartbeat receive failed: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}
