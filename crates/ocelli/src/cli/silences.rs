//! `ocelli silences list|create|expire`: the notifier's silences (`/api/v1/silences`, in
//! Alertmanager's v2 shape). `create` takes PromQL-style matchers (`alertname="X"`,
//! `instance=~"db-.*"`, `a!="b"`, `a!~"re"`), a duration or an end time, and a comment; the
//! author defaults to `$USER`.

use clap::Subcommand;
use hyper::Method;
use serde_json::{Value, json};

use super::client::{Api, segment};
use super::output::{self, Table, field};
use super::{Conn, Failure, Result};

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// List silences: active, then pending, then expired.
    List,
    /// Create a silence.
    Create {
        /// A matcher, e.g. 'alertname="HighLoad"' or 'instance=~"db-.*"' (repeat for several;
        /// an alert is silenced when all match).
        #[arg(long = "matcher", short = 'm', required = true)]
        matchers: Vec<String>,
        /// How long from the start (e.g. 2h).
        #[arg(long, required_unless_present = "end", conflicts_with = "end")]
        duration: Option<String>,
        /// The end, RFC 3339 or Unix seconds (instead of --duration).
        #[arg(long)]
        end: Option<String>,
        /// The start, RFC 3339 or Unix seconds [default: now].
        #[arg(long)]
        start: Option<String>,
        /// Why.
        #[arg(long, required = true)]
        comment: String,
        /// Who [default: $USER].
        #[arg(long)]
        author: Option<String>,
    },
    /// Expire a silence now.
    Expire {
        /// The silence's id.
        id: String,
    },
}

pub async fn run(conn: &Conn, verb: Verb) -> Result<()> {
    let mut api = Api::new(conn)?;
    match verb {
        Verb::List => {
            let data = api.get("/api/v1/silences", &[]).await?;
            output::emit(conn.output, &data, list_table)
        }
        Verb::Create { matchers, duration, end, start, comment, author } => {
            let ms: Vec<Value> = matchers.iter().map(|m| matcher(m)).collect::<Result<_>>()?;
            let start = match &start {
                Some(s) => super::time_flag("--start", s)?,
                None => super::now_ms(),
            };
            let end = match (&end, &duration) {
                (Some(e), _) => super::time_flag("--end", e)?,
                (None, Some(d)) => start + super::duration_flag("--duration", d)?,
                (None, None) => {
                    return Err(Failure::Usage("give --duration or --end".into()));
                }
            };
            let author = author.or_else(|| std::env::var("USER").ok()).unwrap_or_default();
            if author.is_empty() {
                return Err(Failure::Usage("--author: not given, and $USER is not set".into()));
            }
            let body = json!({
                "matchers": ms,
                "startsAt": super::rfc3339_ms(start),
                "endsAt": super::rfc3339_ms(end),
                "createdBy": author,
                "comment": comment,
            });
            let data = api.json(Method::POST, "/api/v1/silences", &body).await?;
            output::emit(conn.output, &data, |d| format!("{}\n", field(d, "silenceID")))
        }
        Verb::Expire { id } => {
            let endpoint = format!("/api/v1/silences/{}", segment(&id));
            api.json(Method::DELETE, &endpoint, &Value::Null).await?;
            output::done(conn.output, &json!({ "expired": id }), &format!("expired silence {id}"))
        }
    }
}

/// `name="value"` (`=`, `!=`, `=~`, `!~`; the value quoted or bare) as the API's matcher.
fn matcher(s: &str) -> Result<Value> {
    let bad = |why: &str| {
        Failure::Usage(format!(
            "--matcher {s:?}: {why} (expected NAME=\"VALUE\", with =, !=, =~ or !~)"
        ))
    };
    let name_len = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .ok_or_else(|| bad("no operator"))?;
    let (name, rest) = s.split_at(name_len);
    if name.is_empty() {
        return Err(bad("no label name"));
    }
    let (is_equal, is_regex, value) = if let Some(v) = rest.strip_prefix("=~") {
        (true, true, v)
    } else if let Some(v) = rest.strip_prefix("!~") {
        (false, true, v)
    } else if let Some(v) = rest.strip_prefix("!=") {
        (false, false, v)
    } else if let Some(v) = rest.strip_prefix('=') {
        (true, false, v)
    } else {
        return Err(bad("no operator after the label name"));
    };
    let value = match value.strip_prefix('"') {
        Some(q) => {
            let q = q.strip_suffix('"').ok_or_else(|| bad("the value's quote is not closed"))?;
            let mut out = String::new();
            let mut chars = q.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.push(chars.next().ok_or_else(|| bad("a lone \\ at the end"))?),
                    c => out.push(c),
                }
            }
            out
        }
        None => value.to_string(),
    };
    Ok(json!({"name": name, "value": value, "isRegex": is_regex, "isEqual": is_equal}))
}

fn list_table(data: &Value) -> String {
    let mut t = Table::new(&["ID", "STATE", "MATCHERS", "STARTS", "ENDS", "CREATED BY", "COMMENT"]);
    for s in data.as_array().map(Vec::as_slice).unwrap_or_default() {
        let ms: Vec<String> = s["matchers"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|m| {
                let op = match (m["isEqual"] != false, m["isRegex"] == true) {
                    (true, false) => "=",
                    (false, false) => "!=",
                    (true, true) => "=~",
                    (false, true) => "!~",
                };
                format!("{}{op}{}", field(m, "name"), Value::String(field(m, "value")))
            })
            .collect();
        t.row(vec![
            field(s, "id"),
            field(&s["status"], "state"),
            ms.join(","),
            field(s, "startsAt"),
            field(s, "endsAt"),
            field(s, "createdBy"),
            field(s, "comment"),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers() {
        let m = matcher(r#"alertname="High\"Load""#).unwrap();
        assert_eq!(
            m,
            json!({"name": "alertname", "value": "High\"Load", "isRegex": false, "isEqual": true})
        );
        let m = matcher("instance!~db-.*").unwrap();
        assert_eq!(
            m,
            json!({"name": "instance", "value": "db-.*", "isRegex": true, "isEqual": false})
        );
        assert_eq!(matcher("a!=b").unwrap()["isEqual"], false);
        for (bad, why) in [
            ("=x", "no label name"),
            ("a", "no operator"),
            ("a<b", "no operator"),
            ("a=\"b", "quote"),
        ] {
            let e = matcher(bad).unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
            assert_eq!(e.exit_code(), 2);
        }
    }
}
