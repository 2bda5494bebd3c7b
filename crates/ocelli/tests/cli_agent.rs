//! `ocelli agent` as a real process: push without a server is refused at start with a message
//! saying what to do; `ocelli agent --mode pull --listen ADDR --data-dir DIR` (and the same under
//! `ocelli agent run`) serves `/metrics` with no server at all and exits cleanly on SIGTERM.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

#[path = "../../server/tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

fn ocelli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ocelli"))
}

#[test]
fn push_without_a_server_is_refused_at_start() {
    let out =
        ocelli().args(["agent", "--mode", "push", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mode push needs a server: pass --server URL"), "{err}");
    let out =
        ocelli().args(["agent", "--csp", "moon", "--listen", "127.0.0.1:0"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"csp: "moon" is not allowed; expected one of aws, azure, gcp"#),
        "{err}"
    );
}

#[test]
fn pull_mode_serves_metrics_standalone_and_stops_on_sigterm() {
    for run in [&["agent"][..], &["agent", "run"][..]] {
        let dir = tempfile::tempdir().unwrap();
        // port 0: the agent binds a free port itself and logs it, so no other test can take
        // the port between a probe and the agent's bind
        let mut child = ocelli()
            .args(run)
            .args(["--mode", "pull", "--listen", "127.0.0.1:0", "--vm-id", "vm-cli", "--data-dir"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let addr = bound_address(child.stderr.take().unwrap());
        let (status, body) = common::http(addr, "GET", "/metrics", b"");
        assert_eq!(status, 200, "{body}");
        let load = r#"node_load1{csp="onprem",ns="default",region="unknown",service_id="default",service_type="vm",vm_id="vm-cli"} "#;
        assert!(body.contains(load), "{body}");
        let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        assert!(kill.success());
        let status = child.wait().unwrap();
        assert!(status.success(), "agent exited with {status}");
    }
}

/// The address the agent logs in its "agent running" line (`addr=IP:PORT`); the rest of its
/// log is drained in the background so the agent never blocks on a full pipe.
fn bound_address(stderr: std::process::ChildStderr) -> SocketAddr {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let addr = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("addr="))
                .and_then(|a| a.parse::<SocketAddr>().ok());
            if let (Some(a), Some(t)) = (addr, &tx) {
                let _ = t.send(a);
                tx = None;
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("the agent did not log the address it listens on")
}

#[test]
fn install_and_uninstall_stage_the_service_under_a_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_str().unwrap();
    let out = ocelli()
        .args(["agent", "install", "--root", root, "--binary", "/opt/ocelli/bin/ocelli"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let unit = std::fs::read_to_string(dir.path().join("etc/systemd/system/ocelli-agent.service"))
        .unwrap();
    assert!(
        unit.contains("ExecStart=/opt/ocelli/bin/ocelli agent run --config /etc/ocelli/agent.toml")
    );
    assert!(unit.contains("DynamicUser=yes"), "{unit}");
    assert!(dir.path().join("etc/ocelli/agent.toml").exists());
    let out = ocelli().args(["agent", "uninstall", "--root", root]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!dir.path().join("etc/systemd/system/ocelli-agent.service").exists());
    assert!(String::from_utf8_lossy(&out.stdout).contains("kept"));
}
