//! The push endpoints over real HTTP on loopback: JSON-lines import, OTLP/HTTP metrics and the
//! Pushgateway-compatible API, with good and malformed bodies, checking what was (and was not)
//! stored by reopening the data directory.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::io::Write as _;

use common::{config, request, stored};
use ocelli_model::Sample;
use ocelli_server::Server;

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b).unwrap();
    gz.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_import() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path())).await.unwrap();
    let addr = server.addr;
    tokio::task::spawn_blocking(move || {
        let body = concat!(
            r#"{"metric":{"__name__":"temp","room":"a"},"values":[20.5,"NaN"],"timestamps":[1700000000000,1700000010000]}"#,
            "\n",
            r#"{"metric":{"__name__":"temp","room":"b"},"values":["+Inf"],"timestamps":[1700000000000]}"#,
            "\n",
        );
        let (code, msg) = request(addr, "POST", "/api/v1/import", "", body.as_bytes());
        assert_eq!(code, 204, "{msg}");
        let line = r#"{"metric":{"__name__":"hum","room":"a"},"values":[40],"timestamps":[1700000000000]}"#;
        let (code, msg) =
            request(addr, "POST", "/api/v1/import", "Content-Encoding: gzip\r\n", &gzip(line.as_bytes()));
        assert_eq!(code, 204, "{msg}");

        // the second line is bad: a 400 naming line and column, and nothing of it stored
        let body = concat!(
            r#"{"metric":{"__name__":"ok"},"values":[1],"timestamps":[1700000000000]}"#,
            "\n",
            r#"{"metric":{"__name__":"ok"},"values":[1,2],"timestamps":[1700000000000]}"#,
        );
        let (code, msg) = request(addr, "POST", "/api/v1/import", "", body.as_bytes());
        assert_eq!(code, 400, "{msg}");
        assert!(msg.contains("\"errorType\":\"bad_data\""), "{msg}");
        assert!(
            msg.contains(r#"line 2, column 72: \"values\" has 2 elements but \"timestamps\" has 1"#),
            "{msg}"
        );
        let (code, msg) = request(addr, "POST", "/api/v1/import", "", b"{\"metric\":{}}");
        assert_eq!(code, 400, "{msg}");
        assert!(msg.contains("line 1, column 12: label set has no __name__ label"), "{msg}");
    })
    .await
    .unwrap();
    server.stop().await.unwrap();

    let temp = stored(dir.path(), "temp");
    assert_eq!(temp.len(), 2);
    assert_eq!(temp[0].labels.get("room"), Some("a"));
    assert_eq!(temp[0].samples[0], Sample::new(1_700_000_000_000, 20.5));
    assert!(temp[0].samples[1].v.is_nan());
    assert_eq!(temp[1].samples, vec![Sample::new(1_700_000_000_000, f64::INFINITY)]);
    assert_eq!(stored(dir.path(), "hum")[0].samples, vec![Sample::new(1_700_000_000_000, 40.0)]);
    assert!(stored(dir.path(), "ok").is_empty(), "a rejected request must store nothing");
}
