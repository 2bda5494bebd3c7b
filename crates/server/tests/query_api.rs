//! The query API over real HTTP: result and error shapes, series / labels / label values,
//! metadata from imported exposition text, federation, and the server's own `/metrics`.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use common::{config_old_samples as config, http};
use ocelli_server::Server;
use serde_json::Value;

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_api_shapes_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await.unwrap();
    let a = server.addr;
    let body = "# HELP temp_celsius Temperature.\n# TYPE temp_celsius gauge\ntemp_celsius{room=\"a\"} 21.5 1700000000000\ntemp_celsius{room=\"b\"} 19 1700000000000\n";
    assert_eq!(http(a, "POST", "/api/v1/import/prometheus", body.as_bytes()).0, 204);

    // instant vector, scalar, string, matrix
    let (code, b) = http(a, "GET", "/api/v1/query?query=temp_celsius&time=1700000010", b"");
    assert_eq!(code, 200, "{b}");
    let v = json(&b);
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["resultType"], "vector");
    let r = v["data"]["result"].as_array().unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0]["metric"]["room"], "a");
    assert_eq!(r[0]["value"][0], 1700000010);
    assert_eq!(r[0]["value"][1], "21.5");
    let v = json(&http(a, "GET", "/api/v1/query?query=1%2F0&time=1700000000.5", b"").1);
    assert_eq!(v["data"]["result"], serde_json::json!([1700000000.5, "+Inf"]));
    let v = json(&http(a, "GET", "/api/v1/query?query=%22hi%22&time=10", b"").1);
    assert_eq!(v["data"]["result"], serde_json::json!([10, "hi"]));
    let v =
        json(&http(a, "GET", "/api/v1/query?query=temp_celsius%5B1m%5D&time=1700000010", b"").1);
    assert_eq!(v["data"]["resultType"], "matrix");
    assert_eq!(v["data"]["result"][1]["values"], serde_json::json!([[1700000000, "19"]]));

    // POST form body, range query
    let (code, b) = common::request(
        a,
        "POST",
        "/api/v1/query_range",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        b"query=sum(temp_celsius)&start=1700000000&end=1700000120&step=60",
    );
    assert_eq!(code, 200, "{b}");
    let v = json(&b);
    assert_eq!(
        v["data"]["result"][0]["values"],
        serde_json::json!([[1700000000, "40.5"], [1700000060, "40.5"], [1700000120, "40.5"]])
    );

    // errors: type and status as Prometheus gives them
    let (code, b) = http(a, "GET", "/api/v1/query?query=sum(", b"");
    assert_eq!(code, 400);
    assert_eq!(json(&b)["errorType"], "bad_data");
    let (code, b) = http(a, "GET", "/api/v1/query?query=up&time=yesterday", b"");
    assert_eq!(code, 400);
    assert!(json(&b)["error"].as_str().unwrap().contains("invalid parameter \"time\""), "{b}");
    let (code, b) = http(a, "GET", "/api/v1/query_range?query=up&start=10&end=0&step=1", b"");
    assert_eq!(code, 400, "{b}");
    let (code, b) = http(a, "GET", "/api/v1/query_range?query=up&start=0&end=100000&step=1", b"");
    assert_eq!(code, 400);
    assert!(b.contains("11,000 points"), "{b}");
    let (code, b) = http(
        a,
        "GET",
        "/api/v1/query?query=temp_celsius%2Bon(nope)%20temp_celsius&time=1700000000",
        b"",
    );
    assert_eq!(code, 422, "{b}");
    assert_eq!(json(&b)["errorType"], "execution");

    // series, labels, label values
    let v = json(&http(a, "GET", "/api/v1/series?match[]=temp_celsius%7Broom%3D%22b%22%7D", b"").1);
    assert_eq!(v["data"], serde_json::json!([{"__name__": "temp_celsius", "room": "b"}]));
    let (code, _) = http(a, "GET", "/api/v1/series", b"");
    assert_eq!(code, 400);
    let (code, _) = http(a, "GET", "/api/v1/series?match[]=%7Broom%3D~%22.*%22%7D", b"");
    assert_eq!(code, 400);
    let v = json(&http(a, "GET", "/api/v1/labels", b"").1);
    assert_eq!(v["data"], serde_json::json!(["__name__", "room"]));
    let v = json(&http(a, "GET", "/api/v1/label/room/values", b"").1);
    assert_eq!(v["data"], serde_json::json!(["a", "b"]));

    // metadata and buildinfo
    let v = json(&http(a, "GET", "/api/v1/metadata", b"").1);
    assert_eq!(v["data"]["temp_celsius"][0]["type"], "gauge");
    assert_eq!(v["data"]["temp_celsius"][0]["help"], "Temperature.");
    let v = json(&http(a, "GET", "/api/v1/status/buildinfo", b"").1);
    assert_eq!(v["data"]["version"], "2.42.0");

    // /metrics counts what happened, rejections by status
    let (code, m) = http(a, "GET", "/metrics", b"");
    assert_eq!(code, 200);
    assert!(m.contains("ocelli_appended_samples_total 2\n"), "{m}");
    assert!(m.contains("ocelli_head_series 2\n"), "{m}");
    assert!(
        m.contains("ocelli_http_requests_total{handler=\"/api/v1/query\",code=\"400\"} 2"),
        "{m}"
    );
    assert!(
        m.contains("ocelli_http_requests_total{handler=\"/api/v1/query\",code=\"422\"} 1"),
        "{m}"
    );
    assert!(
        m.contains(
            "ocelli_http_requests_total{handler=\"/api/v1/import/prometheus\",code=\"204\"} 1"
        ),
        "{m}"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federate_serves_the_newest_samples() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await.unwrap();
    let a = server.addr;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
            as i64;
    let body = format!(
        "up{{job=\"x\"}} 0 {}\nup{{job=\"x\"}} 1 {}\nother 5 {}\n",
        now - 20_000,
        now - 10_000,
        now - 10_000
    );
    assert_eq!(http(a, "POST", "/api/v1/import/prometheus", body.as_bytes()).0, 204);
    let (code, text) = http(a, "GET", "/federate?match[]=up", b"");
    assert_eq!(code, 200);
    assert_eq!(text, format!("# TYPE up untyped\nup{{job=\"x\"}} 1 {}\n", now - 10_000));
    server.stop().await.unwrap();
}
