//! Forwarding to external Alertmanagers (`[notifier] alertmanagers`), as Prometheus' notifier
//! does: every alert the notifier receives is queued for every Alertmanager and sent in
//! batches of up to [`BATCH`] to `POST <url>/api/v2/alerts` (Alertmanager's `PostableAlert`
//! JSON). Each Alertmanager has its own queue and task, so one that is down holds up no other;
//! a queue keeps at most [`QUEUE_CAP`] alerts and drops the oldest beyond that (counted as
//! failures in the metrics). A failed batch is retried like any delivery ([`super::deliver`]).
//!
//! History records the forwarding attempts that failed (`Retry`, `Failure`) and a success that
//! follows a failed attempt, under receiver `alertmanager <url>` and integration
//! `alertmanager`; routine successful re-sends are not recorded, since rules re-send their
//! active alerts every minute or so.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::Serialize;

use super::config::Delivery;
use super::deliver::Counters;
use super::text::time;
use crate::{Alert, HistoryEvent, HistorySink, LabelMap, Outcome};
use ocelli_http::client::{self, Failure, Url};

/// Alerts per request (Prometheus' default `max_batch_size` is 64).
pub const BATCH: usize = 64;
/// Alerts kept per Alertmanager while it cannot be reached.
pub const QUEUE_CAP: usize = 10_000;

/// One alert as Alertmanager's `POST /api/v2/alerts` takes it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert<'a> {
    pub labels: &'a LabelMap,
    pub annotations: &'a LabelMap,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: &'a str,
}

pub fn body(alerts: &[Alert]) -> Result<Vec<u8>, String> {
    let v: Vec<PostableAlert<'_>> = alerts
        .iter()
        .map(|a| PostableAlert {
            labels: &a.labels,
            annotations: &a.annotations,
            starts_at: time(a.starts_at_ms),
            ends_at: time(a.ends_at_ms),
            generator_url: &a.generator_url,
        })
        .collect();
    serde_json::to_vec(&v).map_err(|e| format!("cannot encode alerts: {e}"))
}

/// One Alertmanager's queue.
#[derive(Debug)]
struct Queue {
    url: Url,
    alerts: Mutex<VecDeque<Alert>>,
    wake: tokio::sync::Notify,
}

/// The forwarders of all configured Alertmanagers.
#[derive(Debug, Default)]
pub struct Forwarder {
    queues: Vec<Arc<Queue>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Forwarder {
    /// Starts one task per Alertmanager.
    pub fn start(
        delivery: &Delivery,
        history: Arc<dyn HistorySink>,
        counters: Arc<Counters>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Forwarder {
        let mut f = Forwarder::default();
        for url in &delivery.alertmanagers {
            let q = Arc::new(Queue {
                url: url.clone(),
                alerts: Mutex::new(VecDeque::new()),
                wake: tokio::sync::Notify::new(),
            });
            f.queues.push(q.clone());
            let (history, counters, delivery, shutdown) =
                (history.clone(), counters.clone(), delivery.clone(), shutdown.clone());
            f.tasks.push(tokio::spawn(run(q, delivery, history, counters, shutdown)));
        }
        f
    }

    /// Queues alerts for every Alertmanager.
    pub fn push(&self, alerts: &[Alert], counters: &Counters) {
        for q in &self.queues {
            let mut a = q.alerts.lock();
            a.extend(alerts.iter().cloned());
            while a.len() > QUEUE_CAP {
                a.pop_front();
                counters.count("alertmanager", true);
            }
            drop(a);
            q.wake.notify_one();
        }
    }

    /// Stops the tasks (queued alerts are dropped).
    pub fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.queues.clear();
    }
}

async fn run(
    q: Arc<Queue>,
    delivery: Delivery,
    history: Arc<dyn HistorySink>,
    counters: Arc<Counters>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let target = q.url.join("/api/v2/alerts");
    let receiver = format!("alertmanager {}", q.url.origin());
    loop {
        let batch: Vec<Alert> = {
            let mut a = q.alerts.lock();
            let n = a.len().min(BATCH);
            a.drain(..n).collect()
        };
        if batch.is_empty() {
            tokio::select! {
                _ = q.wake.notified() => continue,
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
        let body = match body(&batch) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "dropping a batch of alerts that cannot be encoded");
                continue;
            }
        };
        // history only hears of this batch if an attempt fails
        let quiet = Arc::new(Quiet { inner: history.clone(), failed: Mutex::new(false) });
        let sink: Arc<dyn HistorySink> = quiet.clone();
        let mut attempts = super::deliver::Attempts {
            history: &sink,
            counters: &counters,
            delivery: &delivery,
            shutdown: shutdown.clone(),
        };
        let labels: Vec<LabelMap> = batch.iter().map(|a| a.labels.clone()).collect();
        let now = ocelli_model::time::now_ms();
        let resolved = batch.iter().all(|a| a.ends_at_ms <= now);
        let timeout = delivery.timeout;
        attempts
            .run(&receiver, "alertmanager", labels, resolved, || {
                let body = body.clone();
                let target = target.clone();
                async move {
                    client::post(&target, "application/json", &[], body, timeout)
                        .await
                        .map(|_| ())
                        .map_err(|f| Failure { message: f.message, retry: f.retry })
                }
            })
            .await;
        if *shutdown.borrow() {
            return;
        }
    }
}

/// Passes history events on only once an attempt of the batch has failed.
struct Quiet {
    inner: Arc<dyn HistorySink>,
    failed: Mutex<bool>,
}

impl HistorySink for Quiet {
    fn record(&self, events: Vec<HistoryEvent>) {
        let mut failed = self.failed.lock();
        let fails = events.iter().any(|e| {
            matches!(
                e,
                HistoryEvent::Notification { outcome: Outcome::Retry | Outcome::Failure, .. }
            )
        });
        if fails {
            *failed = true;
        }
        if *failed {
            self.inner.record(events);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postable_alerts_json() {
        let a = Alert {
            labels: [("alertname".to_string(), "A".to_string())].into(),
            annotations: LabelMap::new(),
            starts_at_ms: 1_700_000_000_000,
            ends_at_ms: 1_700_000_300_000,
            generator_url: "http://x".into(),
        };
        let got = String::from_utf8(body(&[a]).unwrap()).unwrap();
        assert_eq!(
            got,
            r#"[{"labels":{"alertname":"A"},"annotations":{},"startsAt":"2023-11-14T22:13:20Z","endsAt":"2023-11-14T22:18:20Z","generatorURL":"http://x"}]"#
        );
    }
}
