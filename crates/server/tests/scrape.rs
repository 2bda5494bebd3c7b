//! Scraping a real `prometheus-node-exporter` (Debian's 1.5) over loopback: stored series with
//! the target's labels, relabelling, the targets API, staleness when the exporter dies, reload
//! through `POST /-/reload` (a job added, a job removed, an invalid file refused), and file-based
//! discovery. Stored data is checked by stopping the server and reopening its data directory.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use ocelli_model::time::now_ms;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{http, stored};
use ocelli_model::is_stale_nan;
use ocelli_server::{Config, Server};
use ocelli_testkit::{Service, free_port, require};
use serde_json::Value;

/// A node_exporter on a free loopback port with only a few fast collectors.
fn exporter() -> Service {
    let bin = require("prometheus-node-exporter", "prometheus-node-exporter");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--web.listen-address={addr}")).args([
        "--collector.disable-defaults",
        "--collector.loadavg",
        "--collector.meminfo",
        "--collector.time",
    ]);
    Service::start(cmd, addr, Duration::from_secs(20))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

/// Writes the config file atomically and loads it the way `ocelli server --config` does.
fn write_config(dir: &Path, text: &str) -> Config {
    let path = dir.join("ocelli.toml");
    let tmp = dir.join("ocelli.toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    let mut c = Config::load(&path).unwrap();
    c.listen = "127.0.0.1:0".parse().unwrap();
    c.data_dir = dir.join("data");
    c
}

fn targets(addr: SocketAddr, query: &str) -> Value {
    let (code, body) = http(addr, "GET", &format!("/api/v1/targets{query}"), b"");
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{body}");
    v
}

/// Polls the targets API until `f` holds for it (at most 15 s).
fn wait_targets(addr: SocketAddr, what: &str, mut f: impl FnMut(&Value) -> bool) -> Value {
    let t0 = Instant::now();
    loop {
        let v = targets(addr, "");
        if f(&v) {
            return v;
        }
        assert!(t0.elapsed() < Duration::from_secs(15), "timed out waiting for {what}: {v:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn active(v: &Value) -> &Vec<Value> {
    v["data"]["activeTargets"].as_array().unwrap()
}

fn pool_health(v: &Value, pool: &str) -> Option<String> {
    active(v).iter().find(|t| t["scrapePool"] == pool).map(|t| t["health"].as_str().unwrap().into())
}

/// Waits until `pool`'s target has scraped successfully `n` more times.
fn wait_scrapes(addr: SocketAddr, pool: &str, n: usize) {
    let mut seen = Vec::new();
    wait_targets(addr, &format!("{n} good scrapes of {pool}"), |v| {
        if let Some(t) = active(v).iter().find(|t| t["scrapePool"] == pool) {
            let last = t["lastScrape"].as_str().unwrap().to_string();
            if t["health"] == "up" && !seen.contains(&last) {
                seen.push(last);
            }
        }
        seen.len() > n
    });
}

#[test]
fn node_exporter_scraped_relabelled_and_marked_stale_when_it_dies() {
    let node = exporter();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
            [[scrape_configs]]
            job_name = "node"
            scrape_interval = "300ms"
            [[scrape_configs.static_configs]]
            targets = ["{}"]
            labels = {{ env = "test", __meta_zone = "z1" }}
            [[scrape_configs.relabel_configs]]
            regex = "__meta_(.+)"
            action = "labelmap"
            [[scrape_configs.metric_relabel_configs]]
            source_labels = ["__name__"]
            regex = "go_.*|node_load15"
            action = "drop"
            "#,
            node.addr
        ),
    );
    let rt = runtime();
    let server = rt.block_on(Server::start(cfg)).unwrap();
    let addr = server.addr;
    let instance = node.addr.to_string();

    wait_scrapes(addr, "node", 2);
    let v = targets(addr, "");
    let t = &active(&v)[0];
    assert_eq!(t["scrapePool"], "node");
    assert_eq!(t["scrapeUrl"], format!("http://{instance}/metrics"));
    assert!(t["globalUrl"].as_str().unwrap().ends_with(&format!(":{}/metrics", node.addr.port())));
    assert_eq!(t["health"], "up");
    assert_eq!(t["lastError"], "");
    assert_eq!(t["scrapeInterval"], "300ms");
    assert_eq!(t["scrapeTimeout"], "300ms");
    assert!(t["lastScrapeDuration"].as_f64().unwrap() > 0.0);
    let last = t["lastScrape"].as_str().unwrap();
    assert!(last.len() >= 20 && last.ends_with('Z') && last.as_bytes()[10] == b'T', "{last}");
    assert_eq!(
        t["labels"],
        serde_json::json!({"env": "test", "instance": instance, "job": "node", "zone": "z1"})
    );
    let d = &t["discoveredLabels"];
    assert_eq!(d["__address__"], instance);
    assert_eq!(d["__meta_zone"], "z1");
    assert_eq!(d["__metrics_path__"], "/metrics");
    assert_eq!(d["__scheme__"], "http");
    assert_eq!(d["__scrape_interval__"], "300ms");
    assert_eq!(d["job"], "node");
    assert_eq!(v["data"]["droppedTargets"], serde_json::json!([]));
    assert_eq!(targets(addr, "?state=dropped")["data"]["activeTargets"], serde_json::json!([]));
    assert_eq!(active(&targets(addr, "?state=active&scrapePool=node")).len(), 1);
    assert_eq!(active(&targets(addr, "?scrapePool=other")).len(), 0);
    let (code, body) = http(addr, "GET", "/api/v1/targets?state=bogus", b"");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("\"errorType\":\"bad_data\""), "{body}");

    // the exporter's TYPE and HELP lines reach the metadata API
    let (code, body) = http(addr, "GET", "/api/v1/metadata?metric=node_load1", b"");
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["node_load1"][0]["type"], "gauge", "{body}");
    assert_eq!(v["data"]["node_load1"][0]["help"], "1m load average.", "{body}");

    // the exporter dies: the next scrape fails
    let killed_at = now_ms();
    drop(node);
    let v = wait_targets(addr, "the target to go down", |v| {
        pool_health(v, "node").as_deref() == Some("down")
    });
    let err = active(&v)[0]["lastError"].as_str().unwrap().to_string();
    assert!(err.contains(&format!("cannot connect to {instance}")), "{err}");
    rt.block_on(server.stop()).unwrap();

    // what was stored
    let up = stored(&dir.path().join("data"), "up");
    assert_eq!(up.len(), 1);
    assert_eq!(
        up[0].labels.to_string(),
        format!("up{{env=\"test\", instance=\"{instance}\", job=\"node\", zone=\"z1\"}}")
    );
    let ups = &up[0].samples;
    assert!(ups.iter().filter(|s| s.v == 1.0).count() >= 3, "{ups:?}");
    let down = ups.iter().find(|s| s.v == 0.0 && s.t >= killed_at - 300).unwrap();
    // the last sample is the end-of-run marker written when the server stopped
    assert!(is_stale_nan(ups.last().unwrap().v));

    let load1 = stored(&dir.path().join("data"), "node_load1");
    assert_eq!(load1.len(), 1);
    assert_eq!(load1[0].labels.get("job"), Some("node"));
    assert_eq!(load1[0].labels.get("instance"), Some(instance.as_str()));
    assert_eq!(load1[0].labels.get("zone"), Some("z1"));
    let s = &load1[0].samples;
    assert!(s.iter().filter(|x| !x.v.is_nan()).count() >= 3, "{s:?}");
    // marked stale by the first failed scrape, at that scrape's time, and nothing after it
    let last = s.last().unwrap();
    assert!(is_stale_nan(last.v), "{s:?}");
    assert_eq!(last.t, down.t);
    assert!(!stored(&dir.path().join("data"), "node_memory_MemTotal_bytes").is_empty());
    // dropped by metric_relabel_configs
    assert!(stored(&dir.path().join("data"), "node_load15").is_empty());
    assert!(stored(&dir.path().join("data"), "go_goroutines").is_empty());
    let scraped = stored(&dir.path().join("data"), "scrape_samples_scraped");
    let post = stored(&dir.path().join("data"), "scrape_samples_post_metric_relabeling");
    assert!(scraped[0].samples[0].v > post[0].samples[0].v, "{scraped:?} {post:?}");
}

