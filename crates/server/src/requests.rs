//! Request counting: a middleware ([`track`]) over every route, the server's and the domains',
//! that counts and times each request under the route it matched; `/metrics` writes the
//! counters.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use parking_lot::Mutex;

/// Request counters by (handler, status code): count and total seconds.
#[derive(Debug, Default)]
pub struct RequestMetrics {
    by_handler: Mutex<BTreeMap<(String, u16), (u64, f64)>>,
}

impl RequestMetrics {
    /// The counters as they are now.
    pub(crate) fn by_handler(&self) -> BTreeMap<(String, u16), (u64, f64)> {
        self.by_handler.lock().clone()
    }
}

/// Middleware: counts and times every request under the route it matched.
pub(crate) async fn track(
    State(requests): State<std::sync::Arc<RequestMetrics>>,
    req: Request,
    next: Next,
) -> Response {
    let handler = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".into());
    let t0 = Instant::now();
    let resp = next.run(req).await;
    let secs = t0.elapsed().as_secs_f64();
    let mut m = requests.by_handler.lock();
    let e = m.entry((handler, resp.status().as_u16())).or_insert((0, 0.0));
    e.0 += 1;
    e.1 += secs;
    resp
}
