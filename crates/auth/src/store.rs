//! The tokens and the audit log: one redb file in the data directory, [`FILE_NAME`], with a
//! table from token id to the [`Token`] as JSON (hash, never the token) and a table from a
//! sequence number to an [`AuditEntry`] as JSON.
//!
//! Every token is also held in memory, so checking a request's token reads no file; changes
//! commit with redb's immediate durability (fsync) before the map changes, so an answered
//! creation or revocation is on disk. redb locks its file: the offline `ocelli token create
//! --data-dir` fails with a clear message while a server holds the directory.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use parking_lot::RwLock;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::token::{self, Principal, Scope, Token};
use ocelli_http::{Error, Result};

/// The file in the data directory.
pub const FILE_NAME: &str = "auth.redb";

const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");

const CACHE_BYTES: usize = 4 << 20;

/// The most audit entries one read returns.
pub const MAX_AUDIT_READ: usize = 10_000;

/// What a new token is for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    #[serde(default)]
    pub namespace: Option<String>,
    pub scope: Option<Scope>,
    /// Lifetime in milliseconds; `None`: until revoked.
    #[serde(skip)]
    pub ttl_ms: Option<i64>,
    /// Join tokens: how many enrolments it allows.
    #[serde(default)]
    pub uses: Option<u32>,
    #[serde(skip)]
    pub agent: Option<String>,
    #[serde(skip)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub description: String,
}

/// Why a presented token was refused (each a 401 with this text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    Malformed(&'static str),
    Unknown,
    Revoked,
    Expired,
    UsedUp,
}

impl std::fmt::Display for Denied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Denied::Malformed(why) => write!(f, "invalid credential: {why}"),
            Denied::Unknown => f.write_str("invalid credential: unknown token"),
            Denied::Revoked => f.write_str("invalid credential: the token was revoked"),
            Denied::Expired => f.write_str("invalid credential: the token has expired"),
            Denied::UsedUp => f.write_str("invalid credential: the join token has no uses left"),
        }
    }
}

/// One change, as the audit log keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Unix milliseconds.
    pub time_ms: i64,
    /// The token id that made the change; `local` for the offline command, `open` where the
    /// server runs without auth.
    pub who: String,
    /// The namespace of the token that made it (none: the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `token.create`, `token.revoke`, `agent.enrol`, or `METHOD /route` of a change through
    /// the API.
    pub action: String,
    /// What was changed: a token id, a path.
    pub target: String,
    /// The answer's status where it came through the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// The open token store.
pub struct Store {
    db: redb::Database,
    tokens: RwLock<HashMap<String, Token>>,
    next_audit: RwLock<u64>,
}

ocelli_http::opaque_debug!(Store);

fn err(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("token store ({FILE_NAME}) {what}: {e}"))
}

impl Store {
    /// Opens (or creates) the store in `data_dir` and reads every token.
    pub fn open(data_dir: &Path) -> Result<Store> {
        let db = ocelli_http::embedded::open(data_dir, FILE_NAME, CACHE_BYTES).map_err(|e| {
            Error::Internal(format!("cannot open {}: {e}", data_dir.join(FILE_NAME).display()))
        })?;
        let tx = db.begin_write().map_err(|e| err("cannot write", e))?;
        tx.open_table(TOKENS).map_err(|e| err("cannot write", e))?;
        tx.open_table(AUDIT).map_err(|e| err("cannot write", e))?;
        tx.commit().map_err(|e| err("cannot write", e))?;
        let mut tokens = HashMap::new();
        let next_audit;
        {
            let tx = db.begin_read().map_err(|e| err("cannot read", e))?;
            let table = tx.open_table(TOKENS).map_err(|e| err("cannot read", e))?;
            for row in table.iter().map_err(|e| err("cannot read", e))? {
                let (k, v) = row.map_err(|e| err("cannot read", e))?;
                let t: Token = serde_json::from_slice(v.value())
                    .map_err(|e| err(&format!("token {}", k.value()), e))?;
                tokens.insert(t.id.clone(), t);
            }
            let audit = tx.open_table(AUDIT).map_err(|e| err("cannot read", e))?;
            next_audit =
                audit.last().map_err(|e| err("cannot read", e))?.map_or(0, |(k, _)| k.value() + 1);
        }
        Ok(Store { db, tokens: RwLock::new(tokens), next_audit: RwLock::new(next_audit) })
    }

