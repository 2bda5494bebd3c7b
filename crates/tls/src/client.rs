//! The client side: whom a client trusts (`Trust`), its own certificate for mutual TLS
//! (`Identity`), the rustls config both make (`client_config`) and the handshake over an
//! established TCP stream (`connect`). `Trust::Pin` is how an agent trusts an Ocelli-made CA it
//! was given only a fingerprint of: the server's chain must carry a certificate with that
//! fingerprint, and the leaf must verify against that certificate alone (name, validity,
//! signature), so a pin is as strong as a CA file holding that one certificate.
//!
//! Versions: rustls' defaults, TLS 1.3 and 1.2. No ALPN is offered: the same config serves HTTP
//! and other protocols.

use std::path::PathBuf;
use std::sync::Arc;

use subtle::ConstantTimeEq;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::{
    CryptoProvider, verify_tls12_signature, verify_tls13_signature,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{
    self, CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use crate::{pem, provider, sha256};

/// Whom a client trusts to be the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Mozilla's roots (webpki-roots), compiled in.
    System,
    /// The CA certificates of a PEM file.
    CaFile(PathBuf),
    /// A pinned CA: the server's presented chain must contain a certificate whose SHA-256
    /// fingerprint is this, and the leaf must verify (name, time, signature) with that
    /// certificate as the only root.
    Pin([u8; 32]),
}

/// A client identity (mutual TLS): certificate chain PEM (leaf first) and key PEM, as bytes.
#[derive(Clone)]
pub struct Identity {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("cert_pem", &String::from_utf8_lossy(&self.cert_pem))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// A client config trusting `trust`, presenting `identity` when given.
pub fn client_config(
    trust: &Trust,
    identity: Option<&Identity>,
) -> Result<Arc<ClientConfig>, String> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = match trust {
        Trust::System => builder.with_root_certificates(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }),
        Trust::CaFile(path) => {
            let roots = pem::roots(&pem::read(path)?, &path.display().to_string())?;
            builder.with_root_certificates(roots)
        }
        Trust::Pin(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinVerifier { pin: *pin, provider })),
    };
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => {
            let certs = pem::certs(&id.cert_pem, "client certificate")?;
            let key = pem::key(&id.key_pem, "client key")?;
            builder.with_client_auth_cert(certs, key).map_err(|e| match e {
                rustls::Error::InconsistentKeys(_) => {
                    "the client key is not the key of the client certificate".to_string()
                }
                e => format!("client certificate: {e}"),
            })?
        }
    };
    Ok(Arc::new(config))
}

/// Completes a TLS handshake over `tcp` with the server `host` (a DNS name or an IP address,
/// with or without brackets), which its certificate must name.
pub async fn connect(
    config: Arc<ClientConfig>,
    host: &str,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, String> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let name = ServerName::try_from(bare.to_string())
        .map_err(|e| format!("TLS to {host}: not a DNS name or IP address: {e}"))?;
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with {host}: {e}"))
}

/// `Trust::Pin`'s verifier.
#[derive(Debug)]
struct PinVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pinned = std::iter::once(end_entity)
            .chain(intermediates)
            .find(|c| bool::from(sha256(c).ct_eq(&self.pin)))
            .ok_or_else(|| {
                rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                    Arc::new(std::io::Error::other(
                        "no certificate of the server's chain has the pinned fingerprint",
                    )),
                )))
            })?;
        let mut roots = RootCertStore::empty();
        roots.add(pinned.clone().into_owned())?;
        let webpki =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(format!("pinned certificate: {e}")))?;
        webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
