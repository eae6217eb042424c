//! The server side of the shared-key handshake: HELO out, PING in, PONG out.
//!
//! The checks follow Fluentd's in_forward: pick the key by the peer's `<client>` entry (or the
//! global one), refuse anonymous peers when `allow_anonymous_source` is off, refuse a client
//! that claims weir's own host name, compare the key digest (and, with `user_auth`, the password
//! digest) over the raw bytes received, in constant time.

use std::net::IpAddr;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use weir_proto::{
    digest_eq, key_digest, password_digest, FrameDecoder, FrameLimits, Helo, Ping, Pong,
};

use super::config::{normalize, ClientConfig, SecurityConfig};
use super::conn::ConnError;

/// A PING is a few hundred bytes; anything much larger is not a PING.
const MAX_PING: usize = 16 * 1024;

/// Runs the handshake. On success the connection carries requests next; on failure the
/// rejecting PONG has been written and the caller closes the connection.
pub(crate) async fn run<R, W>(
    rd: &mut R,
    wr: &mut W,
    buf: &mut BytesMut,
    peer: IpAddr,
    security: &SecurityConfig,
    keepalive: bool,
) -> Result<(), ConnError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let nonce: [u8; 16] = rand::random();
    let auth: [u8; 16] = rand::random();
    let helo = Helo {
        nonce: Bytes::copy_from_slice(&nonce),
        auth: Bytes::copy_from_slice(&auth),
        keepalive,
    };
    if let Err(e) = write_and_flush(wr, &helo.encode()).await {
        // Heartbeats and load-balancer checks hang up before reading HELO.
        return Err(quiet(e));
    }

    let mut decoder = FrameDecoder::new(FrameLimits {
        chunk_size_limit: MAX_PING,
        max_depth: 4,
    });
    let frame = loop {
        match decoder.next_frame(buf) {
            Ok(Some(frame)) => break frame,
            Ok(None) => {}
            Err(e) => return reject(wr, "invalid ping message", &e.to_string()).await,
        }
        buf.reserve(1024);
        match rd.read_buf(buf).await {
            Ok(0) => return Err(ConnError::PeerClosed),
            Ok(_) => {}
            Err(e) => return Err(quiet(e)),
        }
    };
    let ping = match Ping::parse(&frame) {
        Ok(p) => p,
        Err(e) => return reject(wr, "invalid ping message", &e.to_string()).await,
    };

    match verify(&ping, &nonce, &auth, peer, security) {
        Ok(key) => {
            let digest = key_digest(
                &ping.salt,
                security.self_hostname.as_bytes(),
                &nonce,
                key.as_bytes(),
            );
            let pong = Pong::Accepted {
                server_hostname: Bytes::copy_from_slice(security.self_hostname.as_bytes()),
                digest: Bytes::from(digest.into_bytes()),
            };
            write_and_flush(wr, &pong.encode()).await.map_err(quiet)?;
            tracing::debug!(%peer, client = %String::from_utf8_lossy(&ping.hostname), "handshake done");
            Ok(())
        }
        Err(reason) => {
            let detail = format!(
                "client host name '{}'",
                String::from_utf8_lossy(&ping.hostname)
            );
            reject(wr, reason, &detail).await
        }
    }
}

/// Checks a PING. Returns the shared key that applies to this peer, or Fluentd's reason text.
fn verify<'a>(
    ping: &Ping,
    nonce: &[u8],
    auth: &[u8],
    peer: IpAddr,
    security: &'a SecurityConfig,
) -> Result<&'a str, &'static str> {
    let peer = normalize(peer);
    let client: Option<&ClientConfig> = security.clients.iter().find(|c| c.matcher.matches(peer));
    if client.is_none() && !security.allow_anonymous_source {
        return Err("anonymous source host denied");
    }
    if ping.hostname.as_ref() == security.self_hostname.as_bytes() {
        return Err("same hostname between input and output: invalid configuration");
    }
    let key = client
        .and_then(|c| c.shared_key.as_deref())
        .unwrap_or(&security.shared_key);
    let expected = key_digest(&ping.salt, &ping.hostname, nonce, key.as_bytes());
    if !digest_eq(expected.as_bytes(), &ping.key_digest) {
        return Err("shared_key mismatch");
    }
    if security.user_auth {
        let allowed = |name: &str| {
            client.is_none_or(|c| c.users.is_empty() || c.users.iter().any(|u| u == name))
        };
        let ok = security.users.iter().any(|u| {
            u.username.as_bytes() == ping.username.as_ref()
                && allowed(&u.username)
                && digest_eq(
                    password_digest(auth, u.username.as_bytes(), u.password.as_bytes()).as_bytes(),
                    &ping.password_digest,
                )
        });
        if !ok {
            return Err("username/password mismatch");
        }
    }
    Ok(key)
}

async fn reject<W: AsyncWrite + Unpin>(
    wr: &mut W,
    reason: &str,
    detail: &str,
) -> Result<(), ConnError> {
    let pong = Pong::Rejected {
        reason: reason.to_string(),
    };
    // The client may be gone already; the failure is reported either way.
    let _ = write_and_flush(wr, &pong.encode()).await;
    Err(ConnError::Handshake(format!("{reason} ({detail})")))
}

