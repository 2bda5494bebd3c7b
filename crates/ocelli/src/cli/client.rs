//! The client's HTTP side: one kept-alive connection to the server (the agent's
//! [`ocelli_agent::client::Client`], `http://` or `https://` trusting `--ca-file`, `--ca-pin`
//! or Mozilla's roots, with `--token` as a bearer token), and the reading of the server's
//! answers: `{"status":"success","data":...}` gives `data`, Alertmanager-shaped answers (the
//! silences) are taken whole, and an error status becomes [`Failure::Server`] with the server's
//! own message. A connection that fails or times out is [`Failure::Unreachable`].
//!
//! Deliberately absent: redirects, retries.

use std::time::Duration;

use hyper::Method;
use ocelli_agent::client::{Answer, Client, ServerUrl};
use serde_json::Value;

use super::{Conn, Failure, Result};

/// The largest answer read (a big range query or `/metrics`).
const MAX_ANSWER_BYTES: usize = 256 << 20;

/// The server, as the verbs talk to it.
#[derive(Debug)]
pub struct Api {
    client: Client,
    /// The base URL as given, for messages.
    url: String,
}

impl Api {
    /// Checks `--server` and `--timeout`; nothing is connected yet.
    pub fn new(conn: &Conn) -> Result<Api> {
        let url = conn.server.trim_end_matches('/').to_string();
        let parsed = ServerUrl::parse(&url).map_err(|e| Failure::Usage(format!("--{e}")))?;
        let timeout = super::duration_flag("--timeout", &conn.timeout)?;
        let timeout = Duration::from_millis(u64::try_from(timeout).unwrap_or(u64::MAX));
        let trust = match (&conn.ca_file, &conn.ca_pin) {
            (Some(f), _) => ocelli_tls::Trust::CaFile(f.clone()),
            (None, Some(p)) => ocelli_tls::Trust::Pin(
                ocelli_tls::parse_pin(p).map_err(|e| Failure::Usage(format!("--ca-pin: {e}")))?,
            ),
            (None, None) => ocelli_tls::Trust::System,
        };
        if !parsed.tls && (conn.ca_file.is_some() || conn.ca_pin.is_some()) {
            return Err(Failure::Usage(format!(
                "--ca-file and --ca-pin are for https; --server {url} is http"
            )));
        }
        let mut client = Client::new(parsed.clone(), timeout)
            .with_max_answer_bytes(MAX_ANSWER_BYTES)
            .with_token(conn.token.as_deref());
        if parsed.tls {
            client = client.with_trust(&trust).map_err(|e| Failure::Usage(e.to_string()))?;
        }
        Ok(Api { client, url })
    }

    /// The base URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends a request; any status is an answer, a failed connection is `Unreachable`.
    pub async fn send(
        &mut self,
        method: Method,
        endpoint: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Answer> {
        self.client
            .request(method, endpoint, headers, body)
            .await
            .map_err(|e| Failure::Unreachable { url: self.url.clone(), reason: e.to_string() })
    }

    /// Sends a request and fails with the server's message unless the status is 2xx.
    pub async fn call(
        &mut self,
        method: Method,
        endpoint: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Answer> {
        let a = self.send(method, endpoint, headers, body).await?;
        if (200..300).contains(&a.status) {
            Ok(a)
        } else {
            Err(Failure::Server(error_message(a.status, &a.body)))
        }
    }

    /// `GET endpoint?params`, answering the `data` of the JSON answer.
    pub async fn get(&mut self, endpoint: &str, params: &[(&str, &str)]) -> Result<Value> {
        let a = self.call(Method::GET, &with_query(endpoint, params), &[], Vec::new()).await?;
        data(endpoint, &a.body)
    }

    /// `GET endpoint` as text (exposition format).
    pub async fn get_text(&mut self, endpoint: &str) -> Result<String> {
        let a = self.call(Method::GET, endpoint, &[], Vec::new()).await?;
        String::from_utf8(a.body.to_vec())
            .map_err(|_| Failure::Local(format!("GET {endpoint}: the answer is not UTF-8 text")))
    }

    /// Sends a JSON body (or none, for `Value::Null`), answering the `data` of the JSON answer
    /// (`Value::Null` for an empty one).
    pub async fn json(&mut self, method: Method, endpoint: &str, body: &Value) -> Result<Value> {
        let (headers, bytes): (&[(&str, &str)], Vec<u8>) = match body {
            Value::Null => (&[], Vec::new()),
            b => (&[("content-type", "application/json")], b.to_string().into_bytes()),
        };
        let a = self.call(method, endpoint, headers, bytes).await?;
        data(endpoint, &a.body)
    }
}

/// `endpoint?k=v&...` with the values form-encoded.
pub fn with_query(endpoint: &str, params: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        q.append_pair(k, v);
    }
    let q = q.finish();
    if q.is_empty() { endpoint.to_string() } else { format!("{endpoint}?{q}") }
}

/// One path segment, percent-encoded except for the characters keys and ids are made of.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `data` of a Prometheus-shaped success answer, or the whole JSON answer when it has
/// another shape; `Null` for an empty body.
fn data(endpoint: &str, body: &[u8]) -> Result<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Failure::Local(format!("{endpoint}: the server's answer is not JSON: {e}")))?;
    match v {
        Value::Object(mut m) if m.get("status").and_then(Value::as_str) == Some("success") => {
            Ok(m.remove("data").unwrap_or(Value::Null))
        }
        v => Ok(v),
    }
}

