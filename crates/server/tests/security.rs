//! Safe across clouds (docs/security.md), end to end on loopback:
//! - a route x credential matrix: every class of route with no token, bad, revoked and expired
//!   tokens, and read, write and admin tokens of namespaces A and B and the operator's, each
//!   with the status it must get, and no series of another namespace in any answer;
//! - writes of a namespace-scoped token land in its namespace whatever the series claim;
//! - generated PromQL through a namespace-scoped token answers exactly what a server holding
//!   only that namespace's data answers (so no `or`, `absent`, `label_replace`, subquery or
//!   regex on `ns` reaches further);
//! - the token API, the audit log and the default posture (no public address without TLS and
//!   auth);
//! - over TLS (`[tls] auto`): a real Prometheus 2.42 remote_writes with a bearer token and
//!   reads with remote_read, promtool queries with the token as basic auth, and an agent enrols
//!   with a join token and a pinned CA and pushes over https; a wrong pin and a used-up join
//!   token are refused.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{config, request, wait};
use ocelli_auth::{NewToken, Scope};
use ocelli_server::{Config, Server};
use serde_json::Value;

/// A server in its own runtime.
struct Running {
    addr: SocketAddr,
    server: Option<Server>,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Running {
    fn start(dir: tempfile::TempDir, c: Config) -> Running {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let server = rt.block_on(Server::start(c)).unwrap();
        Running { addr: server.addr, server: Some(server), rt, _dir: dir }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            let _ = self.rt.block_on(s.stop());
        }
    }
}

/// Makes a token in a stopped server's data directory, as `ocelli token create --data-dir`.
fn token(dir: &Path, ns: Option<&str>, scope: Scope, ttl_ms: Option<i64>) -> String {
    let store = ocelli_auth::Store::open(dir).unwrap();
    let new = NewToken {
        namespace: ns.map(String::from),
        scope: Some(scope),
        ttl_ms,
        ..NewToken::default()
    };
    store.create(new, "local", ocelli_model::time::now_ms()).unwrap().1
}

fn bearer(t: &str) -> String {
    if t.is_empty() { String::new() } else { format!("Authorization: Bearer {t}\r\n") }
}

fn call(addr: SocketAddr, method: &str, path: &str, tok: &str, body: &[u8]) -> (u16, String) {
    request(addr, method, path, &bearer(tok), body)
}

struct Tokens {
    op: String,
    a_read: String,
    a_write: String,
    a_admin: String,
    b_read: String,
    b_write: String,
    revoked: String,
    expired: String,
}

/// Tokens of each kind in a stopped server's `data`, one of them revoked and one expired.
fn tokens(data: &Path) -> Tokens {
    let t = Tokens {
        op: token(data, None, Scope::Admin, None),
        a_read: token(data, Some("a"), Scope::Read, None),
        a_write: token(data, Some("a"), Scope::Write, None),
        a_admin: token(data, Some("a"), Scope::Admin, None),
        b_read: token(data, Some("b"), Scope::Read, None),
        b_write: token(data, Some("b"), Scope::Write, None),
        revoked: token(data, Some("a"), Scope::Read, None),
        expired: token(data, Some("a"), Scope::Read, Some(1)),
    };
    let store = ocelli_auth::Store::open(data).unwrap();
    let id = ocelli_auth::token::parse(&t.revoked).unwrap().to_string();
    assert!(store.revoke(&id, 1).unwrap());
    t
}

/// A server with auth on, three namespaces of data (a, b, c) and tokens of each kind.
fn tenant_server() -> (Running, Tokens) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let t = tokens(&data);
    let mut c = config(&data);
    c.auth.enabled = true;
    let s = Running::start(dir, c);
    // the operator writes each namespace's data with its ns label as given
    let now = ocelli_model::time::now_ms();
    let text = format!(
        "# TYPE sec_metric gauge\n\
         sec_metric{{ns=\"a\",host=\"h1\"}} 1 {now}\nsec_metric{{ns=\"a\",host=\"h2\"}} 2 {now}\n\
         sec_metric{{ns=\"b\",host=\"h1\"}} 1000 {now}\nsec_metric{{ns=\"c\",host=\"h3\"}} 100000 {now}\n\
         # TYPE sec_only_b counter\nsec_only_b{{ns=\"b\"}} 5 {now}\n"
    );
    let (code, body) = call(s.addr, "POST", "/api/v1/import/prometheus", &t.op, text.as_bytes());
    assert_eq!(code, 204, "{body}");
    (s, t)
}

/// What a route needs, as the matrix reads it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Need {
    Public,
    Read,
    Write,
    Admin,
    Operator,
}

