//! A forward-protocol client for `weir cat` and `weir bench`: TCP or TLS, the client side of
//! the shared-key handshake, ack reading, and failover from a primary server to standby servers
//! the way Fluentd's `out_forward` does it with `<server> standby`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use bytes::{Bytes, BytesMut};
use clap::Args;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use weir_proto::{
    digest_eq, key_digest, parse_ack, password_digest, FrameDecoder, FrameLimits, Helo, Ping, Pong,
};

/// Where and how to connect; shared by `weir cat` and `weir bench`.
#[derive(Args, Clone, Debug)]
pub struct ConnectArgs {
    /// The aggregator's host.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The aggregator's forward port.
    #[arg(short = 'p', long, default_value_t = 24224)]
    pub port: u16,
    /// Connect with TLS.
    #[arg(long)]
    pub tls: bool,
    /// With --tls: CA certificates (PEM) to verify the server with. Without it, the system's
    /// are not consulted; give this or --tls-insecure.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// With --tls: do not verify the server's certificate (testing only).
    #[arg(long)]
    pub tls_insecure: bool,
    /// With --tls: the name to verify the certificate against (default: --host).
    #[arg(long)]
    pub tls_server_name: Option<String>,
    /// With --tls: a client certificate chain (PEM), for servers with `client_cert_auth`.
    #[arg(long, value_name = "FILE", requires = "tls_client_key")]
    pub tls_client_cert: Option<PathBuf>,
    /// With --tls: the client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_client_cert")]
    pub tls_client_key: Option<PathBuf>,
    /// Shared key for the handshake (the server's `<security> shared_key`).
    #[arg(long)]
    pub shared_key: Option<String>,
    /// The host name this client gives in the handshake.
    #[arg(long)]
    pub self_hostname: Option<String>,
    /// User name for `user_auth`.
    #[arg(long, default_value = "")]
    pub username: String,
    /// Password for `user_auth`.
    #[arg(long, default_value = "")]
    pub password: String,
    /// Give up connecting after this many seconds.
    #[arg(long, default_value_t = 10)]
    pub connect_timeout: u64,
}

/// A TCP or TLS stream.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// An open forward connection, past TLS and the handshake.
pub struct Connection {
    reader: AckReader,
    writer: WriteHalf<Box<dyn Stream>>,
}

/// The reading side of a connection: acks.
pub struct AckReader {
    rd: ReadHalf<Box<dyn Stream>>,
    buf: BytesMut,
    decoder: FrameDecoder,
}

impl AckReader {
    /// Waits for the next ack and returns the chunk id it echoes.
    pub async fn next_ack(&mut self) -> anyhow::Result<Bytes> {
        let frame = read_frame(&mut self.rd, &mut self.buf, &mut self.decoder).await?;
        parse_ack(&frame).map_err(|e| anyhow!("bad ack: {e}"))
    }
}

async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    decoder: &mut FrameDecoder,
) -> anyhow::Result<Bytes> {
    loop {
        if let Some(frame) = decoder.next_frame(buf)? {
            return Ok(frame);
        }
        buf.reserve(4096);
        if rd.read_buf(buf).await? == 0 {
            bail!("the server closed the connection");
        }
    }
}

impl Connection {
    /// Connects to `--host` and `--port`, runs TLS and the handshake as configured.
    pub async fn open(args: &ConnectArgs) -> anyhow::Result<Connection> {
        Connection::open_to(args, &ServerAddr::from_args(args)).await
    }

    /// Connects to `server` with the TLS and handshake settings of `args`. The TLS name checked
    /// is `--tls-server-name` when given, else `server`'s host.
    pub async fn open_to(args: &ConnectArgs, server: &ServerAddr) -> anyhow::Result<Connection> {
        let addr = server.to_string();
        let tcp = tokio::time::timeout(
            Duration::from_secs(args.connect_timeout),
            TcpStream::connect(&addr),
        )
        .await
        .map_err(|_| anyhow!("connecting to {addr} timed out"))?
        .with_context(|| format!("connecting to {addr}"))?;
        tcp.set_nodelay(true)?;
        let stream: Box<dyn Stream> = if args.tls {
            Box::new(tls_connect(tcp, args, &server.host).await?)
        } else {
            Box::new(tcp)
        };
        let (rd, writer) = tokio::io::split(stream);
        let mut conn = Connection {
            reader: AckReader {
                rd,
                buf: BytesMut::with_capacity(4096),
                decoder: FrameDecoder::new(FrameLimits {
                    chunk_size_limit: 1024 * 1024,
                    max_depth: 8,
                }),
            },
            writer,
        };
        if let Some(key) = &args.shared_key {
            conn.handshake(args, key).await?;
        }
        Ok(conn)
    }

