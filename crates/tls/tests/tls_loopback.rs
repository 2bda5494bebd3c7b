//! Real TLS over loopback: an axum server on `TlsListener` with `auto` certificates, called by
//! a hand-rolled hyper HTTP/1 client through `ocelli_tls::connect`. Trust modes, mutual TLS,
//! reload, a silent client, TLS 1.2 only.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use ocelli_tls::rustls::pki_types::CertificateDer;
use ocelli_tls::rustls::pki_types::pem::PemObject;
use ocelli_tls::rustls::{self, ClientConfig, ProtocolVersion, RootCertStore};
use ocelli_tls::{
    AutoTls, Identity, Peer, ServerFiles, ServerTls, TlsListener, Trust, auto, client_config,
    connect, fingerprint, parse_pin, sign_client,
};
use tokio::net::TcpStream;

/// Serves `/` ("ok") and `/peer` (the client certificate's fingerprint, or "none") over TLS on a
/// free loopback port.
async fn serve(tls: ServerTls) -> SocketAddr {
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener = TlsListener::new(tcp, tls).unwrap();
    let addr = axum::serve::Listener::local_addr(&listener).unwrap();
    let router = Router::new().route("/", get(|| async { "ok" })).route(
        "/peer",
        get(|ConnectInfo(peer): ConnectInfo<Peer>| async move {
            assert!(peer.addr.ip().is_loopback());
            peer.client_cert.map_or("none".to_string(), |c| fingerprint(&c))
        }),
    );
    let app = router.into_make_service_with_connect_info::<Peer>();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// GET `path` over TLS: the status and body, or where it failed.
async fn fetch(
    addr: SocketAddr,
    config: Arc<ClientConfig>,
    host: &str,
    path: &str,
) -> Result<(u16, String), String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let tls = connect(config, host, tcp).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path).header("host", host).body(Empty::<Bytes>::new()).unwrap();
    let resp = sender.send_request(req).await.map_err(|e| format!("request: {}", chain(&e)))?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
    Ok((status, String::from_utf8(body.to_vec()).unwrap()))
}

/// An error and its sources, ": "-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!(": {s}"));
        source = s.source();
    }
    out
}

async fn fetch_ok(addr: SocketAddr, config: Arc<ClientConfig>, host: &str) {
    assert_eq!(fetch(addr, config, host, "/").await.unwrap(), (200, "ok".to_string()));
}

/// The server refused a client certificate: under TLS 1.3 the client's handshake completes
/// first and the server's alert arrives with the first read (or, when the server has already
/// closed, as a reset).
fn refused(err: &str, alert: &str) {
    assert!(
        err == format!("request: connection error: received fatal alert: {alert}")
            || err.contains("reset")
            || err.contains("roken pipe"),
        "{err}"
    );
}

fn files(a: &AutoTls) -> ServerFiles {
    ServerFiles {
        cert_file: a.cert_file.clone(),
        key_file: a.key_file.clone(),
        client_ca_file: None,
    }
}

fn pin(a: &AutoTls) -> Trust {
    Trust::Pin(parse_pin(&a.ca_fingerprint).unwrap())
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn auto_creates_then_reuses_and_reissues_for_new_names() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tls");
    let first = auto(&dir, &[]).unwrap();
    assert!(first.created);
    assert_eq!(mode(&dir), 0o700);
    for f in ["ca.pem", "server.pem"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
    assert_eq!(mode(&dir.join("server.key")), 0o600);
    assert_eq!(first.cert_file, dir.join("server.pem"));
    assert_eq!(first.key_file, dir.join("server.key"));
    assert_eq!(first.ca_file, dir.join("ca.pem"));
    let ca_der = CertificateDer::from_pem_file(&first.ca_file).unwrap();
    assert_eq!(first.ca_fingerprint, fingerprint(&ca_der));
    // the server chain is the leaf, then the CA
    let chain: Vec<_> =
        CertificateDer::pem_file_iter(&first.cert_file).unwrap().map(|c| c.unwrap()).collect();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1], ca_der);

    let second = auto(&dir, &[]).unwrap();
    assert!(!second.created);
    assert_eq!(second.ca_fingerprint, first.ca_fingerprint);
    let server_pem = std::fs::read(&first.cert_file).unwrap();

    let names = ["ocelli.example".to_string(), "10.1.2.3".to_string()];
    let third = auto(&dir, &names).unwrap();
    assert!(third.created, "a missing name issues a new server certificate");
    assert_eq!(third.ca_fingerprint, first.ca_fingerprint, "the CA is kept");
    assert_ne!(std::fs::read(&first.cert_file).unwrap(), server_pem);
    assert_eq!(mode(&dir.join("server.key")), 0o600);
    assert!(!auto(&dir, &names).unwrap().created);
    // names already present need nothing new
    assert!(!auto(&dir, &names[..1]).unwrap().created);

    assert_eq!(
        auto(&dir, &["bad name!".to_string()]).unwrap_err(),
        "TLS name \"bad name!\" is neither a DNS name nor an IP address"
    );
    // a CA certificate without its key cannot sign: refused, not replaced
    std::fs::remove_file(dir.join("ca.key")).unwrap();
    let err = auto(&dir, &[]).unwrap_err();
    assert!(err.contains("ca.pem exists without its key"), "{err}");
    let err = sign_client(&dir, "agent", 1).unwrap_err();
    assert!(err.contains("ca.pem exists without its key"), "{err}");
    assert!(sign_client(&tmp.path().join("none"), "agent", 1).unwrap_err().contains("no CA"));
}

