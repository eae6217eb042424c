//! `<source> @type forward`: the parameters Fluentd's in_forward takes, and weir's own additions,
//! read from the config with their Fluentd names and defaults.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use weir_config::{ConfigError, Section};

/// Fluentd's in_forward listens on this port by default.
pub const DEFAULT_PORT: u16 = 24224;

/// Everything the forward listener needs to know.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    /// `@id`, or a generated one.
    pub id: String,
    /// `bind`: the address to listen on.
    pub bind: String,
    /// `port`: TCP, and UDP for heartbeats.
    pub port: u16,
    /// `backlog`: the listen queue length.
    pub backlog: Option<u32>,
    /// `tag`: replaces every incoming tag.
    pub tag: Option<String>,
    /// `add_tag_prefix`: put before every incoming tag, with a dot.
    pub add_tag_prefix: Option<String>,
    /// `linger_timeout`: when set, SO_LINGER with this many seconds (0 resets the connection on
    /// close, as Fluentd's default does). Unset: a normal close.
    pub linger_timeout: Option<u32>,
    /// `resolve_hostname`: look up the peer's host name for `source_hostname_key`.
    pub resolve_hostname: bool,
    /// `deny_keepalive`: close each connection after its first request.
    pub deny_keepalive: bool,
    /// `send_keepalive_packet`: TCP keepalive probes on accepted connections.
    pub send_keepalive_packet: bool,
    /// `keepalive_idle`, `keepalive_interval`, `keepalive_count` (weir): the probe timing.
    pub keepalive_idle: Duration,
    /// Seconds between probes once they start.
    pub keepalive_interval: Duration,
    /// Unanswered probes before the kernel drops the connection.
    pub keepalive_count: u32,
    /// `chunk_size_warn_limit`: log a warning for requests larger than this.
    pub chunk_size_warn_limit: Option<u64>,
    /// `chunk_size_limit`: refuse (no ack, connection closed) requests larger than this, before
    /// buffering them whole.
    pub chunk_size_limit: u64,
    /// `decompression_size_limit`: cap on a compressed request's decompressed size.
    pub decompression_size_limit: u64,
    /// `skip_invalid_event`: skip and count bad events instead of refusing the whole request.
    pub skip_invalid_event: bool,
    /// `source_address_key`: add the sender's IP address to each record under this key.
    pub source_address_key: Option<String>,
    /// `source_hostname_key`: add the sender's host name to each record under this key.
    pub source_hostname_key: Option<String>,
    /// `proxy_protocol` (weir): every connection starts with a PROXY protocol header (v1 or v2)
    /// whose client address replaces the socket's peer.
    pub proxy_protocol: bool,
    /// `source_vpce_id_key` (weir): add the AWS VPC endpoint id from the PROXY header to each
    /// record under this key (left out for connections whose header has none).
    pub source_vpce_id_key: Option<String>,
    /// `max_connections` (weir): connections served at once; more wait in the listen queue.
    pub max_connections: usize,
    /// `idle_timeout` (weir): close a connection that sends nothing for this long.
    pub idle_timeout: Duration,
    /// `read_timeout` (weir): close a connection whose request stalls half-sent this long.
    pub read_timeout: Duration,
    /// `handshake_timeout` (weir): time allowed for TLS and the shared-key handshake.
    pub handshake_timeout: Duration,
    /// `max_pending_acks` (weir): requests read ahead of their acks; past this the connection
    /// is not read until acks go out.
    pub max_pending_acks: usize,
    /// `<security>`.
    pub security: Option<SecurityConfig>,
    /// `<transport tls>`.
    pub tls: Option<TlsConfig>,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            id: "forward".into(),
            bind: "0.0.0.0".into(),
            port: DEFAULT_PORT,
            backlog: None,
            tag: None,
            add_tag_prefix: None,
            linger_timeout: None,
            resolve_hostname: false,
            deny_keepalive: false,
            send_keepalive_packet: true,
            keepalive_idle: Duration::from_secs(60),
            keepalive_interval: Duration::from_secs(20),
            keepalive_count: 5,
            chunk_size_warn_limit: None,
            chunk_size_limit: 64 * 1024 * 1024,
            decompression_size_limit: 256 * 1024 * 1024,
            skip_invalid_event: true,
            source_address_key: None,
            source_hostname_key: None,
            proxy_protocol: false,
            source_vpce_id_key: None,
            max_connections: 4096,
            idle_timeout: Duration::from_secs(900),
            read_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(15),
            max_pending_acks: 64,
            security: None,
            tls: None,
        }
    }
}

