//! `ocelli alarms list|get|create|delete|history`: threshold alarms over `/api/v1/alarms`, and
//! their history over `/api/v1/history` (so the history of a deleted alarm stays readable).
//! `create` sends either a JSON file (the API's alarm object; `-` reads stdin) or one built
//! from flags; the server checks it either way and its message names the field.

use std::io::Read;

use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{Map, Value, json};

use super::client::{Api, segment};
use super::output::{self, Table, cell, field};
use super::{Conn, Failure, Result};

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// List every alarm, by id.
    List,
    /// Show one alarm, with the rules it runs as.
    Get {
        /// The alarm's id.
        id: String,
    },
    /// Create an alarm from a JSON file or from flags.
    Create(Box<Create>),
    /// Delete an alarm and its rules (its history stays).
    Delete {
        /// The alarm's id.
        id: String,
    },
    /// State changes and notifications of one alarm (or of every alert), newest first.
    History {
        /// The alarm's id [default: every alert's history].
        id: Option<String>,
        /// At most this many events.
        #[arg(long)]
        limit: Option<u32>,
        /// Only `state` changes or `notification`s.
        #[arg(long)]
        kind: Option<String>,
    },
}

/// `ocelli alarms create`: `-f FILE`, or the alarm's fields as flags.
#[derive(Args, Debug)]
pub struct Create {
    /// The alarm as JSON (the API's object), `-` for stdin; excludes the other flags.
    #[arg(short = 'f', long = "file", conflicts_with_all = ["id", "metric", "expr", "comparison", "warning", "critical"])]
    pub file: Option<String>,
    /// The alarm's id (1 to 64 of A-Z a-z 0-9 _ . -).
    #[arg(long, required_unless_present = "file")]
    pub id: Option<String>,
    /// The alerts' alertname [default: the id].
    #[arg(long)]
    pub name: Option<String>,
    /// A metric name (or give --expr).
    #[arg(long, conflicts_with = "expr", required_unless_present_any = ["file", "expr"])]
    pub metric: Option<String>,
    /// A PromQL expression giving an instant vector (or give --metric).
    #[arg(long)]
    pub expr: Option<String>,
    /// The comparison: >, >=, <, <=, == or !=.
    #[arg(long, required_unless_present = "file")]
    pub comparison: Option<String>,
    /// The warning threshold.
    #[arg(long, allow_negative_numbers = true)]
    pub warning: Option<f64>,
    /// The critical threshold.
    #[arg(long, allow_negative_numbers = true)]
    pub critical: Option<f64>,
    /// How long the comparison must hold before the alert fires (e.g. 5m).
    #[arg(long = "for")]
    pub for_: Option<String>,
    /// Evaluation interval [default: the server's evaluation_interval].
    #[arg(long)]
    pub interval: Option<String>,
    /// The alerts' summary.
    #[arg(long)]
    pub message: Option<String>,
    /// A receiver of the notifier's config to notify (repeat for several).
    #[arg(long = "handler")]
    pub handlers: Vec<String>,
    /// More labels for the alerts, NAME=VALUE (repeat for several).
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Target: namespace.
    #[arg(long)]
    pub ns: Option<String>,
    /// Target: service type (vm, k8s).
    #[arg(long)]
    pub service_type: Option<String>,
    /// Target: service id.
    #[arg(long)]
    pub service_id: Option<String>,
    /// Target: VM id.
    #[arg(long)]
    pub vm_id: Option<String>,
    /// Target: cloud (aws, azure, gcp, alibaba, ncp, ktcloud, openstack, onprem).
    #[arg(long)]
    pub csp: Option<String>,
}

pub async fn run(conn: &Conn, verb: Verb) -> Result<()> {
    let mut api = Api::new(conn)?;
    match verb {
        Verb::List => {
            let data = api.get("/api/v1/alarms", &[]).await?;
            output::emit(conn.output, &data, list_table)
        }
        Verb::Get { id } => {
            let data = api.get(&path(&id), &[]).await?;
            output::emit(conn.output, &data, output::fields)
        }
        Verb::Create(c) => {
            let body = match &c.file {
                Some(f) => read_json(f)?,
                None => from_flags(&c)?,
            };
            let data = api.json(Method::POST, "/api/v1/alarms", &body).await?;
            output::emit(conn.output, &data, output::fields)
        }
        Verb::Delete { id } => {
            let data = api.json(Method::DELETE, &path(&id), &Value::Null).await?;
            output::done(conn.output, &data, &format!("deleted alarm {id}"))
        }
        Verb::History { id, limit, kind } => {
            let limit = limit.map(|l| l.to_string());
            let filters = [
                ("alarm_id", id.as_deref()),
                ("limit", limit.as_deref()),
                ("kind", kind.as_deref()),
            ];
            let params: Vec<(&str, &str)> =
                filters.iter().filter_map(|(k, v)| Some((*k, (*v)?))).collect();
            let data = api.get("/api/v1/history", &params).await?;
            output::emit(conn.output, &data, history_table)
        }
    }
}

