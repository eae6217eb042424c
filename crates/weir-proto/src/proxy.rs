//! The PROXY protocol (versions 1 and 2) header that a load balancer such as an AWS Network Load
//! Balancer puts in front of a TCP stream, carrying the real client's address and, through
//! PrivateLink, the id of the VPC endpoint the client came through.
//!
//! [`parse_proxy_header`] is given the bytes a connection has sent so far and answers either
//! "need more bytes", a complete header (with its length, so the caller can hand the bytes that
//! follow it to the next protocol), or an error. It is strict: anything that does not match the
//! specification exactly is refused, and a CRC32C TLV is checked.
//!
//! What is kept from a header:
//! - the command: `LOCAL` (a connection the proxy made itself, such as a health check: the
//!   socket's own endpoints apply) or `PROXY`;
//! - the addresses: TCP or UDP over IPv4 or IPv6, UNIX paths, or none (v1 `UNKNOWN`, v2
//!   `UNSPEC` and `LOCAL`, whose address block is skipped as the specification says);
//! - every v2 TLV, as type and bytes, with `PP2_TYPE_SSL` checked for its inner structure and
//!   AWS's `PP2_TYPE_AWS` / `PP2_SUBTYPE_AWS_VPCE_ID` read as the endpoint id.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use thiserror::Error;

/// The 12 bytes every v2 header starts with.
pub const PROXY_V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The longest v1 line, CRLF included.
pub const PROXY_V1_MAX_LEN: usize = 107;
/// The longest v2 header: 16 fixed bytes and a 16-bit length.
pub const PROXY_V2_MAX_LEN: usize = 16 + u16::MAX as usize;

const V1_PREFIX: &[u8] = b"PROXY ";
const V2_FIXED: usize = 16;

/// `PP2_TYPE_ALPN`.
pub const PP2_TYPE_ALPN: u8 = 0x01;
/// `PP2_TYPE_AUTHORITY`: the host name the client asked for (TLS SNI).
pub const PP2_TYPE_AUTHORITY: u8 = 0x02;
/// `PP2_TYPE_CRC32C`: a checksum of the whole header.
pub const PP2_TYPE_CRC32C: u8 = 0x03;
/// `PP2_TYPE_NOOP`: padding.
pub const PP2_TYPE_NOOP: u8 = 0x04;
/// `PP2_TYPE_UNIQUE_ID`: an opaque connection id of at most 128 bytes.
pub const PP2_TYPE_UNIQUE_ID: u8 = 0x05;
/// `PP2_TYPE_SSL`: what the proxy knows of the client's TLS session.
pub const PP2_TYPE_SSL: u8 = 0x20;
/// `PP2_SUBTYPE_SSL_VERSION`, inside `PP2_TYPE_SSL`.
pub const PP2_SUBTYPE_SSL_VERSION: u8 = 0x21;
/// `PP2_SUBTYPE_SSL_CN`, inside `PP2_TYPE_SSL`.
pub const PP2_SUBTYPE_SSL_CN: u8 = 0x22;
/// `PP2_TYPE_NETNS`.
pub const PP2_TYPE_NETNS: u8 = 0x30;
/// `PP2_TYPE_AWS`: AWS's own TLV (Network Load Balancer, PrivateLink).
pub const PP2_TYPE_AWS: u8 = 0xEA;
/// `PP2_SUBTYPE_AWS_VPCE_ID`: the first value byte of a `PP2_TYPE_AWS` TLV carrying the id of
/// the VPC endpoint the client connected through.
pub const PP2_SUBTYPE_AWS_VPCE_ID: u8 = 0x01;

const UNIQUE_ID_MAX: usize = 128;
const UNIX_PATH_LEN: usize = 108;

/// Why bytes are not a valid PROXY protocol header. The connection should be closed.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// The stream starts with neither `PROXY ` nor the v2 signature.
    #[error("the connection does not start with a PROXY protocol header (neither \"PROXY \" nor the v2 signature)")]
    Missing,
    /// The stream starts like the v2 signature but differs from it.
    #[error("bad PROXY protocol v2 signature")]
    Signature,
    /// No CRLF in the first 107 bytes of a v1 line.
    #[error("PROXY v1 line has no CRLF within {PROXY_V1_MAX_LEN} bytes")]
    V1TooLong,
    /// A v1 line that does not match the grammar.
    #[error("bad PROXY v1 line: {0}")]
    V1Syntax(&'static str),
    /// The version nibble of a v2 header is not 2.
    #[error("unsupported PROXY protocol version {0} in a v2 header (only 2 exists)")]
    V2Version(u8),
    /// The command nibble of a v2 header is neither LOCAL nor PROXY.
    #[error("unknown PROXY v2 command {0:#x}")]
    V2Command(u8),
    /// The family/protocol byte of a v2 PROXY header is not one the specification defines.
    #[error("unknown PROXY v2 address family and protocol byte {0:#04x}")]
    V2Family(u8),
    /// The v2 length cannot hold the addresses its family needs.
    #[error("PROXY v2 length {len} is shorter than the {needed} bytes of {family} addresses")]
    V2Length {
        /// The length field.
        len: usize,
        /// The size of the address block.
        needed: usize,
        /// The family, for the message.
        family: &'static str,
    },
    /// A TLV that does not fit in the header or breaks the rules of its type.
    #[error("bad PROXY v2 TLV: {0}")]
    Tlv(&'static str),
    /// The CRC32C TLV does not match the header.
    #[error("PROXY v2 header checksum mismatch: the header says CRC32C {expected:#010x}, its bytes give {actual:#010x}")]
    Checksum {
        /// The value in the TLV.
        expected: u32,
        /// The value computed over the header.
        actual: u32,
    },
}

/// The outcome of looking at the first bytes of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyParse {
    /// The bytes so far are a valid start; at least `needed` more bytes are required.
    Incomplete {
        /// A lower bound on the bytes still missing (exact for v2 once 16 bytes are in).
        needed: usize,
    },
    /// A whole header; its bytes are the first [`ProxyHeader::len`] bytes of the input.
    Complete(ProxyHeader),
}