    /// Whether any token exists (a server with auth on and none can only be opened with the
    /// offline command).
    pub fn is_empty(&self) -> bool {
        self.tokens.read().values().all(|t| t.revoked())
    }

    /// Makes a token; returns it and its secret text (shown once, stored only hashed).
    pub fn create(&self, new: NewToken, by: &str, now_ms: i64) -> Result<(Token, String)> {
        let scope = new.scope.ok_or_else(|| {
            Error::BadData("scope: missing; expected read, write or admin".into())
        })?;
        if let Some(ns) = &new.namespace {
            token::check_namespace(ns).map_err(Error::BadData)?;
        } else if scope != Scope::Admin {
            return Err(Error::BadData(format!(
                "a {scope} token needs a namespace; only admin tokens may have none (the operator's)"
            )));
        }
        if new.uses.is_some() && scope != Scope::Join {
            return Err(Error::BadData("uses: only join tokens have a number of uses".into()));
        }
        if new.uses == Some(0) {
            return Err(Error::BadData("uses: must be at least 1".into()));
        }
        if new.ttl_ms.is_some_and(|ttl| ttl <= 0) {
            return Err(Error::BadData("ttl: must be positive".into()));
        }
        ocelli_model::identity::check_text("description", &new.description, 256)
            .or_else(|e| if new.description.is_empty() { Ok(()) } else { Err(e) })
            .map_err(Error::BadData)?;
        let (id, secret) = token::generate().map_err(Error::Internal)?;
        let mut labels = new.labels;
        if let Some(ns) = &new.namespace {
            labels.insert("ns".into(), ns.clone());
        }
        let t = Token {
            id: id.clone(),
            namespace: new.namespace,
            scope,
            created_ms: now_ms,
            expires_ms: new.ttl_ms.map(|ttl| now_ms.saturating_add(ttl)),
            uses_left: new.uses,
            agent: new.agent,
            labels,
            description: new.description,
            created_by: by.to_string(),
            revoked_ms: None,
            hash: token::hash(&secret),
        };
        self.put(&t)?;
        self.tokens.write().insert(id, t.clone());
        Ok((t, secret))
    }

    fn put(&self, t: &Token) -> Result<()> {
        let json = serde_json::to_vec(t).map_err(|e| err("cannot encode", e))?;
        let tx = self.db.begin_write().map_err(|e| err("cannot write", e))?;
        {
            let mut table = tx.open_table(TOKENS).map_err(|e| err("cannot write", e))?;
            table.insert(t.id.as_str(), json.as_slice()).map_err(|e| err("cannot write", e))?;
        }
        tx.commit().map_err(|e| err("cannot write", e))
    }

    /// Tokens that `viewer` may see (a namespace's own; the operator all), newest first;
    /// revoked ones only with `revoked`.
    pub fn list(&self, viewer: Option<&Principal>, revoked: bool) -> Vec<Token> {
        let mut v: Vec<Token> = self
            .tokens
            .read()
            .values()
            .filter(|t| revoked || !t.revoked())
            .filter(|t| viewer.is_none_or(|p| p.namespace.is_none() || p.namespace == t.namespace))
            .cloned()
            .collect();
        v.sort_by(|a, b| b.created_ms.cmp(&a.created_ms).then(a.id.cmp(&b.id)));
        v
    }

    pub fn get(&self, id: &str) -> Option<Token> {
        self.tokens.read().get(id).cloned()
    }

    /// Revokes a token; `Ok(false)` where there is none (or it was already revoked).
    pub fn revoke(&self, id: &str, now_ms: i64) -> Result<bool> {
        let Some(mut t) = self.get(id) else { return Ok(false) };
        if t.revoked() {
            return Ok(false);
        }
        t.revoked_ms = Some(now_ms);
        self.put(&t)?;
        self.tokens.write().insert(t.id.clone(), t);
        Ok(true)
    }

    /// Revokes every credential of the agent with registry key `agent`; the ids revoked.
    pub fn revoke_agent(&self, agent: &str, now_ms: i64) -> Result<Vec<String>> {
        let ids: Vec<String> = self
            .tokens
            .read()
            .values()
            .filter(|t| !t.revoked() && t.agent.as_deref() == Some(agent))
            .map(|t| t.id.clone())
            .collect();
        for id in &ids {
            self.revoke(id, now_ms)?;
        }
        Ok(ids)
    }

