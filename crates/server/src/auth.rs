//! Who may call what: a middleware over every route ([`check`]) that reads the request's
//! credential (`Authorization: Bearer <token>`, or basic auth with the token as the password,
//! as Prometheus, Grafana and promtool send it), checks it against the token store
//! (`ocelli_auth::Store`), weighs it against what the route needs ([`need`]) and hands the
//! handlers the [`Principal`] as a request extension; the token API (`/api/v1/tokens`) and the
//! audit log (`/api/v1/audit`), which records every change made through the API.
//!
//! With `[auth] enabled = false` (the default, for a server on loopback) every request is the
//! operator's, as before; tokens can still be made, so auth can be switched on afterwards.
//! With it on, every route but `/-/healthy` and `/-/ready` answers 401 without a valid token
//! and 403 to a token whose scope or namespace does not reach it. Routes a namespace cannot
//! be confined to yet are the operator's ([`need`] says which).

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use base64::Engine as _;
use ocelli_auth::{AuditEntry, Need, NewToken, Principal, Scope};
use ocelli_model::time::now_ms;
use serde::Deserialize;

use crate::{Error, Result};

/// The token store and whether requests must carry a token.
#[derive(Debug)]
pub struct Auth {
    pub store: Arc<ocelli_auth::Store>,
    pub enabled: bool,
}

/// What the route `path` (as matched) with `method` needs.
///
/// Namespace-scoped tokens reach the query API, federation, remote_read, exemplars, the views
/// and the agent list, all confined to their namespace; the rule, alert, alarm, silence and
/// target lists are not namespaced yet, so they need the operator, as do the server's own
/// routes (status, reload, flush, `/metrics`). Anything not listed needs the operator.
pub fn need(method: &Method, path: Option<&str>) -> Need {
    let Some(path) = path else { return Need::Operator };
    let read_only = *method == Method::GET || *method == Method::HEAD;
    match path {
        "/-/healthy" | "/-/ready" => Need::Any,
        "/api/v1/write"
        | "/write"
        | "/api/v2/write"
        | "/api/v1/import/prometheus"
        | "/api/v1/import"
        | "/opentelemetry/v1/metrics"
        | "/v1/metrics"
        | "/metrics/job/{*rest}"
        | "/metrics/job@base64/{*rest}"
        | "/api/v1/agents/heartbeat" => Need::Write,
        "/ping" | "/health" => Need::Any,
        "/api/v1/query"
        | "/api/v1/query_range"
        | "/api/v1/series"
        | "/api/v1/labels"
        | "/api/v1/label/{name}/values"
        | "/api/v1/metadata"
        | "/api/v1/query_exemplars"
        | "/api/v1/format_query"
        | "/api/v1/status/buildinfo"
        | "/api/v1/read"
        | "/federate"
        | "/query" => Need::Read,
        p if p.starts_with("/api/v1/ns/") && read_only => Need::Read,
        "/api/v1/openapi.json" => Need::Read,
        "/api/v1/agents" if read_only => Need::Read,
        "/api/v1/tokens" | "/api/v1/tokens/{id}" | "/api/v1/audit" => Need::Admin,
        "/api/v1/agents/enrol" => Need::Join,
        _ => Need::Operator,
    }
}

/// The credential of a request: a bearer token, or basic auth's password.
fn credential(headers: &HeaderMap) -> std::result::Result<Option<String>, &'static str> {
    let Some(v) = headers.get(header::AUTHORIZATION) else { return Ok(None) };
    let v = v.to_str().map_err(|_| "the Authorization header is not text")?;
    let (kind, rest) = v.split_once(' ').ok_or("the Authorization header has no scheme")?;
    if kind.eq_ignore_ascii_case("bearer") {
        return Ok(Some(rest.trim().to_string()));
    }
    if kind.eq_ignore_ascii_case("basic") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .map_err(|_| "basic auth that is not base64")?;
        let text = String::from_utf8(raw).map_err(|_| "basic auth that is not UTF-8")?;
        let (_, password) = text.split_once(':').ok_or("basic auth without a password")?;
        return Ok(Some(password.to_string()));
    }
    Err("the Authorization scheme is neither Bearer nor Basic")
}

fn unauthorized(msg: String) -> Response {
    let mut r = Error::Unauthorized(msg).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        axum::http::HeaderValue::from_static("Bearer realm=\"ocelli\""),
    );
    r
}

/// The registry's route of one agent (`ocelli_registry::api`); deleting an agent there
/// revokes its credentials.
const AGENT_KEY_PATH: &str = "/api/v1/agents/{ns}/{service_type}/{service_id}/{vm_id}/{csp}";

