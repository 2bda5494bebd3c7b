//! An Ocelli-made CA, for `[tls] auto = true` and client certificates. `auto` keeps four files in
//! one directory (created 0700 when missing): the CA (`ca.pem`, `ca.key`, 10 years) and a server
//! certificate it signed (`server.pem`: the server's certificate then the CA's; `server.key`,
//! 1 year). It creates what is missing, reuses an existing CA, and issues a new server
//! certificate when the current one does not verify against the CA, lacks one of the names it
//! must carry, or expires within 30 days. `sign_client` signs a client certificate with that CA.
//!
//! Keys are ECDSA P-256 (rcgen's default), written 0600; every file is written to a temporary
//! file, synced and renamed over the old one, so a crash leaves the old file or the new one.
//! A CA key without its certificate (a crash between the two writes: no one can have pinned that
//! CA) is replaced by a new CA; a CA certificate without its key is an error, since clients may
//! pin it and nothing can be signed with it.
//!
//! Dates come from the system clock as whole UTC days (`date_time_ymd`), without the `time`
//! crate; certificates start the day before they are made, for clocks a little behind.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use tokio_rustls::rustls::RootCertStore;
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::ServerCertVerifier;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::sign::CertifiedKey;

use crate::{PIN_PREFIX, fingerprint, pem, provider};

/// The CA's certificate, PEM.
pub const CA_CERT: &str = "ca.pem";
/// The CA's private key, PEM (PKCS#8).
pub const CA_KEY: &str = "ca.key";
/// The server's certificate chain, PEM: its certificate, then the CA's.
pub const SERVER_CERT: &str = "server.pem";
/// The server's private key, PEM (PKCS#8).
pub const SERVER_KEY: &str = "server.key";

const CA_DAYS: i64 = 3650;
const SERVER_DAYS: i64 = 365;
/// A server certificate expiring sooner than this is issued again.
const RENEW_BEFORE_DAYS: u64 = 30;
/// Names every server certificate carries, besides the host name and the caller's.
const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// What `auto` made or found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoTls {
    /// The server's certificate chain: its certificate, then the CA's.
    pub cert_file: PathBuf,
    /// The server's private key.
    pub key_file: PathBuf,
    /// The CA's certificate, for clients to trust (or pin by `ca_fingerprint`).
    pub ca_file: PathBuf,
    /// The CA certificate's fingerprint, `sha256:<hex>` (`crate::fingerprint`).
    pub ca_fingerprint: String,
    /// Whether this call wrote anything: a new CA, or a new server certificate.
    pub created: bool,
}

/// Makes or reuses the CA and server certificate in `dir`; the server certificate names
/// `localhost`, `127.0.0.1`, `::1`, the machine's host name and `extra_names` (DNS names or IP
/// addresses).
pub fn auto(dir: &Path, extra_names: &[String]) -> Result<AutoTls, String> {
    for n in extra_names {
        if ServerName::try_from(n.as_str()).is_err() {
            return Err(format!("TLS name {n:?} is neither a DNS name nor an IP address"));
        }
    }
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let (ca, ca_created) = match load_ca(dir)? {
        Some(ca) => (ca, false),
        None => (new_ca(dir)?, true),
    };

    let host = hostname();
    let mut names: Vec<String> = LOCAL_NAMES.iter().map(|n| n.to_string()).collect();
    names.extend(host.clone());
    names.extend(extra_names.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.to_ascii_lowercase()));

    let cert_file = dir.join(SERVER_CERT);
    let key_file = dir.join(SERVER_KEY);
    let reason = if ca_created {
        Some("the CA is new".to_string())
    } else {
        server_cert_problem(&cert_file, &key_file, &ca.der, &names)
    };
    if let Some(reason) = &reason {
        tracing::info!(
            dir = %dir.display(), %reason, names = ?names,
            "issuing a TLS server certificate"
        );
        let mut params = leaf_params(&names, SERVER_DAYS)?;
        let cn = host.unwrap_or_else(|| "localhost".to_string());
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let (cert_pem, key_pem) = sign(&params, &ca)?;
        write_atomic(&key_file, key_pem.as_bytes(), 0o600)?;
        write_atomic(&cert_file, cert_pem.as_bytes(), 0o644)?;
    }
    Ok(AutoTls {
        cert_file,
        key_file,
        ca_file: dir.join(CA_CERT),
        ca_fingerprint: fingerprint(&ca.der),
        created: ca_created || reason.is_some(),
    })
}

