//! The outbound HTTP client (the notifier, remote_write out, the query fan-out, etcd): one `POST` of a JSON body per call, over a new HTTP/1.1
//! connection, `http://` or `https://` (rustls with ring and the Mozilla roots from
//! `webpki-roots`; no client certificates, no proxies, no redirects). One timeout covers
//! connecting, the TLS handshake, sending and reading the answer, whose body is read up to
//! [`MAX_ANSWER_BYTES`] for the error message.
//!
//! [`Failure`] tells the delivery loop whether trying again can help: connection errors,
//! timeouts, 5xx and 429 answers can; other 4xx answers cannot.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// The most of an answer's body read (into error messages).
pub const MAX_ANSWER_BYTES: usize = 64 << 10;

/// A parsed `http(s)://host[:port][/path][?query]` URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

impl Url {
    /// Errors say what is wrong with the URL (without repeating secrets in its path is not
    /// possible: Slack's webhook URLs are secrets, so the path is left out of messages).
    pub fn parse(s: &str) -> Result<Url, String> {
        let (tls, rest) = if let Some(r) = s.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(format!("{:?} is not an http:// or https:// URL", shorten(s)));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') { format!("/{path}") } else { path.to_string() };
        if path.contains('#') {
            return Err(format!("{:?} has a fragment (#...)", shorten(s)));
        }
        if authority.is_empty() || authority.contains('@') {
            return Err(format!(
                "{:?} has no host, or has user information (not supported)",
                shorten(s)
            ));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(h) = authority.strip_prefix('[') {
            let (h, rest) =
                h.split_once(']').ok_or_else(|| format!("{:?}: unclosed [", shorten(s)))?;
            let port = match rest.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| format!("{:?}: bad port {p:?}", shorten(s)))?,
                None => default_port,
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_string(),
                    p.parse().map_err(|_| format!("{:?}: bad port {p:?}", shorten(s)))?,
                ),
                None => (authority.to_string(), default_port),
            }
        };
        if host.is_empty() || port == 0 {
            return Err(format!("{:?} has no host or a zero port", shorten(s)));
        }
        Ok(Url { tls, host, port, path })
    }

    /// `host:port` as it goes in the `Host` header and in messages.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URL without its path (which may hold a secret token), for messages.
    pub fn origin(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.authority())
    }

    /// This URL with `suffix` appended to its path.
    pub fn join(&self, suffix: &str) -> Url {
        Url { path: format!("{}{suffix}", self.path.trim_end_matches('/')), ..self.clone() }
    }
}

/// The scheme and host of a URL-ish string, for messages that must not show a secret path.
fn shorten(s: &str) -> String {
    match s.find("://") {
        Some(i) => {
            let rest = &s[i + 3..];
            let end = rest.find('/').map(|j| i + 3 + j).unwrap_or(s.len());
            if end < s.len() { format!("{}/...", &s[..end]) } else { s.to_string() }
        }
        None => s.chars().take(40).collect(),
    }
}

/// Why a POST failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    /// Trying again may succeed.
    pub retry: bool,
}

/// The TLS client setup, made once: ring, the safe default protocol versions, Mozilla's roots.
fn tls_config() -> Result<Arc<tokio_rustls::rustls::ClientConfig>, String> {
    use tokio_rustls::rustls;
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
                .map_err(|e| format!("cannot set up TLS: {e}"))
        })
        .clone()
}

/// POSTs `value` as JSON to the URL `url` (checked when the config was read).
pub async fn post_json(
    url: &str,
    value: &impl serde::Serialize,
    timeout: Duration,
) -> Result<(), Failure> {
    let url = Url::parse(url).map_err(|message| Failure { message, retry: false })?;
    let body = serde_json::to_vec(value).map_err(|e| Failure {
        message: format!("cannot encode the payload: {e}"),
        retry: false,
    })?;
    post(&url, "application/json", &[], body, timeout).await.map(|_| ())
}