    async fn handshake(&mut self, args: &ConnectArgs, key: &str) -> anyhow::Result<()> {
        let r = &mut self.reader;
        let helo_frame = read_frame(&mut r.rd, &mut r.buf, &mut r.decoder)
            .await
            .context("waiting for HELO (does the server have <security> set?)")?;
        let helo = Helo::parse(&helo_frame).map_err(|e| anyhow!("bad HELO: {e}"))?;
        let hostname = match &args.self_hostname {
            Some(h) => h.clone(),
            None => hostname::get()
                .ok()
                .and_then(|h| h.into_string().ok())
                .unwrap_or_else(|| "weir-cat".into()),
        };
        let salt: [u8; 16] = rand::random();
        let salt = hex::encode(salt);
        let (username, pw_digest) = if helo.auth.is_empty() {
            (String::new(), String::new())
        } else {
            (
                args.username.clone(),
                password_digest(
                    &helo.auth,
                    args.username.as_bytes(),
                    args.password.as_bytes(),
                ),
            )
        };
        let ping = Ping {
            hostname: Bytes::from(hostname.clone().into_bytes()),
            salt: Bytes::from(salt.clone().into_bytes()),
            key_digest: Bytes::from(
                key_digest(
                    salt.as_bytes(),
                    hostname.as_bytes(),
                    &helo.nonce,
                    key.as_bytes(),
                )
                .into_bytes(),
            ),
            username: Bytes::from(username.into_bytes()),
            password_digest: Bytes::from(pw_digest.into_bytes()),
        };
        self.send(&ping.encode()).await?;
        let r = &mut self.reader;
        let pong_frame = read_frame(&mut r.rd, &mut r.buf, &mut r.decoder)
            .await
            .context("waiting for PONG")?;
        match Pong::parse(&pong_frame).map_err(|e| anyhow!("bad PONG: {e}"))? {
            Pong::Rejected { reason } => bail!("the server refused the handshake: {reason}"),
            Pong::Accepted {
                server_hostname,
                digest,
            } => {
                if server_hostname.as_ref() == hostname.as_bytes() {
                    bail!("the server has the same host name as this client");
                }
                let expected = key_digest(
                    salt.as_bytes(),
                    &server_hostname,
                    &helo.nonce,
                    key.as_bytes(),
                );
                if !digest_eq(expected.as_bytes(), &digest) {
                    bail!(
                        "the server's PONG digest does not match: wrong shared key on the server?"
                    );
                }
                Ok(())
            }
        }
    }

    /// Writes one request.
    pub async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.writer.write_all(bytes).await?;
        self.writer.flush().await?;
        Ok(())
    }

    /// Waits for the next ack.
    pub async fn next_ack(&mut self) -> anyhow::Result<Bytes> {
        self.reader.next_ack().await
    }

    /// Splits into a writer and an ack reader, to pipeline requests.
    pub fn split(self) -> (WriteHalf<Box<dyn Stream>>, AckReader) {
        (self.writer, self.reader)
    }

    /// Closes the connection cleanly.
    pub async fn close(mut self) -> anyhow::Result<()> {
        self.writer.shutdown().await?;
        Ok(())
    }
}

fn read_certs(
    path: &std::path::Path,
) -> anyhow::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    let mut reader = std::io::BufReader::new(
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
    );
    let certs = rustls_pemfile::certs(&mut reader).collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        bail!("{}: no PEM certificate", path.display());
    }
    Ok(certs)
}

async fn tls_connect(
    tcp: TcpStream,
    args: &ConnectArgs,
    host: &str,
) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let builder = weir_tls::client_builder()?;
    let builder = if args.tls_insecure {
        // For tests against self-signed certificates only.
        weir_tls::accept_any_server_cert(builder)
    } else {
        let ca = args
            .tls_ca
            .as_ref()
            .ok_or_else(|| anyhow!("--tls needs --tls-ca FILE or --tls-insecure"))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in read_certs(ca)? {
            roots.add(cert)?;
        }
        builder.with_root_certificates(roots)
    };
    let config = match (&args.tls_client_cert, &args.tls_client_key) {
        (Some(cert), Some(key)) => {
            let mut reader = std::io::BufReader::new(
                std::fs::File::open(key).with_context(|| format!("opening {}", key.display()))?,
            );
            let key = rustls_pemfile::private_key(&mut reader)?
                .ok_or_else(|| anyhow!("{}: no PEM private key", key.display()))?;
            builder.with_client_auth_cert(read_certs(cert)?, key)?
        }
        _ => builder.with_no_client_auth(),
    };
    let name = args
        .tls_server_name
        .clone()
        .unwrap_or_else(|| host.to_string());
    let server_name = rustls::pki_types::ServerName::try_from(name.clone())
        .map_err(|e| anyhow!("bad TLS server name '{name}': {e}"))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    connector
        .connect(server_name, tcp)
        .await
        .context("TLS handshake")
}