/// Which version of the protocol a header used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyVersion {
    /// The text line.
    V1,
    /// The binary header.
    V2,
}

/// What the connection is, according to the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyCommand {
    /// v2 `LOCAL`: the proxy opened the connection itself (health checks). The socket's own
    /// endpoints apply; the address block is ignored.
    Local,
    /// The connection is relayed for a client (v2 `PROXY`, and every v1 line).
    Proxy,
}

/// The endpoints a header gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyAddresses {
    /// No usable addresses: v1 `UNKNOWN`, v2 `UNSPEC`, or a `LOCAL` command. The socket's own
    /// endpoints apply.
    Unspecified,
    /// TCP over IPv4 or IPv6.
    Tcp {
        /// The client.
        source: SocketAddr,
        /// The address the client connected to (the load balancer's).
        destination: SocketAddr,
    },
    /// UDP over IPv4 or IPv6 (v2 only).
    Udp {
        /// The client.
        source: SocketAddr,
        /// The address the client sent to.
        destination: SocketAddr,
    },
    /// UNIX sockets (v2 only): the paths, without their trailing NUL bytes.
    Unix {
        /// `true` for SOCK_STREAM, `false` for SOCK_DGRAM.
        stream: bool,
        /// The client's path.
        source: Vec<u8>,
        /// The path it connected to.
        destination: Vec<u8>,
    },
}

/// One v2 TLV as it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyTlv {
    /// The type byte.
    pub kind: u8,
    /// The value bytes.
    pub value: Vec<u8>,
}

/// A parsed PROXY protocol header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    /// v1 or v2.
    pub version: ProxyVersion,
    /// LOCAL or PROXY.
    pub command: ProxyCommand,
    /// The endpoints.
    pub addresses: ProxyAddresses,
    /// Every TLV of a v2 `PROXY` header, in order (none for v1, `LOCAL` or `UNSPEC`).
    pub tlvs: Vec<ProxyTlv>,
    /// The AWS VPC endpoint id (`PP2_TYPE_AWS` / `PP2_SUBTYPE_AWS_VPCE_ID`), checked to be
    /// letters, digits and dashes.
    pub aws_vpce_id: Option<String>,
    /// Whether a CRC32C TLV was present (and, the header having parsed, matched).
    pub checksum_verified: bool,
    /// The header's length in bytes: the data after it starts at this offset.
    pub len: usize,
}

impl ProxyHeader {
    /// The client's address for a TCP connection relayed by the proxy; `None` when the socket's
    /// own peer applies (`LOCAL`, `UNKNOWN`, `UNSPEC`, and the UDP and UNIX families, which
    /// cannot describe a TCP client: the specification lets a receiver fall back to the
    /// socket's endpoints for families it does not support).
    pub fn client(&self) -> Option<SocketAddr> {
        match (&self.command, &self.addresses) {
            (ProxyCommand::Proxy, ProxyAddresses::Tcp { source, .. }) => Some(*source),
            _ => None,
        }
    }

    /// The value of the first TLV of this type.
    pub fn tlv(&self, kind: u8) -> Option<&[u8]> {
        self.tlvs
            .iter()
            .find(|t| t.kind == kind)
            .map(|t| t.value.as_slice())
    }

    /// The inner TLVs of `PP2_TYPE_SSL` (after its `client` and `verify` fields), if present.
    /// Their structure was checked while parsing.
    pub fn ssl_subtlvs(&self) -> Vec<ProxyTlv> {
        self.tlv(PP2_TYPE_SSL)
            .and_then(|v| v.get(5..))
            .and_then(|inner| split_tlvs(inner).ok())
            .unwrap_or_default()
    }
}

/// Looks at the first bytes of a connection. `Ok(Incomplete)` means the bytes are a valid
/// beginning of a header and more must be read; the caller should bound the wait with a
/// timeout. Never panics.
pub fn parse_proxy_header(buf: &[u8]) -> Result<ProxyParse, ProxyError> {
    match buf.first() {
        None => Ok(ProxyParse::Incomplete { needed: 1 }),
        Some(b'P') => parse_v1(buf),
        Some(b'\r') => parse_v2(buf),
        Some(_) => Err(ProxyError::Missing),
    }
}