#[test]
fn load_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let a = auto(&tmp.path().join("a"), &[]).unwrap();
    let b = auto(&tmp.path().join("b"), &[]).unwrap();
    let missing = tmp.path().join("missing.pem");
    let err =
        ServerTls::load(&ServerFiles { cert_file: missing.clone(), ..files(&a) }).unwrap_err();
    assert!(err.starts_with(&format!("reading {}: ", missing.display())), "{err}");
    let err =
        ServerTls::load(&ServerFiles { key_file: b.key_file.clone(), ..files(&a) }).unwrap_err();
    assert_eq!(
        err,
        format!(
            "{} is not the key of the certificate in {}",
            b.key_file.display(),
            a.cert_file.display()
        )
    );
    let err =
        ServerTls::load(&ServerFiles { key_file: a.cert_file.clone(), ..files(&a) }).unwrap_err();
    assert!(err.starts_with(&format!("{}: no private key", a.cert_file.display())), "{err}");
    let err =
        ServerTls::load(&ServerFiles { cert_file: a.key_file.clone(), ..files(&a) }).unwrap_err();
    assert_eq!(err, format!("{}: no \"BEGIN CERTIFICATE\" section", a.key_file.display()));
    let err = client_config(&Trust::CaFile(missing.clone()), None).unwrap_err();
    assert!(err.starts_with(&format!("reading {}: ", missing.display())), "{err}");
}

#[tokio::test]
async fn trust_modes() {
    let tmp = tempfile::tempdir().unwrap();
    let a = auto(tmp.path(), &[]).unwrap();
    let addr = serve(ServerTls::load(&files(&a)).unwrap()).await;

    let by_ca = client_config(&Trust::CaFile(a.ca_file.clone()), None).unwrap();
    fetch_ok(addr, by_ca.clone(), "localhost").await;
    fetch_ok(addr, by_ca.clone(), "127.0.0.1").await;
    let err = fetch(addr, by_ca.clone(), "elsewhere.example", "/").await.unwrap_err();
    assert!(err.starts_with("TLS handshake with elsewhere.example: invalid peer certificate: "));
    assert!(err.contains("certificate not valid for name \"elsewhere.example\""), "{err}");

    fetch_ok(addr, client_config(&pin(&a), None).unwrap(), "localhost").await;
    // pinned, but the leaf must still name the host
    let err = fetch(addr, client_config(&pin(&a), None).unwrap(), "elsewhere.example", "/")
        .await
        .unwrap_err();
    assert!(err.contains("certificate not valid for name \"elsewhere.example\""), "{err}");

    let wrong = client_config(&Trust::Pin([7; 32]), None).unwrap();
    assert_eq!(
        fetch(addr, wrong, "localhost", "/").await.unwrap_err(),
        "TLS handshake with localhost: invalid peer certificate: Other(OtherError(Custom { kind: \
         Other, error: \"no certificate of the server's chain has the pinned fingerprint\" }))"
    );

    let system = client_config(&Trust::System, None).unwrap();
    assert_eq!(
        fetch(addr, system, "localhost", "/").await.unwrap_err(),
        "TLS handshake with localhost: invalid peer certificate: UnknownIssuer"
    );

    // the default is TLS 1.3; a client that speaks only TLS 1.2 is served too
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connect(by_ca, "localhost", tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(&a.ca_file).unwrap()).unwrap();
    let tls12 = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tls12 = Arc::new(tls12);
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connect(tls12.clone(), "localhost", tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.protocol_version(), Some(ProtocolVersion::TLSv1_2));
    assert_eq!(tls.get_ref().1.alpn_protocol(), None, "the client offered no ALPN");
    fetch_ok(addr, tls12, "localhost").await;
}