/// The server's message for an error answer: the `error` of a Prometheus-shaped body, else the
/// start of the body, else the status.
fn error_message(status: u16, body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body)
        && let Some(e) = v.get("error").and_then(Value::as_str)
    {
        return e.to_string();
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return format!("the server answered {status} with no message");
    }
    let mut cut: String = text.chars().take(300).collect();
    if cut.len() < text.len() {
        cut.push_str("...");
    }
    format!("the server answered {status}: {cut}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_errors() {
        let ok = br#"{"status":"success","data":[1,2]}"#;
        assert_eq!(data("/x", ok).unwrap(), serde_json::json!([1, 2]));
        assert_eq!(data("/x", br#"{"silenceID":"a"}"#).unwrap()["silenceID"], "a");
        assert_eq!(data("/x", b"").unwrap(), Value::Null);
        assert!(data("/x", b"<html>").unwrap_err().to_string().contains("not JSON"));
        let err = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        assert_eq!(error_message(400, err), "parse error at char 3");
        assert_eq!(error_message(502, b"Bad Gateway\n"), "the server answered 502: Bad Gateway");
        assert_eq!(error_message(500, b""), "the server answered 500 with no message");
    }

    #[test]
    fn queries_and_segments() {
        assert_eq!(with_query("/q", &[("query", "up{a=\"b\"}")]), "/q?query=up%7Ba%3D%22b%22%7D");
        assert_eq!(with_query("/q", &[]), "/q");
        assert_eq!(segment("vm-1.a_b"), "vm-1.a_b");
        assert_eq!(segment("a/b?c"), "a%2Fb%3Fc");
    }

    #[test]
    fn server_flag_is_checked() {
        let conn = |s: &str| Conn {
            server: s.into(),
            output: super::super::Format::Table,
            timeout: "5s".into(),
            token: None,
            ca_file: None,
            ca_pin: None,
        };
        assert!(Api::new(&conn("https://x:1")).is_ok());
        let e = Api::new(&Conn { ca_pin: Some("sha256:00".into()), ..conn("https://x:1") })
            .unwrap_err();
        assert!(e.to_string().starts_with("--ca-pin: "), "{e}");
        assert_eq!(e.exit_code(), 2);
        let e =
            Api::new(&Conn { ca_file: Some("ca.pem".into()), ..conn("http://x:1") }).unwrap_err();
        assert!(e.to_string().contains("are for https"), "{e}");
        let e = Api::new(&conn("x:1")).unwrap_err();
        assert!(e.to_string().starts_with("--server: "), "{e}");
        assert_eq!(
            Api::new(&conn("http://127.0.0.1:9747/")).unwrap().url(),
            "http://127.0.0.1:9747"
        );
    }
}
