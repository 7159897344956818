//! TLS for RTSPS (RTSP over TLS, `rtsps://`) with rustls and its `ring` provider: the server's
//! configuration from a PEM certificate chain and key, and the two ways a client trusts a
//! server. Trust decisions on fingerprints (trust on first use) are
//! [`livecast_proto::trust`]'s; this module only builds rustls configurations.

use std::sync::Arc;

use livecast_proto::trust::Fingerprint;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

pub use rustls;

/// The ring provider (no aws-lc: a pure Rust + C build without cmake or nasm). rustls 0.23.48
/// deprecated it for having no post-quantum key exchange; classical X25519 / ECDHE it is.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a certificate, key or CA file could not be used.
#[derive(Debug)]
pub struct TlsError(pub String);

impl std::error::Error for TlsError {}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The certificates of a PEM text, in order.
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("not a PEM certificate: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError("no CERTIFICATE block in it".into()));
    }
    Ok(certs)
}

/// A server's TLS configuration and the fingerprint of its (first) certificate.
#[derive(Debug)]
pub struct ServerTls {
    pub config: Arc<rustls::ServerConfig>,
    pub fingerprint: Fingerprint,
}

impl ServerTls {
    /// From a PEM certificate chain (the server's first) and its PEM private key (PKCS#8,
    /// PKCS#1 or SEC1).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsError> {
        let certs = certificates_from_pem(cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| TlsError(format!("not a PEM private key: {e}")))?;
        let fingerprint = Fingerprint::of(&certs[0]);
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| TlsError(format!("certificate and key: {e}")))?;
        Ok(ServerTls {
            config: Arc::new(config),
            fingerprint,
        })
    }
}

/// How a client trusts an `rtsps://` server.
pub enum ClientTrust {
    /// Any certificate, as long as the server proves it holds its key (the handshake's
    /// signature is checked); the caller then decides on its fingerprint
    /// ([`peer_fingerprint`]): trust on first use, or a load generator that does not care.
    Fingerprint,
    /// Certificates that chain to one of these CA certificates and name the host.
    Roots(Vec<CertificateDer<'static>>),
}

/// A client configuration for `trust`.
pub fn client_config(trust: ClientTrust) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError(e.to_string()))?;
    let config = match trust {
        ClientTrust::Fingerprint => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth(),
        ClientTrust::Roots(certs) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| TlsError(format!("not a CA certificate: {e}")))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    Ok(Arc::new(config))
}

/// The name to verify and send (SNI) for `host`: an IP address or a DNS name.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_owned()).map_err(|_| TlsError(format!("{host:?} is not a host")))
}

/// The fingerprint of the certificate the server presented, once the handshake is done.
pub fn peer_fingerprint(conn: &rustls::CommonState) -> Option<Fingerprint> {
    conn.peer_certificates()
        .and_then(|c| c.first())
        .map(|c| Fingerprint::of(c))
}

/// Accepts any certificate; the signatures of the handshake are still verified with it, so
/// the peer holds the certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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
        verify_tls12_signature(
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
        verify_tls13_signature(
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