const ROUTES: &[(Need, &str, &str, &str)] = &[
    (Need::Public, "GET", "/-/healthy", ""),
    (Need::Public, "GET", "/-/ready", ""),
    (Need::Read, "GET", "/api/v1/query?query=sec_metric", ""),
    (Need::Read, "GET", "/api/v1/query?query=%7B__name__%3D~%22sec_.%2A%22%7D", ""),
    (
        Need::Read,
        "GET",
        "/api/v1/query_range?query=sec_metric&start=0&end=4000000000&step=1000000",
        "",
    ),
    (Need::Read, "GET", "/api/v1/series?match[]=%7B__name__%3D~%22sec_.%2A%22%7D", ""),
    (Need::Read, "GET", "/api/v1/labels", ""),
    (Need::Read, "GET", "/api/v1/label/ns/values", ""),
    (Need::Read, "GET", "/api/v1/label/__name__/values", ""),
    (Need::Read, "GET", "/api/v1/metadata", ""),
    (Need::Read, "GET", "/federate?match[]=%7B__name__%3D~%22sec_.%2A%22%7D", ""),
    (Need::Read, "GET", "/api/v1/query_exemplars?query=sec_metric", ""),
    (Need::Read, "GET", "/api/v1/agents", ""),
    (Need::Read, "GET", "/api/v1/format_query?query=sec_metric", ""),
    (Need::Write, "POST", "/api/v1/import/prometheus", "sec_w 1\n"),
    (Need::Write, "PUT", "/metrics/job/matrix", "sec_pg 1\n"),
    (Need::Admin, "GET", "/api/v1/tokens", ""),
    (Need::Admin, "GET", "/api/v1/audit", ""),
    (Need::Operator, "GET", "/metrics", ""),
    (Need::Operator, "GET", "/api/v1/status/config", ""),
    (Need::Operator, "GET", "/api/v1/status/tsdb", ""),
    (Need::Operator, "POST", "/api/v1/admin/flush", ""),
    (Need::Operator, "POST", "/-/reload", ""),
    (Need::Operator, "GET", "/api/v1/rules", ""),
    (Need::Operator, "GET", "/api/v1/alarms", ""),
    (Need::Operator, "GET", "/api/v1/silences", ""),
    (Need::Operator, "GET", "/api/v1/targets", ""),
    (Need::Operator, "GET", "/api/v1/no-such-route", ""),
];

/// Whether an answer to a token of namespace `ns` shows another namespace's series.
fn foreign(body: &str, own: &str) -> Option<String> {
    for other in ["a", "b", "c"].into_iter().filter(|o| *o != own) {
        for pat in
            [format!("\"ns\":\"{other}\""), format!("ns=\"{other}\""), format!("\"{other}\"")]
        {
            if body.contains(&pat) {
                return Some(pat);
            }
        }
    }
    let only_b = "sec_only_b";
    (own != "b" && body.contains(only_b)).then(|| only_b.to_string())
}

#[test]
fn every_route_answers_each_credential_as_its_scope_and_namespace_allow() {
    let (s, t) = tenant_server();
    let malformed = format!("ocelli_{}_{}", "0".repeat(16), "0".repeat(64));
    let refused: [(&str, &str); 5] = [
        ("none", ""),
        ("not a token", "garbage"),
        ("unknown", &malformed),
        ("revoked", &t.revoked),
        ("expired", &t.expired),
    ];
    for (what, tok) in refused {
        for (need, method, path, body) in ROUTES {
            let (code, text) = call(s.addr, method, path, tok, body.as_bytes());
            let want = if *need == Need::Public { 200 } else { 401 };
            assert_eq!(code, want, "{what} token: {method} {path}: {text}");
            if code == 401 {
                assert!(text.contains("\"errorType\":\"unauthorized\""), "{text}");
            }
        }
    }
    let (code, text) = call(s.addr, "GET", "/api/v1/labels", &t.revoked, b"");
    assert!(code == 401 && text.contains("revoked"), "{text}");
    let (_, text) = call(s.addr, "GET", "/api/v1/labels", &t.expired, b"");
    assert!(text.contains("expired"), "{text}");

    let holders: [(&str, &str, Option<&str>, &[Need]); 6] = [
        ("operator", &t.op, None, &[Need::Read, Need::Write, Need::Admin, Need::Operator]),
        ("a read", &t.a_read, Some("a"), &[Need::Read]),
        ("a write", &t.a_write, Some("a"), &[Need::Write]),
        ("a admin", &t.a_admin, Some("a"), &[Need::Read, Need::Write, Need::Admin]),
        ("b read", &t.b_read, Some("b"), &[Need::Read]),
        ("b write", &t.b_write, Some("b"), &[Need::Write]),
    ];
    for (what, tok, ns, may) in holders {
        for (need, method, path, body) in ROUTES {
            let (code, text) = call(s.addr, method, path, tok, body.as_bytes());
            let allowed = *need == Need::Public || may.contains(need);
            if allowed {
                assert!(
                    code != 401 && code != 403 && code < 500,
                    "{what}: {method} {path} must be allowed, got {code}: {text}"
                );
            } else {
                assert_eq!(code, 403, "{what}: {method} {path}: {text}");
                assert!(text.contains("\"errorType\":\"forbidden\""), "{text}");
            }
            if let (Some(ns), true) = (ns, allowed && *need == Need::Read)
                && let Some(p) = foreign(&text, ns)
            {
                panic!("{what}: {method} {path} shows {p}: {text}");
            }
        }
    }
    // the namespace's own series are there
    let (_, text) = call(s.addr, "GET", "/api/v1/query?query=sec_metric", &t.a_read, b"");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["data"]["result"].as_array().unwrap().len(), 2, "{text}");
    let (_, text) = call(s.addr, "GET", "/api/v1/label/ns/values", &t.b_read, b"");
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap()["data"], serde_json::json!(["b"]));
    let (_, text) = call(s.addr, "GET", "/api/v1/metadata", &t.b_read, b"");
    assert!(text.contains("sec_only_b"), "{text}");
    // a view of another namespace is refused, its own answers
    let (code, text) = call(s.addr, "GET", "/api/v1/ns/b/vm/h1/metric/cpu", &t.a_read, b"");
    assert_eq!(code, 403, "{text}");
}

