//! The push output: collected families become one remote_write 1.0 request
//! (`ocelli_wire::remote_write::encode`, snappy), stamped with the collection time and labelled
//! with the identity plus `job="ocelli-agent"` and `instance="{address}"`, POSTed to
//! `{server}/api/v1/write`, or, with `[amqp]` set, published to RabbitMQ ([`crate::amqp`]).
//!
//! Over HTTP the server's answer decides the batch's fate: 2xx, sent; 4xx, refused for good
//! (logged, counted, dropped: sending it again would be refused again); 5xx or no answer, kept
//! in the [`Buffer`] and sent again later. Over AMQP a broker confirm is a send; anything else
//! keeps the batch. While the buffer holds anything, a new batch goes behind
//! it, so the server receives batches in collection order and the stored series have no gap.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ocelli_model::{Labels, Sample};
use ocelli_wire::remote_write::DecodedSeries;

use crate::Result;
use crate::buffer::Buffer;
use crate::client::Client;
use crate::collector::Family;

/// The server's remote_write endpoint.
pub const WRITE_PATH: &str = "/api/v1/write";
/// The `job` label of every series the agent pushes (and the server's scrapes add).
pub const JOB: &str = "ocelli-agent";

/// Counters of the push output, shown on the agent's own metrics.
#[derive(Debug, Default)]
pub struct PushStats {
    pub sent: AtomicU64,
    pub rejected: AtomicU64,
    pub failures: AtomicU64,
    pub buffered_batches: AtomicU64,
    pub buffered_bytes: AtomicU64,
    pub dropped: AtomicU64,
}

/// Turns families into remote_write series: `base` labels (identity, job, instance) on every
/// sample, all at `ts_ms`. Labels with empty values are left out.
pub fn to_series(families: &[Family], base: &[(&str, &str)], ts_ms: i64) -> Vec<DecodedSeries> {
    let mut out = Vec::with_capacity(families.iter().map(|f| f.samples.len()).sum());
    for f in families {
        for s in &f.samples {
            let pairs = std::iter::once(("__name__", f.name.as_str()))
                .chain(s.labels.iter().map(|(n, v)| (*n, v.as_str())))
                .chain(base.iter().copied());
            match Labels::from_pairs(pairs) {
                Ok(labels) => {
                    out.push(DecodedSeries { labels, samples: vec![Sample::new(ts_ms, s.value)] })
                }
                Err(e) => {
                    tracing::warn!(metric = %f.name, error = %e, "series left out of the push")
                }
            }
        }
    }
    out
}

/// What became of one send.
#[derive(Debug, PartialEq, Eq)]
enum Sent {
    Ok,
    /// 4xx: the server will never take it.
    Refused(String),
    /// 5xx or no answer: try again later.
    Retry(String),
}

/// Where batches go.
#[derive(Debug)]
pub enum Output {
    /// remote_write to the server.
    Http(Client),
    /// Publish to RabbitMQ.
    Amqp(crate::amqp::Publisher),
}

impl Output {
    fn target(&self) -> String {
        match self {
            Output::Http(c) => c.url().authority.clone(),
            Output::Amqp(p) => p.target(),
        }
    }
}

/// Sends batches, keeping the ones the server could not take.
#[derive(Debug)]
pub struct Pusher {
    out: Output,
    buffer: Buffer,
    stats: Arc<PushStats>,
    /// Whether the last attempt failed, so that an outage is logged once, not every interval.
    failing: bool,
}

impl Pusher {
    pub fn new(out: Output, buffer: Buffer, stats: Arc<PushStats>) -> Pusher {
        let p = Pusher { out, buffer, stats, failing: false };
        p.update_stats();
        p
    }

    /// Whether batches wait in the buffer.
    pub fn has_backlog(&self) -> bool {
        !self.buffer.is_empty()
    }

    /// Sends a new batch: behind the backlog if there is one, else at once; buffers it if the
    /// server cannot take it now.
    pub async fn push(&mut self, body: Vec<u8>) -> Result<()> {
        if self.buffer.is_empty() {
            match self.send(body.clone()).await {
                Sent::Ok | Sent::Refused(_) => {}
                Sent::Retry(_) => self.buffer.push(&body)?,
            }
        } else {
            self.buffer.push(&body)?;
            self.drain().await?;
        }
        self.update_stats();
        Ok(())
    }

