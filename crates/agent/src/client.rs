//! The agent's HTTP client to the server: `http://` or `https://` URLs (rustls with ring, trusting
//! what [`ocelli_tls::Trust`] says: Mozilla's roots, a CA file or a pinned CA fingerprint), a
//! bearer token on every request when it has one, one kept-alive HTTP/1.1 connection per
//! [`Client`], a timeout over connect, handshake, send and the whole answer, and answers
//! capped in size. The push output and the heartbeat each own one; the `ocelli` command-line
//! client uses one too, with other methods and a larger answer cap.
//!
//! Deliberately absent: redirects, proxies, HTTP/2.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::{Error, Result};

/// The largest answer body read from the server.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// A parsed server base URL: `http(s)://host:port[/prefix]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerUrl {
    /// `https://`.
    pub tls: bool,
    /// The host as the certificate must name it (brackets of an IPv6 literal removed).
    pub host: String,
    /// `host:port`, to connect to and for the `Host` header.
    pub authority: String,
    /// The path prefix without a trailing slash (`""` for none).
    pub prefix: String,
}

impl ServerUrl {
    pub fn parse(url: &str) -> Result<ServerUrl> {
        let bad = |why: &str| Error::Config(format!("server: {url:?} {why}"));
        let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            return Err(bad("is not an http:// or https:// URL (expected https://host:port)"));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad("has no host (expected http://host:port)"));
        }
        if path.contains(['?', '#']) {
            return Err(bad("has a query or fragment; give the base URL only"));
        }
        let (host, authority) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                if p.parse::<u16>().is_err() {
                    return Err(bad("has a port that is not a number in 1..=65535"));
                }
                (h.to_string(), authority.to_string())
            }
            _ => (authority.to_string(), format!("{authority}:{}", if tls { 443 } else { 80 })),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        Ok(ServerUrl { tls, host, authority, prefix: path.trim_end_matches('/').to_string() })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// The full path of an endpoint below the base URL.
    pub fn path(&self, endpoint: &str) -> String {
        format!("{}{endpoint}", self.prefix)
    }
}

/// A server's answer: status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

/// One kept-alive connection to the server, reopened when it breaks.
pub struct Client {
    url: ServerUrl,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
    max_answer_bytes: usize,
    /// The TLS setup for an `https://` URL.
    tls: Option<Arc<ocelli_tls::rustls::ClientConfig>>,
    /// `Authorization` header value (`Bearer <token>`).
    authorization: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never the token
        f.debug_struct("Client")
            .field("url", &self.url)
            .field("token", &self.authorization.is_some())
            .finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(url: ServerUrl, timeout: Duration) -> Client {
        Client {
            url,
            timeout,
            sender: None,
            max_answer_bytes: MAX_ANSWER_BYTES,
            tls: None,
            authorization: None,
        }
    }

    /// The same client trusting `trust` for `https://` (default: Mozilla's roots).
    pub fn with_trust(mut self, trust: &ocelli_tls::Trust) -> Result<Client> {
        self.tls = Some(ocelli_tls::client_config(trust, None).map_err(Error::Config)?);
        Ok(self)
    }

    /// The same client sending `Authorization: Bearer <token>` on every request.
    pub fn with_token(mut self, token: Option<&str>) -> Client {
        self.authorization = token.map(|t| format!("Bearer {t}"));
        self
    }

    /// The same client with another cap on the answer body (default 1 MiB).
    pub fn with_max_answer_bytes(mut self, max: usize) -> Client {
        self.max_answer_bytes = max;
        self
    }

    pub fn url(&self) -> &ServerUrl {
        &self.url
    }