    /// Checks a presented token.
    pub fn authenticate(
        &self,
        presented: &str,
        now_ms: i64,
    ) -> std::result::Result<Principal, Denied> {
        let id = token::parse(presented).map_err(Denied::Malformed)?;
        let tokens = self.tokens.read();
        let t = tokens.get(id).ok_or(Denied::Unknown)?;
        if !token::matches(presented, &t.hash) {
            return Err(Denied::Unknown);
        }
        if t.revoked() {
            return Err(Denied::Revoked);
        }
        if t.expired(now_ms) {
            return Err(Denied::Expired);
        }
        if t.uses_left == Some(0) {
            return Err(Denied::UsedUp);
        }
        Ok(Principal {
            token_id: t.id.clone(),
            namespace: t.namespace.clone(),
            scope: t.scope,
            agent: t.agent.clone(),
            labels: t.labels.clone(),
        })
    }

    /// Spends one use of a join token (checked by [`Store::authenticate`] first).
    pub fn spend_join(&self, id: &str) -> Result<()> {
        let Some(mut t) = self.get(id) else {
            return Err(Error::Unauthorized(Denied::Unknown.to_string()));
        };
        match t.uses_left {
            Some(0) => return Err(Error::Unauthorized(Denied::UsedUp.to_string())),
            Some(n) => t.uses_left = Some(n - 1),
            None => return Ok(()),
        }
        self.put(&t)?;
        self.tokens.write().insert(t.id.clone(), t);
        Ok(())
    }

    /// Appends to the audit log.
    pub fn audit(&self, entry: &AuditEntry) -> Result<()> {
        let json = serde_json::to_vec(entry).map_err(|e| err("cannot encode", e))?;
        let mut next = self.next_audit.write();
        let tx = self.db.begin_write().map_err(|e| err("cannot write", e))?;
        {
            let mut table = tx.open_table(AUDIT).map_err(|e| err("cannot write", e))?;
            table.insert(*next, json.as_slice()).map_err(|e| err("cannot write", e))?;
        }
        tx.commit().map_err(|e| err("cannot write", e))?;
        *next += 1;
        Ok(())
    }

    /// Audit entries from `since_ms` on, oldest first, at most `limit` (the newest ones),
    /// those of namespace `ns` only where given.
    pub fn audit_log(
        &self,
        since_ms: i64,
        ns: Option<&str>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        let limit = limit.clamp(1, MAX_AUDIT_READ);
        let tx = self.db.begin_read().map_err(|e| err("cannot read", e))?;
        let table = tx.open_table(AUDIT).map_err(|e| err("cannot read", e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| err("cannot read", e))?.rev() {
            let (_, v) = row.map_err(|e| err("cannot read", e))?;
            let e: AuditEntry =
                serde_json::from_slice(v.value()).map_err(|e| err("audit entry", e))?;
            if e.time_ms < since_ms {
                break;
            }
            if ns.is_some() && e.namespace.as_deref() != ns {
                continue;
            }
            out.push(e);
            if out.len() == limit {
                break;
            }
        }
        out.reverse();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(ns: Option<&str>, scope: Scope) -> NewToken {
        NewToken { namespace: ns.map(String::from), scope: Some(scope), ..NewToken::default() }
    }

    #[test]
    fn tokens_are_stored_hashed_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (t, secret) = {
            let s = Store::open(dir.path()).unwrap();
            assert!(s.is_empty());
            s.create(new(Some("team-a"), Scope::Read), "local", 1000).unwrap()
        };
        let raw = std::fs::read(dir.path().join(FILE_NAME)).unwrap();
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret is on disk"
        );
        let s = Store::open(dir.path()).unwrap();
        let p = s.authenticate(&secret, 2000).unwrap();
        assert_eq!(
            (p.token_id.as_str(), p.namespace.as_deref(), p.scope),
            (t.id.as_str(), Some("team-a"), Scope::Read)
        );
        assert_eq!(p.labels.get("ns").map(String::as_str), Some("team-a"));
        assert_eq!(s.list(None, false).len(), 1);
    }