#[tokio::test]
async fn mutual_tls_requires_a_certificate_of_the_client_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let a = auto(&tmp.path().join("a"), &[]).unwrap();
    let other = tmp.path().join("other");
    auto(&other, &[]).unwrap();
    let server_files = ServerFiles { client_ca_file: Some(a.ca_file.clone()), ..files(&a) };
    let addr = serve(ServerTls::load(&server_files).unwrap()).await;
    let trust = Trust::CaFile(a.ca_file.clone());

    let anonymous = client_config(&trust, None).unwrap();
    let err = fetch(addr, anonymous, "localhost", "/").await.unwrap_err();
    refused(&err, "CertificateRequired");

    let (cert_pem, key_pem) = sign_client(&tmp.path().join("a"), "agent-1", 30).unwrap();
    let leaf = CertificateDer::pem_slice_iter(cert_pem.as_bytes()).next().unwrap().unwrap();
    let identity = Identity { cert_pem: cert_pem.into_bytes(), key_pem: key_pem.into_bytes() };
    let signed = client_config(&trust, Some(&identity)).unwrap();
    assert_eq!(
        fetch(addr, signed, "localhost", "/peer").await.unwrap(),
        (200, fingerprint(&leaf)),
        "the handler sees the client certificate"
    );

    let (cert_pem, key_pem) = sign_client(&other, "intruder", 30).unwrap();
    let identity = Identity { cert_pem: cert_pem.into_bytes(), key_pem: key_pem.into_bytes() };
    let stranger = client_config(&trust, Some(&identity)).unwrap();
    let err = fetch(addr, stranger, "localhost", "/").await.unwrap_err();
    refused(&err, "UnknownCA");

    // without a client CA the handler sees no client certificate
    let addr = serve(ServerTls::load(&files(&a)).unwrap()).await;
    let plain = client_config(&trust, None).unwrap();
    assert_eq!(fetch(addr, plain, "localhost", "/peer").await.unwrap(), (200, "none".to_string()));

    let mismatched = Identity {
        cert_pem: std::fs::read(&a.cert_file).unwrap(),
        key_pem: std::fs::read(tmp.path().join("other/server.key")).unwrap(),
    };
    assert_eq!(
        client_config(&trust, Some(&mismatched)).unwrap_err(),
        "the client key is not the key of the client certificate"
    );
}

/// Writes `bytes` to `path` with a modification time different from the one it had.
fn replace(path: &Path, bytes: &[u8]) {
    let before = std::fs::metadata(path).unwrap().modified().unwrap();
    std::fs::write(path, bytes).unwrap();
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(before + Duration::from_secs(5)).unwrap();
}

#[tokio::test]
async fn reload_serves_new_files_and_keeps_the_old_config_on_a_broken_one() {
    let tmp = tempfile::tempdir().unwrap();
    let old = auto(&tmp.path().join("old"), &[]).unwrap();
    let new = auto(&tmp.path().join("new"), &[]).unwrap();
    let served = ServerFiles {
        cert_file: tmp.path().join("server.pem"),
        key_file: tmp.path().join("server.key"),
        client_ca_file: None,
    };
    std::fs::copy(&old.cert_file, &served.cert_file).unwrap();
    std::fs::copy(&old.key_file, &served.key_file).unwrap();
    let addr = serve(ServerTls::load(&served).unwrap()).await;
    let trusts_old = client_config(&pin(&old), None).unwrap();
    let trusts_new = client_config(&pin(&new), None).unwrap();
    fetch_ok(addr, trusts_old.clone(), "localhost").await;
    assert!(fetch(addr, trusts_new.clone(), "localhost", "/").await.is_err());

    replace(&served.cert_file, &std::fs::read(&new.cert_file).unwrap());
    replace(&served.key_file, &std::fs::read(&new.key_file).unwrap());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    fetch_ok(addr, trusts_new.clone(), "localhost").await;
    assert!(fetch(addr, trusts_old.clone(), "localhost", "/").await.is_err());

    let started = SystemTime::now();
    replace(&served.cert_file, b"-----BEGIN CERTIFICATE-----\nbroken\n");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    fetch_ok(addr, trusts_new.clone(), "localhost").await;
    fetch_ok(addr, trusts_new.clone(), "localhost").await;
    assert!(started.elapsed().unwrap() >= Duration::from_secs(1));

    // a failed reload is tried again when the files change again
    replace(&served.cert_file, &std::fs::read(&old.cert_file).unwrap());
    replace(&served.key_file, &std::fs::read(&old.key_file).unwrap());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    fetch_ok(addr, trusts_old, "localhost").await;
    assert!(fetch(addr, trusts_new, "localhost", "/").await.is_err());
}

#[tokio::test]
async fn a_silent_client_blocks_no_one() {
    let tmp = tempfile::tempdir().unwrap();
    let a = auto(tmp.path(), &[]).unwrap();
    let addr = serve(ServerTls::load(&files(&a)).unwrap()).await;
    // two connections that never send a byte, and one that stops half-way into a ClientHello
    let _silent1 = TcpStream::connect(addr).await.unwrap();
    let _silent2 = TcpStream::connect(addr).await.unwrap();
    let partial = TcpStream::connect(addr).await.unwrap();
    partial.writable().await.unwrap();
    assert_eq!(partial.try_write(&[0x16, 0x03, 0x01, 0x01, 0x00, 0x01]).unwrap(), 6);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let config = client_config(&Trust::CaFile(a.ca_file.clone()), None).unwrap();
    tokio::time::timeout(Duration::from_secs(2), fetch_ok(addr, config, "localhost"))
        .await
        .expect("served while other handshakes hang");
}