fn parse_v1(buf: &[u8]) -> Result<ProxyParse, ProxyError> {
    let have = buf.len().min(V1_PREFIX.len());
    if buf[..have] != V1_PREFIX[..have] {
        return Err(ProxyError::Missing);
    }
    let window = &buf[..buf.len().min(PROXY_V1_MAX_LEN)];
    let Some(lf) = window.iter().position(|&b| b == b'\n') else {
        return if buf.len() >= PROXY_V1_MAX_LEN {
            Err(ProxyError::V1TooLong)
        } else {
            // The shortest line is "PROXY UNKNOWN\r\n".
            Ok(ProxyParse::Incomplete {
                needed: 15usize.saturating_sub(buf.len()).max(1),
            })
        };
    };
    if lf == 0 || window[lf - 1] != b'\r' {
        return Err(ProxyError::V1Syntax(
            "a line feed without a carriage return",
        ));
    }
    let line = &window[..lf - 1];
    if line.contains(&b'\r') {
        return Err(ProxyError::V1Syntax("a carriage return inside the line"));
    }
    let len = lf + 1;
    let rest = line
        .strip_prefix(V1_PREFIX)
        .ok_or(ProxyError::V1Syntax("it does not start with \"PROXY \""))?;
    let complete = |addresses| {
        Ok(ProxyParse::Complete(ProxyHeader {
            version: ProxyVersion::V1,
            command: ProxyCommand::Proxy,
            addresses,
            tlvs: Vec::new(),
            aws_vpce_id: None,
            checksum_verified: false,
            len,
        }))
    };
    if let Some(after) = rest.strip_prefix(b"UNKNOWN") {
        // The receiver must ignore whatever follows UNKNOWN on the line.
        if after.is_empty() || after[0] == b' ' {
            return complete(ProxyAddresses::Unspecified);
        }
        return Err(ProxyError::V1Syntax(
            "unknown protocol (expected TCP4, TCP6 or UNKNOWN)",
        ));
    }
    let text = std::str::from_utf8(rest).map_err(|_| ProxyError::V1Syntax("not ASCII"))?;
    let mut fields = text.split(' ');
    let family = fields.next().unwrap_or_default();
    let v6 = match family {
        "TCP4" => false,
        "TCP6" => true,
        _ => {
            return Err(ProxyError::V1Syntax(
                "unknown protocol (expected TCP4, TCP6 or UNKNOWN)",
            ))
        }
    };
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(ProxyError::V1Syntax(
            "expected exactly: protocol, source and destination addresses, source and destination ports, one space apart",
        ));
    };
    let source = SocketAddr::new(v1_address(src, v6)?, v1_port(sport)?);
    let destination = SocketAddr::new(v1_address(dst, v6)?, v1_port(dport)?);
    complete(ProxyAddresses::Tcp {
        source,
        destination,
    })
}

fn v1_address(s: &str, v6: bool) -> Result<IpAddr, ProxyError> {
    if v6 {
        // Hexadecimal groups only: the dotted IPv4 tail Rust would accept is not in the grammar.
        if s.contains('.') {
            return Err(ProxyError::V1Syntax("bad IPv6 address"));
        }
        s.parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| ProxyError::V1Syntax("bad IPv6 address"))
    } else {
        // Rust refuses octets with leading zeros, as the specification asks.
        s.parse::<Ipv4Addr>()
            .map(IpAddr::V4)
            .map_err(|_| ProxyError::V1Syntax("bad IPv4 address"))
    }
}

fn v1_port(s: &str) -> Result<u16, ProxyError> {
    let digits = !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits || (s.len() > 1 && s.starts_with('0')) {
        return Err(ProxyError::V1Syntax(
            "bad port (decimal 0 to 65535, no leading zeros)",
        ));
    }
    s.parse::<u16>()
        .map_err(|_| ProxyError::V1Syntax("bad port (decimal 0 to 65535, no leading zeros)"))
}

fn parse_v2(buf: &[u8]) -> Result<ProxyParse, ProxyError> {
    let have = buf.len().min(PROXY_V2_SIGNATURE.len());
    if buf[..have] != PROXY_V2_SIGNATURE[..have] {
        return Err(ProxyError::Signature);
    }
    if buf.len() < V2_FIXED {
        return Ok(ProxyParse::Incomplete {
            needed: V2_FIXED - buf.len(),
        });
    }
    let ver_cmd = buf[12];
    if ver_cmd >> 4 != 2 {
        return Err(ProxyError::V2Version(ver_cmd >> 4));
    }
    let command = match ver_cmd & 0x0f {
        0 => ProxyCommand::Local,
        1 => ProxyCommand::Proxy,
        other => return Err(ProxyError::V2Command(other)),
    };
    let fam = buf[13];
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    let total = V2_FIXED + len;
    if command == ProxyCommand::Proxy {
        // Checked before the rest arrives, so a bad family is refused at once.
        family(fam)?;
    }
    if buf.len() < total {
        return Ok(ProxyParse::Incomplete {
            needed: total - buf.len(),
        });
    }
    let header = &buf[..total];
    let mut parsed = ProxyHeader {
        version: ProxyVersion::V2,
        command,
        addresses: ProxyAddresses::Unspecified,
        tlvs: Vec::new(),
        aws_vpce_id: None,
        checksum_verified: false,
        len: total,
    };
    if command == ProxyCommand::Local {
        // "The receiver must accept this connection as valid and must use the real connection
        // endpoints and discard the protocol block including the family." NLB health checks
        // send a TCP4 family and padding here.
        return Ok(ProxyParse::Complete(parsed));
    }
    let (name, block) = family(fam)?;
    if block == 0 {
        // UNSPEC: the address information (of unknown layout) is ignored, and with it
        // anything after it.
        return Ok(ProxyParse::Complete(parsed));
    }
    if len < block {
        return Err(ProxyError::V2Length {
            len,
            needed: block,
            family: name,
        });
    }
    let addr = &header[V2_FIXED..V2_FIXED + block];
    parsed.addresses = addresses(fam, addr);
    let tlv_start = V2_FIXED + block;
    parsed.tlvs = split_tlvs(&header[tlv_start..])?;
    let mut crc_seen = false;
    let mut offset = tlv_start;
    for tlv in &parsed.tlvs {
        let value_at = offset + 3;
        offset = value_at + tlv.value.len();
        match tlv.kind {
            PP2_TYPE_CRC32C => {
                if crc_seen {
                    return Err(ProxyError::Tlv("more than one CRC32C"));
                }
                crc_seen = true;
                let expected = <[u8; 4]>::try_from(tlv.value.as_slice())
                    .map(u32::from_be_bytes)
                    .map_err(|_| ProxyError::Tlv("a CRC32C value is not 4 bytes"))?;
                let actual = crc32c_zeroed(header, value_at);
                if actual != expected {
                    return Err(ProxyError::Checksum { expected, actual });
                }
                parsed.checksum_verified = true;
            }
            PP2_TYPE_UNIQUE_ID if tlv.value.len() > UNIQUE_ID_MAX => {
                return Err(ProxyError::Tlv("a UNIQUE_ID longer than 128 bytes"));
            }
            PP2_TYPE_SSL => {
                if tlv.value.len() < 5 {
                    return Err(ProxyError::Tlv(
                        "an SSL value shorter than its client and verify fields",
                    ));
                }
                split_tlvs(&tlv.value[5..])?;
            }
            PP2_TYPE_AWS if tlv.value.first() == Some(&PP2_SUBTYPE_AWS_VPCE_ID) => {
                if parsed.aws_vpce_id.is_some() {
                    return Err(ProxyError::Tlv("more than one AWS VPC endpoint id"));
                }
                let id = &tlv.value[1..];
                let valid =
                    !id.is_empty() && id.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-');
                if !valid {
                    return Err(ProxyError::Tlv(
                        "an AWS VPC endpoint id that is not letters, digits and dashes",
                    ));
                }
                parsed.aws_vpce_id = Some(String::from_utf8_lossy(id).into_owned());
            }
            // NOOP, ALPN, AUTHORITY, NETNS, other AWS subtypes and types weir does not know
            // are kept as they are and otherwise ignored.
            _ => {}
        }
    }
    Ok(ProxyParse::Complete(parsed))
}

