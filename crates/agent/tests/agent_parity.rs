//! Parity with the real thing: Debian's `prometheus-node-exporter` 1.5 with its default
//! collectors runs next to the agent on loopback. For every family both expose: the same type
//! and the same label sets (the agent's identity labels aside; empty labels count as absent,
//! as in Prometheus); identical values for static facts (memory and swap totals, filesystem
//! sizes and inodes, boot time, the CPU set, uname, OS version); and counters that fall between
//! two agent readings taken just before and just after node_exporter's.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::http::http;
use common::{config, runtime};
use ocelli_agent::{Agent, Mode};
use ocelli_testkit::{Service, free_port, require};
use ocelli_wire::exposition::MetricKind;

const IDENTITY: [&str; 6] = ["csp", "ns", "region", "service_id", "service_type", "vm_id"];

/// A family: its type and its samples by label set (identity labels removed).
#[derive(Debug, Default)]
struct Family {
    kind: Option<MetricKind>,
    samples: BTreeMap<Vec<(String, String)>, f64>,
}

fn scrape(addr: SocketAddr) -> BTreeMap<String, Family> {
    let (status, body) = http(addr, "GET", "/metrics", b"");
    assert_eq!(status, 200, "{addr}: {body}");
    let parsed = common::parse(body.as_bytes());
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    for s in parsed.series {
        let name = s.labels.metric_name().unwrap().to_string();
        let labels = s
            .labels
            .iter()
            .filter(|l| l.name != "__name__" && !IDENTITY.contains(&l.name.as_str()))
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        out.entry(name).or_default().samples.insert(labels, s.samples[0].v);
    }
    for m in parsed.metadata {
        if let Some(f) = out.get_mut(&m.family) {
            f.kind = Some(m.kind);
        }
    }
    out
}

/// Families that hold facts which do not change while the test runs.
const STATIC: [&str; 10] = [
    "node_memory_MemTotal_bytes",
    "node_memory_SwapTotal_bytes",
    "node_filesystem_size_bytes",
    "node_filesystem_files",
    "node_filesystem_readonly",
    "node_boot_time_seconds",
    "node_uname_info",
    "node_os_info",
    "node_os_version",
    "node_disk_info",
];

/// Families both must expose, so that the comparison is never vacuous.
const REQUIRED: [&str; 12] = [
    "node_cpu_seconds_total",
    "node_cpu_guest_seconds_total",
    "node_load1",
    "node_memory_MemAvailable_bytes",
    "node_vmstat_pgfault",
    "node_filesystem_avail_bytes",
    "node_disk_written_bytes_total",
    "node_network_transmit_bytes_total",
    "node_context_switches_total",
    "node_procs_running",
    "node_uname_info",
    "node_os_info",
];

#[test]
fn same_families_labels_and_values_as_node_exporter() {
    let bin = require("prometheus-node-exporter", "prometheus-node-exporter");
    let ne_addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg(format!("--web.listen-address={ne_addr}"));
    let _ne = Service::start(cmd, ne_addr, Duration::from_secs(20));
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let agent = rt.block_on(Agent::start(config(Mode::Pull, dir.path()))).unwrap();

    let before = scrape(agent.addr);
    let ne = scrape(ne_addr);
    let after = scrape(agent.addr);

    let common_names: BTreeSet<&String> =
        ne.keys().filter(|n| after.contains_key(*n) && !n.starts_with("node_scrape_")).collect();
    for r in REQUIRED {
        assert!(common_names.contains(&r.to_string()), "{r} is not exposed by both");
    }
    assert!(common_names.len() >= 100, "only {} families in common", common_names.len());
    let mut bracketed = 0;
    for name in common_names {
        let (a, b, n) = (&before[name], &after[name], &ne[name]);
        assert_eq!(a.kind, n.kind, "{name}: type differs");
        let a_sets: BTreeSet<_> = a.samples.keys().collect();
        let n_sets: BTreeSet<_> = n.samples.keys().collect();
        assert_eq!(a_sets, n_sets, "{name}: label sets differ");
        let monotonic = n.kind == Some(MetricKind::Counter) || name.starts_with("node_vmstat_");
        for (labels, nv) in &n.samples {
            let (av, bv) = (a.samples[labels], b.samples[labels]);
            if STATIC.contains(&name.as_str()) {
                assert_eq!(av, *nv, "{name}{labels:?}: agent {av}, node_exporter {nv}");
            } else if monotonic {
                // read in between the agent's two readings; a hair of slack for CPU idle time,
                // which some kernels let step back
                let tol = 1e-9 * bv.abs() + 0.05;
                assert!(
                    av - tol <= *nv && *nv <= bv + tol,
                    "{name}{labels:?}: node_exporter {nv} outside the agent's {av}..{bv}"
                );
                bracketed += 1;
            }
        }
    }
    assert!(bracketed > 50, "only {bracketed} counters compared");
    // the CPU set, as a count
    let cpus = |f: &Family| {
        f.samples
            .keys()
            .filter_map(|l| l.iter().find(|(k, _)| k == "cpu").map(|(_, v)| v.clone()))
            .collect::<BTreeSet<_>>()
    };
    let agent_cpus = cpus(&after["node_cpu_seconds_total"]);
    assert_eq!(agent_cpus, cpus(&ne["node_cpu_seconds_total"]));
    assert_eq!(
        after["ocelli_cpu_count"].samples.values().next().copied(),
        Some(agent_cpus.len() as f64)
    );
    rt.block_on(agent.stop()).unwrap();
}
