//! `ocelli token create|list|revoke` and `ocelli audit`: API tokens through the server's
//! `/api/v1/tokens` (an admin token in `--token`), or, with `--data-dir`, straight in a stopped
//! server's token store, which is how the operator makes the first admin token of a server with
//! `[auth] enabled`. A token is printed once: the server keeps only its hash.

use clap::{Subcommand, ValueEnum};
use hyper::Method;
use serde_json::{Value, json};

use super::client::{Api, segment};
use super::output::{self, Table, field};
use super::{Conn, Failure, Format, Result};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ScopeArg {
    Read,
    Write,
    Admin,
}

#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Make a token; it is printed once (with -o json: {"id", "token", ...}).
    Create {
        /// The namespace it is confined to (none: the operator's, admin only).
        #[arg(long)]
        namespace: Option<String>,
        /// What it may do; join tokens take --join instead.
        #[arg(long, value_enum, required_unless_present = "join")]
        scope: Option<ScopeArg>,
        /// A join token: agents trade it for their own credential (ocelli agent --join-token).
        #[arg(long, conflicts_with = "scope")]
        join: bool,
        /// Join tokens: how many agents it may enrol.
        #[arg(long, requires = "join")]
        uses: Option<u32>,
        /// Lifetime (30d, 12h); none: until revoked.
        #[arg(long)]
        ttl: Option<String>,
        /// Free text shown in lists.
        #[arg(long, default_value = "")]
        description: String,
        /// Write into this stopped server's data directory instead of asking a server.
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
    },
    /// List tokens (never their secrets).
    List {
        /// Also revoked tokens.
        #[arg(long)]
        revoked: bool,
        /// Read this stopped server's data directory instead of asking a server.
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
    },
    /// Revoke a token by id; requests with it are refused from then on.
    Revoke {
        id: String,
        /// Write into this stopped server's data directory instead of asking a server.
        #[arg(long)]
        data_dir: Option<std::path::PathBuf>,
    },
}

pub async fn run(conn: &Conn, verb: Verb) -> Result<()> {
    match verb {
        Verb::Create { namespace, scope, join, uses, ttl, description, data_dir } => {
            let scope = match (scope, join) {
                (_, true) => "join",
                (Some(ScopeArg::Read), _) => "read",
                (Some(ScopeArg::Write), _) => "write",
                (Some(ScopeArg::Admin), _) => "admin",
                (None, false) => {
                    return Err(Failure::Usage("--scope or --join is required".into()));
                }
            };
            let made = match data_dir {
                Some(dir) => {
                    let new = ocelli_server::auth::new_token(
                        None,
                        namespace,
                        scope,
                        ttl.as_deref(),
                        uses,
                        description,
                    )
                    .map_err(|e| Failure::Usage(e.to_string()))?;
                    let store = offline(&dir)?;
                    let (t, secret) = store
                        .create(new, "local", super::now_ms())
                        .map_err(|e| Failure::Usage(e.to_string()))?;
                    store
                        .audit(&ocelli_auth::AuditEntry {
                            time_ms: super::now_ms(),
                            who: "local".into(),
                            namespace: None,
                            action: "token.create".into(),
                            target: t.id.clone(),
                            status: None,
                        })
                        .map_err(|e| Failure::Local(e.to_string()))?;
                    let mut v = t.public();
                    v["token"] = json!(secret);
                    v
                }
                None => {
                    let mut api = Api::new(conn)?;
                    let mut body = json!({"scope": scope, "description": description});
                    if let Some(ns) = namespace {
                        body["namespace"] = json!(ns);
                    }
                    if let Some(t) = ttl {
                        body["ttl"] = json!(t);
                    }
                    if let Some(u) = uses {
                        body["uses"] = json!(u);
                    }
                    api.json(Method::POST, "/api/v1/tokens", &body).await?
                }
            };
            match conn.output {
                Format::Table => {
                    output::print(&format!(
                        "{}\n\nid {}, scope {}, namespace {}: keep the token now, it is not shown again\n",
                        field(&made, "token"),
                        field(&made, "id"),
                        field(&made, "scope"),
                        made.get("namespace")
                            .and_then(Value::as_str)
                            .unwrap_or("(all: the operator's)"),
                    ));
                    Ok(())
                }
                f => output::emit(f, &made, |_| String::new()),
            }
        }
        Verb::List { revoked, data_dir } => {
            let list = match data_dir {
                Some(dir) => {
                    let store = offline(&dir)?;
                    Value::Array(store.list(None, revoked).iter().map(|t| t.public()).collect())
                }
                None => {
                    let mut api = Api::new(conn)?;
                    api.get("/api/v1/tokens", &[]).await?
                }
            };
            output::emit(conn.output, &list, table)
        }
        Verb::Revoke { id, data_dir } => match data_dir {
            Some(dir) => {
                let store = offline(&dir)?;
                let done = store
                    .revoke(&id, super::now_ms())
                    .map_err(|e| Failure::Local(e.to_string()))?;
                if !done {
                    return Err(Failure::Usage(format!("no token with id {id:?} to revoke")));
                }
                output::done(conn.output, &json!({"id": id}), &format!("token {id} revoked"))
            }
            None => {
                let mut api = Api::new(conn)?;
                api.call(
                    Method::DELETE,
                    &format!("/api/v1/tokens/{}", segment(&id)),
                    &[],
                    Vec::new(),
                )
                .await?;
                output::done(conn.output, &json!({"id": id}), &format!("token {id} revoked"))
            }
        },
    }
}

