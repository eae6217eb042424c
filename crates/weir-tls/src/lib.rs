//! `weir-tls` owns the TLS client setup that weir's clients share: the rustls configuration
//! builder on the ring provider (the TLS stack the rest of weir uses) with the safe default
//! protocol versions, and [`accept_any_server_cert`] for when a user turns certificate
//! verification off (the webhook output's `tls_verify_mode none`, `--tls-insecure` of `weir cat`
//! and `weir bench`). Loading certificates and keys from files stays with each client, which
//! knows what its errors should say.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WantsClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ConfigBuilder, DigitallySignedStruct, SignatureScheme, WantsVerifier};

/// A client configuration builder on the ring provider with the safe default protocol
/// versions (TLS 1.2 and 1.3), waiting for its verifier.
pub fn client_builder() -> Result<ConfigBuilder<ClientConfig, WantsVerifier>, rustls::Error> {
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
}

/// `builder` with certificate verification turned off: any server certificate is accepted
/// (the handshake's signatures are still checked, with the builder's provider).
pub fn accept_any_server_cert(
    builder: ConfigBuilder<ClientConfig, WantsVerifier>,
) -> ConfigBuilder<ClientConfig, WantsClientCert> {
    let verifier = AnyServerCert(Arc::clone(builder.crypto_provider()));
    builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
}

/// Accepts any server certificate, whoever signed it and whatever name it carries, but still
/// checks the handshake's signatures with the provider's algorithms, so the connection itself
/// is sound: it is encrypted to whoever answered, who is not identified.
#[derive(Debug)]
struct AnyServerCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::PrivateKeyDer;
    use rustls::{ClientConnection, RootCertStore, ServerConfig, ServerConnection};

    /// A server config with a self-signed certificate for `name`.
    fn self_signed_server(name: &str) -> ServerConfig {
        let cert = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap()
    }

    /// Runs a handshake between `client` (connecting to `name`) and `server` in memory.
    fn handshake(client: ClientConfig, server: ServerConfig, name: &str) -> Result<(), String> {
        let name = ServerName::try_from(name.to_string()).unwrap();
        let mut c = ClientConnection::new(Arc::new(client), name).unwrap();
        let mut s = ServerConnection::new(Arc::new(server)).unwrap();
        for _ in 0..20 {
            let mut wire = Vec::new();
            c.write_tls(&mut wire).unwrap();
            s.read_tls(&mut &wire[..]).unwrap();
            s.process_new_packets()
                .map_err(|e| format!("server: {e}"))?;
            wire.clear();
            s.write_tls(&mut wire).unwrap();
            c.read_tls(&mut &wire[..]).unwrap();
            c.process_new_packets()
                .map_err(|e| format!("client: {e}"))?;
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(());
            }
        }
        Err("the handshake did not finish".into())
    }

    #[test]
    fn any_certificate_is_accepted_when_verification_is_off() {
        let client = accept_any_server_cert(client_builder().unwrap()).with_no_client_auth();
        // A self-signed certificate, for another name than the one asked for.
        handshake(client, self_signed_server("elsewhere.test"), "weir.test").unwrap();
    }

    #[test]
    fn the_same_certificate_is_refused_with_verification_on() {
        let client = client_builder()
            .unwrap()
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth();
        let err = handshake(client, self_signed_server("weir.test"), "weir.test").unwrap_err();
        assert!(err.starts_with("client:"), "{err}");
    }
}