#[test]
fn a_namespace_token_writes_into_its_namespace_whatever_the_series_claim() {
    let (s, t) = tenant_server();
    let body = b"sec_claim{ns=\"b\",host=\"x\"} 7\nsec_claim{host=\"y\"} 8\n";
    let (code, text) = call(s.addr, "POST", "/api/v1/import/prometheus", &t.a_write, body);
    assert_eq!(code, 204, "{text}");
    // Influx line protocol and remote_write too
    let (code, text) = call(s.addr, "POST", "/write", &t.a_write, b"sec_influx,ns=c v=1\n");
    assert_eq!(code, 204, "{text}");
    let rw = ocelli_wire::remote_write::encode(&[ocelli_wire::remote_write::DecodedSeries {
        labels: ocelli_model::Labels::from_pairs([("__name__", "sec_rw"), ("ns", "c")]).unwrap(),
        samples: vec![ocelli_model::Sample::new(ocelli_model::time::now_ms(), 3.0)],
    }])
    .unwrap();
    let (code, text) = call(s.addr, "POST", "/api/v1/write", &t.a_write, &rw);
    assert_eq!(code, 204, "{text}");
    // a Pushgateway group claiming namespace b in its path is a's
    let (code, text) = call(s.addr, "PUT", "/metrics/job/j/ns/b", &t.a_write, b"sec_pg 3\n");
    assert_eq!(code, 200, "{text}");
    let (_, text) = call(
        s.addr,
        "GET",
        "/api/v1/query?query=count+by+%28ns%29+%28%7B__name__%3D~%22sec_claim%7Csec_influx_v%7Csec_rw%7Csec_pg%22%7D%29",
        &t.op,
        b"",
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    let r = v["data"]["result"].as_array().unwrap();
    assert_eq!(r.len(), 1, "{text}");
    assert_eq!(r[0]["metric"]["ns"], "a", "{text}");
    assert_eq!(r[0]["value"][1], "5", "{text}");
    // and b's reader sees none of it
    let (_, text) = call(s.addr, "GET", "/api/v1/query?query=sec_claim", &t.b_read, b"");
    assert!(text.contains("\"result\":[]"), "{text}");
}

#[test]
fn tokens_are_made_listed_and_revoked_through_the_api_and_changes_are_audited() {
    let (s, t) = tenant_server();
    let post = |tok: &str, body: &str| call(s.addr, "POST", "/api/v1/tokens", tok, body.as_bytes());
    // a namespace's admin makes tokens of its namespace only
    let (code, text) = post(&t.a_admin, r#"{"namespace":"b","scope":"read"}"#);
    assert_eq!(code, 403, "{text}");
    let (code, text) = post(&t.a_admin, r#"{"scope":"admin"}"#);
    assert_eq!(code, 403, "{text}");
    for (body, why) in [
        (r#"{"namespace":"..","scope":"read"}"#, "starts with '.'"),
        (r#"{"namespace":"a/b","scope":"read"}"#, "has '/'"),
        (r#"{"namespace":"a","scope":"root"}"#, "expected read, write or admin"),
        (r#"{"namespace":"a","scope":"read","ttl":"soon"}"#, "is not a duration"),
        (r#"{"namespace":"a"#, "not valid JSON"),
    ] {
        let (code, text) = post(&t.op, body);
        assert_eq!(code, 400, "{body}: {text}");
        assert!(text.contains(why), "{body}: {text}");
    }
    let (code, text) = post(&t.a_admin, r#"{"namespace":"a","scope":"read","ttl":"1h"}"#);
    assert_eq!(code, 201, "{text}");
    let made: Value = serde_json::from_str(&text).unwrap();
    let (id, secret) =
        (made["data"]["id"].as_str().unwrap(), made["data"]["token"].as_str().unwrap());
    assert!(made["data"].get("hash").is_none(), "{text}");
    let (code, _) = call(s.addr, "GET", "/api/v1/labels", secret, b"");
    assert_eq!(code, 200);
    // lists never show a secret or a hash, and a namespace sees its own tokens only
    let (_, list) = call(s.addr, "GET", "/api/v1/tokens", &t.a_admin, b"");
    assert!(list.contains(id) && !list.contains(secret) && !list.contains("hash"), "{list}");
    assert!(
        !list.contains("\"namespace\":\"b\"") && !list.contains("\"namespace\":null"),
        "{list}"
    );
    // b's admin cannot revoke a's token; the operator can
    let (code, text) = call(s.addr, "DELETE", &format!("/api/v1/tokens/{id}"), &t.b_read, b"");
    assert_eq!(code, 403, "{text}");
    let (code, text) = call(s.addr, "DELETE", &format!("/api/v1/tokens/{id}"), &t.op, b"");
    assert_eq!(code, 204, "{text}");
    let (code, text) = call(s.addr, "GET", "/api/v1/labels", secret, b"");
    assert!(code == 401 && text.contains("revoked"), "{text}");
    // the audit log has who did what; a namespace sees its own entries
    let (_, log) = call(s.addr, "GET", "/api/v1/audit", &t.op, b"");
    assert!(
        log.contains("POST /api/v1/tokens") && log.contains("DELETE /api/v1/tokens/{id}"),
        "{log}"
    );
    let a_id = ocelli_auth::token::parse(&t.a_admin).unwrap();
    assert!(log.contains(&format!("\"who\":\"{a_id}\"")), "{log}");
    let (_, log) = call(s.addr, "GET", "/api/v1/audit", &t.a_admin, b"");
    assert!(!log.contains("DELETE"), "{log}");
    // config and status answers hold no token
    let (_, cfg) = call(s.addr, "GET", "/api/v1/status/config", &t.op, b"");
    assert!(!cfg.contains("ocelli_"), "{cfg}");
}

#[test]
fn a_public_address_needs_tls_and_auth_or_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.listen = "0.0.0.0:0".parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let e = rt.block_on(Server::start(c.clone())).unwrap_err().to_string();
    assert!(e.contains("without TLS") && e.contains("and auth") && e.contains("--insecure"), "{e}");
    c.auth.enabled = true;
    let e = rt.block_on(Server::start(c.clone())).unwrap_err().to_string();
    assert!(e.contains("without TLS (") && !e.contains("and auth"), "{e}");
    c.insecure = true;
    let s = rt.block_on(Server::start(c)).unwrap();
    rt.block_on(s.stop()).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Generated PromQL: a namespace's view equals a server holding only that namespace

mod generated {
    use super::*;
    use proptest::prelude::*;

    fn selector() -> impl Strategy<Value = String> {
        let name = prop_oneof![
            Just("sec_metric".to_string()),
            Just("sec_only_b".to_string()),
            Just(String::new()),
        ];
        let ns = prop_oneof![
            Just(""),
            Just("ns=\"a\""),
            Just("ns=\"b\""),
            Just("ns!=\"a\""),
            Just("ns=~\".*\""),
            Just("ns=~\"b|c\""),
            Just("ns!~\"a\""),
            Just("ns=\"\""),
        ];
        (name, ns).prop_map(|(n, ns)| {
            let mut m: Vec<String> = Vec::new();
            if n.is_empty() {
                m.push("__name__=~\"sec_.*\"".into());
            }
            if !ns.is_empty() {
                m.push(ns.into());
            }
            if m.is_empty() { n } else { format!("{n}{{{}}}", m.join(",")) }
        })
    }

    fn expr() -> impl Strategy<Value = String> {
        selector().prop_recursive(3, 12, 2, |inner| {
            prop_oneof![
                inner.clone().prop_map(|e| format!("sum by (ns) ({e})")),
                inner.clone().prop_map(|e| format!("count({e})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) or ({b})")),
                inner.clone().prop_map(|e| format!("absent({e})")),
                inner
                    .clone()
                    .prop_map(|e| format!("label_replace({e}, \"ns\", \"b\", \"\", \"\")")),
                inner.clone().prop_map(|e| format!(
                    "label_replace({e}, \"copy\", \"$1\", \"ns\", \"(.*)\")"
                )),
                inner.clone().prop_map(|e| format!("max_over_time(({e})[5m:1m])")),
                inner.clone().prop_map(|e| format!("topk(1, {e})")),
                (inner.clone(), inner)
                    .prop_map(|(a, b)| format!("({a}) + on() group_left() count({b})")),
            ]
        })
    }

    fn answer(addr: SocketAddr, tok: &str, q: &str, t: i64) -> (u16, Value) {
        let p = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", q)
            .append_pair("time", &format!("{:.3}", t as f64 / 1000.0))
            .finish();
        let (code, text) = call(addr, "GET", &format!("/api/v1/query?{p}"), tok, b"");
        let mut v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if let Some(r) = v["data"]["result"].as_array_mut() {
            r.sort_by_key(|s| s["metric"].to_string());
        }
        (code, v["data"].clone())
    }

    #[test]
    fn a_namespace_token_sees_what_a_server_of_its_namespace_alone_holds() {
        let (mixed, t) = tenant_server();
        let dir = tempfile::tempdir().unwrap();
        let c = config(dir.path());
        let alone = Running::start(dir, c);
        // the same samples of namespace a, at the same times
        let (_, a_data) =
            call(mixed.addr, "GET", "/federate?match[]=%7Bns%3D%22a%22%7D", &t.op, b"");
        let (code, text) =
            call(alone.addr, "POST", "/api/v1/import/prometheus", "", a_data.as_bytes());
        assert_eq!(code, 204, "{text}: {a_data}");
        let at = ocelli_model::time::now_ms();
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 120,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        runner
            .run(&expr(), |q| {
                let (c1, mine) = answer(mixed.addr, &t.a_read, &q, at);
                let (c2, theirs) = answer(alone.addr, "", &q, at);
                prop_assert_eq!(c1, c2, "{}", q);
                prop_assert_eq!(&mine, &theirs, "{}", q);
                Ok(())
            })
            .unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Over TLS, with real clients

/// An https request with the agent's client (trusting `ca`), as (status, body).
fn https(
    rt: &tokio::runtime::Runtime,
    addr: SocketAddr,
    ca: &Path,
    tok: &str,
    path: &str,
) -> (u16, String) {
    use ocelli_agent::client::{Client, ServerUrl};
    let url = ServerUrl::parse(&format!("https://localhost:{}", addr.port())).unwrap();
    let mut c = Client::new(url, Duration::from_secs(10))
        .with_trust(&ocelli_tls::Trust::CaFile(ca.to_path_buf()))
        .unwrap()
        .with_token(Some(tok));
    let a = rt.block_on(c.request(hyper::Method::GET, path, &[], Vec::new())).unwrap();
    (a.status, String::from_utf8_lossy(&a.body).into_owned())
}

fn tls_server() -> (Running, Tokens, std::path::PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let t = tokens(&data);
    let mut c = config(&data);
    c.auth.enabled = true;
    c.tls.auto = true;
    let s = Running::start(dir, c);
    let (ca, pin) = s.server.as_ref().unwrap().auto_ca.clone().unwrap();
    (s, t, ca, pin)
}

#[test]
fn prometheus_and_promtool_write_and_read_over_tls_with_tokens() {
    let (s, t, ca, _) = tls_server();
    let port = s.addr.port();
    // plain http on the TLS port gets nowhere
    let plain = std::panic::catch_unwind(|| request(s.addr, "GET", "/-/healthy", "", b""));
    assert!(plain.map(|(c, _)| c != 200).unwrap_or(true));
    // b's data, which a's Prometheus must never read back
    let (code, text) = https(&s.rt, s.addr, &ca, &t.op, "/-/healthy");
    assert_eq!(code, 200, "{text}");
    let dir = tempfile::tempdir().unwrap();
    let prom_addr = ocelli_testkit::free_addr();
    let cfg = format!(
        "global:\n  scrape_interval: 1s\n\
         scrape_configs:\n  - job_name: self\n    static_configs:\n      - targets: ['{prom_addr}']\n\
         remote_write:\n  - url: https://localhost:{port}/api/v1/write\n    authorization:\n      credentials: {w}\n    tls_config:\n      ca_file: {ca}\n    queue_config:\n      batch_send_deadline: 1s\n      min_backoff: 100ms\n\
         remote_read:\n  - url: https://localhost:{port}/api/v1/read\n    read_recent: true\n    authorization:\n      credentials: {r}\n    tls_config:\n      ca_file: {ca}\n",
        w = t.a_write,
        r = t.a_read,
        ca = ca.display()
    );
    std::fs::write(dir.path().join("prometheus.yml"), cfg).unwrap();
    let mut cmd = Command::new(ocelli_testkit::require("prometheus", "prometheus"));
    cmd.arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address={prom_addr}"));
    let _prom = ocelli_testkit::Service::start(cmd, prom_addr, Duration::from_secs(60));
    // what Prometheus scraped arrives in namespace a, read with a's token over TLS
    wait("Prometheus' samples in Ocelli over TLS", Duration::from_secs(60), || {
        let (code, text) =
            https(&s.rt, s.addr, &ca, &t.a_read, "/api/v1/query?query=up%7Bjob%3D%22self%22%7D");
        (code == 200 && text.contains("\"ns\":\"a\"")).then_some(())
    });
    let (_, text) = https(&s.rt, s.addr, &ca, &t.b_read, "/api/v1/query?query=up");
    assert!(text.contains("\"result\":[]"), "b sees a's data: {text}");
    // b's series, written by the operator, stay out of a's remote_read
    let now = ocelli_model::time::now_ms();
    let body = format!("sec_remote{{ns=\"b\"}} 9 {now}\nsec_remote{{ns=\"a\"}} 4 {now}\n");
    let url = ocelli_agent::client::ServerUrl::parse(&format!("https://localhost:{port}")).unwrap();
    let mut op = ocelli_agent::client::Client::new(url, Duration::from_secs(10))
        .with_trust(&ocelli_tls::Trust::CaFile(ca.clone()))
        .unwrap()
        .with_token(Some(&t.op));
    let a = s.rt.block_on(op.post("/api/v1/import/prometheus", &[], body.into_bytes())).unwrap();
    assert_eq!(a.status, 204);
    let (code, text) = request(prom_addr, "GET", "/api/v1/query?query=sec_remote", "", b"");
    assert_eq!(code, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    let r = v["data"]["result"].as_array().unwrap();
    assert_eq!(r.len(), 1, "remote_read through a's token: {text}");
    assert_eq!(r[0]["metric"]["ns"], "a", "{text}");

    // promtool: the token as basic auth's password in the URL, the CA through SSL_CERT_FILE
    let promtool = ocelli_testkit::require("prometheus", "promtool");
    let out = Command::new(&promtool)
        .env("SSL_CERT_FILE", &ca)
        .args([
            "query",
            "instant",
            &format!("https://promtool:{}@localhost:{port}", t.a_read),
            "sec_remote",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ns=\"a\"") && !stdout.contains("ns=\"b\""), "{stdout}");
    // without the token, promtool is refused
    let out = Command::new(&promtool)
        .env("SSL_CERT_FILE", &ca)
        .args(["query", "instant", &format!("https://localhost:{port}"), "sec_remote"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn agent_config(
    dir: &Path,
    port: u16,
    join: &str,
    pin: &str,
    vm: &str,
) -> ocelli_agent::AgentConfig {
    let mut a = ocelli_agent::AgentConfig {
        mode: ocelli_agent::Mode::Push,
        interval_seconds: 1,
        listen: "127.0.0.1:0".parse().unwrap(),
        server: Some(format!("https://localhost:{port}")),
        data_dir: dir.to_path_buf(),
        join_token: Some(join.to_string()),
        ..ocelli_agent::AgentConfig::default()
    };
    a.tls.ca_pin = Some(pin.to_string());
    a.identity.ns = "a".into();
    a.identity.vm_id = vm.into();
    a
}

#[test]
fn an_agent_enrols_with_a_join_token_and_pushes_over_https() {
    let (s, t, ca, pin) = tls_server();
    let port = s.addr.port();
    let join = {
        let url =
            ocelli_agent::client::ServerUrl::parse(&format!("https://localhost:{port}")).unwrap();
        let mut c = ocelli_agent::client::Client::new(url, Duration::from_secs(10))
            .with_trust(&ocelli_tls::Trust::Pin(ocelli_tls::parse_pin(&pin).unwrap()))
            .unwrap()
            .with_token(Some(&t.a_admin));
        let a =
            s.rt.block_on(c.post(
                "/api/v1/tokens",
                &[("content-type", "application/json")],
                br#"{"namespace":"a","scope":"join","uses":1,"ttl":"1h"}"#.to_vec(),
            ))
            .unwrap();
        assert_eq!(a.status, 201, "{}", String::from_utf8_lossy(&a.body));
        let v: Value = serde_json::from_slice(&a.body).unwrap();
        v["data"]["token"].as_str().unwrap().to_string()
    };
    let dirs = tempfile::tempdir().unwrap();
    // a wrong pin: the agent refuses to send anything, the join token is not spent
    let wrong = format!("sha256:{}", "ab".repeat(32));
    let e =
        s.rt.block_on(ocelli_agent::Agent::start(agent_config(
            &dirs.path().join("w"),
            port,
            &join,
            &wrong,
            "vm-w",
        )))
        .unwrap_err()
        .to_string();
    assert!(e.contains("enrolment") && e.contains("TLS"), "{e}");
    // the right pin: enrolled, its credential kept 0600, series stamped with its identity
    let dir1 = dirs.path().join("one");
    let agent =
        s.rt.block_on(ocelli_agent::Agent::start(agent_config(&dir1, port, &join, &pin, "vm-1")))
            .unwrap();
    let cred = dir1.join(ocelli_agent::filenames::CREDENTIAL_FILE);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&cred).unwrap().permissions().mode() & 0o777, 0o600);
    wait("the enrolled agent's samples", Duration::from_secs(30), || {
        let (code, text) = https(
            &s.rt,
            s.addr,
            &ca,
            &t.a_read,
            "/api/v1/query?query=count%28%7Bvm_id%3D%22vm-1%22%2Cns%3D%22a%22%7D%29",
        );
        (code == 200 && !text.contains("\"result\":[]")).then_some(())
    });
    // the join token had one use
    let e =
        s.rt.block_on(ocelli_agent::Agent::start(agent_config(
            &dirs.path().join("two"),
            port,
            &join,
            &pin,
            "vm-2",
        )))
        .unwrap_err()
        .to_string();
    assert!(e.contains("no uses left"), "{e}");
    // its credential writes only as itself: a heartbeat for another agent is refused
    let own = std::fs::read_to_string(&cred).unwrap();
    let url = ocelli_agent::client::ServerUrl::parse(&format!("https://localhost:{port}")).unwrap();
    let mut c = ocelli_agent::client::Client::new(url, Duration::from_secs(10))
        .with_trust(&ocelli_tls::Trust::CaFile(ca.clone()))
        .unwrap()
        .with_token(Some(own.trim()));
    let hb = br#"{"ns":"a","service_type":"vm","service_id":"default","vm_id":"other","csp":"onprem","region":"unknown","address":"127.0.0.1:1","version":"x","mode":"push","interval_seconds":10}"#;
    let a =
        s.rt.block_on(c.post(
            "/api/v1/agents/heartbeat",
            &[("content-type", "application/json")],
            hb.to_vec(),
        ))
        .unwrap();
    assert_eq!(a.status, 403, "{}", String::from_utf8_lossy(&a.body));
    // deleting the agent from the registry revokes its credential
    let key = "a/vm/default/vm-1/onprem";
    let mut opc = ocelli_agent::client::Client::new(
        ocelli_agent::client::ServerUrl::parse(&format!("https://localhost:{port}")).unwrap(),
        Duration::from_secs(10),
    )
    .with_trust(&ocelli_tls::Trust::CaFile(ca.clone()))
    .unwrap()
    .with_token(Some(&t.op));
    s.rt.block_on(agent.stop()).unwrap();
    let a =
        s.rt.block_on(opc.request(
            hyper::Method::DELETE,
            &format!("/api/v1/agents/{key}"),
            &[],
            Vec::new(),
        ))
        .unwrap();
    assert!(a.status < 300, "{}", String::from_utf8_lossy(&a.body));
    let (code, text) = https(&s.rt, s.addr, &ca, own.trim(), "/api/v1/agents");
    assert!(code == 401 && text.contains("revoked"), "{code} {text}");
}

#[test]
fn agents_publish_to_a_rabbitmq_tls_listener_and_a_collector_consumes_over_amqps() {
    // a CA and a certificate for localhost, as `--tls-auto` makes them
    let certs = tempfile::tempdir().unwrap();
    let made = ocelli_tls::auto(certs.path(), &[]).unwrap();
    let mq = ocelli_testkit::RabbitMq::start_tls(&made.cert_file, &made.key_file);
    let url = mq.tls_url();
    // a collector consuming every shard over amqps://, trusting the CA
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(&dir.path().join("collector"));
    c.cluster.role = ocelli_server::cluster::Role::Collector;
    c.cluster.amqp_url = url.clone();
    c.cluster.amqp_ca_file = Some(made.ca_file.clone());
    c.cluster.shards = 4;
    let collector = Running::start(dir, c);
    let agent_cfg = |name: &str, ca: Option<&Path>, data: &Path| {
        let mut a = ocelli_agent::AgentConfig {
            mode: ocelli_agent::Mode::Push,
            interval_seconds: 1,
            listen: "127.0.0.1:0".parse().unwrap(),
            amqp: Some(ocelli_agent::amqp::AmqpConfig {
                url: url.clone(),
                exchange: "ocelli.metrics".into(),
                ca_file: ca.map(Path::to_path_buf),
            }),
            data_dir: data.to_path_buf(),
            ..ocelli_agent::AgentConfig::default()
        };
        a.identity.vm_id = name.into();
        a
    };
    let data = tempfile::tempdir().unwrap();
    let good = collector
        .rt
        .block_on(ocelli_agent::Agent::start(agent_cfg(
            "amqps-1",
            Some(&made.ca_file),
            &data.path().join("a"),
        )))
        .unwrap();
    // an agent that does not trust the broker's CA sends nothing: its batches wait in its buffer
    let doubting = collector
        .rt
        .block_on(ocelli_agent::Agent::start(agent_cfg("amqps-2", None, &data.path().join("b"))))
        .unwrap();
    wait("the agent's samples through amqps", Duration::from_secs(60), || {
        let (code, text) = request(
            collector.addr,
            "GET",
            "/api/v1/query?query=count%28node_load1%7Bvm_id%3D%22amqps-1%22%7D%29",
            "",
            b"",
        );
        (code == 200 && !text.contains("\"result\":[]")).then_some(())
    });
    let stats = doubting.push_stats();
    wait("the doubting agent to buffer", Duration::from_secs(30), || {
        (stats.buffered_batches.load(std::sync::atomic::Ordering::Relaxed) > 0).then_some(())
    });
    assert_eq!(stats.sent.load(std::sync::atomic::Ordering::Relaxed), 0);
    let (_, text) = request(
        collector.addr,
        "GET",
        "/api/v1/query?query=node_load1%7Bvm_id%3D%22amqps-2%22%7D",
        "",
        b"",
    );
    assert!(text.contains("\"result\":[]"), "{text}");
    collector.rt.block_on(good.stop()).unwrap();
    collector.rt.block_on(doubting.stop()).unwrap();
}

#[test]
fn the_registry_lives_in_etcd_over_tls() {
    let certs = tempfile::tempdir().unwrap();
    let made = ocelli_tls::auto(certs.path(), &[]).unwrap();
    let etcd = ocelli_testkit::Etcd::start_tls(&made.cert_file, &made.key_file);
    assert!(etcd.url.starts_with("https://"), "{}", etcd.url);
    let hb = br#"{"ns":"a","service_type":"vm","service_id":"s","vm_id":"etcd-tls","csp":"onprem","region":"r","address":"127.0.0.1:1","version":"x","mode":"push","interval_seconds":10}"#;
    {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path());
        c.registry.etcd = vec![etcd.url.clone()];
        c.registry.etcd_ca_file = Some(made.ca_file.clone());
        let s = Running::start(dir, c);
        let (code, text) = request(s.addr, "POST", "/api/v1/agents/heartbeat", "", hb);
        assert!(code == 200 || code == 201, "{text}");
    }
    // another server over the same etcd sees the agent
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.registry.etcd = vec![etcd.url.clone()];
    c.registry.etcd_ca_file = Some(made.ca_file.clone());
    let s = Running::start(dir, c);
    let (_, text) = request(s.addr, "GET", "/api/v1/agents", "", b"");
    assert!(text.contains("etcd-tls"), "{text}");
    // without the CA, the server does not trust etcd and says so
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.registry.etcd = vec![etcd.url.clone()];
    let e = s.rt.block_on(Server::start(c)).unwrap_err().to_string();
    assert!(e.contains("TLS handshake") || e.contains("certificate"), "{e}");
}

#[test]
fn a_query_node_reads_tls_stores_with_a_token_and_is_confined_by_it() {
    let (store, t, ca, _) = tls_server();
    // the store holds two namespaces
    let now = ocelli_model::time::now_ms();
    let url =
        ocelli_agent::client::ServerUrl::parse(&format!("https://localhost:{}", store.addr.port()))
            .unwrap();
    let mut op = ocelli_agent::client::Client::new(url, Duration::from_secs(10))
        .with_trust(&ocelli_tls::Trust::CaFile(ca.clone()))
        .unwrap()
        .with_token(Some(&t.op));
    let body = format!("sec_fan{{ns=\"a\"}} 1 {now}\nsec_fan{{ns=\"b\"}} 2 {now}\n");
    let a =
        store.rt.block_on(op.post("/api/v1/import/prometheus", &[], body.into_bytes())).unwrap();
    assert_eq!(a.status, 204);
    let node = |token: Option<&str>| {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(dir.path());
        c.cluster.role = ocelli_server::cluster::Role::Query;
        c.cluster.stores = vec![format!("https://localhost:{}", store.addr.port())];
        c.cluster.store_ca_file = Some(ca.clone());
        if let Some(tok) = token {
            let f = dir.path().join("store.token");
            std::fs::write(&f, tok).unwrap();
            c.cluster.store_token_file = Some(f);
        }
        Running::start(dir, c)
    };
    let with_a = node(Some(&t.a_read));
    let (code, text) = request(with_a.addr, "GET", "/api/v1/query?query=sec_fan", "", b"");
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("\"ns\":\"a\"") && !text.contains("\"ns\":\"b\""), "{text}");
    let without = node(None);
    let (code, text) = request(without.addr, "GET", "/api/v1/query?query=sec_fan", "", b"");
    assert!(code >= 400 && text.contains("401"), "{code} {text}");
}

#[test]
fn the_server_pulls_and_calls_an_https_agent() {
    let certs = tempfile::tempdir().unwrap();
    let made = ocelli_tls::auto(certs.path(), &[]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.registry.agent_ca_file = Some(made.ca_file.clone());
    c.registry.up_interval = "200ms".into();
    let s = Running::start(dir, c);
    let data = tempfile::tempdir().unwrap();
    let mut a = ocelli_agent::AgentConfig {
        mode: ocelli_agent::Mode::Pull,
        interval_seconds: 1,
        listen: "127.0.0.1:0".parse().unwrap(),
        server: Some(format!("http://{}", s.addr)),
        data_dir: data.path().to_path_buf(),
        ..ocelli_agent::AgentConfig::default()
    };
    a.identity.vm_id = "pulled".into();
    a.tls.cert_file = Some(made.cert_file.clone());
    a.tls.key_file = Some(made.key_file.clone());
    let agent = s.rt.block_on(ocelli_agent::Agent::start(a)).unwrap();
    // its endpoints speak https only
    let plain = std::panic::catch_unwind(|| request(agent.addr, "GET", "/metrics", "", b""));
    assert!(plain.map(|(c, _)| c != 200).unwrap_or(true));
    // pulled over https: its node series arrive with the scrape's labels
    wait("an https pull of the agent", Duration::from_secs(30), || {
        let q = format!(
            "/api/v1/query?query=count%28node_load1%7Binstance%3D%22{}%22%7D%29",
            agent.address
        );
        let (code, text) = request(s.addr, "GET", &q, "", b"");
        (code == 200 && !text.contains("\"result\":[]")).then_some(())
    });
    // and called on demand over https
    let key = "default/vm/default/pulled/onprem";
    let (code, text) =
        request(s.addr, "GET", &format!("/api/v1/agents/{key}/collect/loadavg"), "", b"");
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("node_load1"), "{text}");
    s.rt.block_on(agent.stop()).unwrap();
}