/// The name and address block size of a v2 family/protocol byte (the seven the
/// specification lists).
fn family(fam: u8) -> Result<(&'static str, usize), ProxyError> {
    Ok(match fam {
        0x00 => ("UNSPEC", 0),
        0x11 => ("TCP over IPv4", 12),
        0x12 => ("UDP over IPv4", 12),
        0x21 => ("TCP over IPv6", 36),
        0x22 => ("UDP over IPv6", 36),
        0x31 => ("UNIX stream", 2 * UNIX_PATH_LEN),
        0x32 => ("UNIX datagram", 2 * UNIX_PATH_LEN),
        other => return Err(ProxyError::V2Family(other)),
    })
}

/// Decodes an address block whose size `family` gave for `fam`.
fn addresses(fam: u8, a: &[u8]) -> ProxyAddresses {
    let port = |at: usize| u16::from_be_bytes([a[at], a[at + 1]]);
    match fam {
        0x11 | 0x12 => {
            let ip = |at: usize| IpAddr::V4(Ipv4Addr::new(a[at], a[at + 1], a[at + 2], a[at + 3]));
            inet(
                fam,
                SocketAddr::new(ip(0), port(8)),
                SocketAddr::new(ip(4), port(10)),
            )
        }
        0x21 | 0x22 => {
            let ip = |at: usize| {
                let mut octets = [0u8; 16];
                octets.copy_from_slice(&a[at..at + 16]);
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            inet(
                fam,
                SocketAddr::new(ip(0), port(32)),
                SocketAddr::new(ip(16), port(34)),
            )
        }
        0x31 | 0x32 => {
            let path = |p: &[u8]| {
                let end = p.iter().position(|&b| b == 0).unwrap_or(p.len());
                p[..end].to_vec()
            };
            ProxyAddresses::Unix {
                stream: fam == 0x31,
                source: path(&a[..UNIX_PATH_LEN]),
                destination: path(&a[UNIX_PATH_LEN..]),
            }
        }
        _ => ProxyAddresses::Unspecified,
    }
}

fn inet(fam: u8, source: SocketAddr, destination: SocketAddr) -> ProxyAddresses {
    if fam & 0x0f == 0x01 {
        ProxyAddresses::Tcp {
            source,
            destination,
        }
    } else {
        ProxyAddresses::Udp {
            source,
            destination,
        }
    }
}

/// Splits a run of TLVs; each must fit entirely.
fn split_tlvs(mut b: &[u8]) -> Result<Vec<ProxyTlv>, ProxyError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let [kind, hi, lo, rest @ ..] = b else {
            return Err(ProxyError::Tlv(
                "the header ends inside a TLV's type and length",
            ));
        };
        let n = usize::from(u16::from_be_bytes([*hi, *lo]));
        if rest.len() < n {
            return Err(ProxyError::Tlv("a TLV's value runs past the header's end"));
        }
        out.push(ProxyTlv {
            kind: *kind,
            value: rest[..n].to_vec(),
        });
        b = &rest[n..];
    }
    Ok(out)
}