fn job(name: &str, target: SocketAddr) -> String {
    format!(
        "[[scrape_configs]]\njob_name = \"{name}\"\nscrape_interval = \"300ms\"\n[[scrape_configs.static_configs]]\ntargets = [\"{target}\"]\n"
    )
}

#[test]
fn reload_adds_and_removes_jobs_and_refuses_an_invalid_file() {
    let node = exporter();
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &job("old", node.addr));
    let rt = runtime();
    let server = rt.block_on(Server::start(cfg)).unwrap();
    let addr = server.addr;
    wait_scrapes(addr, "old", 1);

    // replace job "old" by job "new"
    write_config(dir.path(), &job("new", node.addr));
    let reloaded_at = now_ms();
    let (code, body) = http(addr, "POST", "/-/reload", b"");
    assert_eq!(code, 200, "{body}");
    let v = targets(addr, "");
    assert_eq!(active(&v).len(), 1, "{v:#}");
    assert_eq!(active(&v)[0]["scrapePool"], "new");
    wait_scrapes(addr, "new", 2);

    // an invalid file is refused with the job and field, and the running jobs keep going
    let bad = job("new", node.addr)
        + "[[scrape_configs.relabel_configs]]\nsource_labels = [\"a\"]\nregex = \"(\"\ntarget_label = \"b\"\n";
    std::fs::write(dir.path().join("ocelli.toml"), bad).unwrap();
    let (code, body) = http(addr, "POST", "/-/reload", b"");
    assert_eq!(code, 400, "{body}");
    let e: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(e["errorType"], "bad_data");
    let msg = e["error"].as_str().unwrap();
    assert!(
        msg.contains("scrape_configs[0] (job \"new\"): relabel_configs[0].regex: invalid regular expression \"(\""),
        "{msg}"
    );
    assert!(msg.contains("ocelli.toml"), "{msg}");
    wait_scrapes(addr, "new", 2);
    assert_eq!(active(&targets(addr, "")).len(), 1);
    // so is a file that is not TOML at all
    std::fs::write(dir.path().join("ocelli.toml"), "[[scrape_configs]\n").unwrap();
    let (code, body) = http(addr, "POST", "/-/reload", b"");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("TOML parse error"), "{body}");
    rt.block_on(server.stop()).unwrap();

    let data = dir.path().join("data");
    let up = stored(&data, "up");
    let job_of = |s: &ocelli_tsdb::SeriesSamples| s.labels.get("job").unwrap().to_string();
    assert_eq!(up.iter().map(job_of).collect::<Vec<_>>(), ["new", "old"]);
    // the removed job's series were marked stale when it was removed, not at shutdown
    let old_up = up.iter().find(|s| job_of(s) == "old").unwrap();
    let last = old_up.samples.last().unwrap();
    assert!(is_stale_nan(last.v));
    assert!(last.t >= reloaded_at - 1000 && last.t <= reloaded_at + 1000, "{last:?} {reloaded_at}");
    let mem = stored(&data, "node_memory_MemTotal_bytes");
    assert_eq!(mem.len(), 2);
    let old_mem = mem.iter().find(|s| job_of(s) == "old").unwrap();
    assert!(is_stale_nan(old_mem.samples.last().unwrap().v));
    assert_eq!(old_mem.samples.last().unwrap().t, last.t);
    let new_mem = mem.iter().find(|s| job_of(s) == "new").unwrap();
    assert!(new_mem.samples.iter().filter(|s| !s.v.is_nan()).count() >= 4);
    assert!(new_mem.samples[0].t >= reloaded_at - 1000);
}

