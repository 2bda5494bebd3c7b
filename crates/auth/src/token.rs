//! What a token is: its scope, its namespace, its lifetime, and the secret's form.
//!
//! A token reads `ocelli_<id>_<secret>`: `id` is 16 lowercase hex digits (what lists and
//! revocations name), `secret` 64 (32 random bytes). The store keeps the id and the SHA-256 of
//! the whole token, never the token: a stolen store file lets no one in. Presented tokens are
//! looked up by id and their hash compared in constant time.

use std::collections::BTreeMap;
use std::fmt;

use ring::digest;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Query: PromQL, series, labels, metadata, federation, remote_read, lists of rules,
    /// alarms, targets and agents.
    Read,
    /// Ingest: remote_write, Influx, OTLP, imports, Pushgateway pushes, agent heartbeats.
    Write,
    /// Everything `read` and `write` may, and changes: tokens, alarms, silences, agents,
    /// reloads. Without a namespace, the operator's: every namespace and the server itself.
    Admin,
    /// Enrolment only: an agent trades it for its own credential (`--join-token`).
    Join,
}

impl Scope {
    pub fn parse(s: &str) -> Result<Scope, String> {
        match s {
            "read" => Ok(Scope::Read),
            "write" => Ok(Scope::Write),
            "admin" => Ok(Scope::Admin),
            "join" => Ok(Scope::Join),
            _ => Err(format!("scope {s:?}: expected read, write or admin")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
            Scope::Join => "join",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored token (the secret's hash, never the secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub id: String,
    /// `None`: every namespace (only `admin` tokens, the operator's).
    pub namespace: Option<String>,
    pub scope: Scope,
    /// Unix milliseconds.
    pub created_ms: i64,
    /// Unix milliseconds; `None`: never.
    pub expires_ms: Option<i64>,
    /// Join tokens: enrolments left; `None`: unlimited until it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uses_left: Option<u32>,
    /// An agent's own credential: the agent's registry key; deleting the agent revokes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Labels the server sets on every series this token writes (an agent's identity),
    /// overwriting what the client sent; `ns` is always the namespace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Free text from the creator.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Who made it (a token id, `local` for the offline command, `open` on a server without auth).
    #[serde(default)]
    pub created_by: String,
    /// Unix milliseconds of its revocation; a revoked token is kept for the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_ms: Option<i64>,
    /// SHA-256 of the whole token, lowercase hex.
    pub hash: String,
}

impl Token {
    /// The token as lists show it: everything but the hash.
    pub fn public(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("hash");
        }
        v
    }

    pub fn revoked(&self) -> bool {
        self.revoked_ms.is_some()
    }

    pub fn expired(&self, now_ms: i64) -> bool {
        self.expires_ms.is_some_and(|t| t <= now_ms)
    }
}

/// Who is asking, once their token checked out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub token_id: String,
    pub namespace: Option<String>,
    pub scope: Scope,
    /// The agent's registry key, for an agent's own credential.
    pub agent: Option<String>,
    /// Labels set on everything this principal writes (`ns` included where it has one).
    pub labels: BTreeMap<String, String>,
}

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Any valid token but a join token.
    Any,
    Read,
    Write,
    /// `admin` of a namespace or the operator.
    Admin,
    /// The operator: `admin` with no namespace (the server's own routes: reload, flush,
    /// config, runtime, `/metrics`).
    Operator,
    /// A join token (enrolment).
    Join,
}

impl Principal {
    /// The operator: `admin` of every namespace.
    pub fn is_operator(&self) -> bool {
        self.scope == Scope::Admin && self.namespace.is_none()
    }

    pub fn allows(&self, need: Need) -> bool {
        use Scope as S;
        match need {
            Need::Join => self.scope == S::Join,
            _ if self.scope == S::Join => false,
            Need::Any => true,
            Need::Read => matches!(self.scope, S::Read | S::Admin),
            Need::Write => matches!(self.scope, S::Write | S::Admin),
            Need::Admin => self.scope == S::Admin,
            Need::Operator => self.is_operator(),
        }
    }