/// Middleware over every route: authenticates, authorizes, and records changes.
pub(crate) async fn check(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    let path = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let method = req.method().clone();
    let need = need(&method, path.as_deref());
    let principal = if auth.enabled {
        if need == Need::Any && matches!(path.as_deref(), Some("/-/healthy" | "/-/ready")) {
            None
        } else {
            let presented = match credential(req.headers()) {
                Ok(Some(t)) => t,
                Ok(None) => {
                    return unauthorized(
                        "missing credential: send Authorization: Bearer <token> (or basic auth \
                         with the token as the password)"
                            .into(),
                    );
                }
                Err(why) => return unauthorized(format!("invalid credential: {why}")),
            };
            let p = match auth.store.authenticate(&presented, now_ms()) {
                Ok(p) => p,
                Err(denied) => return unauthorized(denied.to_string()),
            };
            if !p.allows(need) {
                return Error::Forbidden(forbidden(&p, need)).into_response();
            }
            Some(p)
        }
    } else {
        // an open server takes no credential, but one that checks out still confines its
        // bearer (and is how an agent enrols with a join token)
        match credential(req.headers()) {
            Ok(Some(t)) => auth.store.authenticate(&t, now_ms()).ok(),
            _ => None,
        }
    };
    if let Some(p) = &principal {
        req.extensions_mut().insert(p.clone());
    }
    let target = req.uri().path().to_string();
    let resp = next.run(req).await;
    let changes = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS)
        && matches!(need, Need::Admin | Need::Operator);
    let deleted_agent = (method == Method::DELETE
        && path.as_deref() == Some(AGENT_KEY_PATH)
        && resp.status().is_success())
    .then(|| target.trim_start_matches("/api/v1/agents/").to_string());
    if let Some(key) = deleted_agent {
        let store = auth.store.clone();
        let who = principal.as_ref().map_or_else(|| "open".to_string(), |p| p.token_id.clone());
        let _ = ocelli_http::blocking(move || {
            for id in store.revoke_agent(&key, now_ms())? {
                store.audit(&AuditEntry {
                    time_ms: now_ms(),
                    who: who.clone(),
                    namespace: None,
                    action: "token.revoke".into(),
                    target: format!("{id} (agent {key} deleted)"),
                    status: None,
                })?;
            }
            Ok(())
        })
        .await
        .map_err(|e| tracing::error!(error = %e, "cannot revoke a deleted agent's credential"));
    }
    if changes && resp.status().is_success() {
        let entry = AuditEntry {
            time_ms: now_ms(),
            who: principal.as_ref().map_or_else(|| "open".to_string(), |p| p.token_id.clone()),
            namespace: principal.as_ref().and_then(|p| p.namespace.clone()),
            action: format!("{method} {}", path.as_deref().unwrap_or("other")),
            target,
            status: Some(resp.status().as_u16()),
        };
        let store = auth.store.clone();
        let _ = ocelli_http::blocking(move || store.audit(&entry)).await.map_err(|e| {
            tracing::error!(error = %e, "cannot write the audit log");
        });
    }
    resp
}

fn forbidden(p: &Principal, need: Need) -> String {
    let who = match &p.namespace {
        Some(ns) => format!("a {} token of namespace {ns:?}", p.scope),
        None => format!("a {} token", p.scope),
    };
    match need {
        Need::Read => format!("{who} may not read; this needs read or admin"),
        Need::Write => format!("{who} may not write; this needs write or admin"),
        Need::Admin => format!("{who} may not change this; it needs admin"),
        Need::Operator => format!(
            "{who} may not use this; it needs an admin token without a namespace (the operator's)"
        ),
        Need::Join => format!("{who} is not a join token"),
        Need::Any => format!("{who} may not use this"),
    }
}

/// An axum extractor of the request's [`Principal`], if any.
#[derive(Clone, Debug, Default)]
pub(crate) struct Caller(pub Option<Principal>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> std::result::Result<Self, Self::Rejection> {
        Ok(Caller(parts.extensions.get::<Principal>().cloned()))
    }
}

impl Caller {
    /// The namespace this caller is confined to.
    pub fn namespace(&self) -> Option<&str> {
        self.0.as_ref().and_then(|p| p.namespace.as_deref())
    }

    /// The labels set on what this caller writes.
    pub fn stamp(&self) -> ocelli_ingest::append::Stamp {
        match &self.0 {
            Some(p) => ocelli_ingest::append::Stamp::new(&p.labels),
            None => ocelli_ingest::append::Stamp::default(),
        }
    }
}

