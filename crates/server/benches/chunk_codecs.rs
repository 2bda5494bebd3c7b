//! Chunk codec comparison (a bench binary): bytes per sample and encode/decode speed of each
//! value codec of `ocelli_tsdb::chunkenc` on a workload made by the shared generator, the
//! measurement behind `docs/rfcs/0001-value-compression.md`.
//!
//! Reads `prom.bin` (remote_write bodies), groups the samples by series, cuts each series into
//! chunks of 120 and 720 samples, and encodes every chunk with each codec forced (Gorilla,
//! DecimalDelta, Pco; an ineligible chunk falls back to Gorilla and is counted) and with the
//! best-of choice `encode_chunk` makes. Bytes count the whole sealed chunk (header and timestamp
//! column included). Also reports the head's Gorilla stream and the sealed head layout.
//!
//! Run: `cargo bench -p ocelli-server --bench chunk_codecs -- --workload DIR`.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::time::Instant;

use ocelli_tsdb::chunkenc::{
    HeadChunk, ValueCodec, chunk_value_codec, decode_chunk, encode_chunk, encode_chunk_with,
};

struct Series {
    family: &'static str,
    ts: Vec<i64>,
    vs: Vec<f64>,
}

fn family(name: &str) -> &'static str {
    if name == "node_cpu_seconds_total" {
        "cpu counter"
    } else if name.ends_with("_total") {
        "other counters"
    } else if name.contains("_bytes") {
        "memory/fs bytes"
    } else {
        "gauges"
    }
}

fn load(workload: &str) -> Vec<Series> {
    let mut r = BufReader::new(File::open(format!("{workload}/prom.bin")).expect("prom.bin"));
    let mut by_series: HashMap<String, Series> = HashMap::new();
    let mut hdr = [0u8; 12];
    let limits = ocelli_wire::remote_write::Limits::default();
    while r.read_exact(&mut hdr).is_ok() {
        let len = u32::from_le_bytes([hdr[8], hdr[9], hdr[10], hdr[11]]) as usize;
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).expect("truncated prom.bin");
        for s in ocelli_wire::remote_write::decode(&body, &limits).expect("decode") {
            let e = by_series.entry(s.labels.to_string()).or_insert_with(|| Series {
                family: family(s.labels.metric_name().unwrap_or("")),
                ts: Vec::new(),
                vs: Vec::new(),
            });
            for x in s.samples {
                e.ts.push(x.t);
                e.vs.push(x.v);
            }
        }
    }
    let mut v: Vec<(String, Series)> = by_series.into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v.into_iter().map(|(_, s)| s).collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(workload) = args.iter().position(|a| a == "--workload").and_then(|i| args.get(i + 1))
    else {
        println!("chunk_codecs: pass --workload DIR (a gen.py output with prom.bin)");
        return;
    };
    let series = load(workload);
    let total: usize = series.iter().map(|s| s.ts.len()).sum();
    println!("{} series, {total} samples\n", series.len());
    let mut buf = Vec::new();
    for len in [120usize, 720] {
        println!("## chunks of {len} samples: bytes per sample\n");
        let fams: Vec<&str> = {
            let mut f: Vec<&str> = series.iter().map(|s| s.family).collect();
            f.sort();
            f.dedup();
            f
        };
        println!("| codec | {} | all | encode ns/sample | decode ns/sample |", fams.join(" | "));
        println!("|---|{}---|---|---|", "---|".repeat(fams.len()));
        for (name, codec) in [
            ("Gorilla", Some(ValueCodec::Gorilla)),
            ("DecimalDelta", Some(ValueCodec::DecimalDelta)),
            ("Pco", Some(ValueCodec::Pco)),
            ("best-of", None),
        ] {
            let mut acc: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
            let mut encoded = Vec::new();
            let t0 = Instant::now();
            for s in &series {
                for (ts, vs) in s.ts.chunks(len).zip(s.vs.chunks(len)) {
                    buf.clear();
                    let a = acc.entry(s.family).or_default();
                    match codec {
                        None => encode_chunk(ts, vs, &mut buf),
                        Some(c) => {
                            if encode_chunk_with(ts, vs, c, &mut buf).is_none() {
                                a.2 += ts.len();
                                encode_chunk_with(ts, vs, ValueCodec::Gorilla, &mut buf);
                            }
                        }
                    }
                    a.0 += buf.len();
                    a.1 += ts.len();
                    encoded.push(buf.clone());
                }
            }
            let enc = t0.elapsed().as_nanos() as f64 / total as f64;
            let (mut ts, mut vs) = (Vec::new(), Vec::new());
            let t0 = Instant::now();
            for b in &encoded {
                ts.clear();
                vs.clear();
                decode_chunk(b, &mut ts, &mut vs).expect("decode");
            }
            let dec = t0.elapsed().as_nanos() as f64 / total as f64;
            let cells: Vec<String> = acc
                .values()
                .map(|&(b, n, fb)| {
                    let fb = if fb > 0 {
                        format!(" ({}% fallback)", 100 * fb / n)
                    } else {
                        String::new()
                    };
                    format!("{:.3}{fb}", b as f64 / n as f64)
                })
                .collect();
            let (b, n) = acc.values().fold((0, 0), |(b, n), a| (b + a.0, n + a.1));
            println!(
                "| {name} | {} | {:.3} | {enc:.0} | {dec:.0} |",
                cells.join(" | "),
                b as f64 / n as f64
            );
            if codec.is_none() {
                let mut picks: BTreeMap<String, usize> = BTreeMap::new();
                for b in &encoded {
                    *picks
                        .entry(format!("{:?}", chunk_value_codec(b).expect("codec")))
                        .or_default() += 1;
                }
                println!("\nbest-of picked (chunks): {picks:?}\n");
            }
        }
    }
    // the head: one Gorilla stream per 720 samples, against the sealed layout the head uses
    // (sealed 120-sample chunks plus one open stream)
    let (mut gorilla, mut sealed, mut n) = (0usize, 0usize, 0usize);
    for s in &series {
        for (ts, vs) in s.ts.chunks(720).zip(s.vs.chunks(720)) {
            let mut h = HeadChunk::new();
            for (&t, &v) in ts.iter().zip(vs) {
                h.append(t, v);
            }
            gorilla += h.heap_bytes();
            for (i, (cts, cvs)) in ts.chunks(120).zip(vs.chunks(120)).enumerate() {
                if (i + 1) * 120 < ts.len() {
                    buf.clear();
                    encode_chunk(cts, cvs, &mut buf);
                    sealed += buf.len() + 32; // time range and boxed slice handle
                } else {
                    let mut h = HeadChunk::new();
                    for (&t, &v) in cts.iter().zip(cvs) {
                        h.append(t, v);
                    }
                    sealed += h.heap_bytes();
                }
            }
            n += 1;
        }
    }
    println!(
        "## head memory per 720 samples of a series\n\nGorilla stream only: {:.0} bytes; sealed every 120 samples: {:.0} bytes",
        gorilla as f64 / n as f64,
        sealed as f64 / n as f64
    );
}
