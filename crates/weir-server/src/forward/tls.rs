//! `<transport tls>`: a rustls server configuration from PEM files.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use super::config::{TlsConfig, TlsVersion};

/// Why TLS could not be set up. Each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// A file held no certificate or key.
    #[error("{path}: {what}")]
    Content { path: String, what: String },
    /// rustls refused the combination.
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client CA list could not be used.
    #[error("client certificate verification: {0}")]
    Verifier(String),
}

fn open(path: &Path) -> Result<BufReader<File>, TlsError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut reader = open(path)?;
    let certs = rustls_pemfile::certs(&mut reader)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Content {
            path: path.display().to_string(),
            what: "no PEM certificate found".into(),
        });
    }
    Ok(certs)
}

fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let mut reader = open(path)?;
    rustls_pemfile::private_key(&mut reader)
        .map_err(|source| TlsError::Read {
            path: path.display().to_string(),
            source,
        })?
        .ok_or_else(|| TlsError::Content {
            path: path.display().to_string(),
            what: "no unencrypted PEM private key found (PKCS#8, PKCS#1 or SEC1)".into(),
        })
}

/// Builds the acceptor for a `<transport tls>` section.
pub fn acceptor(cfg: &TlsConfig) -> Result<TlsAcceptor, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if cfg.min_version <= TlsVersion::V1_2 && cfg.max_version >= TlsVersion::V1_2 {
        versions.push(&rustls::version::TLS12);
    }
    if cfg.max_version >= TlsVersion::V1_3 {
        versions.push(&rustls::version::TLS13);
    }
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)?;
    let builder = if cfg.client_cert_auth {
        let mut roots = RootCertStore::empty();
        let ca_path = cfg
            .ca_path
            .as_deref()
            .ok_or_else(|| TlsError::Verifier("client_cert_auth needs ca_path".into()))?;
        for cert in certs(ca_path)? {
            roots
                .add(cert)
                .map_err(|e| TlsError::Verifier(format!("{}: {e}", ca_path.display())))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| TlsError::Verifier(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder.with_single_cert(certs(&cfg.cert_path)?, key(&cfg.private_key_path)?)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