/// The token API and the audit log.
pub(crate) fn routes(auth: Arc<Auth>) -> Router {
    Router::new()
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}", delete(revoke_token).get(get_token))
        .route("/api/v1/audit", get(audit_log))
        .route("/api/v1/agents/enrol", axum::routing::post(enrol))
        .with_state(auth)
}

/// The body of `POST /api/v1/tokens`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    #[serde(default)]
    namespace: Option<String>,
    scope: Option<String>,
    /// A Prometheus duration (`30d`, `1h`).
    #[serde(default)]
    ttl: Option<String>,
    #[serde(default)]
    uses: Option<u32>,
    #[serde(default)]
    description: String,
}

/// Checks a creation request against its creator and makes the [`NewToken`].
pub fn new_token(
    creator: Option<&Principal>,
    namespace: Option<String>,
    scope: &str,
    ttl: Option<&str>,
    uses: Option<u32>,
    description: String,
) -> Result<NewToken> {
    let scope = Scope::parse(scope).map_err(Error::BadData)?;
    if let Some(mine) = creator.and_then(|p| p.namespace.as_ref()) {
        match &namespace {
            Some(ns) if ns == mine => {}
            Some(ns) => {
                return Err(Error::Forbidden(format!(
                    "an admin token of namespace {mine:?} may not make tokens of namespace {ns:?}"
                )));
            }
            None => {
                return Err(Error::Forbidden(format!(
                    "an admin token of namespace {mine:?} may only make tokens of its own namespace"
                )));
            }
        }
    }
    let ttl_ms = match ttl {
        Some(t) => {
            let d = ocelli_model::time::parse_duration(t).ok_or_else(|| {
                Error::BadData(format!("ttl: {t:?} is not a duration (like 30d, 12h, 90m)"))
            })?;
            Some(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        }
        None => None,
    };
    Ok(NewToken { namespace, scope: Some(scope), ttl_ms, uses, description, ..NewToken::default() })
}

async fn create_token(
    State(auth): State<Arc<Auth>>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response> {
    let b: CreateBody = serde_json::from_slice(&body)
        .map_err(|e| Error::BadData(format!("the token request is not valid JSON: {e}")))?;
    let scope = b.scope.ok_or_else(|| {
        Error::BadData("scope: missing; expected read, write, admin or join".into())
    })?;
    let new =
        new_token(caller.0.as_ref(), b.namespace, &scope, b.ttl.as_deref(), b.uses, b.description)?;
    let by = caller.0.as_ref().map_or_else(|| "open".to_string(), |p| p.token_id.clone());
    let store = auth.store.clone();
    let (t, secret) = ocelli_http::blocking(move || store.create(new, &by, now_ms())).await?;
    let mut v = t.public();
    if let Some(o) = v.as_object_mut() {
        o.insert("token".into(), secret.into());
    }
    Ok((
        axum::http::StatusCode::CREATED,
        axum::Json(serde_json::json!({"status": "success", "data": v})),
    )
        .into_response())
}

async fn list_tokens(State(auth): State<Arc<Auth>>, caller: Caller) -> Response {
    let list: Vec<_> =
        auth.store.list(caller.0.as_ref(), false).iter().map(|t| t.public()).collect();
    axum::Json(serde_json::json!({"status": "success", "data": list})).into_response()
}

/// A token the caller may see, or 404 (another namespace's token is not found, not forbidden).
fn visible(auth: &Auth, caller: &Caller, id: &str) -> Result<ocelli_auth::Token> {
    auth.store
        .get(id)
        .filter(|t| caller.namespace().is_none() || caller.namespace() == t.namespace.as_deref())
        .ok_or_else(|| Error::NotFound(format!("no token with id {id:?}")))
}

async fn get_token(
    State(auth): State<Arc<Auth>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let t = visible(&auth, &caller, &id)?;
    Ok(axum::Json(serde_json::json!({"status": "success", "data": t.public()})).into_response())
}

async fn revoke_token(
    State(auth): State<Arc<Auth>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response> {
    let t = visible(&auth, &caller, &id)?;
    if t.revoked() {
        return Err(Error::NotFound(format!("token {id:?} is already revoked")));
    }
    let store = auth.store.clone();
    ocelli_http::blocking(move || store.revoke(&id, now_ms())).await?;
    Ok(axum::http::StatusCode::NO_CONTENT.into_response())
}

/// The body of `POST /api/v1/agents/enrol`: the agent's identity.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrolBody {
    ns: String,
    service_type: String,
    service_id: String,
    vm_id: String,
    csp: String,
    region: String,
}

/// `POST /api/v1/agents/enrol` with a join token: spends one of its uses and answers the
/// agent's own credential, a write token of the join token's namespace bound to the agent's
/// identity (its series get the identity labels; it heartbeats only as that agent; deleting
/// the agent from the registry revokes it).
async fn enrol(
    State(auth): State<Arc<Auth>>,
    caller: Caller,
    body: axum::body::Bytes,
) -> Result<Response> {
    let Some(join) = caller.0 else {
        return Err(Error::Unauthorized(
            "enrolment needs a join token: ocelli token create --namespace N --join".into(),
        ));
    };
    if join.scope != Scope::Join {
        return Err(Error::Forbidden("enrolment needs a join token".into()));
    }
    let b: EnrolBody = serde_json::from_slice(&body)
        .map_err(|e| Error::BadData(format!("the enrolment request is not valid JSON: {e}")))?;
    ocelli_model::identity::check(
        &b.ns,
        &b.service_type,
        &b.service_id,
        &b.vm_id,
        &b.csp,
        &b.region,
    )
    .map_err(Error::BadData)?;
    let ns = join.namespace.clone().unwrap_or_default();
    if b.ns != ns {
        return Err(Error::Forbidden(format!(
            "this join token enrols agents of namespace {ns:?}, not {:?}",
            b.ns
        )));
    }
    let key = ocelli_model::identity::key(&b.ns, &b.service_type, &b.service_id, &b.vm_id, &b.csp);
    let labels = [
        ("csp", &b.csp),
        ("ns", &b.ns),
        ("region", &b.region),
        ("service_id", &b.service_id),
        ("service_type", &b.service_type),
        ("vm_id", &b.vm_id),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.clone()))
    .collect();
    let new = NewToken {
        namespace: Some(ns.clone()),
        scope: Some(Scope::Write),
        agent: Some(key.clone()),
        labels,
        description: format!("agent {key}"),
        ..NewToken::default()
    };
    let store = auth.store.clone();
    let join_id = join.token_id.clone();
    let (t, secret) = ocelli_http::blocking(move || {
        store.spend_join(&join_id)?;
        let made = store.create(new, &join_id, now_ms())?;
        store.audit(&AuditEntry {
            time_ms: now_ms(),
            who: join_id.clone(),
            namespace: Some(ns),
            action: "agent.enrol".into(),
            target: key,
            status: None,
        })?;
        Ok(made)
    })
    .await?;
    let data = serde_json::json!({"id": t.id, "token": secret, "agent": t.agent, "namespace": t.namespace});
    Ok((
        axum::http::StatusCode::CREATED,
        axum::Json(serde_json::json!({"status": "success", "data": data})),
    )
        .into_response())
}

#[derive(Debug, Deserialize)]
struct AuditQuery {
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn audit_log(
    State(auth): State<Arc<Auth>>,
    caller: Caller,
    axum::extract::Query(q): axum::extract::Query<AuditQuery>,
) -> Result<Response> {
    let since = match &q.since {
        Some(s) => ocelli_model::time::parse_time(s).ok_or_else(|| {
            Error::BadData(format!("since: {s:?} is neither RFC 3339 nor Unix seconds"))
        })?,
        None => 0,
    };
    let ns = caller.namespace().map(String::from);
    let store = auth.store.clone();
    let limit = q.limit.unwrap_or(1000);
    let v = ocelli_http::blocking(move || store.audit_log(since, ns.as_deref(), limit)).await?;
    Ok(axum::Json(serde_json::json!({"status": "success", "data": v})).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_bearer_or_basic() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::AUTHORIZATION, v.parse().unwrap());
            m
        };
        assert_eq!(credential(&h("Bearer abc")), Ok(Some("abc".into())));
        let basic = base64::engine::general_purpose::STANDARD.encode("prometheus:tok");
        assert_eq!(credential(&h(&format!("Basic {basic}"))), Ok(Some("tok".into())));
        assert_eq!(credential(&HeaderMap::new()), Ok(None));
        assert!(credential(&h("Digest x")).is_err());
        assert!(credential(&h("Basic !!!")).is_err());
    }

    #[test]
    fn unknown_routes_need_the_operator() {
        assert_eq!(need(&Method::GET, None), Need::Operator);
        assert_eq!(need(&Method::POST, Some("/-/reload")), Need::Operator);
        assert_eq!(need(&Method::GET, Some("/api/v1/query")), Need::Read);
        assert_eq!(need(&Method::POST, Some("/api/v1/write")), Need::Write);
        assert_eq!(need(&Method::DELETE, Some("/api/v1/agents")), Need::Operator);
    }
}