/// A server's address as given on the command line: `HOST:PORT`, `[IPv6]:PORT`, or `HOST`
/// (port 24224).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerAddr {
    /// A host name or an IP address (IPv6 without brackets).
    pub host: String,
    /// The forward port.
    pub port: u16,
}

impl ServerAddr {
    /// The primary server of `--host` and `--port`.
    pub fn from_args(args: &ConnectArgs) -> ServerAddr {
        ServerAddr {
            host: args.host.clone(),
            port: args.port,
        }
    }
}

impl FromStr for ServerAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<ServerAddr, String> {
        let bad_port = |p: &str| format!("'{s}': the port '{p}' is not a number from 1 to 65535");
        let parse_port = |p: &str| match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(bad_port(p)),
            Ok(n) => Ok(n),
        };
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("'{s}': an IPv6 address needs its closing ']'"))?;
            match after {
                "" => (host, 24224),
                _ => match after.strip_prefix(':') {
                    Some(p) => (host, parse_port(p)?),
                    None => return Err(format!("'{s}': expected ':PORT' after ']'")),
                },
            }
        } else {
            match s.rsplit_once(':') {
                Some((h, _)) if h.contains(':') => {
                    return Err(format!("'{s}': write an IPv6 address as [ADDRESS]:PORT"))
                }
                Some((h, p)) => (h, parse_port(p)?),
                None => (s, 24224),
            }
        };
        if host.is_empty() {
            return Err(format!("'{s}': the host is empty"));
        }
        Ok(ServerAddr {
            host: host.to_string(),
            port,
        })
    }
}

impl fmt::Display for ServerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Which server to send to: the primary (index 0) while it works, else the standby servers in
/// order. The rules, as in Fluentd's `out_forward` with standby servers:
///
/// - a failure (no connection, a write error, no ack within the ack timeout) moves to the next
///   server in the list, wrapping around to the primary after the last standby;
/// - while a standby is in use, the primary is tried again before a request once `recover_wait`
///   has passed since it last failed (or was last tried); if it accepts a connection (and the
///   TLS and shared-key handshakes when configured), the client goes back to it.
#[derive(Debug)]
pub struct Failover {
    servers: Vec<ServerAddr>,
    current: usize,
    recover_wait: Duration,
    primary_tried: Option<Instant>,
}

impl Failover {
    /// `servers[0]` is the primary; the others are standby servers.
    pub fn new(servers: Vec<ServerAddr>, recover_wait: Duration) -> Failover {
        assert!(!servers.is_empty(), "Failover needs at least one server");
        Failover {
            servers,
            current: 0,
            recover_wait,
            primary_tried: None,
        }
    }

    /// How many servers there are, the primary included.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// The server in use.
    pub fn current(&self) -> &ServerAddr {
        &self.servers[self.current]
    }

    /// The primary server.
    pub fn primary(&self) -> &ServerAddr {
        &self.servers[0]
    }

    /// The server in use failed at `now`: moves to the next one and returns it.
    pub fn failed(&mut self, now: Instant) -> &ServerAddr {
        if self.current == 0 {
            self.primary_tried = Some(now);
        }
        self.current = (self.current + 1) % self.servers.len();
        self.current()
    }

    /// True when a standby is in use and the primary is due to be tried again at `now`.
    pub fn primary_due(&self, now: Instant) -> bool {
        self.current != 0
            && self
                .primary_tried
                .is_none_or(|t| now.saturating_duration_since(t) >= self.recover_wait)
    }

    /// Records a try of the primary at `now`; `ok` switches back to it.
    pub fn primary_tried(&mut self, now: Instant, ok: bool) {
        self.primary_tried = Some(now);
        if ok {
            self.current = 0;
        }
    }
}

/// A forward client with failover: sends each request to the server in use, waits for its ack
/// (when one is asked for) up to the ack timeout, and on any failure sends the same request to
/// the next server. See [`Failover`] for which server is used when.
pub struct FailoverClient {
    args: ConnectArgs,
    failover: Failover,
    ack_timeout: Duration,
    conn: Option<Connection>,
}

