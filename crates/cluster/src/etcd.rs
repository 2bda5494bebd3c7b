//! A small etcd v3 client over etcd's HTTP/JSON gateway (`/v3/lease/grant`,
//! `/v3/lease/keepalive`, `/v3/lease/revoke`, `/v3/kv/put`, `/v3/kv/range`), which etcd 3.4
//! (Debian's `etcd-server`) serves on its client port.
//!
//! Written by hand because the `etcd-client` crate speaks gRPC with code generated at build
//! time by `protoc`, a system package a fresh clone's `cargo test` should not need; the few
//! calls the collectors make are plain JSON POSTs (keys and values base64, 64-bit numbers as
//! strings, as the gateway's JSON mapping has them). Each call tries the endpoints in turn
//! until one answers.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use ocelli_http::client::{Tls, Url, post_reading_with};

/// Answers are small (a member list of a few hundred collectors at most).
const MAX_ANSWER: usize = 4 << 20;

/// Clients to the same cluster, tried in order.
#[derive(Clone, Debug)]
pub struct Etcd {
    endpoints: Vec<Url>,
    timeout: Duration,
    /// For `https://` endpoints: the cluster's CA (`etcd_ca_file`), else Mozilla's roots.
    tls: Tls,
}

/// One key and value, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

fn unb64(v: &Value) -> Result<String, String> {
    let s = v.as_str().unwrap_or("");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("etcd answer: bad base64 {s:?}: {e}"))?;
    String::from_utf8(bytes).map_err(|_| "etcd answer: a key or value is not UTF-8".into())
}

/// A 64-bit number of an answer: a JSON string (the gateway's int64 mapping) or a number.
fn int(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// The first key after every key starting with `prefix` (etcd's `range_end` for a prefix).
fn prefix_end(prefix: &str) -> String {
    let mut b = prefix.as_bytes().to_vec();
    while let Some(last) = b.pop() {
        if last < 0xff {
            b.push(last + 1);
            return String::from_utf8_lossy(&b).into_owned();
        }
    }
    "\0".into()
}

impl Etcd {
    /// Endpoints like `http://127.0.0.1:2379`; errors name the bad one.
    pub fn new(endpoints: &[String], timeout: Duration) -> Result<Etcd, String> {
        if endpoints.is_empty() {
            return Err("no etcd endpoint".into());
        }
        let endpoints = endpoints
            .iter()
            .map(|e| Url::parse(e.trim_end_matches('/')).map_err(|m| format!("{e:?}: {m}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Etcd { endpoints, timeout, tls: None })
    }

    /// The same client trusting the CA in `ca_file` (PEM) for `https://` endpoints.
    pub fn with_ca_file(mut self, ca_file: Option<&std::path::Path>) -> Result<Etcd, String> {
        if let Some(f) = ca_file {
            let trust = ocelli_tls::Trust::CaFile(f.to_path_buf());
            self.tls = Some(ocelli_tls::client_config(&trust, None)?);
        }
        Ok(self)
    }

    async fn call(&self, path: &str, body: Value) -> Result<Value, String> {
        let mut errors = Vec::new();
        for ep in &self.endpoints {
            let url = ep.join(path);
            let body = body.to_string().into_bytes();
            let tls = self.tls.clone();
            match post_reading_with(
                &url,
                "application/json",
                &[],
                body,
                self.timeout,
                MAX_ANSWER,
                tls,
            )
            .await
            {
                Ok((_, answer)) => {
                    // a streamed answer (keepalive) is one JSON object per line; take the first
                    let first =
                        answer.split(|b| *b == b'\n').find(|l| !l.is_empty()).unwrap_or(&[]);
                    let v: Value = serde_json::from_slice(first)
                        .map_err(|e| format!("etcd {}: not JSON: {e}", url.origin()))?;
                    if let Some(err) = v.get("error") {
                        return Err(format!("etcd {}{path}: {err}", url.origin()));
                    }
                    return Ok(v);
                }
                Err(f) => errors.push(f.message),
            }
        }
        Err(format!("no etcd endpoint answered: {}", errors.join("; ")))
    }

    /// Grants a lease of `ttl` (whole seconds, at least 1); its id.
    pub async fn grant(&self, ttl: Duration) -> Result<i64, String> {
        let v = self.call("/v3/lease/grant", json!({ "TTL": ttl.as_secs().max(1) })).await?;
        int(&v["ID"]).ok_or_else(|| format!("etcd lease grant: no ID in {v}"))
    }

    /// Renews a lease; `false` when it has expired (the caller must grant a new one).
    pub async fn keep_alive(&self, lease: i64) -> Result<bool, String> {
        let v = self.call("/v3/lease/keepalive", json!({ "ID": lease.to_string() })).await?;
        let result = v.get("result").unwrap_or(&v);
        Ok(int(&result["TTL"]).is_some_and(|ttl| ttl > 0))
    }

    /// Ends a lease now; its keys go at once.
    pub async fn revoke(&self, lease: i64) -> Result<(), String> {
        self.call("/v3/lease/revoke", json!({ "ID": lease.to_string() })).await.map(|_| ())
    }

    /// Puts `key` = `value`, attached to `lease` (0: none).
    pub async fn put(&self, key: &str, value: &str, lease: i64) -> Result<(), String> {
        let mut body = json!({ "key": b64(key), "value": b64(value) });
        if lease != 0 {
            body["lease"] = json!(lease.to_string());
        }
        self.call("/v3/kv/put", body).await.map(|_| ())
    }

    /// Puts `puts` and deletes `deletes` in one transaction (all or nothing).
    pub async fn txn(&self, puts: &[(String, String)], deletes: &[String]) -> Result<(), String> {
        let ops: Vec<Value> = puts
            .iter()
            .map(|(k, v)| json!({ "requestPut": { "key": b64(k), "value": b64(v) } }))
            .chain(deletes.iter().map(|k| json!({ "requestDeleteRange": { "key": b64(k) } })))
            .collect();
        let v = self.call("/v3/kv/txn", json!({ "success": ops })).await?;
        if v.get("succeeded").and_then(Value::as_bool) == Some(true) {
            Ok(())
        } else {
            Err(format!("etcd transaction did not succeed: {v}"))
        }
    }

    /// Every key starting with `prefix`, in key order.
    pub async fn get_prefix(&self, prefix: &str) -> Result<Vec<KeyValue>, String> {
        let body = json!({ "key": b64(prefix), "range_end": b64(&prefix_end(prefix)) });
        let v = self.call("/v3/kv/range", body).await?;
        let mut out = Vec::new();
        for kv in v["kvs"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
            out.push(KeyValue { key: unb64(&kv["key"])?, value: unb64(&kv["value"])? });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_and_numbers() {
        assert_eq!(prefix_end("/ocelli/collectors/"), "/ocelli/collectors0");
        assert_eq!(prefix_end("a"), "b");
        assert_eq!(int(&json!("7587868")), Some(7_587_868));
        assert_eq!(int(&json!(12)), Some(12));
        assert_eq!(int(&json!(null)), None);
        assert_eq!(unb64(&json!(b64("/x/y"))).unwrap(), "/x/y");
        assert!(unb64(&json!("!!")).is_err());
        assert!(Etcd::new(&[], Duration::from_secs(1)).is_err());
        assert!(Etcd::new(&["ftp://x".into()], Duration::from_secs(1)).is_err());
    }
}
