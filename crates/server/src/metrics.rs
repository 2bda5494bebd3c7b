//! The server's own health as Prometheus exposition text on `GET /metrics`: HTTP requests by
//! handler and status code (so rejected requests show by reason: 400 malformed, 413 too large,
//! 422 failed evaluation, 503 unavailable), request durations, samples appended, active series,
//! and the storage engine's WAL, head write-out and compaction counters and timings, and the
//! agent registry's agents by mode and health.
//!
//! Written by hand: a few counters need no metrics library, and the text format is ours to
//! emit exactly.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::Result;
use ocelli_model::format_value;

use crate::state::AppState;
use ocelli_http::blocking;
use ocelli_wire::exposition::escape_label_value as escape_label;

pub(crate) async fn metrics(State(st): State<AppState>) -> Result<Response> {
    let db = st.db.clone();
    let s = blocking(move || Ok(db.stats())).await?;
    let mut out = String::with_capacity(4096);
    let mut family = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
            format_value(value)
        );
    };
    family(
        "ocelli_appended_samples_total",
        "counter",
        "Samples appended (acknowledged) since start.",
        s.appended_samples as f64,
    );
    family(
        "ocelli_head_series",
        "gauge",
        "Series in the in-memory head (active series).",
        s.head_series as f64,
    );
    family("ocelli_head_samples", "gauge", "Samples in the in-memory head.", s.head_samples as f64);
    family(
        "ocelli_head_bytes",
        "gauge",
        "Bytes of sample data in the in-memory head.",
        s.head_bytes as f64,
    );
    family("ocelli_blocks", "gauge", "Persistent blocks.", s.blocks as f64);
    family(
        "ocelli_block_bytes",
        "gauge",
        "Bytes of persistent blocks on disk.",
        s.block_bytes as f64,
    );
    family("ocelli_wal_bytes", "gauge", "Bytes of write-ahead log on disk.", s.wal_bytes as f64);
    family(
        "ocelli_wal_records_total",
        "counter",
        "Write-ahead log records queued since start.",
        s.wal_records as f64,
    );
    family(
        "ocelli_wal_writes_total",
        "counter",
        "Write-ahead log write calls since start.",
        s.wal_writes as f64,
    );
    family(
        "ocelli_wal_fsyncs_total",
        "counter",
        "Write-ahead log fdatasync calls since start.",
        s.wal_syncs as f64,
    );
    family(
        "ocelli_wal_fsync_seconds_total",
        "counter",
        "Seconds spent in write-ahead log fdatasync since start.",
        s.wal_sync_seconds,
    );
    family(
        "ocelli_head_writes_total",
        "counter",
        "Heads written out as blocks since start.",
        s.head_writes as f64,
    );
    family(
        "ocelli_head_write_seconds_total",
        "counter",
        "Seconds spent writing heads out as blocks since start.",
        s.head_write_seconds,
    );
    family(
        "ocelli_compactions_total",
        "counter",
        "Compaction passes that merged blocks since start.",
        s.compactions as f64,
    );
    family(
        "ocelli_compaction_seconds_total",
        "counter",
        "Seconds spent in compaction passes since start.",
        s.compaction_seconds,
    );
    for (name, help, get) in [
        ("ocelli_rollup_blocks", "Rollup blocks by resolution (seconds).", 0),
        ("ocelli_rollup_windows", "Windows in rollup blocks by resolution (seconds).", 1),
        ("ocelli_rollup_bytes", "Bytes of rollup blocks on disk by resolution (seconds).", 2),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for r in &s.rollups {
            let v = [r.blocks as f64, r.windows as f64, r.bytes as f64][get];
            let _ = writeln!(
                out,
                "{name}{{resolution=\"{}\"}} {}",
                r.resolution_ms / 1000,
                format_value(v)
            );
        }
    }
    let m = st.requests.by_handler();
    out.push_str("# HELP ocelli_http_requests_total HTTP requests by handler and status code.\n# TYPE ocelli_http_requests_total counter\n");
    for ((h, code), (n, _)) in m.iter() {
        let _ = writeln!(
            out,
            "ocelli_http_requests_total{{handler=\"{}\",code=\"{code}\"}} {n}",
            escape_label(h)
        );
    }
    out.push_str("# HELP ocelli_http_request_seconds_total Seconds spent answering HTTP requests, by handler and status code.\n# TYPE ocelli_http_request_seconds_total counter\n");
    for ((h, code), (_, secs)) in m.iter() {
        let _ = writeln!(
            out,
            "ocelli_http_request_seconds_total{{handler=\"{}\",code=\"{code}\"}} {}",
            escape_label(h),
            format_value(*secs)
        );
    }
    crate::registry::api::write_metrics(&st.registry, &mut out);
    crate::alerting::rules::api::write_metrics(&st.rules, &mut out);
    crate::alerting::notify::api::write_metrics(&st.notifier, &mut out);
    st.aggregator.write_metrics(&mut out);
    write_ingest_refusals(&mut out);
    if let Some(f) = &st.forwarder {
        f.write_metrics(&mut out);
    }
    if let Some(c) = &st.collector {
        let agents = st.registry.counts().values().sum::<usize>();
        crate::cluster::collector::write_metrics(c, &st.cluster, agents, &mut out);
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], out).into_response())
}

/// Samples and Influx fields that writes left out, by reason.
fn write_ingest_refusals(out: &mut String) {
    use std::sync::atomic::Ordering;
    let name = "ocelli_ingest_samples_refused_total";
    let _ = writeln!(
        out,
        "# HELP {name} Samples left out of writes for being outside the time bounds (older than \
         the retention, or too far in the future).\n# TYPE {name} counter"
    );
    for (reason, n) in ocelli_ingest::bounds::refused_total() {
        let _ = writeln!(out, "{name}{{reason=\"{reason}\"}} {n}");
    }
    let fields = crate::ingest::influx::STRING_FIELDS_DROPPED.load(Ordering::Relaxed);
    let lines = crate::ingest::influx::STRING_ONLY_LINES_DROPPED.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP ocelli_ingest_influx_string_fields_dropped_total Influx string field values, \
         which series cannot hold.\n# TYPE ocelli_ingest_influx_string_fields_dropped_total \
         counter\nocelli_ingest_influx_string_fields_dropped_total {fields}\n# HELP \
         ocelli_ingest_influx_lines_dropped_total Influx lines that stored nothing, by reason.\n\
         # TYPE ocelli_ingest_influx_lines_dropped_total counter\n\
         ocelli_ingest_influx_lines_dropped_total{{reason=\"string_fields_only\"}} {lines}"
    );
}