    /// Sends buffered batches, oldest first, until the buffer is empty or the server fails.
    pub async fn drain(&mut self) -> Result<()> {
        let mut sent = 0u64;
        while let Some(body) = self.buffer.front()? {
            match self.send(body).await {
                Sent::Ok | Sent::Refused(_) => {
                    self.buffer.pop_front()?;
                    sent += 1;
                }
                Sent::Retry(_) => break,
            }
        }
        if sent > 0 {
            tracing::info!(batches = sent, left = self.buffer.len(), "sent buffered push batches");
        }
        self.update_stats();
        Ok(())
    }

    async fn send(&mut self, body: Vec<u8>) -> Sent {
        let outcome = match &mut self.out {
            Output::Http(client) => post(client, body).await,
            Output::Amqp(p) => match p.publish(&body).await {
                Ok(()) => Sent::Ok,
                Err(e) => Sent::Retry(e),
            },
        };
        match &outcome {
            Sent::Ok => {
                self.stats.sent.fetch_add(1, Ordering::Relaxed);
                if std::mem::take(&mut self.failing) {
                    tracing::info!(to = %self.out.target(), "pushes are taken again");
                }
            }
            Sent::Refused(why) => {
                self.stats.rejected.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %why, "server refused a push batch; dropped, not retried");
            }
            Sent::Retry(why) => {
                self.stats.failures.fetch_add(1, Ordering::Relaxed);
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(error = %why, to = %self.out.target(), "push failed; buffering batches on disk until it is taken again");
                }
            }
        }
        outcome
    }

    fn update_stats(&self) {
        let s = &self.stats;
        s.buffered_batches.store(self.buffer.len() as u64, Ordering::Relaxed);
        s.buffered_bytes.store(self.buffer.bytes(), Ordering::Relaxed);
        s.dropped.store(self.buffer.dropped(), Ordering::Relaxed);
    }
}

/// One remote_write POST and what its answer means.
async fn post(client: &mut Client, body: Vec<u8>) -> Sent {
    let headers = [
        ("content-type", "application/x-protobuf"),
        ("content-encoding", "snappy"),
        ("x-prometheus-remote-write-version", "0.1.0"),
    ];
    let res = client.post(WRITE_PATH, &headers, body).await;
    match res {
        Ok(a) if (200..300).contains(&a.status) => Sent::Ok,
        Ok(a) if (400..500).contains(&a.status) => {
            Sent::Refused(format!("HTTP {}: {}", a.status, String::from_utf8_lossy(&a.body).trim()))
        }
        Ok(a) => {
            Sent::Retry(format!("HTTP {}: {}", a.status, String::from_utf8_lossy(&a.body).trim()))
        }
        Err(e) => Sent::Retry(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::{Kind, Sink};

    #[test]
    fn series_carry_name_labels_identity_and_the_timestamp() {
        let mut sink = Sink::default();
        sink.family("node_cpu_seconds_total", "h", Kind::Counter)
            .add(&[("cpu", "0"), ("mode", "idle")], 5.0);
        sink.family("node_os_info", "h", Kind::Gauge)
            .add(&[("build_id", ""), ("id", "debian")], 1.0);
        let base = [("ns", "default"), ("job", JOB), ("instance", "10.0.0.5:9101")];
        let series = to_series(&sink.families, &base, 1_700_000_000_000);
        assert_eq!(series.len(), 2);
        assert_eq!(
            series[0].labels.to_string(),
            r#"node_cpu_seconds_total{cpu="0", instance="10.0.0.5:9101", job="ocelli-agent", mode="idle", ns="default"}"#
        );
        assert_eq!(series[0].samples, [Sample::new(1_700_000_000_000, 5.0)]);
        assert_eq!(series[1].labels.get("build_id"), None);
        // a collector label that clashes with an identity label is left out, not sent twice
        let mut sink = Sink::default();
        sink.family("x", "h", Kind::Gauge).add(&[("ns", "other")], 1.0);
        assert!(to_series(&sink.families, &base, 0).is_empty());
        // and the body decodes on the server side
        let body = ocelli_wire::remote_write::encode(&series).unwrap();
        let back = ocelli_wire::remote_write::decode(&body, &Default::default()).unwrap();
        assert_eq!(back, series);
    }
}
