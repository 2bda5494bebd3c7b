//! The `ocelli` command-line client as a real process against a real `ocelli server` on a free
//! loopback port: `query` (instant table, JSON, range chart), `import` of exposition text and of
//! a remote_write dump, `status`, `agents`, `alarms` (with their history), `silences`, `rules`,
//! `completions`, and the exit codes scripts rely on: 1 with the server's message for a refused
//! request, 2 for a usage error, 3 with one line when the server is unreachable.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

#[path = "../../server/tests/common/mod.rs"]
mod common;

use ocelli_model::time::now_ms;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use ocelli_model::{Labels, Sample};
use ocelli_wire::remote_write::{self, DecodedSeries};
use serde_json::Value;

/// A server process, killed when dropped so that a failing test leaves nothing running.
struct Server {
    child: Child,
    url: String,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ocelli server --no-local-agent` with a notifier config that has receiver `ops` (a webhook
/// to a closed port) and rules evaluated every second.
fn server(dir: &Path) -> Server {
    let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    std::fs::write(
        dir.join("am.yml"),
        "route:\n  receiver: ops\nreceivers:\n  - name: ops\n    webhook_configs:\n      - url: http://127.0.0.1:1/hook\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("server.toml"),
        "[rules]\nevaluation_interval = \"1s\"\n\n[notifier]\nconfig_file = \"am.yml\"\n",
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ocelli"))
        .args(["server", "--no-local-agent", "--listen", &addr.to_string(), "--config"])
        .arg(dir.join("server.toml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let s = Server { child, url: format!("http://{addr}"), addr };
    common::wait("the server to be ready", Duration::from_secs(30), || {
        std::net::TcpStream::connect(addr).ok()?;
        (common::http(addr, "GET", "/-/ready", b"").0 == 200).then_some(())
    });
    s
}

/// Runs `ocelli ARGS` against the server at `url` (through `OCELLI_SERVER`), with `stdin`.
fn ocelli_in(url: &str, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_ocelli"))
        .args(args)
        .env("OCELLI_SERVER", url)
        .env("COLUMNS", "60")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

fn ocelli(url: &str, args: &[&str]) -> Output {
    ocelli_in(url, args, b"")
}

/// Runs `ocelli ARGS`, asserts it succeeded, and answers stdout.
fn ok(url: &str, args: &[&str]) -> String {
    let out = ocelli(url, args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "ocelli {args:?}: {:?}\n{stderr}\n{stdout}", out.status);
    stdout
}

/// Runs `ocelli ARGS` and parses its stdout as JSON.
fn json(url: &str, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["-o", "json"]);
    let out = ok(url, &a);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

#[test]
fn query_import_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path());
    let now = now_ms();

    // exposition text in several requests: two series, one sample a minute for an hour
    let mut exp = String::from("# HELP demo_load A demo.\n# TYPE demo_load gauge\n");
    for i in 0..60 {
        let t = now - 3_600_000 + i * 60_000;
        exp.push_str(&format!("demo_load{{host=\"a\"}} {} {t}\n", i % 7));
        exp.push_str(&format!("demo_load{{host=\"b\"}} {} {t}\n", 10 + i % 3));
    }
    std::fs::write(dir.path().join("demo.prom"), &exp).unwrap();
    let out = ok(
        &s.url,
        &["import", dir.path().join("demo.prom").to_str().unwrap(), "--chunk-bytes", "1000"],
    );
    let requests: usize =
        out.split(" in ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(out.contains(&format!("{} bytes", exp.len())) && requests >= 3, "{out}");

    // a remote_write dump of two requests, 5 samples each
    let mut dump = Vec::new();
    for part in 0..2 {
        let series = DecodedSeries {
            labels: Labels::from_pairs([("__name__", "rw_demo"), ("part", &part.to_string())])
                .unwrap(),
            samples: (0..5).map(|i| Sample::new(now - 60_000 + i * 1000, i as f64)).collect(),
        };
        let body = remote_write::encode(&[series]).unwrap();
        dump.extend((body.len() as u32).to_be_bytes());
        dump.extend(&body);
    }
    let dump_path = dir.path().join("rw.dump");
    std::fs::write(&dump_path, &dump).unwrap();
    let v = json(&s.url, &["import", dump_path.to_str().unwrap(), "--format", "remote-write"]);
    assert_eq!((v["requests"].as_u64(), v["bytes"].as_u64()), (Some(2), Some(dump.len() as u64)));
    let v = json(&s.url, &["query", "sum(count_over_time(rw_demo[5m]))"]);
    assert_eq!(v["result"][0]["value"][1], "10", "{v}");
    // a truncated dump sends nothing: local failure, exit 4
    std::fs::write(&dump_path, &dump[..dump.len() - 3]).unwrap();
    let out = ocelli(&s.url, &["import", dump_path.to_str().unwrap(), "--format", "remote-write"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(text(&out).1.contains("frame 2 at byte"), "{out:?}");

    // instant query: a table, and the server's data as JSON and YAML
    let t = (now / 1000 + 1).to_string(); // every step of the hour before has data
    let table = ok(&s.url, &["query", "demo_load", "--time", &t]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["SERIES", "VALUE", "TIME"]);
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[1].starts_with("demo_load{host=\"a\"}  "), "{table}");
    let v = json(&s.url, &["query", "sum(demo_load)", "--time", &t]);
    assert_eq!(v["resultType"], "vector");
    let last = 59 % 7 + 10 + 59 % 3;
    assert_eq!(v["result"][0]["value"][1], last.to_string(), "{v}");
    let yaml = ok(&s.url, &["query", "sum(demo_load)", "--time", &t, "-o", "yaml"]);
    assert!(yaml.contains("resultType: vector") && yaml.contains(&format!("\"{last}\"")), "{yaml}");

    // range query: a chart 60 columns wide with a legend
    let chart = ok(&s.url, &["query", "demo_load", "--range", "1h", "--step", "1m", "--time", &t]);
    let rows: Vec<&str> = chart.lines().collect();
    assert!(rows[0].starts_with("12 ┤") && rows[9].starts_with(" 0 ┤"), "{chart}");
    assert_eq!(rows[0].chars().count(), 60, "{chart}");
    assert!(chart.chars().any(|c| ('\u{2801}'..='\u{28ff}').contains(&c)), "{chart}");
    assert!(chart.contains("demo_load{host=\"b\"}  12") && !chart.contains('\x1b'), "{chart}");
    let v = json(&s.url, &["query", "demo_load", "--range", "1h", "--step", "1m", "--time", &t]);
    assert_eq!(v["resultType"], "matrix");
    assert_eq!(v["result"][0]["values"].as_array().unwrap().len(), 61);

    // status: readiness, ingest rate, active series, agents
    let v = json(&s.url, &["status", "--sample", "200ms"]);
    assert_eq!(v["ready"], true);
    assert_eq!(v["head_series"], 4, "{v}");
    assert!(v["ingest_samples_per_second"].as_f64().unwrap() >= 0.0);
    assert_eq!(v["agents"]["total"], 0);
    let out = ok(&s.url, &["status"]);
    assert!(out.contains("active series  4") && out.contains("ready          true"), "{out}");
}

#[test]
fn a_refused_import_names_its_lines_and_what_was_stored() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path());
    let mut exp: String = (0..20).map(|i| format!("good_{i} 1\n")).collect();
    exp.push_str("bad{ 1\n");
    std::fs::write(dir.path().join("bad.prom"), &exp).unwrap();
    let out = ocelli(
        &s.url,
        &["import", dir.path().join("bad.prom").to_str().unwrap(), "--chunk-bytes", "40"],
    );
    let (_, err) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("error: ") && err.lines().count() == 1, "{err}");
    // 40-byte requests of 4 lines: the last one (good_18, good_19, bad) is refused whole
    assert!(err.contains("bad.prom: lines 19-21 (line numbers below count from 19): "), "{err}");
    assert!(err.contains("; 18 lines in 4 requests before them were stored"), "{err}");
    let v = json(&s.url, &["query", "count({__name__=~\"good_.*\"})"]);
    assert_eq!(v["result"][0]["value"][1], "18", "{v}");
}

#[test]
fn agents_alarms_silences_and_rules() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path());
    let beat = r#"{"ns":"default","service_type":"vm","service_id":"s1","vm_id":"vm-1","csp":"aws","region":"r1","address":"127.0.0.1:1","version":"0.1.0","mode":"push","interval_seconds":10}"#;
    assert_eq!(common::http(s.addr, "POST", "/api/v1/agents/heartbeat", beat.as_bytes()).0, 201);
    let key = "default/vm/s1/vm-1/aws";

    // agents
    let out = ok(&s.url, &["agents", "list"]);
    let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0][..4], ["KEY", "MODE", "INTERVAL", "HEALTH"]);
    assert_eq!(rows[1][..5], [key, "push", "10s", "healthy", "r1"], "{out}");
    assert_eq!(json(&s.url, &["agents", "list", "--health", "unhealthy"]), Value::Array(vec![]));
    let v = json(&s.url, &["agents", "set-mode", key, "pull", "--interval", "15"]);
    assert_eq!((v["mode"].as_str(), v["interval_seconds"].as_u64()), (Some("pull"), Some(15)));
    let out = ok(&s.url, &["agents", "get", key]);
    assert!(out.contains("mode              pull"), "{out}");
    assert_eq!(ok(&s.url, &["agents", "delete", key]), format!("deleted agent {key}\n"));
    let out = ocelli(&s.url, &["agents", "get", key]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out).1, format!("error: no agent is registered with key \"{key}\"\n"));

    // alarms: from flags and from a JSON file on stdin
    let v = json(
        &s.url,
        &[
            "alarms",
            "create",
            "--id",
            "always",
            "--expr",
            "vector(5)",
            "--comparison",
            ">",
            "--warning",
            "1",
            "--interval",
            "1s",
            "--message",
            "five",
            "--handler",
            "ops",
        ],
    );
    assert_eq!((v["id"].as_str(), v["expr_warning"].is_string()), (Some("always"), true), "{v}");
    let file = r#"{"id": "cpu", "metric": "cpu_busy", "comparison": ">", "critical": 90, "target": {"vm_id": "vm-1"}}"#;
    let out = ocelli_in(&s.url, &["alarms", "create", "-f", "-"], file.as_bytes());
    assert!(out.status.success(), "{out:?}");
    let out = ok(&s.url, &["alarms", "list"]);
    let ids: Vec<&str> =
        out.lines().skip(1).map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(ids, ["always", "cpu"], "{out}");
    let out = ocelli(
        &s.url,
        &[
            "alarms",
            "create",
            "--id",
            "x",
            "--metric",
            "m",
            "--comparison",
            ">",
            "--warning",
            "1",
            "--handler",
            "pager",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("handlers: no receiver \"pager\""), "{out:?}");
    let out = ocelli(
        &s.url,
        &[
            "alarms",
            "create",
            "--id",
            "cpu",
            "--metric",
            "m",
            "--comparison",
            ">",
            "--warning",
            "1",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // the history: the alarm fires at its first evaluation
    let events = common::wait("the alarm to fire", Duration::from_secs(20), || {
        let v = json(&s.url, &["alarms", "history", "always"]);
        let list = v.as_array().unwrap().clone();
        list.iter().any(|e| e["state"] == "firing").then_some(list)
    });
    assert!(
        events.iter().all(|e| e["labels"]["alarm_id"] == "always" || e["kind"] == "notification")
    );
    let out = ok(&s.url, &["alarms", "history", "always", "--kind", "state"]);
    assert!(out.starts_with("AT ") && out.contains(" always ") && out.contains("firing"), "{out}");

    // rules: the alarms run as rule groups
    let out = ok(&s.url, &["rules", "--type", "alert"]);
    assert!(out.contains("alarm:always") && out.contains("alerting"), "{out}");
    let out = ocelli(&s.url, &["rules", "--type", "both"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    assert_eq!(ok(&s.url, &["alarms", "delete", "always"]), "deleted alarm always\n");
    let out = ocelli(&s.url, &["alarms", "get", "always"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.starts_with("error: ") && text(&out).1.lines().count() == 1);

    // silences
    let v = json(
        &s.url,
        &[
            "silences",
            "create",
            "-m",
            "alertname=\"cpu\"",
            "-m",
            "vm_id=~\"vm-.*\"",
            "--duration",
            "2h",
            "--comment",
            "maintenance",
            "--author",
            "ops",
        ],
    );
    let id = v["silenceID"].as_str().unwrap().to_string();
    let out = ok(&s.url, &["silences", "list"]);
    assert!(
        out.contains(&id)
            && out.contains("active")
            && out.contains(r#"alertname="cpu",vm_id=~"vm-.*""#),
        "{out}"
    );
    assert_eq!(ok(&s.url, &["silences", "expire", &id]), format!("expired silence {id}\n"));
    let v = json(&s.url, &["silences", "list"]);
    assert_eq!(v[0]["status"]["state"], "expired", "{v}");
    let out =
        ocelli(&s.url, &["silences", "create", "-m", "a", "--duration", "1h", "--comment", "c"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn exit_codes_and_completions() {
    let dir = tempfile::tempdir().unwrap();
    let s = server(dir.path());
    // a query the server refuses: 1, its message on one line
    let out = ocelli(&s.url, &["query", "sum(("]);
    assert_eq!(out.status.code(), Some(1));
    let (stdout, err) = text(&out);
    assert!(stdout.is_empty() && err.starts_with("error: ") && err.lines().count() == 1, "{err}");
    // usage errors: clap's and ours
    assert_eq!(ocelli(&s.url, &["query"]).status.code(), Some(2));
    assert_eq!(
        ocelli(&s.url, &["agents", "set-mode", "a/b/c/d/e", "sometimes"]).status.code(),
        Some(2)
    );
    assert_eq!(ocelli(&s.url, &["query", "up", "--range", "soon"]).status.code(), Some(2));
    let out = ocelli("https://127.0.0.1:1", &["rules", "--ca-pin", "sha256:12"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("--ca-pin: "), "{out:?}");
    // an unreachable server: 3, one line naming the server
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("http://{closed}");
    for args in [&["status"][..], &["query", "up"], &["agents", "list"], &["alarms", "list"]] {
        let out = ocelli(&url, args);
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        let (_, err) = text(&out);
        assert!(
            err.starts_with(&format!("error: cannot reach the Ocelli server at {url}: ")),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    // --server wins over OCELLI_SERVER
    let out = ok(&url, &["rules", "--server", &s.url]);
    assert!(out.starts_with("GROUP"), "{out}");
    // completions
    let bash = ok(&s.url, &["completions", "bash"]);
    for verb in ["query", "agents", "alarms", "silences", "rules", "status", "import", "set-mode"] {
        assert!(bash.contains(verb), "bash completion lacks {verb}");
    }
    assert!(ok(&s.url, &["completions", "zsh"]).contains("#compdef ocelli"));
    // --help documents the exit codes
    assert!(ok(&s.url, &["--help"]).contains("3  the server is unreachable"));
}