/// `<security>`: the shared-key handshake.
#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// `self_hostname`: the name weir gives in PONG; must differ from every client's.
    pub self_hostname: String,
    /// `shared_key`: the key for clients that no `<client>` names.
    pub shared_key: String,
    /// `user_auth`: require a user name and password.
    pub user_auth: bool,
    /// `allow_anonymous_source`: accept peers that no `<client>` names.
    pub allow_anonymous_source: bool,
    /// `<user>` sections.
    pub users: Vec<UserConfig>,
    /// `<client>` sections.
    pub clients: Vec<ClientConfig>,
}

/// `<user>`: one user for `user_auth`.
#[derive(Debug, Clone)]
pub struct UserConfig {
    /// `username`.
    pub username: String,
    /// `password`.
    pub password: String,
}

/// `<client>`: settings for peers from one host or network.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Which peers this entry is for.
    pub matcher: ClientMatch,
    /// `shared_key`: overrides the global key for these peers.
    pub shared_key: Option<String>,
    /// `users`: the users these peers may log in as (empty: any).
    pub users: Vec<String>,
}

/// How a `<client>` recognises its peers.
#[derive(Debug, Clone)]
pub enum ClientMatch {
    /// `host`: a host name, resolved once at start to its addresses.
    Host { name: String, addrs: Vec<IpAddr> },
    /// `network`: an address block such as `10.0.0.0/8`.
    Network { addr: IpAddr, prefix: u8 },
}

impl ClientMatch {
    /// Whether the peer address belongs to this entry.
    pub fn matches(&self, peer: IpAddr) -> bool {
        match self {
            ClientMatch::Host { addrs, .. } => addrs.contains(&normalize(peer)),
            ClientMatch::Network { addr, prefix } => in_network(normalize(peer), *addr, *prefix),
        }
    }
}

/// IPv4 peers on a dual-stack socket arrive as `::ffff:a.b.c.d`; compare them as IPv4.
pub fn normalize(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn in_network(ip: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(prefix.min(32)))
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if prefix == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(prefix.min(128)))
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// `<transport tls>`.
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// `cert_path`: the server certificate chain (PEM).
    pub cert_path: PathBuf,
    /// `private_key_path`: its private key (PEM, unencrypted).
    pub private_key_path: PathBuf,
    /// `client_cert_auth`: require clients to present a certificate signed by `ca_path`.
    pub client_cert_auth: bool,
    /// `ca_path`: the CA certificates (PEM) that sign client certificates.
    pub ca_path: Option<PathBuf>,
    /// `min_version` / `version`: the lowest TLS version offered.
    pub min_version: TlsVersion,
    /// `max_version`: the highest TLS version offered.
    pub max_version: TlsVersion,
}

/// A TLS protocol version as Fluentd names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// `TLSv1_2`.
    V1_2,
    /// `TLSv1_3`.
    V1_3,
}

fn tls_version(s: &mut Section<'_>, key: &str) -> Result<Option<TlsVersion>, ConfigError> {
    match s.string(key).as_deref() {
        None => Ok(None),
        Some("TLSv1_2") => Ok(Some(TlsVersion::V1_2)),
        Some("TLSv1_3") => Ok(Some(TlsVersion::V1_3)),
        Some(v @ ("TLSv1" | "TLSv1_1" | "TLS1_1" | "TLS1")) => Err(s.error(
            Some(key),
            format!(
                "TLS version '{v}' is not supported by weir: it offers TLSv1_2 and TLSv1_3 only"
            ),
        )),
        Some(v) => Err(s.error(
            Some(key),
            format!("unknown TLS version '{v}' (expected TLSv1_2 or TLSv1_3)"),
        )),
    }
}

/// Collects errors so that every problem in a section is reported at once.
#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn take<T>(&mut self, r: Result<T, ConfigError>) -> Option<T> {
        match r {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }
}