/// The token store of a stopped server's data directory.
fn offline(dir: &std::path::Path) -> Result<ocelli_auth::Store> {
    if !dir.is_dir() {
        return Err(Failure::Usage(format!("--data-dir {}: not a directory", dir.display())));
    }
    ocelli_auth::Store::open(dir).map_err(|e| {
        Failure::Local(format!(
            "{e} (is a server running on {}? stop it, or ask it with --server and --token)",
            dir.display()
        ))
    })
}

fn table(v: &Value) -> String {
    let mut t = Table::new(&["ID", "SCOPE", "NAMESPACE", "EXPIRES", "AGENT", "DESCRIPTION"]);
    for x in v.as_array().into_iter().flatten() {
        let expires = x
            .get("expires_ms")
            .and_then(Value::as_i64)
            .map(|ms| {
                ocelli_model::time::rfc3339(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
                )
            })
            .unwrap_or_else(|| "never".into());
        let revoked = if x.get("revoked_ms").is_some() { " (revoked)" } else { "" };
        t.row(vec![
            format!("{}{revoked}", field(x, "id")),
            field(x, "scope"),
            x.get("namespace").and_then(Value::as_str).unwrap_or("*").to_string(),
            expires,
            x.get("agent").and_then(Value::as_str).unwrap_or("").to_string(),
            field(x, "description"),
        ]);
    }
    t.render()
}

/// `ocelli audit`: the audit log.
pub async fn audit(conn: &Conn, since: Option<String>, limit: usize) -> Result<()> {
    let mut api = Api::new(conn)?;
    let limit = limit.to_string();
    let mut params = vec![("limit", limit.as_str())];
    if let Some(s) = &since {
        params.push(("since", s));
    }
    let v = api.get("/api/v1/audit", &params).await?;
    output::emit(conn.output, &v, |v| {
        let mut t = Table::new(&["TIME", "WHO", "NAMESPACE", "ACTION", "TARGET"]);
        for x in v.as_array().into_iter().flatten() {
            let ms = x.get("time_ms").and_then(Value::as_i64).unwrap_or(0);
            t.row(vec![
                ocelli_model::time::rfc3339(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
                ),
                field(x, "who"),
                x.get("namespace").and_then(Value::as_str).unwrap_or("*").to_string(),
                field(x, "action"),
                field(x, "target"),
            ]);
        }
        t.render()
    })
}