fn path(id: &str) -> String {
    format!("/api/v1/alarms/{}", segment(id))
}

/// A JSON file, or stdin for `-`; unreadable or malformed is a local failure naming the file.
fn read_json(file: &str) -> Result<Value> {
    let mut text = String::new();
    let read = if file == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(file).map(|t| text = t)
    };
    let name = if file == "-" { "stdin" } else { file };
    read.map_err(|e| Failure::Local(format!("{name}: {e}")))?;
    serde_json::from_str(&text).map_err(|e| Failure::Local(format!("{name}: not JSON: {e}")))
}

/// The alarm object the flags describe; only given fields are set.
fn from_flags(c: &Create) -> Result<Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    };
    let s = |v: &Option<String>| v.as_ref().map(|s| json!(s));
    put("id", s(&c.id));
    put("name", s(&c.name));
    put("metric", s(&c.metric));
    put("expr", s(&c.expr));
    put("comparison", s(&c.comparison));
    put("warning", c.warning.map(|v| json!(v)));
    put("critical", c.critical.map(|v| json!(v)));
    put("for", s(&c.for_));
    put("interval", s(&c.interval));
    put("message", s(&c.message));
    put("handlers", (!c.handlers.is_empty()).then(|| json!(c.handlers)));
    let mut target = Map::new();
    for (k, v) in [
        ("ns", &c.ns),
        ("service_type", &c.service_type),
        ("service_id", &c.service_id),
        ("vm_id", &c.vm_id),
        ("csp", &c.csp),
    ] {
        if let Some(v) = v {
            target.insert(k.into(), json!(v));
        }
    }
    put("target", (!target.is_empty()).then_some(Value::Object(target)));
    let mut labels = Map::new();
    for l in &c.labels {
        let (k, v) = l
            .split_once('=')
            .ok_or_else(|| Failure::Usage(format!("--label: {l:?} is not NAME=VALUE")))?;
        labels.insert(k.into(), json!(v));
    }
    put("labels", (!labels.is_empty()).then_some(Value::Object(labels)));
    Ok(Value::Object(m))
}

fn list_table(data: &Value) -> String {
    let mut t =
        Table::new(&["ID", "WHAT", "CMP", "WARNING", "CRITICAL", "FOR", "HANDLERS", "TARGET"]);
    for a in data.as_array().map(Vec::as_slice).unwrap_or_default() {
        let what = a.get("metric").or_else(|| a.get("expr")).unwrap_or(&Value::Null);
        t.row(vec![
            field(a, "id"),
            cell(what),
            field(a, "comparison"),
            field(a, "warning"),
            field(a, "critical"),
            field(a, "for"),
            field(a, "handlers"),
            field(a, "target"),
        ]);
    }
    t.render()
}

fn history_table(data: &Value) -> String {
    let mut t = Table::new(&["AT", "KIND", "RULE/RECEIVER", "STATE/OUTCOME", "DETAIL"]);
    for e in data.as_array().map(Vec::as_slice).unwrap_or_default() {
        let row = if e["kind"] == "notification" {
            let who = format!("{}/{}", field(e, "receiver"), field(e, "integration"));
            let resolved = if e["resolved"] == true { "resolved" } else { "firing" };
            let mut detail = format!("{resolved}, attempt {}", field(e, "attempt"));
            if let Some(err) = e["error"].as_str() {
                detail.push_str(&format!(": {err}"));
            }
            vec![field(e, "at"), "notification".into(), who, field(e, "outcome"), detail]
        } else {
            let sev = e["labels"]["severity"].as_str().unwrap_or("-");
            let detail = format!("severity {sev}, value {}", field(e, "value"));
            vec![field(e, "at"), "state".into(), field(e, "rule"), field(e, "state"), detail]
        };
        t.row(row);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct T {
        #[command(subcommand)]
        v: Verb,
    }

    #[test]
    fn flags_make_the_alarm_object() {
        let t = T::try_parse_from([
            "t",
            "create",
            "--id",
            "cpu",
            "--metric",
            "cpu_busy",
            "--comparison",
            ">",
            "--warning",
            "80",
            "--critical",
            "90",
            "--for",
            "1m",
            "--handler",
            "ops",
            "--vm-id",
            "vm-1",
            "--label",
            "team=db",
        ])
        .unwrap();
        let Verb::Create(c) = t.v else { panic!() };
        let v = from_flags(&c).unwrap();
        assert_eq!(
            v,
            json!({"id": "cpu", "metric": "cpu_busy", "comparison": ">", "warning": 80.0,
                   "critical": 90.0, "for": "1m", "handlers": ["ops"],
                   "target": {"vm_id": "vm-1"}, "labels": {"team": "db"}})
        );
        assert!(T::try_parse_from(["t", "create", "-f", "a.json", "--id", "x"]).is_err());
        assert!(T::try_parse_from(["t", "create", "--id", "x", "--comparison", ">"]).is_err());
        assert!(T::try_parse_from(["t", "create", "-f", "a.json"]).is_ok());
    }
}
