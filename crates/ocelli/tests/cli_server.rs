//! `ocelli server --listen ADDR --data-dir DIR` as a real process: it opens the storage engine,
//! serves, takes a remote_write, shuts down cleanly on SIGTERM, and serves the data again after
//! a restart. A bad config file is refused with the file and the reason.
//! SIGHUP reloads the scrape configuration, and a bad file is logged while the running one is
//! kept.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use ocelli_model::{Labels, Sample};
use ocelli_testkit::{Proc, free_addr};
use ocelli_wire::remote_write::{self, DecodedSeries};

fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .ok()?;
    s.write_all(body).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let text = String::from_utf8_lossy(&resp).to_string();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default()))
}

fn wait_ready(addr: SocketAddr) {
    let t0 = Instant::now();
    while http(addr, "GET", "/-/ready", b"").map(|r| r.0) != Some(200) {
        assert!(t0.elapsed() < Duration::from_secs(30), "server did not become ready");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn start(addr: SocketAddr, dir: &std::path::Path) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ocelli"));
    cmd.args(["server", "--no-local-agent", "--listen", &addr.to_string(), "--data-dir"]).arg(dir);
    let child = Proc::spawn(cmd, None);
    wait_ready(addr);
    child
}

/// SIGTERM, and the server exits cleanly.
fn sigterm(p: Proc) {
    let status = p.terminate(Duration::from_secs(60));
    assert!(status.success(), "server exited with {status}");
}

fn head_samples(addr: SocketAddr) -> u64 {
    let (_, body) = http(addr, "GET", "/api/v1/status/tsdb", b"").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["headSamples"].as_u64().unwrap() + v["data"]["blockSamples"].as_u64().unwrap()
}

#[test]
fn server_serves_stores_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let child = start(addr, dir.path());
    assert!(dir.path().join("wal").is_dir(), "storage engine not opened in the data dir");
    let t0 = ocelli_model::time::now_ms() - 60_000;
    let s = DecodedSeries {
        labels: Labels::from_pairs([("__name__", "up"), ("job", "x")]).unwrap(),
        // recent: the server refuses samples older than its retention
        samples: (0..42).map(|i| Sample::new(t0 + i * 1000, 1.0)).collect(),
    };
    let body = remote_write::encode(&[s]).unwrap();
    assert_eq!(http(addr, "POST", "/api/v1/write", &body).unwrap().0, 204);
    assert_eq!(head_samples(addr), 42);
    sigterm(child);

    let child = start(addr, dir.path());
    assert_eq!(head_samples(addr), 42, "samples lost across restart");
    sigterm(child);
}

#[test]
fn bad_config_file_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[storage]\nretention = \"forever\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ocelli"))
        .args(["server", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("storage.retention: invalid duration"),
        "{err}"
    );
}

/// The scrape pools `/api/v1/targets` lists.
fn pools(addr: SocketAddr) -> Vec<String> {
    let (_, body) = http(addr, "GET", "/api/v1/targets", b"").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let active = v["data"]["activeTargets"].as_array().unwrap();
    active.iter().map(|t| t["scrapePool"].as_str().unwrap().to_string()).collect()
}

/// Starts `ocelli server --config cfg` on port 0 with its data and `stderr.log` in `dir`; the
/// address is the one it logs.
fn serve_config(dir: &std::path::Path, cfg: &std::path::Path) -> (Proc, SocketAddr) {
    let log = dir.join("stderr.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ocelli"));
    cmd.args(["server", "--no-local-agent", "--listen", "127.0.0.1:0", "--config"])
        .arg(cfg)
        .arg("--data-dir")
        .arg(dir.join("data"));
    let child = Proc::spawn(cmd, Some(&log));
    let addr = ocelli_testkit::logged_addr(&log, Duration::from_secs(30));
    wait_ready(addr);
    (child, addr)
}

fn hup(child: &Proc) {
    child.signal("HUP");
}

/// Waits up to 10 s for `what` to be in the server's stderr log in `dir`.
fn wait_logged(dir: &std::path::Path, what: &str) -> String {
    let t0 = Instant::now();
    loop {
        let log = std::fs::read_to_string(dir.join("stderr.log")).unwrap();
        if log.contains(what) {
            return log;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{what:?} not logged: {log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_reloads_the_scrape_config_and_keeps_it_when_the_file_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ocelli.toml");
    // targets on a closed port with an hour's interval: listed, never scraped
    let job = |name: &str| {
        format!(
            "[[scrape_configs]]\njob_name = \"{name}\"\nscrape_interval = \"1h\"\n[[scrape_configs.static_configs]]\ntargets = [\"127.0.0.1:1\"]\n"
        )
    };
    std::fs::write(&cfg, job("a")).unwrap();
    let (mut child, addr) = serve_config(dir.path(), &cfg);
    assert_eq!(pools(addr), ["a"]);

    std::fs::write(&cfg, job("b")).unwrap();
    hup(&child);
    let t0 = Instant::now();
    while pools(addr) != ["b"] {
        assert!(t0.elapsed() < Duration::from_secs(10), "SIGHUP did not reload: {:?}", pools(addr));
        std::thread::sleep(Duration::from_millis(20));
    }

    // a bad file: logged, and job b keeps running
    std::fs::write(&cfg, job("c").replace("1h", "soon")).unwrap();
    hup(&child);
    let log = wait_logged(dir.path(), "reload failed");
    assert!(log.contains("ocelli.toml: scrape_configs[0] (job \"c\"): scrape_interval"), "{log}");
    assert_eq!(pools(addr), ["b"]);
    assert!(child.child().try_wait().unwrap().is_none(), "SIGHUP ended the server");
    sigterm(child);
}

/// The rule groups `/api/v1/rules` lists, by name.
fn rule_groups(addr: SocketAddr) -> Vec<String> {
    let (_, body) = http(addr, "GET", "/api/v1/rules", b"").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let groups = v["data"]["groups"].as_array().unwrap();
    groups.iter().map(|g| g["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn sighup_reloads_the_rule_files_and_keeps_them_when_one_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("ocelli.toml");
    std::fs::write(&cfg, "[rules]\nfiles = [\"rules/*.yml\"]\n").unwrap();
    std::fs::create_dir(dir.path().join("rules")).unwrap();
    let rules = dir.path().join("rules/r.yml");
    let group = |name: &str| {
        format!(
            "groups:\n  - name: {name}\n    rules:\n      - record: x:sum\n        expr: sum(x)\n"
        )
    };
    std::fs::write(&rules, group("a")).unwrap();
    let (child, addr) = serve_config(dir.path(), &cfg);
    assert_eq!(rule_groups(addr), ["a"]);

    std::fs::write(&rules, group("b")).unwrap();
    hup(&child);
    let t0 = Instant::now();
    while rule_groups(addr) != ["b"] {
        assert!(t0.elapsed() < Duration::from_secs(10), "SIGHUP did not reload the rules");
        std::thread::sleep(Duration::from_millis(20));
    }

    // a bad file: logged with its place, and group b keeps running
    std::fs::write(&rules, group("c").replace("sum(x)", "sum(x")).unwrap();
    hup(&child);
    let log = wait_logged(dir.path(), "loading rule files failed");
    assert!(log.contains("r.yml:5:15: group \"c\", rule \"x:sum\": expr: "), "{log}");
    assert_eq!(rule_groups(addr), ["b"]);
    sigterm(child);
}
