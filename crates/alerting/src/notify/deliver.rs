//! Delivery of one notification to one integration: the attempts, the backoff between them,
//! and the record of each attempt in the history ([`HistoryEvent::Notification`] with
//! `Success`, `Retry` or `Failure` and the integration's error text) and in the metrics.
//!
//! An attempt that fails in a way another try can fix (see [`ocelli_http::client::Failure`]) is
//! repeated up to `max_retries` times, waiting `retry_backoff`, then twice that, and so on, at
//! most [`MAX_BACKOFF`]; each attempt has the configured timeout. Every delivery runs on its own
//! task (the dispatcher spawns it), so a receiver that keeps failing holds up no other. A
//! shutdown cuts the waits short.

use std::sync::Arc;
use std::time::Duration;

use super::config::{Delivery, EmailConfig, Receiver, SlackConfig, WebhookConfig};
use super::text::Notification;
use crate::{HistoryEvent, HistorySink, LabelMap, Outcome};
use ocelli_http::client::Failure;

/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One integration of a receiver.
#[derive(Clone, Debug, PartialEq)]
pub enum Integration {
    Slack(SlackConfig),
    Email(EmailConfig),
    Webhook(WebhookConfig),
}

impl Integration {
    /// The name history and metrics use: `slack`, `email`, `webhook`.
    pub fn kind(&self) -> &'static str {
        match self {
            Integration::Slack(_) => "slack",
            Integration::Email(_) => "email",
            Integration::Webhook(_) => "webhook",
        }
    }

    pub fn send_resolved(&self) -> bool {
        match self {
            Integration::Slack(c) => c.send_resolved,
            Integration::Email(c) => c.send_resolved,
            Integration::Webhook(c) => c.send_resolved,
        }
    }

    async fn notify(&self, n: &Notification, timeout: Duration) -> Result<(), Failure> {
        match self {
            Integration::Slack(c) => super::slack::notify(c, n, timeout).await,
            Integration::Email(c) => super::email::notify(c, n, timeout).await,
            Integration::Webhook(c) => super::webhook::notify(c, n, timeout).await,
        }
    }
}

/// A receiver's integrations, each with its index among those of its kind (for the
/// notification log's key, as Alertmanager's `webhook/0`, `webhook/1`).
pub fn integrations(r: &Receiver) -> Vec<(Integration, usize)> {
    let mut out = Vec::new();
    out.extend(r.slack.iter().cloned().enumerate().map(|(i, c)| (Integration::Slack(c), i)));
    out.extend(r.email.iter().cloned().enumerate().map(|(i, c)| (Integration::Email(c), i)));
    out.extend(r.webhook.iter().cloned().enumerate().map(|(i, c)| (Integration::Webhook(c), i)));
    out
}

/// Attempts and failed attempts per integration, for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters(parking_lot::Mutex<std::collections::BTreeMap<&'static str, (u64, u64)>>);

impl Counters {
    pub fn count(&self, integration: &'static str, failed: bool) {
        let mut m = self.0.lock();
        let e = m.entry(integration).or_default();
        e.0 += 1;
        if failed {
            e.1 += 1;
        }
    }

    /// (integration, attempts, failed attempts), every integration listed even at zero.
    pub fn snapshot(&self) -> Vec<(&'static str, u64, u64)> {
        let m = self.0.lock();
        ["alertmanager", "email", "slack", "webhook"]
            .iter()
            .map(|k| {
                let (n, f) = m.get(k).copied().unwrap_or_default();
                (*k, n, f)
            })
            .collect()
    }
}

/// Where a delivery reports its attempts, and how it makes them.
pub struct Attempts<'a> {
    pub history: &'a Arc<dyn HistorySink>,
    pub counters: &'a Counters,
    pub delivery: &'a Delivery,
    /// Resolves when the notifier shuts down.
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Attempts<'_> {
    /// Runs `attempt` until it succeeds, fails for good, or retries run out; records every
    /// attempt. Returns whether it succeeded.
    pub async fn run<F, Fut>(
        &mut self,
        receiver: &str,
        integration: &'static str,
        alerts: Vec<LabelMap>,
        resolved: bool,
        mut attempt: F,
    ) -> bool
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), Failure>>,
    {
        let mut backoff = self.delivery.retry_backoff;
        for n in 1..=self.delivery.max_retries + 1 {
            let result = attempt().await;
            self.counters.count(integration, result.is_err());
            let (outcome, error, done) = match result {
                Ok(()) => (Outcome::Success, None, true),
                Err(f) => {
                    let last = !f.retry || n > self.delivery.max_retries;
                    tracing::warn!(receiver, integration, attempt = n, error = %f.message, "notification failed");
                    (if last { Outcome::Failure } else { Outcome::Retry }, Some(f.message), last)
                }
            };
            self.history.record(vec![HistoryEvent::Notification {
                at_ms: ocelli_model::time::now_ms(),
                receiver: receiver.to_string(),
                integration: integration.to_string(),
                alerts: alerts.clone(),
                resolved,
                attempt: n,
                outcome,
                error,
            }]);
            if done {
                return outcome == Outcome::Success;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.shutdown.wait_for(|s| *s) => return false,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        false
    }
}

/// Delivers `n` to `integration` with retries.
pub async fn deliver(a: &mut Attempts<'_>, integration: &Integration, n: &Notification) -> bool {
    let labels = n.alerts.iter().map(|x| x.labels.clone()).collect();
    let resolved = n.status() == "resolved";
    let timeout = a.delivery.timeout;
    a.run(&n.receiver, integration.kind(), labels, resolved, || integration.notify(n, timeout))
        .await
}