impl FailoverClient {
    /// A client for the primary `--host`/`--port` and `standby` servers; nothing is connected
    /// yet.
    pub fn new(
        args: ConnectArgs,
        standby: Vec<ServerAddr>,
        recover_wait: Duration,
        ack_timeout: Duration,
    ) -> FailoverClient {
        let mut servers = vec![ServerAddr::from_args(&args)];
        servers.extend(standby);
        FailoverClient {
            args,
            failover: Failover::new(servers, recover_wait),
            ack_timeout,
            conn: None,
        }
    }

    /// Connects to the first server that accepts, starting with the one in use.
    pub async fn connect(&mut self) -> anyhow::Result<()> {
        self.with_failover(None).await
    }

    /// Sends one request; with `ack`, waits for the ack carrying that chunk id. On failure the
    /// request goes to the next server; the error is returned only when every server failed
    /// in turn (or at once, with no standby server).
    pub async fn send(&mut self, request: &[u8], ack: Option<&Bytes>) -> anyhow::Result<()> {
        self.try_primary_again().await;
        self.with_failover(Some((request, ack))).await
    }

    /// Closes the connection cleanly.
    pub async fn close(mut self) -> anyhow::Result<()> {
        match self.conn.take() {
            Some(conn) => conn.close().await,
            None => Ok(()),
        }
    }

    async fn try_primary_again(&mut self) {
        let now = Instant::now();
        if !self.failover.primary_due(now) {
            return;
        }
        let primary = self.failover.primary().clone();
        match Connection::open_to(&self.args, &primary).await {
            Ok(conn) => {
                tracing::info!(
                    "the primary server {primary} is back: sending to it again (leaving {})",
                    self.failover.current()
                );
                if let Some(old) = self.conn.replace(conn) {
                    let _ = old.close().await;
                }
                self.failover.primary_tried(Instant::now(), true);
            }
            Err(e) => {
                tracing::debug!("the primary server {primary} is still down: {e:#}");
                self.failover.primary_tried(Instant::now(), false);
            }
        }
    }

    async fn with_failover(
        &mut self,
        request: Option<(&[u8], Option<&Bytes>)>,
    ) -> anyhow::Result<()> {
        let mut failures = 0usize;
        loop {
            let result = self.attempt(request).await;
            let Err(e) = result else { return Ok(()) };
            self.conn = None;
            failures += 1;
            let failed = self.failover.current().clone();
            if failures >= self.failover.len() {
                if self.failover.len() == 1 {
                    return Err(e);
                }
                self.failover.failed(Instant::now());
                return Err(e.context(format!(
                    "every server failed in turn (the last was {failed})"
                )));
            }
            let next = self.failover.failed(Instant::now()).clone();
            tracing::warn!("{failed} failed: {e:#}; sending to {next}");
        }
    }

    async fn attempt(&mut self, request: Option<(&[u8], Option<&Bytes>)>) -> anyhow::Result<()> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let server = self.failover.current().clone();
                let conn = Connection::open_to(&self.args, &server).await?;
                tracing::info!("connected to {server}");
                self.conn.insert(conn)
            }
        };
        let Some((bytes, ack)) = request else {
            return Ok(());
        };
        conn.send(bytes).await.context("sending")?;
        if let Some(chunk) = ack {
            let acked = tokio::time::timeout(self.ack_timeout, conn.next_ack())
                .await
                .map_err(|_| anyhow!("no ack within {:?}", self.ack_timeout))?
                .context("waiting for the ack")?;
            if acked != chunk {
                bail!("the server acked a different chunk than the one sent");
            }
        }
        Ok(())
    }
}

/// Which forward mode a client sends in.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendMode {
    /// One `[tag, time, record]` request per event.
    Message,
    /// `[tag, [[time, record], ...]]`.
    Forward,
    /// `[tag, bin of concatenated entries]`.
    Packed,
    /// PackedForward with the entries gzip-compressed.
    Compressed,
    /// PackedForward with the entries zstd-compressed (Fluentd 1.19 clients).
    Zstd,
}