/// POSTs `body` to `url` with the given content type and extra headers; `Ok` with the answer's
/// status for a 2xx answer.
pub async fn post(
    url: &Url,
    content_type: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<u16, Failure> {
    post_reading(url, content_type, headers, body, timeout, 0).await.map(|(status, _)| status)
}

/// [`post`], also reading a 2xx answer's body, up to `max_answer` bytes (more is an error
/// that can be retried).
pub async fn post_reading(
    url: &Url,
    content_type: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    timeout: Duration,
    max_answer: usize,
) -> Result<(u16, Bytes), Failure> {
    post_reading_with(url, content_type, headers, body, timeout, max_answer, None).await
}

/// The TLS setup of an outbound `https://` call; `None`: Mozilla's roots.
pub type Tls = Option<Arc<tokio_rustls::rustls::ClientConfig>>;

/// [`post_reading`] over `tls` (for peers with a CA of their own: etcd, the stores of a query
/// node).
#[allow(clippy::too_many_arguments)] // one call's parts; a struct would only be unpacked here
pub async fn post_reading_with(
    url: &Url,
    content_type: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    timeout: Duration,
    max_answer: usize,
    tls: Tls,
) -> Result<(u16, Bytes), Failure> {
    let call = post_inner(url, content_type, headers, body, max_answer, tls);
    match tokio::time::timeout(timeout, call).await {
        Ok(r) => r,
        Err(_) => Err(Failure {
            message: format!("POST {}: no answer within {timeout:?}", url.origin()),
            retry: true,
        }),
    }
}

async fn post_inner(
    url: &Url,
    content_type: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    max_answer: usize,
    tls: Tls,
) -> Result<(u16, Bytes), Failure> {
    let target = url.origin();
    let transient = |message: String| Failure { message, retry: true };
    let stream = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| transient(format!("cannot connect to {target}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let mut req = hyper::Request::post(&url.path)
        .header(hyper::header::HOST, url.authority())
        .header(hyper::header::CONTENT_TYPE, content_type)
        .header(hyper::header::USER_AGENT, concat!("Ocelli/", env!("CARGO_PKG_VERSION")));
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let req = req.body(Full::new(Bytes::from(body))).map_err(|e| Failure {
        message: format!("cannot build the request to {target}: {e}"),
        retry: false,
    })?;
    let resp = if url.tls {
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(url.host.clone())
            .map_err(|e| Failure {
                message: format!("{target}: bad TLS server name: {e}"),
                retry: false,
            })?;
        let config = match tls {
            Some(c) => c,
            None => tls_config().map_err(|message| Failure { message, retry: false })?,
        };
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, stream)
            .await
            .map_err(|e| transient(format!("TLS handshake with {target}: {e}")))?;
        send(TokioIo::new(tls), req, &target).await?
    } else {
        send(TokioIo::new(stream), req, &target).await?
    };
    let (parts, body) = resp.into_parts();
    let status = parts.status.as_u16();
    if parts.status.is_success() {
        if max_answer == 0 {
            return Ok((status, Bytes::new()));
        }
        return match Limited::new(body, max_answer).collect().await {
            Ok(b) => Ok((status, b.to_bytes())),
            Err(e) => Err(transient(format!(
                "POST {target}: reading the answer (at most {max_answer} bytes): {e}"
            ))),
        };
    }
    let text = match Limited::new(body, MAX_ANSWER_BYTES).collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).trim().chars().take(512).collect(),
        Err(_) => String::new(),
    };
    let retry = parts.status.is_server_error() || status == 429;
    let message = if text.is_empty() {
        format!("POST {target}: HTTP status {status}")
    } else {
        format!("POST {target}: HTTP status {status}: {text}")
    };
    Err(Failure { message, retry })
}

async fn send<IO>(
    io: IO,
    req: hyper::Request<Full<Bytes>>,
    target: &str,
) -> Result<hyper::Response<hyper::body::Incoming>, Failure>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let transient = |message: String| Failure { message, retry: true };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| transient(format!("HTTP handshake with {target}: {e}")))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    sender.send_request(req).await.map_err(|e| transient(format!("POST {target}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("https://hooks.slack.com/services/T0/B0/XYZ").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (true, "hooks.slack.com", 443, "/services/T0/B0/XYZ")
        );
        assert_eq!(u.origin(), "https://hooks.slack.com:443");
        let u = Url::parse("http://127.0.0.1:9093").unwrap();
        assert_eq!((u.port, u.path.as_str()), (9093, "/"));
        assert_eq!(u.join("/api/v2/alerts").path, "/api/v2/alerts");
        let u = Url::parse("http://[::1]:8080/hook?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.authority(), u.path.as_str()),
            ("::1", "[::1]:8080".to_string(), "/hook?x=1")
        );
        assert_eq!(
            Url::parse("ftp://x/secret").unwrap_err(),
            "\"ftp://x/...\" is not an http:// or https:// URL"
        );
        assert_eq!(
            Url::parse("http://h:99999/a").unwrap_err(),
            "\"http://h:99999/...\": bad port \"99999\""
        );
        assert!(Url::parse("http://user@h/").is_err());
        assert!(Url::parse("http:///x").is_err());
    }

    #[tokio::test]
    async fn a_closed_port_is_a_transient_failure() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let u = Url::parse(&format!("http://127.0.0.1:{port}/x")).unwrap();
        let e = post(&u, "application/json", &[], b"{}".to_vec(), Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(e.retry);
        assert!(
            e.message.starts_with(&format!("cannot connect to http://127.0.0.1:{port}: ")),
            "{}",
            e.message
        );
    }

    #[tokio::test]
    async fn https_to_a_plain_server_fails_in_the_handshake() {
        // a listener that answers plain text: the TLS handshake must fail, not hang
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            use std::io::Write;
            if let Ok((mut s, _)) = l.accept() {
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
            }
        });
        let u = Url::parse(&format!("https://127.0.0.1:{port}/x")).unwrap();
        let e = post(&u, "application/json", &[], b"{}".to_vec(), Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            e.message.starts_with(&format!("TLS handshake with https://127.0.0.1:{port}: ")),
            "{}",
            e.message
        );
    }
}
