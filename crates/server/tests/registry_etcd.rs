//! The registry test suite of `tests/registry.rs`, every test again, with the registry in etcd
//! (`[registry] etcd`): a real etcd from Debian's `etcd-server`, one per test (started on the
//! test's thread, stopped when the thread ends), on loopback ports.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

#[path = "registry.rs"]
mod suite;

use std::cell::RefCell;

thread_local! {
    static ETCD: RefCell<Option<ocelli_testkit::Etcd>> = const { RefCell::new(None) };
}

/// Points `c` at this test's etcd, started on first use.
fn registry_backend(c: &mut ocelli_server::Config) {
    ETCD.with_borrow_mut(|e| {
        let etcd = e.get_or_insert_with(ocelli_testkit::Etcd::start);
        c.registry.etcd = vec![etcd.url.clone()];
    });
}

/// What makes etcd worth it: two servers share one registry. An agent registered through one
/// is listed by the other, a change made on the other shows on the first, a delete on either
/// is seen by both, and neither keeps a registry file of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_one_registry() {
    use serde_json::json;
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let etcd = ocelli_testkit::Etcd::start();
    let cfg = |dir: &std::path::Path| {
        let mut c = suite::common::config(dir);
        c.registry.up_interval = "200ms".into();
        c.registry.etcd = vec![etcd.url.clone()];
        c
    };
    let a = ocelli_server::Server::start(cfg(da.path())).await.unwrap();
    let b = ocelli_server::Server::start(cfg(db.path())).await.unwrap();
    let (aa, ab) = (a.addr, b.addr);
    tokio::task::spawn_blocking(move || {
        let (code, v) =
            suite::heartbeat(aa, &suite::beat("shared", "vm-1", "push", 5, "127.0.0.1:9"));
        assert_eq!(code, 201, "{v}");
        let key = "default/vm/shared/vm-1/aws";
        let within = std::time::Duration::from_secs(10);
        suite::common::wait("server b to list the agent", within, || {
            (suite::list(ab, "") == [key]).then_some(())
        });
        // the operator sets on-demand mode through b; a sees it
        let path = format!("/api/v1/agents/{key}");
        let (code, v) = suite::call(ab, "PATCH", &path, &json!({"mode": "ondemand"}));
        assert_eq!(code, 200, "{v}");
        suite::common::wait("server a to see the new mode", within, || {
            (suite::agent(aa, key)["mode"] == "ondemand").then_some(())
        });
        let (code, v) = suite::call(ab, "DELETE", &path, &serde_json::Value::Null);
        assert_eq!(code, 200, "{v}");
        suite::common::wait("server a to drop the agent", within, || {
            suite::list(aa, "").is_empty().then_some(())
        });
    })
    .await
    .unwrap();
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    assert!(!da.path().join("registry.redb").exists());
    assert!(!db.path().join("registry.redb").exists());
}