fn duration_secs_u32(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

impl ForwardConfig {
    /// Reads a `<source> @type forward` section. Every error in it is returned, not just the
    /// first.
    pub fn from_section(s: &mut Section<'_>) -> Result<ForwardConfig, Vec<ConfigError>> {
        let mut errs = Errors::default();
        let mut c = ForwardConfig::default();
        if let Some(id) = s.string("@id") {
            c.id = id;
        }
        c.bind = s.string_or("bind", "0.0.0.0");
        if let Some(Some(port)) = errs.take(s.integer("port")) {
            match u16::try_from(port) {
                Ok(p) => c.port = p,
                Err(_) => errs
                    .0
                    .push(s.error(Some("port"), format!("port {port} is out of range"))),
            }
        }
        if let Some(Some(b)) = errs.take(s.integer("backlog")) {
            c.backlog = Some(u32::try_from(b.max(1)).unwrap_or(u32::MAX));
        }
        c.tag = s.string("tag");
        c.add_tag_prefix = s.string("add_tag_prefix");
        if let Some(Some(d)) = errs.take(s.duration("linger_timeout")) {
            c.linger_timeout = Some(duration_secs_u32(d));
        }
        if let Some(Some(v)) = errs.take(s.boolean("resolve_hostname")) {
            c.resolve_hostname = v;
        }
        if let Some(Some(v)) = errs.take(s.boolean("deny_keepalive")) {
            c.deny_keepalive = v;
        }
        if let Some(Some(v)) = errs.take(s.boolean("send_keepalive_packet")) {
            c.send_keepalive_packet = v;
        }
        if let Some(Some(d)) = errs.take(s.duration("keepalive_idle")) {
            c.keepalive_idle = d.max(Duration::from_secs(1));
        }
        if let Some(Some(d)) = errs.take(s.duration("keepalive_interval")) {
            c.keepalive_interval = d.max(Duration::from_secs(1));
        }
        if let Some(Some(n)) = errs.take(s.integer("keepalive_count")) {
            c.keepalive_count = u32::try_from(n.clamp(1, 255)).unwrap_or(5);
        }
        if let Some(v) = errs.take(s.size("chunk_size_warn_limit")) {
            c.chunk_size_warn_limit = v;
        }
        if let Some(Some(v)) = errs.take(s.size("chunk_size_limit")) {
            c.chunk_size_limit = v.max(1);
        }
        if let Some(Some(v)) = errs.take(s.size("decompression_size_limit")) {
            c.decompression_size_limit = v.max(1);
        }
        if let Some(Some(v)) = errs.take(s.boolean("skip_invalid_event")) {
            c.skip_invalid_event = v;
        }
        c.source_address_key = s.string("source_address_key");
        c.source_hostname_key = s.string("source_hostname_key");
        if c.source_hostname_key.is_some() && !c.resolve_hostname {
            // Fluentd turns resolve_hostname on when source_hostname_key is set.
            c.resolve_hostname = true;
        }
        if let Some(Some(v)) = errs.take(s.boolean("proxy_protocol")) {
            c.proxy_protocol = v;
        }
        c.source_vpce_id_key = s.string("source_vpce_id_key");
        if c.source_vpce_id_key.is_some() && !c.proxy_protocol {
            errs.0.push(s.error(
                Some("source_vpce_id_key"),
                "source_vpce_id_key needs proxy_protocol true: the VPC endpoint id comes from the PROXY protocol header a Network Load Balancer sends",
            ));
        }
        if let Some(Some(n)) = errs.take(s.integer("max_connections")) {
            c.max_connections = usize::try_from(n.max(1)).unwrap_or(usize::MAX);
        }
        if let Some(Some(d)) = errs.take(s.duration("idle_timeout")) {
            c.idle_timeout = d;
        }
        if let Some(Some(d)) = errs.take(s.duration("read_timeout")) {
            c.read_timeout = d;
        }
        if let Some(Some(d)) = errs.take(s.duration("handshake_timeout")) {
            c.handshake_timeout = d;
        }
        if let Some(Some(n)) = errs.take(s.integer("max_pending_acks")) {
            c.max_pending_acks = usize::try_from(n.max(1)).unwrap_or(64);
        }
        errs.take(s.unsupported(
            "blocking_timeout",
            "it tunes Fluentd's Ruby event loop, which weir does not have",
        ));

        if let Some(Some(mut sec)) = errs.take(s.section("security")) {
            c.security = read_security(&mut sec, &mut errs);
            report_unused(&sec, &mut errs);
        }
        for mut t in s.sections("transport") {
            match t.arg() {
                "" | "tcp" => {}
                "tls" => c.tls = read_tls(&mut t, &mut errs),
                other => errs.0.push(t.error(
                    None,
                    format!("transport '{other}' is not supported (use tcp or tls)"),
                )),
            }
            report_unused(&t, &mut errs);
        }
        if errs.0.is_empty() {
            Ok(c)
        } else {
            Err(errs.0)
        }
    }
}

/// Nested sections are checked for parameters nobody read: inside `<security>` and
/// `<transport>` a parameter weir does not know is an error (they guard access, so a silently
/// ignored setting would weaken it).
fn report_unused(s: &Section<'_>, errs: &mut Errors) {
    for p in s.unused() {
        errs.0.push(s.error(
            Some(&p.key),
            format!(
                "parameter '{}' is not supported by weir in <{}>",
                p.key,
                s.name()
            ),
        ));
    }
    for e in s.unused_sections() {
        errs.0
            .push(s.error(None, format!("section <{}> is not supported here", e.name)));
    }
}

fn read_security(s: &mut Section<'_>, errs: &mut Errors) -> Option<SecurityConfig> {
    let self_hostname = errs.take(s.required_string("self_hostname"));
    let shared_key = errs.take(s.required_string("shared_key"));
    let user_auth = errs.take(s.boolean("user_auth")).flatten().unwrap_or(false);
    let allow_anonymous_source = errs
        .take(s.boolean("allow_anonymous_source"))
        .flatten()
        .unwrap_or(true);
    let mut users = Vec::new();
    for mut u in s.sections("user") {
        let username = errs.take(u.required_string("username"));
        let password = errs.take(u.required_string("password"));
        if let (Some(username), Some(password)) = (username, password) {
            users.push(UserConfig { username, password });
        }
        report_unused(&u, errs);
    }
    let mut clients = Vec::new();
    for mut cl in s.sections("client") {
        let host = cl.string("host");
        let network = cl.string("network");
        let shared_key = cl.string("shared_key");
        let client_users = errs.take(cl.array("users")).flatten().unwrap_or_default();
        let matcher = match (host, network) {
            (Some(_), Some(_)) => {
                errs.0
                    .push(cl.error(None, "set either 'host' or 'network' in <client>, not both"));
                None
            }
            (None, None) => {
                errs.0
                    .push(cl.error(None, "<client> needs 'host' or 'network'"));
                None
            }
            (Some(name), None) => match resolve_host(&name) {
                Ok(addrs) => Some(ClientMatch::Host { name, addrs }),
                Err(e) => {
                    errs.0
                        .push(cl.error(Some("host"), format!("cannot resolve '{name}': {e}")));
                    None
                }
            },
            (None, Some(net)) => match parse_network(&net) {
                Some((addr, prefix)) => Some(ClientMatch::Network { addr, prefix }),
                None => {
                    errs.0.push(cl.error(
                        Some("network"),
                        format!("'{net}' is not an address or address/prefix"),
                    ));
                    None
                }
            },
        };
        if let Some(matcher) = matcher {
            clients.push(ClientConfig {
                matcher,
                shared_key,
                users: client_users,
            });
        }
        report_unused(&cl, errs);
    }
    if user_auth && users.is_empty() {
        errs.0.push(s.error(
            Some("user_auth"),
            "user_auth is on but no <user> is configured",
        ));
    }
    Some(SecurityConfig {
        self_hostname: self_hostname?,
        shared_key: shared_key?,
        user_auth,
        allow_anonymous_source,
        users,
        clients,
    })
}

fn resolve_host(name: &str) -> std::io::Result<Vec<IpAddr>> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(vec![normalize(ip)]);
    }
    use std::net::ToSocketAddrs;
    Ok((name, 0)
        .to_socket_addrs()?
        .map(|a| normalize(a.ip()))
        .collect())
}