/// Signs a client certificate for `common_name`, valid `days` from yesterday, with the CA `auto`
/// made in `dir`; returns its chain (the certificate, then the CA's) and its key, both PEM.
pub fn sign_client(dir: &Path, common_name: &str, days: u32) -> Result<(String, String), String> {
    if common_name.is_empty() {
        return Err("a client certificate needs a non-empty common name".to_string());
    }
    if days == 0 {
        return Err("a client certificate must be valid for at least 1 day".to_string());
    }
    let ca = load_ca(dir)?
        .ok_or_else(|| format!("{}: no CA to sign with", dir.join(CA_CERT).display()))?;
    let mut params = leaf_params(&[], i64::from(days))?;
    params.distinguished_name.push(DnType::CommonName, common_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    sign(&params, &ca)
}

/// A CA read back or just made: what signs, and its certificate.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    der: CertificateDer<'static>,
}

/// Reads the CA of `dir`; `None` when there is none (or only a key, see the module doc).
fn load_ca(dir: &Path) -> Result<Option<Ca>, String> {
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    match (cert_path.exists(), key_path.exists()) {
        (false, false) => return Ok(None),
        (false, true) => {
            tracing::warn!(
                key = %key_path.display(),
                "a CA key without its certificate; making a new CA"
            );
            return Ok(None);
        }
        (true, false) => {
            return Err(format!(
                "{} exists without its key {}: restore the key, or remove both to make a new CA",
                cert_path.display(),
                key_path.display()
            ));
        }
        (true, true) => {}
    }
    let cert_what = cert_path.display().to_string();
    let pem = String::from_utf8(pem::read(&cert_path)?)
        .map_err(|_| format!("{cert_what}: not UTF-8 text"))?;
    let der = pem::certs(pem.as_bytes(), &cert_what)?
        .into_iter()
        .next()
        .ok_or_else(|| format!("{cert_what}: no certificate"))?;
    let key_what = key_path.display().to_string();
    let key_bytes = pem::read(&key_path)?;
    // rustls checks that the key is the certificate's
    CertifiedKey::from_der(vec![der.clone()], pem::key(&key_bytes, &key_what)?, &provider())
        .map_err(|e| format!("{key_what} with {cert_what}: {e}"))?;
    let key_text =
        String::from_utf8(key_bytes).map_err(|_| format!("{key_what}: not UTF-8 text"))?;
    let key = KeyPair::from_pem(&key_text).map_err(|e| format!("{key_what}: {e}"))?;
    let issuer = Issuer::from_ca_cert_der(&der, key)
        .map_err(|e| format!("{cert_what}: not a usable CA certificate: {e}"))?;
    Ok(Some(Ca { issuer, pem, der }))
}

/// Makes and writes a new CA.
fn new_ca(dir: &Path) -> Result<Ca, String> {
    let key = KeyPair::generate().map_err(|e| format!("generating a CA key: {e}"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::OrganizationName, "Ocelli");
    params.distinguished_name.push(DnType::CommonName, ca_cn(&key));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_DAYS);
    let cert = params.self_signed(&key).map_err(|e| format!("making the CA certificate: {e}"))?;
    write_atomic(&dir.join(CA_KEY), key.serialize_pem().as_bytes(), 0o600)?;
    write_atomic(&dir.join(CA_CERT), cert.pem().as_bytes(), 0o644)?;
    tracing::info!(dir = %dir.display(), fingerprint = %fingerprint(cert.der()), "made a TLS CA");
    Ok(Ca { pem: cert.pem(), der: cert.der().clone(), issuer: Issuer::new(params, key) })
}

