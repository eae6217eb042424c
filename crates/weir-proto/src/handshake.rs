//! The shared-key handshake: HELO (server), PING (client), PONG (server), and the digests.

use bytes::Bytes;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use crate::error::HandshakeError;
use crate::msgpack::{
    read_header, read_payload, skip_value, write_bin, write_bool, write_str, Header,
};

/// `hex(SHA512(salt ‖ hostname ‖ nonce ‖ shared_key))` in lowercase: the client's key digest in
/// PING (client hostname) and the server's in PONG (server hostname, client's salt).
pub fn key_digest(salt: &[u8], hostname: &[u8], nonce: &[u8], shared_key: &[u8]) -> String {
    let mut h = Sha512::new();
    h.update(salt);
    h.update(hostname);
    h.update(nonce);
    h.update(shared_key);
    hex::encode(h.finalize())
}

/// `hex(SHA512(auth ‖ username ‖ password))` in lowercase: the password digest in PING.
pub fn password_digest(auth: &[u8], username: &[u8], password: &[u8]) -> String {
    let mut h = Sha512::new();
    h.update(auth);
    h.update(username);
    h.update(password);
    hex::encode(h.finalize())
}

/// Compares two digests in constant time (for equal lengths; different lengths are unequal).
pub fn digest_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Reads an array header and checks the message name in element 0. Returns the element count
/// and the offset of element 1.
fn open(buf: &[u8], name: &'static str) -> Result<(u32, usize), HandshakeError> {
    let (h, p) = read_header(buf, 0)?;
    let Header::Array(n) = h else {
        return Err(HandshakeError::NotArray);
    };
    if n == 0 {
        return Err(HandshakeError::WrongMessage { expected: name });
    }
    let (nh, np) = read_header(buf, p)?;
    match nh {
        Header::Str(len) | Header::Bin(len) => {
            let (s, e) = read_payload(buf, np, len)?;
            if s != name.as_bytes() {
                return Err(HandshakeError::WrongMessage { expected: name });
            }
            Ok((n, e))
        }
        _ => Err(HandshakeError::WrongMessage { expected: name }),
    }
}

fn check_len(n: u32, expected: u32, message: &'static str) -> Result<(), HandshakeError> {
    if n == expected {
        Ok(())
    } else {
        Err(HandshakeError::BadLength {
            message,
            len: n,
            expected,
        })
    }
}

/// Reads a `str` or `bin` field as raw bytes.
fn raw<'a>(
    buf: &'a [u8],
    pos: usize,
    message: &'static str,
    field: &'static str,
) -> Result<(&'a [u8], usize), HandshakeError> {
    match read_header(buf, pos)? {
        (Header::Str(len) | Header::Bin(len), p) => Ok(read_payload(buf, p, len)?),
        _ => Err(HandshakeError::BadField { message, field }),
    }
}

/// Like [`raw`], but `nil` reads as empty. The npm fluent-logger client sends `nil` for the
/// user name when the server offers an auth salt and no user is configured; Fluentd ignores
/// these fields unless user authentication is on.
fn raw_or_nil<'a>(
    buf: &'a [u8],
    pos: usize,
    message: &'static str,
    field: &'static str,
) -> Result<(&'a [u8], usize), HandshakeError> {
    match read_header(buf, pos)? {
        (Header::Nil, p) => Ok((&[], p)),
        _ => raw(buf, pos, message, field),
    }
}

fn done(buf: &[u8], pos: usize) -> Result<(), HandshakeError> {
    if pos == buf.len() {
        Ok(())
    } else {
        Err(HandshakeError::TrailingBytes)
    }
}

/// The server's greeting: `["HELO", {"nonce": N, "auth": A, "keepalive": K}]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Helo {
    /// Fresh random bytes per connection.
    pub nonce: Bytes,
    /// Salt for password digests; empty means no user authentication.
    pub auth: Bytes,
    /// False tells the client the server will not keep the connection for further requests.
    pub keepalive: bool,
}

impl Helo {
    /// Encodes the message with `nonce` and `auth` as `bin` (as Fluentd does) and `keepalive`
    /// always present.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48 + self.nonce.len() + self.auth.len());
        out.extend_from_slice(&[0x92, 0xA4, b'H', b'E', b'L', b'O', 0x83]);
        write_str(&mut out, b"nonce");
        write_bin(&mut out, &self.nonce);
        write_str(&mut out, b"auth");
        write_bin(&mut out, &self.auth);
        write_str(&mut out, b"keepalive");
        write_bool(&mut out, self.keepalive);
        out
    }

    /// Parses a HELO. `nonce` and `auth` may be `bin` or `str` (any bytes); `auth` absent means
    /// empty and `keepalive` absent means true. `nonce` is required. Unknown keys are ignored.
    pub fn parse(buf: &[u8]) -> Result<Helo, HandshakeError> {
        const M: &str = "HELO";
        let (n, p) = open(buf, M)?;
        check_len(n, 2, M)?;
        let (h, mut p) = read_header(buf, p)?;
        let Header::Map(pairs) = h else {
            return Err(HandshakeError::BadField {
                message: M,
                field: "options",
            });
        };
        let mut nonce = None;
        let mut auth = Bytes::new();
        let mut keepalive = true;
        for _ in 0..pairs {
            let (kh, kp) = read_header(buf, p)?;
            let key: &[u8] = match kh {
                Header::Str(len) | Header::Bin(len) => {
                    let (k, e) = read_payload(buf, kp, len)?;
                    p = e;
                    k
                }
                _ => {
                    p = skip_value(buf, p)?;
                    b""
                }
            };
            let vend = skip_value(buf, p)?;
            match key {
                b"nonce" => nonce = Some(Bytes::copy_from_slice(raw(buf, p, M, "nonce")?.0)),
                b"auth" => auth = Bytes::copy_from_slice(raw(buf, p, M, "auth")?.0),
                b"keepalive" => match read_header(buf, p)?.0 {
                    Header::Bool(b) => keepalive = b,
                    Header::Nil => {}
                    _ => {
                        return Err(HandshakeError::BadField {
                            message: M,
                            field: "keepalive",
                        })
                    }
                },
                _ => {}
            }
            p = vend;
        }
        done(buf, p)?;
        Ok(Helo {
            nonce: nonce.ok_or(HandshakeError::MissingField {
                message: M,
                field: "nonce",
            })?,
            auth,
            keepalive,
        })
    }
}

