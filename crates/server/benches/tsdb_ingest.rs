//! Storage engine ingest benchmark (a bench binary, not a timed test).
//!
//! Loads a workload made by the shared generator (`gen.py --formats prom`: a `prom.bin` of
//! remote_write bodies and a `manifest.json`) into the engine in-process, the way the server
//! would: N worker threads, each shard's bodies in file order on one worker, each body decoded
//! from snappy + protobuf and appended as one batch, through the server's zero-copy path
//! (`decode_raw`, `Db::append_raw`). Then it cuts the head into blocks and compacts, and
//! reports:
//!
//! - samples/s and process CPU µs per sample during the load (decode + append);
//! - resident memory (VmRSS, VmHWM) after the load, per active series;
//! - bytes on disk per sample after flush and compaction (the whole data directory);
//! - the samples counted back per metric name, which must equal those sent.
//!
//! Run: `cargo bench -p ocelli-server --bench tsdb_ingest -- --workload DIR [--threads 4]
//! [--data-dir DIR] [--json FILE]`. With no workload it prints how to make one and exits 0.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

use ocelli_model::Matcher;
use ocelli_tsdb::{Db, Options};

/// The same allocator as the `ocelli` binary, so memory figures match the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn proc_status(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

/// utime + stime of this process, in seconds.
fn cpu_seconds() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = s.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // fields after the command: state is index 0, utime 11, stime 12
    (ticks(11) + ticks(12)) / 100.0
}

fn dir_bytes(p: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            n += if m.is_dir() { dir_bytes(&e.path()) } else { m.len() };
        }
    }
    n
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(workload) =
        arg(&args, "--workload").or_else(|| std::env::var("OCELLI_BENCH_WORKLOAD").ok())
    else {
        println!(
            "tsdb_ingest: no workload given; make one with the shared generator, e.g.\n  \
             python3 gen.py --out WL --hosts 1000 --series-per-host 100 --interval 10s \
             --duration 2h --formats prom\nthen: cargo bench -p ocelli-server --bench tsdb_ingest -- --workload WL"
        );
        return;
    };
    let workload = PathBuf::from(workload);
    let threads: usize = arg(&args, "--threads").and_then(|v| v.parse().ok()).unwrap_or(4);
    let tmp;
    let data_dir = match arg(&args, "--data-dir") {
        Some(d) => PathBuf::from(d),
        None => {
            tmp = std::env::temp_dir().join(format!("ocelli-bench-{}", std::process::id()));
            tmp.clone()
        }
    };
    let _ = std::fs::remove_dir_all(&data_dir);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(workload.join("manifest.json")).expect("manifest.json"),
    )
    .expect("manifest parses");
    let n_series = manifest["n_series"].as_u64().unwrap_or(0);
    let names: Vec<String> = manifest["metric_names"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();

    let opts = Options { retention_ms: i64::MAX / 4, ..Options::default() };
    let (db, _) = Db::open(&data_dir, opts).expect("open storage");
    let db = std::sync::Arc::new(db);
    let rss_idle = proc_status("VmRSS:");

    let limits = ocelli_wire::remote_write::Limits::default();
    let mut senders = Vec::new();
    let mut workers = Vec::new();
    for _ in 0..threads {
        // one body queued per worker: like a server with one request in flight per connection
        let (tx, rx) = sync_channel::<Vec<u8>>(1);
        senders.push(tx);
        let db = db.clone();
        workers.push(std::thread::spawn(move || {
            // the server's path: snappy into a reused buffer, the zero-copy protobuf walk,
            // and `append_raw`, which builds labels only for series new to the head
            let (mut n, mut proto) = (0u64, Vec::new());
            for body in rx {
                use ocelli_wire::remote_write as rw;
                rw::decompress_into(&body, &limits, &mut proto).expect("snappy");
                let req = rw::decode_raw(&proto).expect("decode");
                let batch: Vec<_> = req.series().collect();
                n += batch.iter().map(|s| s.samples.len() as u64).sum::<u64>();
                db.append_raw(&batch).expect("append");
            }
            n
        }));
    }

    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let mut r =
        BufReader::with_capacity(8 << 20, File::open(workload.join("prom.bin")).expect("prom.bin"));
    let mut hdr = [0u8; 12];
    let mut bodies = 0u64;
    while r.read_exact(&mut hdr).is_ok() {
        let shard = u32::from_le_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]) as usize;
        let len = u32::from_le_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]) as usize;
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).expect("truncated prom.bin");
        senders[shard % threads].send(body).expect("worker alive");
        bodies += 1;
    }
    drop(senders);
    let sent: u64 = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    let load_s = t0.elapsed().as_secs_f64();
    let load_cpu = cpu_seconds() - cpu0;
    let rss = proc_status("VmRSS:");
    let hwm = proc_status("VmHWM:");
    let stats_after_load = db.stats();

    let t1 = Instant::now();
    db.flush().expect("flush");
    db.compact().expect("compact");
    let persist_s = t1.elapsed().as_secs_f64();
    let disk = dir_bytes(&data_dir);
    let (mut index_bytes, mut chunks_bytes) = (0u64, 0u64);
    for b in std::fs::read_dir(data_dir.join("blocks")).into_iter().flatten().flatten() {
        index_bytes += std::fs::metadata(b.path().join("index")).map(|m| m.len()).unwrap_or(0);
        chunks_bytes += std::fs::metadata(b.path().join("chunks")).map(|m| m.len()).unwrap_or(0);
    }
    let st = db.stats();

    let t2 = Instant::now();
    let mut counted = 0u64;
    let mut per_name = HashMap::new();
    for n in &names {
        let got = db
            .select(&[Matcher::equal("__name__", n.as_str())], i64::MIN, i64::MAX)
            .expect("select");
        let c: u64 = got.iter().map(|s| s.samples.len() as u64).sum();
        per_name.insert(n.clone(), c);
        counted += c;
    }
    let count_s = t2.elapsed().as_secs_f64();

    let out = serde_json::json!({
        "workload": workload.display().to_string(),
        "threads": threads,
        "bodies": bodies,
        "samples_sent": sent,
        "samples_counted_back": counted,
        "n_series": n_series,
        "load_s": load_s,
        "samples_per_s": sent as f64 / load_s,
        "cpu_s_during_load": load_cpu,
        "cpu_us_per_sample": load_cpu * 1e6 / sent as f64,
        "rss_idle_bytes": rss_idle,
        "rss_after_load_bytes": rss,
        "peak_rss_bytes": hwm,
        "rss_per_series": rss as f64 / n_series.max(1) as f64,
        "rss_delta_per_series": (rss.saturating_sub(rss_idle)) as f64 / n_series.max(1) as f64,
        "head_bytes_after_load": stats_after_load.head_bytes,
        "persist_s": persist_s,
        "disk_bytes": disk,
        "disk_bytes_per_sample": disk as f64 / sent as f64,
        "blocks": st.blocks,
        "index_bytes": index_bytes,
        "chunks_bytes": chunks_bytes,
        "count_back_s": count_s,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    if let Some(p) = arg(&args, "--json") {
        let _ = std::fs::write(p, serde_json::to_vec_pretty(&out).unwrap_or_default());
    }
    drop(db);
    let _ = std::fs::remove_dir_all(&data_dir);
    if counted != sent {
        eprintln!("MISMATCH: sent {sent} samples, counted back {counted}");
        std::process::exit(1);
    }
}
