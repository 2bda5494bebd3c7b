//! `ocelli rules [--type alert|record]`: the rule groups of `/api/v1/rules` (rule files and
//! threshold alarms alike), one row per rule with its group, type, health, state and query.

use clap::Args as ClapArgs;
use serde_json::Value;

use super::client::Api;
use super::output::{self, Table, field};
use super::{Conn, Result};

#[derive(ClapArgs, Debug)]
pub struct Args {
    #[command(flatten)]
    pub conn: Conn,
    /// Only alerting (`alert`) or recording (`record`) rules.
    #[arg(long = "type")]
    pub kind: Option<String>,
}

pub async fn run(a: Args) -> Result<()> {
    let mut api = Api::new(&a.conn)?;
    let params: Vec<(&str, &str)> = a.kind.as_deref().map(|k| ("type", k)).into_iter().collect();
    let data = api.get("/api/v1/rules", &params).await?;
    output::emit(a.conn.output, &data, table)
}

fn table(data: &Value) -> String {
    let mut t = Table::new(&["GROUP", "RULE", "TYPE", "HEALTH", "STATE", "QUERY", "LAST ERROR"]);
    for g in data["groups"].as_array().map(Vec::as_slice).unwrap_or_default() {
        for r in g["rules"].as_array().map(Vec::as_slice).unwrap_or_default() {
            t.row(vec![
                field(g, "name"),
                field(r, "name"),
                field(r, "type"),
                field(r, "health"),
                field(r, "state"),
                field(r, "query"),
                field(r, "lastError"),
            ]);
        }
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn one_row_per_rule() {
        let v = json!({"groups": [{"name": "g", "rules": [
            {"name": "x:sum", "type": "recording", "health": "ok", "query": "sum(x)"},
            {"name": "High", "type": "alerting", "health": "err", "state": "firing",
             "query": "x > 1", "lastError": "boom"}]}]});
        assert_eq!(
            table(&v),
            "GROUP  RULE   TYPE       HEALTH  STATE   QUERY   LAST ERROR\n\
             g      x:sum  recording  ok      -       sum(x)  -\n\
             g      High   alerting   err     firing  x > 1   boom\n"
        );
    }
}