/// Encodes one batch of events as requests of `mode`. Message mode gives one request per event,
/// all concatenated; the ack (if any) is asked for on the last one only.
pub fn encode_requests(
    mode: SendMode,
    tag: &str,
    entries: &[(weir_proto::EventTime, &[u8])],
    opts: &weir_proto::EncodeOptions,
) -> Vec<u8> {
    use weir_proto::{encode_forward, encode_message, encode_packed, Compression};
    match mode {
        SendMode::Message => {
            let mut out = Vec::new();
            let last = entries.len().saturating_sub(1);
            let mut plain = opts.clone();
            plain.chunk = None;
            for (i, (time, record)) in entries.iter().enumerate() {
                let o = if i == last { opts } else { &plain };
                out.extend_from_slice(&encode_message(tag, *time, record, o));
            }
            out
        }
        SendMode::Forward => encode_forward(tag, entries, opts),
        SendMode::Packed => encode_packed(tag, entries, Compression::Text, opts),
        SendMode::Compressed => encode_packed(tag, entries, Compression::Gzip, opts),
        SendMode::Zstd => encode_packed(tag, entries, Compression::Zstd, opts),
    }
}

/// A fresh chunk id as Fluentd writes it: Base64 of 16 random bytes, with a trailing newline.
pub fn new_chunk_id() -> Bytes {
    use base64::Engine as _;
    let raw: [u8; 16] = rand::random();
    let mut id = base64::engine::general_purpose::STANDARD.encode(raw);
    id.push('\n');
    Bytes::from(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> ServerAddr {
        s.parse().unwrap()
    }

    #[test]
    fn server_addresses_parse_and_print() {
        assert_eq!(
            addr("agg-a.example.internal:24225"),
            ServerAddr {
                host: "agg-a.example.internal".into(),
                port: 24225
            }
        );
        assert_eq!(addr("10.0.0.5").port, 24224);
        assert_eq!(addr("[::1]:9000").host, "::1");
        assert_eq!(addr("[::1]").port, 24224);
        assert_eq!(addr("[::1]:9000").to_string(), "[::1]:9000");
        assert_eq!(addr("h:1").to_string(), "h:1");
        for bad in [
            "",
            ":24224",
            "h:0",
            "h:70000",
            "h:x",
            "::1:24224",
            "[::1",
            "[::1]9000",
        ] {
            assert!(bad.parse::<ServerAddr>().is_err(), "{bad} should not parse");
        }
    }

    proptest::proptest! {
        /// Any host and port print as an address that parses back to the same host and port.
        #[test]
        fn server_addresses_round_trip(
            host in "([a-z0-9-]{1,20}(\\.[a-z0-9-]{1,20}){0,3}|[0-9a-f:]{2,39})",
            port in 1u16..,
        ) {
            let a = ServerAddr { host: host.clone(), port };
            let b: ServerAddr = a.to_string().parse().map_err(proptest::test_runner::TestCaseError::fail)?;
            proptest::prop_assert_eq!(a, b);
        }

        /// Arbitrary text never panics the parser.
        #[test]
        fn server_addresses_never_panic(s in ".{0,64}") {
            let _ = s.parse::<ServerAddr>();
        }
    }

    #[test]
    fn failover_walks_the_list_and_recovers_to_the_primary_after_recover_wait() {
        let t0 = Instant::now();
        let wait = Duration::from_secs(10);
        let mut f = Failover::new(vec![addr("p:1"), addr("s1:2"), addr("s2:3")], wait);
        assert_eq!(f.current(), f.primary());
        assert!(!f.primary_due(t0), "the primary in use is never 'due'");
        assert_eq!(f.failed(t0).host, "s1");
        assert!(!f.primary_due(t0 + Duration::from_secs(9)));
        assert!(f.primary_due(t0 + wait));
        // A failed retry waits recover_wait again.
        f.primary_tried(t0 + wait, false);
        assert_eq!(f.current().host, "s1");
        assert!(!f.primary_due(t0 + wait + Duration::from_secs(5)));
        assert!(f.primary_due(t0 + wait * 2));
        // The standby failing moves on to the next one, then wraps to the primary.
        assert_eq!(f.failed(t0 + wait).host, "s2");
        assert_eq!(f.failed(t0 + wait).host, "p");
        assert_eq!(f.current(), f.primary());
        // A successful retry goes back to the primary.
        f.failed(t0);
        f.primary_tried(t0 + wait, true);
        assert_eq!(f.current(), f.primary());
        assert_eq!(f.current(), f.primary());
    }

    #[test]
    fn a_single_server_fails_over_to_itself() {
        let mut f = Failover::new(vec![addr("p:1")], Duration::from_secs(1));
        assert_eq!(f.failed(Instant::now()).host, "p");
        assert_eq!(f.current(), f.primary());
        assert!(!f.primary_due(Instant::now() + Duration::from_secs(5)));
    }

    #[test]
    fn chunk_ids_look_like_fluentds() {
        let id = new_chunk_id();
        assert_eq!(id.len(), 25);
        assert!(id.ends_with(b"==\n"));
        assert!(id[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/'));
    }
}
