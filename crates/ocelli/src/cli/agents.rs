//! `ocelli agents list|get|set-mode|delete`: the registry's REST API (`/api/v1/agents`). A key
//! is `ns/service_type/service_id/vm_id/csp`, as `list` shows it; `set-mode` is the `PATCH` that
//! makes the server's mode and interval win over what the agent reports.

use clap::{Subcommand, ValueEnum};
use hyper::Method;
use serde_json::{Value, json};

use super::client::{Api, segment};
use super::output::{self, Table, field};
use super::{Conn, Failure, Result};

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// List registered agents, in key order.
    List {
        /// Only this namespace.
        #[arg(long)]
        ns: Option<String>,
        /// Only this service type (vm, k8s).
        #[arg(long)]
        service_type: Option<String>,
        /// Only this service id.
        #[arg(long)]
        service_id: Option<String>,
        /// Only this cloud (aws, azure, gcp, alibaba, ncp, ktcloud, openstack, onprem).
        #[arg(long)]
        csp: Option<String>,
        /// Only agents of this health (healthy, unhealthy).
        #[arg(long)]
        health: Option<String>,
        /// Only agents in this mode (push, pull, ondemand).
        #[arg(long)]
        mode: Option<String>,
    },
    /// Show one agent.
    Get {
        /// The agent's key: ns/service_type/service_id/vm_id/csp.
        key: String,
    },
    /// Set how an agent runs; the agent switches at its next heartbeat.
    SetMode {
        /// The agent's key: ns/service_type/service_id/vm_id/csp.
        key: String,
        /// The mode.
        mode: Mode,
        /// Seconds between collections (1 to 3600).
        #[arg(long)]
        interval: Option<u32>,
    },
    /// Remove an agent from the registry (one that heartbeats again registers again).
    Delete {
        /// The agent's key: ns/service_type/service_id/vm_id/csp.
        key: String,
    },
}

/// An agent's mode.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Mode {
    Push,
    Pull,
    Ondemand,
}

pub async fn run(conn: &Conn, verb: Verb) -> Result<()> {
    let mut api = Api::new(conn)?;
    match verb {
        Verb::List { ns, service_type, service_id, csp, health, mode } => {
            let filters = [
                ("ns", ns),
                ("service_type", service_type),
                ("service_id", service_id),
                ("csp", csp),
                ("health", health),
                ("mode", mode),
            ];
            let params: Vec<(&str, &str)> =
                filters.iter().filter_map(|(k, v)| Some((*k, v.as_deref()?))).collect();
            let data = api.get("/api/v1/agents", &params).await?;
            output::emit(conn.output, &data, list_table)
        }
        Verb::Get { key } => {
            let data = api.get(&path(&key)?, &[]).await?;
            output::emit(conn.output, &data, output::fields)
        }
        Verb::SetMode { key, mode, interval } => {
            let mode = format!("{mode:?}").to_lowercase();
            let mut body = json!({ "mode": mode });
            if let Some(i) = interval {
                body["interval_seconds"] = json!(i);
            }
            let data = api.json(Method::PATCH, &path(&key)?, &body).await?;
            output::emit(conn.output, &data, output::fields)
        }
        Verb::Delete { key } => {
            let data = api.json(Method::DELETE, &path(&key)?, &Value::Null).await?;
            output::done(conn.output, &data, &format!("deleted agent {key}"))
        }
    }
}

/// The endpoint of one agent; a key without its five parts is a usage error.
fn path(key: &str) -> Result<String> {
    let parts: Vec<&str> = key.split('/').collect();
    if parts.len() != 5 || parts.iter().any(|p| p.is_empty()) {
        return Err(Failure::Usage(format!(
            "KEY: {key:?} is not an agent key (expected ns/service_type/service_id/vm_id/csp, as \
             `ocelli agents list` shows it)"
        )));
    }
    let segs: Vec<String> = parts.iter().map(|p| segment(p)).collect();
    Ok(format!("/api/v1/agents/{}", segs.join("/")))
}

fn list_table(data: &Value) -> String {
    let mut t = Table::new(&[
        "KEY",
        "MODE",
        "INTERVAL",
        "HEALTH",
        "REGION",
        "ADDRESS",
        "VERSION",
        "LAST SEEN",
    ]);
    for a in data.as_array().map(Vec::as_slice).unwrap_or_default() {
        t.row(vec![
            field(a, "key"),
            field(a, "mode"),
            format!("{}s", field(a, "interval_seconds")),
            field(a, "health"),
            field(a, "region"),
            field(a, "address"),
            field(a, "version"),
            field(a, "last_seen"),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_become_paths() {
        assert_eq!(path("default/vm/s/vm-1/aws").unwrap(), "/api/v1/agents/default/vm/s/vm-1/aws");
        let e = path("default/vm/s").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("ns/service_type/service_id/vm_id/csp"), "{e}");
        assert_eq!(path("a b/vm/s/v/aws").unwrap(), "/api/v1/agents/a%20b/vm/s/v/aws");
    }
}
