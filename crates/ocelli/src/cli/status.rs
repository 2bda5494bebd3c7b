//! `ocelli status`: the server's health at a glance, from four endpoints: `/-/ready`
//! (readiness), `/api/v1/status/buildinfo` (version), `/api/v1/status/tsdb` (active series,
//! samples, sizes), `/metrics` read twice `--sample` apart (the ingest rate: the increase of
//! `ocelli_appended_samples_total` divided by the time between the two reads) and
//! `/api/v1/agents` (agents counted by health).
//!
//! `-o json` prints `{"server","ready","version","ingest_samples_per_second","head_series",
//! "tsdb":{...},"agents":{"total","healthy","unhealthy"}}`.

use std::time::{Duration, Instant};

use clap::Args as ClapArgs;
use hyper::Method;
use serde_json::{Value, json};

use super::client::Api;
use super::output::{self, Table, cell};
use super::{Conn, Failure, Result};

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub conn: Conn,
    /// Time between the two reads of the ingest counter.
    #[arg(long, default_value = "1s")]
    pub sample: String,
}

pub async fn run(a: Args) -> Result<()> {
    let mut api = Api::new(&a.conn)?;
    let gap = super::duration_flag("--sample", &a.sample)?;
    let ready = api.send(Method::GET, "/-/ready", &[], Vec::new()).await?.status == 200;
    let build = api.get("/api/v1/status/buildinfo", &[]).await?;
    let tsdb = api.get("/api/v1/status/tsdb", &[]).await?;
    let first = appended(&api.get_text("/metrics").await?)?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_millis(u64::try_from(gap).unwrap_or(1000))).await;
    let second = appended(&api.get_text("/metrics").await?)?;
    let rate = (second - first).max(0.0) / t0.elapsed().as_secs_f64();
    let agents = api.get("/api/v1/agents", &[]).await?;
    let list = agents.as_array().map(Vec::as_slice).unwrap_or_default();
    let healthy = list.iter().filter(|a| a["health"] == "healthy").count();
    let data = json!({
        "server": api.url(),
        "ready": ready,
        "version": build.get("ocelliVersion").cloned().unwrap_or(Value::Null),
        "ingest_samples_per_second": (rate * 10.0).round() / 10.0,
        "head_series": tsdb.get("headSeries").cloned().unwrap_or(Value::Null),
        "tsdb": tsdb,
        "agents": {"total": list.len(), "healthy": healthy, "unhealthy": list.len() - healthy},
    });
    output::emit(a.conn.output, &data, table)
}

/// `ocelli_appended_samples_total` in exposition text.
fn appended(text: &str) -> Result<f64> {
    const NAME: &str = "ocelli_appended_samples_total";
    text.lines()
        .filter_map(|l| l.strip_prefix(NAME))
        .filter(|rest| rest.starts_with([' ', '{']))
        .find_map(|rest| rest.rsplit(' ').next()?.parse::<f64>().ok())
        .ok_or_else(|| Failure::Local(format!("the server's /metrics has no {NAME}")))
}

fn table(d: &Value) -> String {
    let a = &d["agents"];
    let mut t = Table::new(&["FIELD", "VALUE"]);
    for (k, v) in [
        ("server", cell(&d["server"])),
        ("ready", cell(&d["ready"])),
        ("version", cell(&d["version"])),
        ("ingest rate", format!("{} samples/s", cell(&d["ingest_samples_per_second"]))),
        ("active series", cell(&d["head_series"])),
        ("head samples", cell(&d["tsdb"]["headSamples"])),
        ("block samples", cell(&d["tsdb"]["blockSamples"])),
        ("blocks", cell(&d["tsdb"]["blocks"])),
        (
            "agents",
            format!("{} ({} healthy, {} unhealthy)", a["total"], a["healthy"], a["unhealthy"]),
        ),
    ] {
        t.row(vec![k.into(), v]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ingest_counter_is_found() {
        let text = "# TYPE ocelli_appended_samples_total counter\nocelli_appended_samples_total_x 9\nocelli_appended_samples_total 42\n";
        assert_eq!(appended(text).unwrap(), 42.0);
        assert_eq!(appended("x 1\n").unwrap_err().exit_code(), 4);
    }
}