    /// POSTs `body` to `endpoint` with the given headers; any status is an `Ok` answer, a
    /// connection failure or timeout is an error naming the server.
    pub async fn post(
        &mut self,
        endpoint: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Answer> {
        self.request(hyper::Method::POST, endpoint, headers, body).await
    }

    /// Sends `method endpoint` (the endpoint may carry a query string) with the given headers
    /// and body; any status is an `Ok` answer, a connection failure or timeout is an error
    /// naming the server.
    pub async fn request(
        &mut self,
        method: hyper::Method,
        endpoint: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Answer> {
        let timeout = self.timeout;
        let exchange = self.exchange(method.clone(), endpoint, headers, body);
        match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => {
                self.sender = None;
                Err(Error::Http(format!(
                    "{method} {}://{}{}: no answer within {} s",
                    self.url.scheme(),
                    self.url.authority,
                    self.url.path(endpoint),
                    timeout.as_secs()
                )))
            }
        }
    }

    async fn exchange(
        &mut self,
        method: hyper::Method,
        endpoint: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Answer> {
        let path = self.url.path(endpoint);
        let what = format!("{method} {}://{}{path}", self.url.scheme(), self.url.authority);
        let reusable = match self.sender.take() {
            Some(mut s) => s.ready().await.is_ok().then_some(s),
            None => None,
        };
        let mut sender = match reusable {
            Some(s) => s,
            None => {
                let tls = match (self.url.tls, &self.tls) {
                    (false, _) => None,
                    (true, Some(c)) => Some(c.clone()),
                    (true, None) => Some(
                        ocelli_tls::client_config(&ocelli_tls::Trust::System, None)
                            .map_err(Error::Config)?,
                    ),
                };
                connect(&self.url, tls).await?
            }
        };
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.url.authority)
            .header(hyper::header::USER_AGENT, concat!("ocelli-agent/", env!("CARGO_PKG_VERSION")));
        if let Some(a) = &self.authorization {
            req = req.header(hyper::header::AUTHORIZATION, a);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Error::Internal(format!("building {what}: {e}")))?;
        let resp =
            sender.send_request(req).await.map_err(|e| Error::Http(format!("{what}: {e}")))?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, self.max_answer_bytes)
            .collect()
            .await
            .map_err(|e| Error::Http(format!("{what}: reading the answer: {e}")))?
            .to_bytes();
        self.sender = Some(sender);
        Ok(Answer { status: parts.status.as_u16(), body })
    }
}

async fn connect(
    url: &ServerUrl,
    tls: Option<Arc<ocelli_tls::rustls::ClientConfig>>,
) -> Result<SendRequest<Full<Bytes>>> {
    let authority = &url.authority;
    let stream = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| Error::Http(format!("cannot connect to {authority}: {e}")))?;
    let _ = stream.set_nodelay(true);
    let stream = ocelli_tls::connect_stream(stream, tls.map(|c| (c, url.host.as_str())))
        .await
        .map_err(|e| Error::Http(format!("TLS with {authority}: {e}")))?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| Error::Http(format!("HTTP handshake with {authority}: {e}")))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls() {
        let u = ServerUrl::parse("http://10.0.0.1:9747").unwrap();
        assert_eq!(u.authority, "10.0.0.1:9747");
        assert_eq!(u.path("/api/v1/write"), "/api/v1/write");
        let u = ServerUrl::parse("http://mon.example/ocelli/").unwrap();
        assert_eq!(u.authority, "mon.example:80");
        assert_eq!(u.path("/api/v1/write"), "/ocelli/api/v1/write");
        let u = ServerUrl::parse("http://[::1]:9747").unwrap();
        assert_eq!(u.authority, "[::1]:9747");
        let u = ServerUrl::parse("https://mon.example").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.authority.as_str()),
            (true, "mon.example", "mon.example:443")
        );
        let u = ServerUrl::parse("https://[::1]:9747").unwrap();
        assert_eq!(u.host, "::1");
        for (bad, why) in [
            ("ftp://x:1", "is not an http:// or https:// URL"),
            ("x:1", "is not an http:// or https:// URL"),
            ("http://", "has no host"),
            ("http://x:port", "has a port that is not a number"),
            ("http://x:1/?a=b", "has a query"),
        ] {
            let e = ServerUrl::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
