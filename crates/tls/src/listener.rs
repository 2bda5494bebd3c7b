//! `TlsListener`: axum 0.8's `Listener` over a `TcpListener` that serves TLS. Each accepted TCP
//! connection gets its handshake in its own task, under a 10 s timeout, with the config
//! `ServerTls::current` hands at that moment (so a reloaded certificate serves the next
//! connection); finished streams come back to `accept` through a channel. A client that connects
//! and sends nothing, or handshakes slowly, holds only its own task: it never blocks the accept
//! loop or another client. A failed handshake is logged at debug level and dropped.
//!
//! `Peer` is the connection info a handler can ask for (`ConnectInfo<Peer>`): the remote address
//! and the client certificate, when mutual TLS is on.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::server::TlsStream;

use crate::ServerTls;

/// How long a client has to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Finished handshakes waiting for `accept`; a handshake task waits when this many are queued.
const QUEUE: usize = 64;

/// A TLS listener for `axum::serve`: TCP accepted here, handshakes completed in spawned tasks.
pub struct TlsListener {
    tcp: TcpListener,
    tls: ServerTls,
    done_tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    done_rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener").field("local_addr", &self.tcp.local_addr().ok()).finish()
    }
}

impl TlsListener {
    /// Wraps a bound TCP listener; fails only when the listener has no local address.
    pub fn new(tcp: TcpListener, tls: ServerTls) -> std::io::Result<TlsListener> {
        tcp.local_addr()?;
        let (done_tx, done_rx) = mpsc::channel(QUEUE);
        Ok(TlsListener { tcp, tls, done_tx, done_rx })
    }

    /// Starts the handshake of one accepted connection in its own task.
    fn handshake(&self, stream: TcpStream, addr: SocketAddr) {
        let acceptor = TlsAcceptor::from(self.tls.current());
        let done = self.done_tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    // fails only when the listener is gone: the connection is dropped with it
                    let _ = done.send((tls, addr)).await;
                }
                Ok(Err(error)) => tracing::debug!(%addr, %error, "TLS handshake failed"),
                Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
            }
        });
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                // never None: `self` holds a sender
                Some(done) = self.done_rx.recv() => return done,
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, addr)) => self.handshake(stream, addr),
                    Err(error) => accept_error(error).await,
                },
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// As axum's own `TcpListener` does: a connection that failed before it was accepted is
/// skipped; anything else (out of file descriptors, say) is logged and waited out for a second
/// so the loop does not spin.
async fn accept_error(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(error.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset) {
        return;
    }
    tracing::error!(%error, "accepting a TCP connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// A connection's peer, for handlers: `router.into_make_service_with_connect_info::<Peer>()`
/// and then the `ConnectInfo<Peer>` extractor.
#[derive(Clone, Debug)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// The client's certificate (the leaf of its chain), when it presented one.
    pub client_cert: Option<CertificateDer<'static>>,
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        let client_cert = stream
            .io()
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|c| c.clone().into_owned());
        Peer { addr: *stream.remote_addr(), client_cert }
    }
}