/// CRC32C (RFC 4960 appendix B) of `header` with the 4 bytes at `at` read as zeros.
fn crc32c_zeroed(header: &[u8], at: usize) -> u32 {
    let crc = crc32c::crc32c(&header[..at]);
    let crc = crc32c::crc32c_append(crc, &[0u8; 4]);
    crc32c::crc32c_append(crc, &header[at + 4..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A small v2 encoder for the tests: fixed part, address block, TLVs; with `crc` a CRC32C
    /// TLV is added first and filled in.
    fn encode_v2(cmd: u8, fam: u8, addr: &[u8], tlvs: &[(u8, Vec<u8>)], crc: bool) -> Vec<u8> {
        let mut body = addr.to_vec();
        let mut crc_at = None;
        if crc {
            body.extend_from_slice(&[PP2_TYPE_CRC32C, 0, 4]);
            crc_at = Some(V2_FIXED + body.len());
            body.extend_from_slice(&[0; 4]);
        }
        for (kind, value) in tlvs {
            body.push(*kind);
            body.extend_from_slice(&(value.len() as u16).to_be_bytes());
            body.extend_from_slice(value);
        }
        let mut out = PROXY_V2_SIGNATURE.to_vec();
        out.push(0x20 | cmd);
        out.push(fam);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(&body);
        if let Some(at) = crc_at {
            let sum = crc32c::crc32c(&out);
            out[at..at + 4].copy_from_slice(&sum.to_be_bytes());
        }
        out
    }

    fn inet_block(src: SocketAddr, dst: SocketAddr) -> (u8, Vec<u8>) {
        let mut b = Vec::new();
        let fam = match (src.ip(), dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                b.extend_from_slice(&s.octets());
                b.extend_from_slice(&d.octets());
                0x11
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                b.extend_from_slice(&s.octets());
                b.extend_from_slice(&d.octets());
                0x21
            }
            _ => unreachable!("the tests pair addresses of one family"),
        };
        b.extend_from_slice(&src.port().to_be_bytes());
        b.extend_from_slice(&dst.port().to_be_bytes());
        (fam, b)
    }

    fn complete(buf: &[u8]) -> ProxyHeader {
        match parse_proxy_header(buf) {
            Ok(ProxyParse::Complete(h)) => h,
            other => panic!("expected a complete header, got {other:?}"),
        }
    }

    /// A v2 PROXY header with the AWS TLV as a Network Load Balancer sends it through
    /// PrivateLink: 84 bytes after the fixed part (TCP4 addresses, CRC32C, the endpoint id, and
    /// NOOP padding). Addresses, ports and TLV layout as captured from an NLB.
    fn nlb_privatelink() -> Vec<u8> {
        let mut h = PROXY_V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0x00, 0x54]);
        h.extend_from_slice(&[172, 31, 7, 113, 172, 31, 10, 31, 0xc8, 0xf2, 0x00, 0x50]);
        h.extend_from_slice(&[0x03, 0x00, 0x04, 0xe8, 0xd6, 0x89, 0x2d]);
        h.extend_from_slice(&[0xea, 0x00, 0x17, 0x01]);
        h.extend_from_slice(b"vpce-08d2bf15fac5001c9");
        h.extend_from_slice(&[0x04, 0x00, 0x24]);
        h.resize(16 + 84, 0);
        h
    }

    #[test]
    fn nlb_privatelink_header_with_its_real_checksum() {
        let wire = nlb_privatelink();
        let h = complete(&wire);
        assert_eq!(h.len, 100);
        assert_eq!(h.version, ProxyVersion::V2);
        assert_eq!(h.command, ProxyCommand::Proxy);
        assert_eq!(h.client(), Some("172.31.7.113:51442".parse().unwrap()));
        assert_eq!(
            h.addresses,
            ProxyAddresses::Tcp {
                source: "172.31.7.113:51442".parse().unwrap(),
                destination: "172.31.10.31:80".parse().unwrap(),
            }
        );
        assert_eq!(h.aws_vpce_id.as_deref(), Some("vpce-08d2bf15fac5001c9"));
        assert!(h.checksum_verified);
        let kinds: Vec<u8> = h.tlvs.iter().map(|t| t.kind).collect();
        assert_eq!(kinds, [PP2_TYPE_CRC32C, PP2_TYPE_AWS, PP2_TYPE_NOOP]);

        // Any flipped bit after the fixed part fails the checksum or the structure, except in
        // the CRC32C TLV's own type byte (28), which makes it a TLV of another type: a
        // checksum only protects a header that says it carries one.
        for i in (16..wire.len()).filter(|&i| i != 28) {
            let mut bad = wire.clone();
            bad[i] ^= 0x01;
            assert!(parse_proxy_header(&bad).is_err(), "byte {i} flipped");
        }
        let mut bad = wire.clone();
        bad[19] ^= 0x80; // the checksum value itself
        assert!(matches!(
            parse_proxy_header(&bad),
            Err(ProxyError::Checksum { .. })
        ));
    }

    #[test]
    fn data_after_the_header_is_left_alone() {
        let mut wire = nlb_privatelink();
        wire.extend_from_slice(&[0x93, 0xa3, b'a', b'p', b'p']);
        let h = complete(&wire);
        assert_eq!(&wire[h.len..], &[0x93, 0xa3, b'a', b'p', b'p']);
    }

    #[test]
    fn nlb_proxy_without_aws_tlv() {
        // Plain TCP4, 12 address bytes, no TLV: what an NLB sends outside PrivateLink.
        let mut wire = PROXY_V2_SIGNATURE.to_vec();
        wire.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
        wire.extend_from_slice(&[198, 51, 100, 7, 10, 0, 1, 20, 0xd4, 0x31, 0x5e, 0xe0]);
        let h = complete(&wire);
        assert_eq!(h.len, 28);
        assert_eq!(h.client(), Some("198.51.100.7:54321".parse().unwrap()));
        assert_eq!(h.aws_vpce_id, None);
        assert!(!h.checksum_verified);
        assert!(h.tlvs.is_empty());
    }

    #[test]
    fn v2_tcp6() {
        let src: SocketAddr = "[2001:db8::17]:40000".parse().unwrap();
        let dst: SocketAddr = "[2001:db8::1]:24224".parse().unwrap();
        let (fam, block) = inet_block(src, dst);
        let h = complete(&encode_v2(1, fam, &block, &[], false));
        assert_eq!(h.client(), Some(src));
    }

    #[test]
    fn nlb_health_check_local() {
        // LOCAL with a TCP4 family and 84 bytes of zeros, as NLB health checks have been seen
        // to send; the block is discarded, not parsed.
        let mut wire = PROXY_V2_SIGNATURE.to_vec();
        wire.extend_from_slice(&[0x20, 0x11, 0x00, 0x54]);
        wire.resize(16 + 84, 0);
        let h = complete(&wire);
        assert_eq!(h.command, ProxyCommand::Local);
        assert_eq!(h.client(), None);
        assert_eq!(h.len, 100);
        // And the minimal form: LOCAL, UNSPEC, no addresses.
        let mut wire = PROXY_V2_SIGNATURE.to_vec();
        wire.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
        let h = complete(&wire);
        assert_eq!(h.command, ProxyCommand::Local);
        assert_eq!(h.len, 16);
    }

    #[test]
    fn v2_unspec_udp_and_unix_fall_back_to_the_socket() {
        let mut wire = PROXY_V2_SIGNATURE.to_vec();
        wire.extend_from_slice(&[0x21, 0x00, 0x00, 0x03, 1, 2, 3]);
        let h = complete(&wire);
        assert_eq!(h.addresses, ProxyAddresses::Unspecified);
        assert_eq!(h.client(), None);

        let (_, block) = inet_block(
            "192.0.2.1:53".parse().unwrap(),
            "192.0.2.2:53".parse().unwrap(),
        );
        let h = complete(&encode_v2(1, 0x12, &block, &[], false));
        assert!(matches!(h.addresses, ProxyAddresses::Udp { .. }));
        assert_eq!(h.client(), None);

        let mut block = vec![0u8; 216];
        block[..8].copy_from_slice(b"/run/src");
        block[108..116].copy_from_slice(b"/run/dst");
        let h = complete(&encode_v2(1, 0x31, &block, &[], true));
        assert_eq!(
            h.addresses,
            ProxyAddresses::Unix {
                stream: true,
                source: b"/run/src".to_vec(),
                destination: b"/run/dst".to_vec(),
            }
        );
        assert!(h.checksum_verified);
        assert_eq!(h.client(), None);
    }

    #[test]
    fn v2_ssl_and_unknown_tlvs() {
        let (fam, block) = inet_block(
            "203.0.113.9:1000".parse().unwrap(),
            "10.0.0.1:24224".parse().unwrap(),
        );
        let mut ssl = vec![0x01, 0, 0, 0, 0];
        ssl.extend_from_slice(&[PP2_SUBTYPE_SSL_VERSION, 0, 7]);
        ssl.extend_from_slice(b"TLSv1.3");
        ssl.extend_from_slice(&[PP2_SUBTYPE_SSL_CN, 0, 8]);
        ssl.extend_from_slice(b"client.a");
        let tlvs = vec![
            (PP2_TYPE_ALPN, b"h2".to_vec()),
            (PP2_TYPE_AUTHORITY, b"logs.example".to_vec()),
            (PP2_TYPE_SSL, ssl),
            (0xE3, vec![9, 9, 9]),
            (PP2_TYPE_AWS, vec![0x02, b'x']), // another AWS subtype: ignored
            (PP2_TYPE_NETNS, b"ns1".to_vec()),
        ];
        let h = complete(&encode_v2(1, fam, &block, &tlvs, true));
        assert_eq!(h.tlv(PP2_TYPE_AUTHORITY), Some(&b"logs.example"[..]));
        assert_eq!(h.tlv(0xE3), Some(&[9u8, 9, 9][..]));
        assert_eq!(h.aws_vpce_id, None);
        let inner = h.ssl_subtlvs();
        assert_eq!(inner.len(), 2);
        assert_eq!(inner[0].value, b"TLSv1.3");
        assert_eq!(inner[1].value, b"client.a");
        assert_eq!(h.tlvs.len(), 7);
    }

    #[test]
    fn v2_errors() {
        let (fam, block) = inet_block(
            "192.0.2.1:1".parse().unwrap(),
            "192.0.2.2:2".parse().unwrap(),
        );
        let good = encode_v2(1, fam, &block, &[], false);

        let mut bad = good.clone();
        bad[5] = b'X';
        assert_eq!(parse_proxy_header(&bad), Err(ProxyError::Signature));
        let mut bad = good.clone();
        bad[12] = 0x11;
        assert_eq!(parse_proxy_header(&bad), Err(ProxyError::V2Version(1)));
        let mut bad = good.clone();
        bad[12] = 0x22;
        assert_eq!(parse_proxy_header(&bad), Err(ProxyError::V2Command(2)));
        let mut bad = good.clone();
        bad[13] = 0x13;
        assert_eq!(parse_proxy_header(&bad), Err(ProxyError::V2Family(0x13)));
        // The family is refused from the fixed part alone, before the rest arrives.
        assert_eq!(
            parse_proxy_header(&bad[..16]),
            Err(ProxyError::V2Family(0x13))
        );
        let mut bad = good.clone();
        bad[15] = 11; // shorter than the 12 bytes of TCP4 addresses
        assert!(matches!(
            parse_proxy_header(&bad),
            Err(ProxyError::V2Length { len: 11, .. })
        ));
        // A TLV whose length runs past the header.
        let mut bad = encode_v2(1, fam, &block, &[(PP2_TYPE_NOOP, vec![0; 4])], false);
        let tlv_len_at = 16 + 12 + 2;
        bad[tlv_len_at] = 5;
        assert_eq!(
            parse_proxy_header(&bad),
            Err(ProxyError::Tlv("a TLV's value runs past the header's end"))
        );
        // Trailing bytes too few to be a TLV.
        let mut body = block.clone();
        body.extend_from_slice(&[0x04, 0x00]);
        assert!(matches!(
            parse_proxy_header(&encode_v2(1, fam, &body, &[], false)),
            Err(ProxyError::Tlv(_))
        ));
        // CRC32C of the wrong size, and two of them.
        let bad = encode_v2(1, fam, &block, &[(PP2_TYPE_CRC32C, vec![0; 3])], false);
        assert!(matches!(parse_proxy_header(&bad), Err(ProxyError::Tlv(_))));
        let bad = encode_v2(1, fam, &block, &[(PP2_TYPE_CRC32C, vec![0; 4])], true);
        assert!(matches!(parse_proxy_header(&bad), Err(ProxyError::Tlv(_))));
        // A malformed endpoint id, a duplicated one, an SSL TLV too short.
        for tlvs in [
            vec![(PP2_TYPE_AWS, b"\x01vpce 1".to_vec())],
            vec![(PP2_TYPE_AWS, b"\x01".to_vec())],
            vec![
                (PP2_TYPE_AWS, b"\x01vpce-1".to_vec()),
                (PP2_TYPE_AWS, b"\x01vpce-2".to_vec()),
            ],
            vec![(PP2_TYPE_SSL, vec![1, 0, 0])],
            vec![(PP2_TYPE_SSL, vec![1, 0, 0, 0, 0, 0x21, 0, 9])],
            vec![(PP2_TYPE_UNIQUE_ID, vec![7; 129])],
        ] {
            assert!(
                matches!(
                    parse_proxy_header(&encode_v2(1, fam, &block, &tlvs, false)),
                    Err(ProxyError::Tlv(_))
                ),
                "{tlvs:?}"
            );
        }
    }

    #[test]
    fn v2_incomplete_reports_what_is_missing() {
        let wire = nlb_privatelink();
        assert_eq!(
            parse_proxy_header(&wire[..5]),
            Ok(ProxyParse::Incomplete { needed: 11 })
        );
        assert_eq!(
            parse_proxy_header(&wire[..16]),
            Ok(ProxyParse::Incomplete { needed: 84 })
        );
        assert_eq!(
            parse_proxy_header(&wire[..99]),
            Ok(ProxyParse::Incomplete { needed: 1 })
        );
        assert_eq!(
            parse_proxy_header(&[]),
            Ok(ProxyParse::Incomplete { needed: 1 })
        );
    }

    #[test]
    fn v1_lines() {
        let h = complete(b"PROXY TCP4 198.51.100.22 10.0.3.4 35646 24224\r\n");
        assert_eq!(h.version, ProxyVersion::V1);
        assert_eq!(h.client(), Some("198.51.100.22:35646".parse().unwrap()));
        assert_eq!(h.len, 47);
        let h = complete(b"PROXY TCP6 2001:db8::22 2001:DB8:0:0:0:0:0:1 65535 0\r\nrest");
        assert_eq!(h.client(), Some("[2001:db8::22]:65535".parse().unwrap()));
        assert_eq!(h.len, 54);
        let h = complete(b"PROXY UNKNOWN\r\n");
        assert_eq!(h.addresses, ProxyAddresses::Unspecified);
        assert_eq!(h.client(), None);
        assert_eq!(h.len, 15);
        let worst = b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
        let h = complete(worst);
        assert_eq!(h.client(), None);
        let longest = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(longest.len(), PROXY_V1_MAX_LEN);
        assert_eq!(complete(longest.as_bytes()).len, 107);
    }

    #[test]
    fn v1_errors() {
        let syntax = |line: &[u8]| {
            assert!(
                matches!(parse_proxy_header(line), Err(ProxyError::V1Syntax(_))),
                "{:?} -> {:?}",
                String::from_utf8_lossy(line),
                parse_proxy_header(line)
            )
        };
        syntax(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n");
        syntax(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r2\r\n");
        syntax(b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n");
        syntax(b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n");
        syntax(b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n");
        syntax(b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n");
        syntax(b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n");
        syntax(b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n");
        syntax(b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n");
        syntax(b"PROXY TCP4 ::1 ::1 1 2\r\n");
        syntax(b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n");
        syntax(b"PROXY TCP6 ::ffff:1.2.3.4 ::1 1 2\r\n");
        syntax(b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n");
        syntax(b"PROXY UNKNOWNX\r\n");
        syntax(b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n");
        assert_eq!(parse_proxy_header(b"PROXI TCP4"), Err(ProxyError::Missing));
        assert_eq!(parse_proxy_header(&[b'P'; 107]), Err(ProxyError::Missing));
        let mut long = b"PROXY UNKNOWN ".to_vec();
        long.resize(107, b'a');
        assert_eq!(parse_proxy_header(&long), Err(ProxyError::V1TooLong));
        long.truncate(106);
        assert!(matches!(
            parse_proxy_header(&long),
            Ok(ProxyParse::Incomplete { .. })
        ));
        long.extend_from_slice(b"\r\n"); // 108 bytes with the CRLF: one too many
        assert_eq!(parse_proxy_header(&long), Err(ProxyError::V1TooLong));
        assert_eq!(parse_proxy_header(&[0x93]), Err(ProxyError::Missing));
        assert_eq!(parse_proxy_header(b"{\"a\":1}"), Err(ProxyError::Missing));
    }

    #[test]
    fn v1_incomplete() {
        for n in 1..b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n".len() {
            let line = &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"[..n];
            assert!(
                matches!(parse_proxy_header(line), Ok(ProxyParse::Incomplete { .. })),
                "{n}"
            );
        }
    }

    fn arb_inet() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
        let v4 = any::<([u8; 4], [u8; 4])>().prop_map(|(s, d)| (IpAddr::from(s), IpAddr::from(d)));
        let v6 =
            any::<([u8; 16], [u8; 16])>().prop_map(|(s, d)| (IpAddr::from(s), IpAddr::from(d)));
        (prop_oneof![v4, v6], any::<(u16, u16)>())
            .prop_map(|((s, d), (sp, dp))| (SocketAddr::new(s, sp), SocketAddr::new(d, dp)))
    }

    fn arb_tlv() -> impl Strategy<Value = (u8, Vec<u8>)> {
        // Types whose values have no inner rules, so any bytes are valid.
        (
            prop::sample::select(vec![
                PP2_TYPE_ALPN,
                PP2_TYPE_AUTHORITY,
                PP2_TYPE_NOOP,
                PP2_TYPE_NETNS,
                0x00,
                0xE0,
                0xF1,
                0xFF,
            ]),
            prop::collection::vec(any::<u8>(), 0..64),
        )
    }

    proptest! {
        #[test]
        fn v2_round_trip(
            (src, dst) in arb_inet(),
            tlvs in prop::collection::vec(arb_tlv(), 0..6),
            vpce in prop::option::of("vpce-[0-9a-f]{17}"),
            crc in any::<bool>(),
            tail in prop::collection::vec(any::<u8>(), 0..32),
        ) {
            let (fam, block) = inet_block(src, dst);
            let mut all = tlvs.clone();
            if let Some(id) = &vpce {
                let mut v = vec![PP2_SUBTYPE_AWS_VPCE_ID];
                v.extend_from_slice(id.as_bytes());
                all.push((PP2_TYPE_AWS, v));
            }
            let mut wire = encode_v2(1, fam, &block, &all, crc);
            let header_len = wire.len();
            wire.extend_from_slice(&tail);
            let h = complete(&wire);
            prop_assert_eq!(h.len, header_len);
            prop_assert_eq!(h.client(), Some(src));
            prop_assert_eq!(
                h.addresses,
                ProxyAddresses::Tcp { source: src, destination: dst }
            );
            prop_assert_eq!(h.aws_vpce_id, vpce);
            prop_assert_eq!(h.checksum_verified, crc);
            prop_assert_eq!(h.tlvs.len(), all.len() + usize::from(crc));
            // Every strict prefix asks for more.
            for cut in [0, 1, 12, 15, 16, header_len - 1] {
                let is_incomplete = matches!(
                    parse_proxy_header(&wire[..cut]),
                    Ok(ProxyParse::Incomplete { .. })
                );
                prop_assert!(is_incomplete);
            }
        }

        #[test]
        fn v1_round_trip((src, dst) in arb_inet(), tail in prop::collection::vec(any::<u8>(), 0..16)) {
            let proto = if src.is_ipv4() { "TCP4" } else { "TCP6" };
            let line = format!(
                "PROXY {proto} {} {} {} {}\r\n",
                src.ip(), dst.ip(), src.port(), dst.port()
            );
            let mut wire = line.clone().into_bytes();
            wire.extend_from_slice(&tail);
            let h = complete(&wire);
            prop_assert_eq!(h.len, line.len());
            prop_assert_eq!(h.client(), Some(src));
            prop_assert_eq!(
                h.addresses,
                ProxyAddresses::Tcp { source: src, destination: dst }
            );
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_proxy_header(&bytes);
        }

        #[test]
        fn arbitrary_bodies_after_a_valid_prefix_never_panic(
            cmd in 0u8..3,
            fam in any::<u8>(),
            body in prop::collection::vec(any::<u8>(), 0..300),
        ) {
            let mut wire = PROXY_V2_SIGNATURE.to_vec();
            wire.push(0x20 | cmd);
            wire.push(fam);
            wire.extend_from_slice(&(body.len() as u16).to_be_bytes());
            wire.extend_from_slice(&body);
            if let Ok(ProxyParse::Complete(h)) = parse_proxy_header(&wire) {
                prop_assert_eq!(h.len, wire.len());
            }
        }

        #[test]
        fn a_flipped_byte_is_caught_by_the_checksum(
            (src, dst) in arb_inet(),
            at in any::<prop::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let (fam, block) = inet_block(src, dst);
            let wire = encode_v2(1, fam, &block, &[(PP2_TYPE_NOOP, vec![0; 5])], true);
            let mut bad = wire.clone();
            let i = at.index(bad.len());
            bad[i] ^= flip;
            match parse_proxy_header(&bad) {
                // Changing the length field can leave a valid-looking but shorter or longer
                // header; everything else is refused.
                Ok(ProxyParse::Incomplete { .. }) => prop_assert!(i == 14 || i == 15),
                // Turning PROXY into LOCAL, or the family into UNSPEC, leaves a header whose
                // addresses are not used: the socket's peer applies, so nothing is spoofed.
                // Changing the CRC32C TLV's type byte turns it into another TLV.
                Ok(ProxyParse::Complete(h)) => {
                    if i == 16 + block.len() {
                        prop_assert!(!h.checksum_verified);
                    } else if i == 14 || i == 15 {
                        // A length that lands exactly on a TLV boundary is a shorter,
                        // well-formed header without the checksum; what follows it is
                        // stream data, not header.
                        prop_assert!(h.len < wire.len());
                        prop_assert!(!h.checksum_verified);
                    } else {
                        prop_assert!(i == 12 || i == 13, "byte {} accepted", i);
                        prop_assert_eq!(h.client(), None);
                    }
                }
                Err(_) => {}
            }
        }
    }
}