#[test]
fn file_sd_picks_up_new_and_removed_targets() {
    let node = exporter();
    let dir = tempfile::tempdir().unwrap();
    let sd = dir.path().join("sd");
    std::fs::create_dir(&sd).unwrap();
    let cfg = write_config(
        dir.path(),
        &format!(
            r#"
            [[scrape_configs]]
            job_name = "fsd"
            scrape_interval = "300ms"
            [[scrape_configs.file_sd_configs]]
            files = ["{}/*.json"]
            [[scrape_configs.relabel_configs]]
            source_labels = ["env"]
            regex = "skip"
            action = "drop"
            "#,
            sd.display()
        ),
    );
    let rt = runtime();
    let server = rt.block_on(Server::start(cfg)).unwrap();
    let addr = server.addr;
    let v = targets(addr, "");
    assert_eq!(active(&v).len(), 0);
    assert_eq!(v["data"]["droppedTargetCounts"]["fsd"], 0);

    // a new file: one target to scrape, one dropped by relabelling
    let file = sd.join("nodes.json");
    let json = format!(
        r#"[{{"targets": ["{}"], "labels": {{"team": "infra"}}}},
            {{"targets": ["127.0.0.1:1"], "labels": {{"env": "skip"}}}}]"#,
        node.addr
    );
    std::fs::write(sd.join("nodes.tmp"), json).unwrap();
    std::fs::rename(sd.join("nodes.tmp"), &file).unwrap();
    let v = wait_targets(addr, "the discovered target to be up", |v| {
        pool_health(v, "fsd").as_deref() == Some("up")
    });
    let t = &active(&v)[0];
    assert_eq!(t["labels"]["team"], "infra");
    assert_eq!(t["labels"]["instance"], node.addr.to_string());
    assert_eq!(t["discoveredLabels"]["__meta_filepath"], file.display().to_string());
    let dropped = v["data"]["droppedTargets"].as_array().unwrap();
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0]["discoveredLabels"]["__address__"], "127.0.0.1:1");
    assert_eq!(dropped[0]["discoveredLabels"]["env"], "skip");
    assert_eq!(v["data"]["droppedTargetCounts"]["fsd"], 1);
    assert_eq!(targets(addr, "?state=active")["data"]["droppedTargets"], serde_json::json!([]));
    wait_scrapes(addr, "fsd", 1);

    // the file goes: so does the target, with stale markers
    std::fs::remove_file(&file).unwrap();
    let removed_at = now_ms();
    wait_targets(addr, "the target to go", |v| active(v).is_empty());
    rt.block_on(server.stop()).unwrap();
    let up = stored(&dir.path().join("data"), "up");
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].labels.get("team"), Some("infra"));
    assert_eq!(up[0].labels.get("job"), Some("fsd"));
    let s = &up[0].samples;
    assert!(s.iter().any(|x| x.v == 1.0));
    let last = s.last().unwrap();
    assert!(is_stale_nan(last.v) && last.t >= removed_at - 100, "{s:?}");
}