    #[test]
    fn refusals_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (t, secret) = s
            .create(NewToken { ttl_ms: Some(1000), ..new(Some("a"), Scope::Write) }, "x", 0)
            .unwrap();
        assert!(s.authenticate(&secret, 999).is_ok());
        assert_eq!(s.authenticate(&secret, 1000), Err(Denied::Expired));
        let (_, other) = s.create(new(Some("a"), Scope::Write), "x", 0).unwrap();
        assert!(s.revoke(token::parse(&other).unwrap(), 5).unwrap());
        assert_eq!(s.authenticate(&other, 6), Err(Denied::Revoked));
        assert!(!s.revoke(&t.id, 7).unwrap() || s.authenticate(&secret, 8).is_err());
        // same id, another secret: unknown, not a hint that the id exists
        let forged = format!("ocelli_{}_{}", t.id, "0".repeat(64));
        assert_eq!(s.authenticate(&forged, 1), Err(Denied::Unknown));
        assert_eq!(s.authenticate("nope", 1), Err(Denied::Malformed("not an Ocelli token")));
        assert_eq!(
            s.authenticate("nope", 1).unwrap_err().to_string(),
            "invalid credential: not an Ocelli token"
        );
    }

    #[test]
    fn creation_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let e = |n: NewToken| s.create(n, "x", 0).unwrap_err().to_string();
        assert_eq!(
            e(new(None, Scope::Read)),
            "a read token needs a namespace; only admin tokens may have none (the operator's)"
        );
        assert_eq!(
            e(new(Some("../etc"), Scope::Read)),
            "namespace: \"../etc\" has '/' at position 3; only [A-Za-z0-9_.-] is allowed"
        );
        assert_eq!(e(new(Some(".."), Scope::Read)), "namespace: \"..\" starts with '.'");
        assert_eq!(
            e(NewToken { uses: Some(2), ..new(Some("a"), Scope::Read) }),
            "uses: only join tokens have a number of uses"
        );
        assert_eq!(
            e(NewToken { scope: None, ..NewToken::default() }),
            "scope: missing; expected read, write or admin"
        );
        assert!(s.list(None, true).is_empty());
    }

    #[test]
    fn join_tokens_run_out() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (t, secret) =
            s.create(NewToken { uses: Some(2), ..new(Some("a"), Scope::Join) }, "x", 0).unwrap();
        for _ in 0..2 {
            s.authenticate(&secret, 1).unwrap();
            s.spend_join(&t.id).unwrap();
        }
        assert_eq!(s.authenticate(&secret, 1), Err(Denied::UsedUp));
        assert!(s.spend_join(&t.id).is_err());
        // the count survives a reopen
        drop(s);
        assert_eq!(Store::open(dir.path()).unwrap().authenticate(&secret, 1), Err(Denied::UsedUp));
    }

    #[test]
    fn agent_credentials_are_revoked_with_the_agent() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (_, secret) = s
            .create(
                NewToken { agent: Some("a/vm/s/v/aws".into()), ..new(Some("a"), Scope::Write) },
                "x",
                0,
            )
            .unwrap();
        assert_eq!(s.revoke_agent("a/vm/s/v/aws", 1).unwrap().len(), 1);
        assert_eq!(s.authenticate(&secret, 2), Err(Denied::Revoked));
    }

    #[test]
    fn the_audit_log_reads_back_by_time_and_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        for (i, ns) in [None, Some("a"), Some("b"), Some("a")].into_iter().enumerate() {
            s.audit(&AuditEntry {
                time_ms: i as i64 * 10,
                who: format!("t{i}"),
                namespace: ns.map(String::from),
                action: "token.create".into(),
                target: "x".into(),
                status: None,
            })
            .unwrap();
        }
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        let who = |v: Vec<AuditEntry>| v.into_iter().map(|e| e.who).collect::<Vec<_>>();
        assert_eq!(who(s.audit_log(0, None, 100).unwrap()), ["t0", "t1", "t2", "t3"]);
        assert_eq!(who(s.audit_log(15, None, 100).unwrap()), ["t2", "t3"]);
        assert_eq!(who(s.audit_log(0, Some("a"), 100).unwrap()), ["t1", "t3"]);
        assert_eq!(who(s.audit_log(0, None, 1).unwrap()), ["t3"]);
    }
}
