//! Reading certificates and private keys from PEM, for the server's files and a client's
//! identity. `what` names the source (a file path, or "client certificate") in every error.
//! Keys may be PKCS#8, PKCS#1 (RSA) or SEC1 (EC), the encodings rustls' `ring` provider signs with.

use std::path::Path;

use tokio_rustls::rustls::RootCertStore;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Reads a file whole; the error names it.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

/// Every certificate of a PEM text, in order; at least one.
pub(crate) fn certs(pem_bytes: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem_bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: {}", pem_error(&e)))?;
    if certs.is_empty() {
        return Err(format!("{what}: no \"BEGIN CERTIFICATE\" section"));
    }
    Ok(certs)
}

/// The first private key of a PEM text.
pub(crate) fn key(pem_bytes: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem_bytes).map_err(|e| match e {
        pem::Error::NoItemsFound => format!(
            "{what}: no private key (\"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \
             \"BEGIN EC PRIVATE KEY\" section)"
        ),
        e => format!("{what}: {}", pem_error(&e)),
    })
}

/// A root store of every certificate of a PEM text.
pub(crate) fn roots(pem_bytes: &[u8], what: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for (i, cert) in certs(pem_bytes, what)?.into_iter().enumerate() {
        roots.add(cert).map_err(|e| format!("{what}: certificate {}: {e}", i + 1))?;
    }
    Ok(roots)
}

fn pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { end_marker } => {
            format!("PEM section without its end marker {:?}", String::from_utf8_lossy(end_marker))
        }
        pem::Error::IllegalSectionStart { line } => {
            format!("bad PEM section start {:?}", String::from_utf8_lossy(line))
        }
        e => format!("bad PEM: {e}"),
    }
}