/// What the hand-written target below answers: status line, extra headers, body, delay.
type Answer = (&'static str, &'static str, Vec<u8>, Duration);

/// A one-thread HTTP target on loopback that records each request's head and answers with
/// whatever `answer` holds at the time, closing the connection after each answer.
fn canned_target(
    answer: std::sync::Arc<std::sync::Mutex<Answer>>,
    requests: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) -> SocketAddr {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            requests.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
            let (status, headers, body, delay) = answer.lock().unwrap().clone();
            std::thread::sleep(delay);
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n{headers}\r\n",
                body.len()
            );
            let _ = conn.write_all(&body);
        }
    });
    addr
}

fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap()
}

/// Waits until the only target's `lastError` contains `want` ("" waits for a good scrape).
fn wait_error(addr: SocketAddr, want: &str) {
    wait_targets(addr, &format!("lastError {want:?}"), |v| {
        active(v).first().is_some_and(|t| {
            let e = t["lastError"].as_str().unwrap();
            t["health"] != "unknown"
                && if want.is_empty() { e.is_empty() } else { e.contains(want) }
        })
    });
}

#[test]
fn request_headers_gzip_label_clashes_and_failed_scrapes() {
    use std::sync::{Arc, Mutex};
    let answer: Arc<Mutex<Answer>> = Arc::new(Mutex::new((
        "200 OK",
        "Content-Encoding: gzip\r\nContent-Type: text/plain; version=0.0.4\r\n",
        gzip("# TYPE a gauge\na{job=\"inner\",x=\"1\"} 1\nb 2\n"),
        Duration::ZERO,
    )));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let target = canned_target(answer.clone(), requests.clone());
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[[scrape_configs]]\njob_name = \"t\"\nscrape_interval = \"200ms\"\nsample_limit = 3\nbody_size_limit = 200\nmetrics_path = \"/m\"\nparams = {{ module = [\"a b\"] }}\n[[scrape_configs.static_configs]]\ntargets = [\"{target}\"]\n"
    );
    let mut cfg = Config::parse(&text, "inline").unwrap();
    cfg.listen = "127.0.0.1:0".parse().unwrap();
    cfg.data_dir = dir.path().to_path_buf();
    let rt = runtime();
    let server = rt.block_on(Server::start(cfg)).unwrap();
    let addr = server.addr;

    wait_error(addr, "");
    let req = requests.lock().unwrap()[0].to_ascii_lowercase();
    assert!(req.starts_with("get /m?module=a+b http/1.1\r\n"), "{req}");
    assert!(req.contains("\r\naccept: text/plain;version=0.0.4;q=1,*/*;q=0.1\r\n"), "{req}");
    assert!(req.contains("\r\naccept-encoding: gzip\r\n"), "{req}");
    assert!(req.contains("\r\nx-prometheus-scrape-timeout-seconds: 0.2\r\n"), "{req}");
    assert!(req.contains("\r\nuser-agent: ocelli/"), "{req}");
    assert!(req.contains(&format!("\r\nhost: {target}\r\n")), "{req}");

    // each failure is reported with its reason
    let failures: [(Answer, &str); 4] = [
        (
            ("200 OK", "", b"a 1\nb 2\nc 3\nd 4\n".to_vec(), Duration::ZERO),
            "sample_limit exceeded: more than 3 samples after metric relabelling",
        ),
        (
            ("500 Internal Server Error", "", b"oops".to_vec(), Duration::ZERO),
            "server returned HTTP status 500 Internal Server Error",
        ),
        (
            ("200 OK", "", vec![b'#'; 300], Duration::ZERO),
            "response body is over the limit of 200 bytes",
        ),
        (
            ("200 OK", "", b"a 1\n".to_vec(), Duration::from_millis(400)),
            "scrape timed out after 200ms",
        ),
    ];
    let mut first_failure = None;
    for (a, want) in failures {
        *answer.lock().unwrap() = a;
        first_failure.get_or_insert_with(now_ms);
        wait_error(addr, want);
    }
    // a server started without --config has nothing to reload
    let (code, body) = http(addr, "POST", "/-/reload", b"");
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("started without a config file"), "{body}");
    rt.block_on(server.stop()).unwrap();

    // the scraped label that clashes with a target label is kept as exported_job
    let a = stored(dir.path(), "a");
    assert_eq!(a.len(), 1);
    assert_eq!(
        a[0].labels.to_string(),
        format!("a{{exported_job=\"inner\", instance=\"{target}\", job=\"t\", x=\"1\"}}")
    );
    // b was marked stale by the first failed scrape (the sample limit), never stored again
    let b = stored(dir.path(), "b");
    let last = b[0].samples.last().unwrap();
    assert!(is_stale_nan(last.v) && last.t >= first_failure.unwrap() - 200, "{b:?}");
    assert!(b[0].samples.iter().filter(|s| is_stale_nan(s.v)).count() == 1, "{b:?}");
    let up = stored(dir.path(), "up");
    assert!(up[0].samples.iter().filter(|s| s.v == 0.0).count() >= 4, "{up:?}");
}
