//! The server's TLS configuration from its files, and its reload. `ServerTls::load` reads a
//! certificate chain, its key and, optionally, a client CA (with one, every client must present a
//! certificate that CA signed: mutual TLS). `ServerTls::current` hands the config for the next
//! handshake; at most once a second it looks at the files' modification time, size and inode and,
//! when one changed, reads them again. A reload that fails (a half-written file, a key that does
//! not match its certificate) keeps the previous config and logs a warning; it is tried again when
//! a file changes again. The listener that uses it is `listener.rs`.
//!
//! Versions: rustls' defaults, TLS 1.3 and 1.2 (nothing older exists in rustls). ALPN: `http/1.1`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, ServerConfig};

use crate::{pem, provider};

/// Where the server's TLS files are, as the `[tls]` section of a config file names them.
#[derive(Clone, Debug, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFiles {
    /// The certificate chain, PEM: the server's certificate first, then any intermediates.
    pub cert_file: PathBuf,
    /// The certificate's private key, PEM: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key_file: PathBuf,
    /// CA certificates, PEM: when set, clients must present a certificate one of them signed.
    #[serde(default)]
    pub client_ca_file: Option<PathBuf>,
}

/// How often `ServerTls::current` looks at the files at most.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A server TLS setup that re-reads its files when their modification time or size changes
/// (checked at most once a second, when `current` is called, which the listener does on every
/// accepted connection). Clones share one state.
#[derive(Clone)]
pub struct ServerTls {
    inner: Arc<Mutex<State>>,
}

struct State {
    files: ServerFiles,
    config: Arc<ServerConfig>,
    /// What the files looked like when last read (successfully or not).
    stamps: Vec<Option<Stamp>>,
    checked: Instant,
}

/// What tells a changed file: modification time, size and inode (a file replaced by rename
/// within the same timestamp tick and of the same size still has a new inode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f.debug_struct("ServerTls").field("files", &state.files).finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads the files and builds the first config; the error names the file at fault.
    pub fn load(files: &ServerFiles) -> Result<ServerTls, String> {
        let stamps = stamps(files);
        let config = build(files)?;
        let state = State { files: files.clone(), config, stamps, checked: Instant::now() };
        Ok(ServerTls { inner: Arc::new(Mutex::new(state)) })
    }

    /// The config for the next handshake, after reloading the files if they changed (looked at
    /// no more than once a second).
    pub fn current(&self) -> Arc<ServerConfig> {
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if state.checked.elapsed() >= CHECK_EVERY {
            state.checked = Instant::now();
            let now = stamps(&state.files);
            if now != state.stamps {
                state.stamps = now;
                match build(&state.files) {
                    Ok(config) => {
                        let cert_file = state.files.cert_file.display();
                        tracing::info!(%cert_file, "TLS files reloaded");
                        state.config = config;
                    }
                    Err(error) => tracing::warn!(
                        %error,
                        "TLS files changed but do not load; serving the previous certificate"
                    ),
                }
            }
        }
        state.config.clone()
    }
}

fn stamps(files: &ServerFiles) -> Vec<Option<Stamp>> {
    let mut paths: Vec<&Path> = vec![&files.cert_file, &files.key_file];
    paths.extend(files.client_ca_file.as_deref());
    paths.into_iter().map(stamp).collect()
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp { modified: m.modified().ok(), len: m.len(), inode: m.ino() })
}

/// Reads the files and builds a config.
fn build(files: &ServerFiles) -> Result<Arc<ServerConfig>, String> {
    let cert_what = files.cert_file.display().to_string();
    let key_what = files.key_file.display().to_string();
    let certs = pem::certs(&pem::read(&files.cert_file)?, &cert_what)?;
    let key = pem::key(&pem::read(&files.key_file)?, &key_what)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS versions: {e}"))?;
    let builder = match &files.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let what = ca.display().to_string();
            let roots = pem::roots(&pem::read(ca)?, &what)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("{what}: {e}"))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => {
            format!("{key_what} is not the key of the certificate in {cert_what}")
        }
        e => format!("{cert_what} with {key_what}: {e}"),
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