/// A CA name of its own (the host name and the key's fingerprint), so two Ocelli CAs are told
/// apart by name in a trust store: a client certificate of another Ocelli CA is then refused as
/// of an unknown CA, not by a failed signature check against a namesake.
fn ca_cn(key: &KeyPair) -> String {
    let host = hostname().unwrap_or_else(|| "localhost".to_string());
    let id = fingerprint(key.public_key_raw());
    format!("Ocelli CA {host} {}", &id[PIN_PREFIX.len()..][..16])
}

/// The params of a certificate the CA signs: the names, validity, key usage.
fn leaf_params(names: &[String], days: i64) -> Result<CertificateParams, String> {
    let mut params = CertificateParams::new(names.to_vec())
        .map_err(|e| format!("certificate names {names:?}: {e}"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, days);
    Ok(params)
}

/// A new key and its certificate, signed by `ca`: (chain PEM, key PEM).
fn sign(params: &CertificateParams, ca: &Ca) -> Result<(String, String), String> {
    let key = KeyPair::generate().map_err(|e| format!("generating a key: {e}"))?;
    let cert = params.signed_by(&key, &ca.issuer).map_err(|e| format!("signing: {e}"))?;
    Ok((format!("{}{}", cert.pem(), ca.pem), key.serialize_pem()))
}

/// Valid from yesterday (UTC) for `days` days after today.
fn set_validity(params: &mut CertificateParams, days: i64) {
    let today = unix_days_now();
    let (y, m, d) = civil_from_days(today - 1);
    params.not_before = date_time_ymd(y, m, d);
    let (y, m, d) = civil_from_days(today + days);
    params.not_after = date_time_ymd(y, m, d);
}

fn unix_days_now() -> i64 {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    i64::try_from(secs / 86_400).unwrap_or(0)
}

/// The date of a day number since 1970-01-01, in rcgen's integer types (`ocelli_model`'s
/// calendar; certificate years stay far inside `i32`).
fn civil_from_days(days: i64) -> (i32, u8, u8) {
    let (y, m, d) = ocelli_model::time::civil_from_days(days);
    (i32::try_from(y).unwrap_or(i32::MAX), m as u8, d as u8)
}

/// The machine's host name, when it is one a certificate can carry.
fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty() && ServerName::try_from(name).is_ok()).then(|| name.to_string())
}

/// Why the server certificate in `cert_file` must be issued again, or `None` when it is good:
/// it and its key read, match, verify against the CA for every name, and still do in 30 days.
fn server_cert_problem(
    cert_file: &Path,
    key_file: &Path,
    ca_der: &CertificateDer<'static>,
    names: &[String],
) -> Option<String> {
    let check = || -> Result<(), String> {
        let cert_what = cert_file.display().to_string();
        let certs = pem::certs(&pem::read(cert_file)?, &cert_what)?;
        let key = pem::key(&pem::read(key_file)?, &key_file.display().to_string())?;
        let provider = provider();
        CertifiedKey::from_der(certs.clone(), key, &provider)
            .map_err(|e| format!("{cert_what} with its key: {e}"))?;
        let mut roots = RootCertStore::empty();
        roots.add(ca_der.clone()).map_err(|e| format!("the CA certificate: {e}"))?;
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("the CA certificate: {e}"))?;
        let soon = SystemTime::now() + Duration::from_secs(RENEW_BEFORE_DAYS * 86_400);
        let soon = UnixTime::since_unix_epoch(soon.duration_since(UNIX_EPOCH).unwrap_or_default());
        for name in names {
            let server_name =
                ServerName::try_from(name.as_str()).map_err(|e| format!("name {name:?}: {e}"))?;
            verifier.verify_server_cert(&certs[0], &certs[1..], &server_name, &[], soon).map_err(
                |e| format!("{cert_what} for {name:?} in {RENEW_BEFORE_DAYS} days: {e}"),
            )?;
        }
        Ok(())
    };
    check().err()
}

/// Writes `path` whole through a synced temporary file renamed over it, with `mode`.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    let fail = |e: std::io::Error| format!("writing {}: {e}", path.display());
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(fail(e)),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(fail)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(fail)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(fail)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(2_932_896), (9999, 12, 31));
    }
}