/// Parses `10.0.0.0/8`, `fd00::/8` or a bare address (a /32 or /128).
pub fn parse_network(s: &str) -> Option<(IpAddr, u8)> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (
            a.trim().parse::<IpAddr>().ok()?,
            Some(p.trim().parse::<u8>().ok()?),
        ),
        None => (s.trim().parse::<IpAddr>().ok()?, None),
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.unwrap_or(max);
    (prefix <= max).then_some((normalize(addr), prefix))
}

fn read_tls(s: &mut Section<'_>, errs: &mut Errors) -> Option<TlsConfig> {
    for (key, why) in [
        (
            "private_key_passphrase",
            "use an unencrypted key file readable only by weir",
        ),
        (
            "ciphers",
            "weir offers rustls's default cipher suites, which are all modern AEAD suites",
        ),
        ("cert_verifier", "it runs Ruby code"),
        (
            "ca_cert_path",
            "weir does not generate certificates; give cert_path and private_key_path",
        ),
        (
            "ca_private_key_path",
            "weir does not generate certificates; give cert_path and private_key_path",
        ),
        (
            "ca_private_key_passphrase",
            "weir does not generate certificates",
        ),
        (
            "generate_private_key_length",
            "weir does not generate certificates",
        ),
        (
            "generate_cert_country",
            "weir does not generate certificates",
        ),
        ("generate_cert_state", "weir does not generate certificates"),
        (
            "generate_cert_locality",
            "weir does not generate certificates",
        ),
        (
            "generate_cert_common_name",
            "weir does not generate certificates",
        ),
        (
            "generate_cert_expiration",
            "weir does not generate certificates",
        ),
        (
            "generate_cert_digest",
            "weir does not generate certificates",
        ),
        ("cert_thumbprint", "it is for the Windows certificate store"),
        (
            "cert_logical_store_name",
            "it is for the Windows certificate store",
        ),
        (
            "cert_use_enterprise_store",
            "it is for the Windows certificate store",
        ),
    ] {
        errs.take(s.unsupported(key, why));
    }
    // `insecure` only matters for generated certificates in Fluentd; false is harmless.
    if let Some(Some(true)) = errs.take(s.boolean("insecure")) {
        errs.0.push(s.error(
            Some("insecure"),
            "weir does not run TLS without a certificate; give cert_path and private_key_path",
        ));
    }
    let cert_path = errs.take(s.required_string("cert_path"));
    let private_key_path = errs.take(s.required_string("private_key_path"));
    let client_cert_auth = errs
        .take(s.boolean("client_cert_auth"))
        .flatten()
        .unwrap_or(false);
    let ca_path = s.string("ca_path").map(PathBuf::from);
    if client_cert_auth && ca_path.is_none() {
        errs.0.push(s.error(
            Some("client_cert_auth"),
            "client_cert_auth needs ca_path: the CA certificates that sign client certificates",
        ));
    }
    let version = errs.take(tls_version(s, "version")).flatten();
    let min_version = errs.take(tls_version(s, "min_version")).flatten();
    let max_version = errs.take(tls_version(s, "max_version")).flatten();
    // Fluentd: `version` alone pins one version; min/max widen it.
    let min = min_version.or(version).unwrap_or(TlsVersion::V1_2);
    let max = max_version.unwrap_or(if min_version.is_some() || version.is_none() {
        TlsVersion::V1_3
    } else {
        version.unwrap_or(TlsVersion::V1_3)
    });
    if min > max {
        errs.0
            .push(s.error(Some("min_version"), "min_version is above max_version"));
    }
    Some(TlsConfig {
        cert_path: PathBuf::from(cert_path?),
        private_key_path: PathBuf::from(private_key_path?),
        client_cert_auth,
        ca_path,
        min_version: min,
        max_version: max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: &str) -> Result<ForwardConfig, Vec<ConfigError>> {
        let text = format!("<source>\n  @type forward\n{body}</source>\n");
        let el = weir_config::parse_str(&text, "t.conf", std::path::Path::new(".")).unwrap();
        ForwardConfig::from_section(&mut Section::new(&el.elements[0], "source"))
    }

    #[test]
    fn proxy_protocol_parameters() {
        let c = read("").unwrap();
        assert!(!c.proxy_protocol);
        assert_eq!(c.source_vpce_id_key, None);
        let c = read("  proxy_protocol true\n  source_vpce_id_key vpce\n").unwrap();
        assert!(c.proxy_protocol);
        assert_eq!(c.source_vpce_id_key.as_deref(), Some("vpce"));
        // The endpoint id only exists in a PROXY header: without one the key is a mistake.
        let errs = read("  source_vpce_id_key vpce\n").unwrap_err();
        assert_eq!(errs.len(), 1);
        let msg = errs[0].to_string();
        assert!(msg.contains("t.conf:3"), "{msg}");
        assert!(msg.contains("source_vpce_id_key"), "{msg}");
        assert!(msg.contains("proxy_protocol"), "{msg}");
        assert!(read("  proxy_protocol maybe\n").is_err());
    }

    #[test]
    fn networks_match_by_prefix() {
        let (net, p) = parse_network("10.1.0.0/16").unwrap();
        let m = ClientMatch::Network {
            addr: net,
            prefix: p,
        };
        assert!(m.matches("10.1.200.3".parse().unwrap()));
        assert!(m.matches("::ffff:10.1.0.9".parse().unwrap()));
        assert!(!m.matches("10.2.0.1".parse().unwrap()));
        let (one, p) = parse_network("192.0.2.7").unwrap();
        assert_eq!(p, 32);
        let m = ClientMatch::Network {
            addr: one,
            prefix: p,
        };
        assert!(m.matches("192.0.2.7".parse().unwrap()));
        assert!(!m.matches("192.0.2.8".parse().unwrap()));
        let (any, p) = parse_network("0.0.0.0/0").unwrap();
        assert!(ClientMatch::Network {
            addr: any,
            prefix: p
        }
        .matches("8.8.8.8".parse().unwrap()));
        assert!(parse_network("10.0.0.0/33").is_none());
        assert!(parse_network("nonsense").is_none());
    }
}