async fn write_and_flush<W: AsyncWrite + Unpin>(wr: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    wr.write_all(bytes).await?;
    wr.flush().await
}

/// A peer that hangs up during the handshake is a heartbeat or a health check, not an error.
fn quiet(e: std::io::Error) -> ConnError {
    match e.kind() {
        std::io::ErrorKind::BrokenPipe
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::UnexpectedEof => ConnError::PeerClosed,
        _ => ConnError::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::config::{parse_network, ClientMatch, UserConfig};

    fn security() -> SecurityConfig {
        SecurityConfig {
            self_hostname: "aggregator.example".into(),
            shared_key: "secret".into(),
            user_auth: false,
            allow_anonymous_source: true,
            users: vec![],
            clients: vec![],
        }
    }

    fn ping(host: &str, key: &str, nonce: &[u8], user: &str, pw_digest: &str) -> Ping {
        let salt = b"0123456789abcdef0123456789abcdef";
        Ping {
            hostname: Bytes::copy_from_slice(host.as_bytes()),
            salt: Bytes::from_static(salt),
            key_digest: Bytes::from(key_digest(salt, host.as_bytes(), nonce, key.as_bytes())),
            username: Bytes::copy_from_slice(user.as_bytes()),
            password_digest: Bytes::copy_from_slice(pw_digest.as_bytes()),
        }
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn right_key_passes_wrong_key_fails() {
        let sec = security();
        let nonce = [7u8; 16];
        assert_eq!(
            verify(
                &ping("c", "secret", &nonce, "", ""),
                &nonce,
                b"a",
                LOCAL,
                &sec
            ),
            Ok("secret")
        );
        assert_eq!(
            verify(
                &ping("c", "wrong", &nonce, "", ""),
                &nonce,
                b"a",
                LOCAL,
                &sec
            ),
            Err("shared_key mismatch")
        );
        // A digest over another nonce (a replayed PING) fails too.
        assert_eq!(
            verify(
                &ping("c", "secret", &[8u8; 16], "", ""),
                &nonce,
                b"a",
                LOCAL,
                &sec
            ),
            Err("shared_key mismatch")
        );
    }

    #[test]
    fn own_hostname_is_refused() {
        let sec = security();
        let nonce = [1u8; 16];
        assert_eq!(
            verify(
                &ping("aggregator.example", "secret", &nonce, "", ""),
                &nonce,
                b"a",
                LOCAL,
                &sec
            ),
            Err("same hostname between input and output: invalid configuration")
        );
    }

    #[test]
    fn client_entries_pick_the_key_and_gate_anonymous_peers() {
        let mut sec = security();
        sec.allow_anonymous_source = false;
        let (addr, prefix) = parse_network("127.0.0.0/8").unwrap();
        sec.clients.push(ClientConfig {
            matcher: ClientMatch::Network { addr, prefix },
            shared_key: Some("per-client".into()),
            users: vec![],
        });
        let nonce = [2u8; 16];
        assert_eq!(
            verify(
                &ping("c", "per-client", &nonce, "", ""),
                &nonce,
                b"a",
                LOCAL,
                &sec
            ),
            Ok("per-client")
        );
        assert_eq!(
            verify(
                &ping("c", "secret", &nonce, "", ""),
                &nonce,
                b"a",
                LOCAL,
                &sec
            ),
            Err("shared_key mismatch")
        );
        let other: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            verify(
                &ping("c", "secret", &nonce, "", ""),
                &nonce,
                b"a",
                other,
                &sec
            ),
            Err("anonymous source host denied")
        );
    }

    #[test]
    fn user_auth_checks_password_and_client_users() {
        let mut sec = security();
        sec.user_auth = true;
        sec.users = vec![
            UserConfig {
                username: "alice".into(),
                password: "pw".into(),
            },
            UserConfig {
                username: "bob".into(),
                password: "pw2".into(),
            },
        ];
        let nonce = [3u8; 16];
        let auth = [0xa0u8; 16];
        let good = password_digest(&auth, b"alice", b"pw");
        let bad = password_digest(&auth, b"alice", b"nope");
        assert!(verify(
            &ping("c", "secret", &nonce, "alice", &good),
            &nonce,
            &auth,
            LOCAL,
            &sec
        )
        .is_ok());
        assert_eq!(
            verify(
                &ping("c", "secret", &nonce, "alice", &bad),
                &nonce,
                &auth,
                LOCAL,
                &sec
            ),
            Err("username/password mismatch")
        );
        let (addr, prefix) = parse_network("127.0.0.1").unwrap();
        sec.clients.push(ClientConfig {
            matcher: ClientMatch::Network { addr, prefix },
            shared_key: None,
            users: vec!["bob".into()],
        });
        assert_eq!(
            verify(
                &ping("c", "secret", &nonce, "alice", &good),
                &nonce,
                &auth,
                LOCAL,
                &sec
            ),
            Err("username/password mismatch")
        );
    }
}
