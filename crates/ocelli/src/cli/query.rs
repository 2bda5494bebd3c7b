//! `ocelli query EXPR [--time T | --range D [--step S]]`: an instant query
//! (`/api/v1/query`) shown as a table of series, values and times, or a range query
//! (`/api/v1/query_range`) over the `--range` before `--time` (default now), shown as a chart.
//! `-o json|yaml` print the answer's `data` (`resultType` and `result`) as the server sent it.

use clap::Args as ClapArgs;
use serde_json::Value;

use super::chart::{self, Frame, Line};
use super::client::Api;
use super::output::{self, Table};
use super::{Conn, Format, Result};

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub conn: Conn,
    /// The PromQL expression.
    pub expr: String,
    /// Evaluation time, RFC 3339 or Unix seconds [default: now]; with --range, its end.
    #[arg(long)]
    pub time: Option<String>,
    /// Evaluate over this long a range before --time (e.g. 6h) and draw a chart.
    #[arg(long)]
    pub range: Option<String>,
    /// Resolution of a range query [default: the range / 120, at least 1s].
    #[arg(long, requires = "range")]
    pub step: Option<String>,
    /// Height of the chart in lines.
    #[arg(long, default_value_t = 10, requires = "range")]
    pub height: usize,
}

pub async fn run(a: Args) -> Result<()> {
    let mut api = Api::new(&a.conn)?;
    let time = a.time.as_deref().map(|t| super::time_flag("--time", t)).transpose()?;
    let Some(range) = &a.range else {
        let t = time.map(secs);
        let mut params = vec![("query", a.expr.as_str())];
        if let Some(t) = &t {
            params.push(("time", t));
        }
        let data = api.get("/api/v1/query", &params).await?;
        return output::emit(a.conn.output, &data, instant_table);
    };
    let range = super::duration_flag("--range", range)?;
    let step = match &a.step {
        Some(s) => super::duration_flag("--step", s)?,
        None => (range / 120).max(1000),
    };
    let end = time.unwrap_or_else(super::now_ms);
    let start = end - range;
    let (s, e, st) = (secs(start), secs(end), secs(step));
    let params = [("query", a.expr.as_str()), ("start", &s), ("end", &e), ("step", &st)];
    let data = api.get("/api/v1/query_range", &params).await?;
    if a.conn.output != Format::Table {
        return output::emit(a.conn.output, &data, |_| String::new());
    }
    let color = std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none();
    let frame = Frame {
        start: start as f64 / 1000.0,
        end: end as f64 / 1000.0,
        step: step as f64 / 1000.0,
        width: chart::terminal_width(),
        height: a.height,
        color,
    };
    output::print(&chart::render(&lines(&data), frame));
    Ok(())
}

/// Milliseconds as the API's Unix seconds with decimals.
fn secs(ms: i64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

/// The series of a matrix answer as chart lines.
fn lines(data: &Value) -> Vec<Line> {
    let result = data["result"].as_array().map(Vec::as_slice).unwrap_or_default();
    result
        .iter()
        .map(|s| Line {
            name: output::series(&s["metric"]),
            points: s["values"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(|p| Some((p[0].as_f64()?, value(&p[1]))))
                .collect(),
        })
        .collect()
}

/// A sample value as the API writes it (a string, `"NaN"` and `"+Inf"` included).
fn value(v: &Value) -> f64 {
    match v {
        Value::String(s) => match s.as_str() {
            "+Inf" | "Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            s => s.parse().unwrap_or(f64::NAN),
        },
        v => v.as_f64().unwrap_or(f64::NAN),
    }
}

/// `[time, "value"]` as two cells.
fn sample(p: &Value) -> (String, String) {
    let t = p[0].as_f64().map_or("-".into(), |t| super::rfc3339_ms((t * 1000.0).round() as i64));
    (output::cell(&p[1]), t)
}

/// An instant query's answer as a table.
fn instant_table(data: &Value) -> String {
    let result = &data["result"];
    match data["resultType"].as_str() {
        Some("scalar" | "string") => {
            let mut t = Table::new(&["VALUE", "TIME"]);
            let (v, time) = sample(result);
            t.row(vec![v, time]);
            t.render()
        }
        Some("matrix") => {
            let mut t = Table::new(&["SERIES", "VALUE", "TIME"]);
            for s in result.as_array().map(Vec::as_slice).unwrap_or_default() {
                for p in s["values"].as_array().map(Vec::as_slice).unwrap_or_default() {
                    let (v, time) = sample(p);
                    t.row(vec![output::series(&s["metric"]), v, time]);
                }
            }
            t.render()
        }
        _ => {
            let mut t = Table::new(&["SERIES", "VALUE", "TIME"]);
            for s in result.as_array().map(Vec::as_slice).unwrap_or_default() {
                let (v, time) = sample(&s["value"]);
                t.row(vec![output::series(&s["metric"]), v, time]);
            }
            t.render()
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn instant_answers_as_tables() {
        let v = json!({"resultType": "vector", "result": [
            {"metric": {"__name__": "up", "job": "a"}, "value": [1700000000, "1"]},
            {"metric": {"job": "b"}, "value": [1700000000.5, "NaN"]}]});
        assert_eq!(
            instant_table(&v),
            "SERIES       VALUE  TIME\n\
             up{job=\"a\"}  1      2023-11-14T22:13:20Z\n\
             {job=\"b\"}    NaN    2023-11-14T22:13:20.5Z\n"
        );
        let s = json!({"resultType": "scalar", "result": [1700000000, "2"]});
        assert_eq!(instant_table(&s), "VALUE  TIME\n2      2023-11-14T22:13:20Z\n");
    }

    #[test]
    fn matrix_answers_as_lines() {
        let v = json!({"resultType": "matrix", "result": [
            {"metric": {"__name__": "x"}, "values": [[1, "1"], [2, "+Inf"], [3, "2.5"]]}]});
        let l = lines(&v);
        assert_eq!(l[0].name, "x");
        assert_eq!(l[0].points, vec![(1.0, 1.0), (2.0, f64::INFINITY), (3.0, 2.5)]);
        assert_eq!(secs(-1), "-0.001");
        assert_eq!(secs(1_700_000_000_123), "1700000000.123");
    }
}