/// The client's answer:
/// `["PING", client_hostname, salt, key_digest, username, password_digest]`. All fields are kept
/// as the raw bytes received (a `str` may hold bytes that are not UTF-8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ping {
    /// The client's hostname.
    pub hostname: Bytes,
    /// The client's salt.
    pub salt: Bytes,
    /// The client's key digest, lowercase hex.
    pub key_digest: Bytes,
    /// The user name, empty when no user authentication.
    pub username: Bytes,
    /// The password digest, empty when no user authentication.
    pub password_digest: Bytes,
}

impl Ping {
    /// Encodes the message, every field as `str` (smallest header), bytes as given.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            16 + self.hostname.len()
                + self.salt.len()
                + self.key_digest.len()
                + self.username.len()
                + self.password_digest.len(),
        );
        out.extend_from_slice(&[0x96, 0xA4, b'P', b'I', b'N', b'G']);
        for f in [
            &self.hostname,
            &self.salt,
            &self.key_digest,
            &self.username,
            &self.password_digest,
        ] {
            write_str(&mut out, f);
        }
        out
    }

    /// Parses a PING: exactly 6 elements, element 0 `"PING"`, the others `str` or `bin`
    /// (`nil` is taken as empty for the user name and password digest).
    pub fn parse(buf: &[u8]) -> Result<Ping, HandshakeError> {
        const M: &str = "PING";
        let (n, p) = open(buf, M)?;
        check_len(n, 6, M)?;
        let (hostname, p) = raw(buf, p, M, "hostname")?;
        let (salt, p) = raw(buf, p, M, "salt")?;
        let (key_digest, p) = raw(buf, p, M, "key_digest")?;
        let (username, p) = raw_or_nil(buf, p, M, "username")?;
        let (password_digest, p) = raw_or_nil(buf, p, M, "password_digest")?;
        done(buf, p)?;
        Ok(Ping {
            hostname: Bytes::copy_from_slice(hostname),
            salt: Bytes::copy_from_slice(salt),
            key_digest: Bytes::copy_from_slice(key_digest),
            username: Bytes::copy_from_slice(username),
            password_digest: Bytes::copy_from_slice(password_digest),
        })
    }
}

/// The server's verdict: `["PONG", true, "", server_hostname, digest]` or
/// `["PONG", false, reason, "", ""]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pong {
    /// The client is authenticated.
    Accepted {
        /// The server's hostname (must differ from the client's).
        server_hostname: Bytes,
        /// `key_digest(client salt, server hostname, nonce, shared key)`.
        digest: Bytes,
    },
    /// The client is refused; the server closes after sending this.
    Rejected {
        /// Why, e.g. `"shared_key mismatch"`.
        reason: String,
    },
}

impl Pong {
    /// Encodes the message.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(200);
        out.extend_from_slice(&[0x95, 0xA4, b'P', b'O', b'N', b'G']);
        match self {
            Pong::Accepted {
                server_hostname,
                digest,
            } => {
                write_bool(&mut out, true);
                write_str(&mut out, b"");
                write_str(&mut out, server_hostname);
                write_str(&mut out, digest);
            }
            Pong::Rejected { reason } => {
                write_bool(&mut out, false);
                write_str(&mut out, reason.as_bytes());
                write_str(&mut out, b"");
                write_str(&mut out, b"");
            }
        }
        out
    }

    /// Parses a PONG: exactly 5 elements, element 0 `"PONG"`, element 1 a boolean.
    pub fn parse(buf: &[u8]) -> Result<Pong, HandshakeError> {
        const M: &str = "PONG";
        let (n, p) = open(buf, M)?;
        check_len(n, 5, M)?;
        let (h, p) = read_header(buf, p)?;
        let Header::Bool(ok) = h else {
            return Err(HandshakeError::BadField {
                message: M,
                field: "auth_result",
            });
        };
        let (reason, p) = raw(buf, p, M, "reason")?;
        let (host, p) = raw(buf, p, M, "server_hostname")?;
        let (digest, p) = raw(buf, p, M, "digest")?;
        done(buf, p)?;
        Ok(if ok {
            Pong::Accepted {
                server_hostname: Bytes::copy_from_slice(host),
                digest: Bytes::copy_from_slice(digest),
            }
        } else {
            Pong::Rejected {
                reason: String::from_utf8_lossy(reason).into_owned(),
            }
        })
    }
}