    /// Whether this principal may see namespace `ns`.
    pub fn sees(&self, ns: &str) -> bool {
        self.namespace.as_deref().is_none_or(|n| n == ns)
    }
}

/// Checks a namespace name: 1 to 128 characters of `[A-Za-z0-9_.-]`, not starting with `.`
/// (so never `.` or `..`).
pub fn check_namespace(ns: &str) -> Result<(), String> {
    ocelli_model::identity::check_part("namespace", ns)?;
    if ns.starts_with('.') {
        return Err(format!("namespace: {ns:?} starts with '.'"));
    }
    Ok(())
}

/// A new token's text and id.
pub(crate) fn generate() -> Result<(String, String), String> {
    let mut b = [0u8; 40];
    getrandom::fill(&mut b).map_err(|e| format!("cannot draw a random token: {e}"))?;
    let id = hex(&b[..8]);
    let token = format!("ocelli_{id}_{}", hex(&b[8..]));
    Ok((id, token))
}

/// The id of a presented token, if it has the form of one.
pub fn parse(presented: &str) -> Result<&str, &'static str> {
    let rest = presented.strip_prefix("ocelli_").ok_or("not an Ocelli token")?;
    let (id, secret) = rest.split_once('_').ok_or("malformed token")?;
    let hexdigits = |s: &str, n: usize| {
        s.len() == n && s.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    };
    if !hexdigits(id, 16) || !hexdigits(secret, 64) {
        return Err("malformed token");
    }
    Ok(id)
}

/// SHA-256 of a token, lowercase hex.
pub fn hash(token: &str) -> String {
    hex(digest::digest(&digest::SHA256, token.as_bytes()).as_ref())
}

/// Whether `presented` hashes to `stored`, in time independent of where they differ.
pub(crate) fn matches(presented: &str, stored: &str) -> bool {
    hash(presented).as_bytes().ct_eq(stored.as_bytes()).into()
}

fn hex(b: &[u8]) -> String {
    use fmt::Write as _;
    b.iter().fold(String::with_capacity(b.len() * 2), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_match_their_hash() {
        let (id, t) = generate().unwrap();
        assert_eq!(parse(&t), Ok(id.as_str()));
        assert!(matches(&t, &hash(&t)));
        let (_, other) = generate().unwrap();
        assert!(!matches(&other, &hash(&t)));
        assert_eq!(t.len(), "ocelli_".len() + 16 + 1 + 64);
    }

    #[test]
    fn malformed_tokens_are_named() {
        assert_eq!(parse("Bearer x"), Err("not an Ocelli token"));
        assert_eq!(parse("ocelli_abc"), Err("malformed token"));
        assert_eq!(
            parse(&format!("ocelli_{}_{}", "0".repeat(16), "g".repeat(64))),
            Err("malformed token")
        );
        assert_eq!(
            parse(&format!("ocelli_{}_{}", "A".repeat(16), "0".repeat(64))),
            Err("malformed token")
        );
    }

    #[test]
    fn namespaces_that_could_be_paths_are_refused() {
        assert!(check_namespace("team-a").is_ok());
        assert!(check_namespace("a.b_c").is_ok());
        for bad in ["..", ".", ".hidden", "a/b", "", "a b", "../x"] {
            assert!(check_namespace(bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_namespace("..").unwrap_err(), "namespace: \"..\" starts with '.'");
    }

    #[test]
    fn scopes_allow_what_they_say() {
        let p = |scope, ns: Option<&str>| Principal {
            token_id: "x".into(),
            namespace: ns.map(String::from),
            scope,
            agent: None,
            labels: BTreeMap::new(),
        };
        let read = p(Scope::Read, Some("a"));
        assert!(read.allows(Need::Read) && read.allows(Need::Any));
        assert!(!read.allows(Need::Write) && !read.allows(Need::Admin));
        let write = p(Scope::Write, Some("a"));
        assert!(write.allows(Need::Write) && !write.allows(Need::Read));
        let admin = p(Scope::Admin, Some("a"));
        assert!(admin.allows(Need::Read) && admin.allows(Need::Write) && admin.allows(Need::Admin));
        assert!(!admin.allows(Need::Operator) && admin.sees("a") && !admin.sees("b"));
        let op = p(Scope::Admin, None);
        assert!(op.allows(Need::Operator) && op.sees("b"));
        let join = p(Scope::Join, Some("a"));
        assert!(join.allows(Need::Join) && !join.allows(Need::Any) && !join.allows(Need::Read));
        assert!(!op.allows(Need::Join));
    }
}
