//! The collector role: consumes the shard queues this collector owns and stores their batches.
//!
//! One control loop per collector:
//! 1. connect to RabbitMQ and declare the topology (idempotent): the durable consistent-hash
//!    exchange, `shards` durable queues `{exchange}.shard.{i}` with
//!    `x-single-active-consumer`, each bound with weight `1`;
//! 2. with etcd, keep a lease and the key `/ocelli/collectors/{id}` under it, read the members
//!    every `lease_ttl / 3`, and compute the shards this collector owns ([`super::assign`]);
//!    without etcd, own every shard (a lone collector; single-active-consumer still keeps a
//!    second one out of each queue);
//! 3. consume each owned shard on a channel of its own (prefetch `prefetch`), cancel the ones
//!    no longer owned, and start over from 1 when the connection drops.
//!
//! Each delivery is stored through the same path as `POST /api/v1/write` and acked only after
//! the append has returned, that is after its samples are in the WAL; a malformed one is acked
//! and counted (requeueing it would loop forever); a storage failure nacks it back to its
//! queue. A collector that stops or dies leaves its unacked deliveries to the broker, which
//! gives them to the shard's next owner: at least once, and a repeated batch stores nothing
//! new (same series and timestamp keep one value).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use ocelli_tsdb::Db;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::Cluster;
use super::etcd::Etcd;
use ocelli_ingest::aggregate::Aggregator;

/// Where collectors register in etcd.
pub const MEMBERS_PREFIX: &str = "/ocelli/collectors/";

/// The exchange type agents publish to (RabbitMQ's consistent-hash plugin).
const EXCHANGE_TYPE: &str = "x-consistent-hash";

/// What a delivery is stored into.
#[derive(Clone, Debug)]
pub struct Sink {
    pub db: Arc<Db>,
    pub aggregator: Arc<Aggregator>,
    pub limits: ocelli_wire::remote_write::Limits,
    /// The time range a sample must fall in; samples outside are left out and logged.
    pub bounds: ocelli_ingest::bounds::Bounds,
    /// Where the batches' metadata goes (the metadata API).
    pub metadata: Arc<ocelli_storage::MetadataStore>,
}

/// Counters and the current view, for `/metrics` and `/api/v1/status/cluster`.
#[derive(Debug, Default)]
pub struct CollectorStats {
    pub stored: AtomicU64,
    pub samples: AtomicU64,
    pub rejected: AtomicU64,
    pub failed: AtomicU64,
    pub reconnects: AtomicU64,
    /// Shards consumed now.
    pub owned: Mutex<BTreeSet<u32>>,
    /// Live collectors as last read from etcd (just this one without etcd).
    pub members: Mutex<Vec<String>>,
}

/// A running collector.
#[derive(Debug)]
pub struct Collector {
    pub stats: Arc<CollectorStats>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// The queue of shard `i`.
pub fn shard_queue(exchange: &str, i: u32) -> String {
    format!("{exchange}.shard.{i}")
}

impl Collector {
    pub fn start(cfg: Cluster, sink: Sink) -> Collector {
        let stats = Arc::new(CollectorStats::default());
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(control_loop(cfg, sink, stats.clone(), rx));
        Collector { stats, stop, task }
    }

    /// Cancels every consumer (unacked deliveries go back to their queues), leaves the member
    /// list at once (the lease is revoked) and closes the connection.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// One consumer: its channel and the task draining it.
struct Consuming {
    channel: Channel,
    tag: String,
    task: tokio::task::JoinHandle<()>,
}

async fn control_loop(
    cfg: Cluster,
    sink: Sink,
    stats: Arc<CollectorStats>,
    mut stop: watch::Receiver<bool>,
) {
    let etcd = cfg.etcd.as_ref().map(|e| {
        Etcd::new(e, cfg.lease_ttl.min(Duration::from_secs(5)))
            .and_then(|e| e.with_ca_file(cfg.etcd_ca_file.as_deref()))
    });
    let etcd = match etcd.transpose() {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "collector: bad etcd endpoints; not consuming");
            return;
        }
    };
    let mut lease: Option<i64> = None;
    let mut backoff = Duration::from_millis(200);
    loop {
        if *stop.borrow() {
            break;
        }
        match session(&cfg, &sink, &stats, etcd.as_ref(), &mut lease, &mut stop).await {
            Ok(()) => break,
            Err(e) => {
                stats.reconnects.fetch_add(1, Ordering::Relaxed);
                stats.owned.lock().clear();
                tracing::warn!(error = %e, retry_in = ?backoff, "collector: lost the broker or etcd; reconnecting");
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    if let (Some(etcd), Some(id)) = (&etcd, lease)
        && let Err(e) = etcd.revoke(id).await
    {
        tracing::warn!(error = %e, "collector: cannot revoke the etcd lease; it expires by itself");
    }
    stats.owned.lock().clear();
}

/// One connection's life: returns `Ok` when asked to stop, `Err` when the broker or etcd is
/// lost (the caller reconnects).
async fn session(
    cfg: &Cluster,
    sink: &Sink,
    stats: &Arc<CollectorStats>,
    etcd: Option<&Etcd>,
    lease: &mut Option<i64>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let props = ConnectionProperties::default();
    // amqps:// is rustls with ring (lapin's `rustls--ring`), trusting Mozilla's roots and the
    // configured CA
    let tls = lapin::tcp::OwnedTLSConfig { identity: None, cert_chain: cfg.amqp_ca_pem.clone() };
    let runtime = lapin::runtime::default_runtime()
        .map_err(|e| format!("cannot set up the AMQP client: {e}"))?;
    let conn = Connection::connect_with_config(&cfg.amqp_url, props, tls, runtime)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", super::redact(&cfg.amqp_url)))?;
    declare(&conn, cfg).await?;
    tracing::info!(broker = %super::redact(&cfg.amqp_url), exchange = %cfg.exchange,
        shards = cfg.shards, id = %cfg.id, "collector connected");
    let mut consuming: BTreeMap<u32, Consuming> = BTreeMap::new();
    let period = if etcd.is_some() { cfg.lease_ttl / 3 } else { Duration::from_secs(1) };
    let mut tick = tokio::time::interval(period.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result = loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break Ok(()),
            _ = tick.tick() => {}
        }
        if !conn.status().connected() {
            break Err("the broker connection closed".to_string());
        }
        if consuming.values().any(|c| c.task.is_finished()) {
            break Err("a shard consumer ended (channel closed)".to_string());
        }
        let members = match etcd {
            Some(etcd) => match membership(etcd, cfg, lease).await {
                Ok(m) => m,
                Err(e) => {
                    // cannot tell who else is alive: stop consuming rather than risk a
                    // shard being consumed by two owners' views for long
                    break Err(e);
                }
            },
            None => vec![cfg.id.clone()],
        };
        let want: BTreeSet<u32> =
            super::assign::owned_by(&members, cfg.shards, &cfg.id).into_iter().collect();
        *stats.members.lock() = members;
        let have: BTreeSet<u32> = consuming.keys().copied().collect();
        for shard in have.difference(&want) {
            if let Some(c) = consuming.remove(shard) {
                cancel(c).await;
            }
        }
        let mut failed = None;
        for &shard in want.difference(&have) {
            match consume(&conn, cfg, shard, sink.clone(), stats.clone()).await {
                Ok(c) => {
                    consuming.insert(shard, c);
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            break Err(e);
        }
        if want != have {
            tracing::info!(
                owned = want.len(),
                added = want.difference(&have).count(),
                removed = have.difference(&want).count(),
                "collector: shard ownership changed"
            );
        }
        *stats.owned.lock() = consuming.keys().copied().collect();
    };
    for (_, c) in std::mem::take(&mut consuming) {
        cancel(c).await;
    }
    stats.owned.lock().clear();
    let _ = conn.close(200, "collector stopping".into()).await;
    result
}

/// Renews (or takes) this collector's lease and key; the live members, sorted.
async fn membership(
    etcd: &Etcd,
    cfg: &Cluster,
    lease: &mut Option<i64>,
) -> Result<Vec<String>, String> {
    let key = format!("{MEMBERS_PREFIX}{}", cfg.id);
    let alive = match *lease {
        Some(id) => etcd.keep_alive(id).await?,
        None => false,
    };
    if !alive {
        let id = etcd.grant(cfg.lease_ttl).await?;
        *lease = Some(id);
        etcd.put(&key, &cfg.advertise, id).await?;
        tracing::info!(lease = id, %key, "collector: joined the member list");
    }
    let mut members: Vec<String> = etcd
        .get_prefix(MEMBERS_PREFIX)
        .await?
        .into_iter()
        .filter_map(|kv| kv.key.strip_prefix(MEMBERS_PREFIX).map(str::to_string))
        .collect();
    if !members.contains(&cfg.id) {
        // the key went (lease revoked elsewhere): put it back under the lease
        if let Some(id) = *lease {
            etcd.put(&key, &cfg.advertise, id).await?;
        }
        members.push(cfg.id.clone());
    }
    members.sort();
    members.dedup();
    Ok(members)
}

/// The exchange, the shard queues and their bindings.
async fn declare(conn: &Connection, cfg: &Cluster) -> Result<(), String> {
    let ch = conn.create_channel().await.map_err(|e| format!("open a channel: {e}"))?;
    ch.exchange_declare(
        cfg.exchange.as_str().into(),
        ExchangeKind::Custom(EXCHANGE_TYPE.into()),
        ExchangeDeclareOptions { durable: true, ..Default::default() },
        FieldTable::default(),
    )
    .await
    .map_err(|e| {
        format!(
            "declare exchange {:?} of type {EXCHANGE_TYPE} (is the rabbitmq_consistent_hash_exchange plugin enabled?): {e}",
            cfg.exchange
        )
    })?;
    let mut args = FieldTable::default();
    args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    for i in 0..cfg.shards {
        let q = shard_queue(&cfg.exchange, i);
        ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions { durable: true, ..Default::default() },
            args.clone(),
        )
        .await
        .map_err(|e| format!("declare queue {q:?}: {e}"))?;
        ch.queue_bind(
            q.as_str().into(),
            cfg.exchange.as_str().into(),
            "1".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("bind queue {q:?}: {e}"))?;
    }
    let _ = ch.close(200, "declared".into()).await;
    Ok(())
}

async fn consume(
    conn: &Connection,
    cfg: &Cluster,
    shard: u32,
    sink: Sink,
    stats: Arc<CollectorStats>,
) -> Result<Consuming, String> {
    let q = shard_queue(&cfg.exchange, shard);
    let channel = conn.create_channel().await.map_err(|e| format!("open a channel: {e}"))?;
    channel
        .basic_qos(cfg.prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| format!("set the prefetch of {q:?}: {e}"))?;
    let tag = format!("{}#{shard}", cfg.id);
    let mut consumer = channel
        .basic_consume(
            q.as_str().into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("consume {q:?}: {e}"))?;
    let task = tokio::spawn(async move {
        while let Some(delivery) = consumer.next().await {
            let delivery = match delivery {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(queue = %q, error = %e, "collector: consumer failed");
                    return;
                }
            };
            let lapin::message::Delivery { data, acker, routing_key, .. } = delivery;
            let sink = sink.clone();
            let stored = tokio::task::spawn_blocking(move || {
                ocelli_ingest::append::store_remote_write(
                    &sink.db,
                    &sink.aggregator,
                    &sink.limits,
                    &sink.bounds,
                    // brokers are the operator's: what comes through them is not stamped
                    &ocelli_ingest::append::Stamp::default(),
                    &data,
                    // exemplars are kept by the server that serves queries, not a collector
                    &mut |m, _| sink.metadata.record(m),
                )
            })
            .await
            .unwrap_or_else(|e| Err(ocelli_http::Error::Internal(e.to_string())));
            let acked = match stored {
                Ok(written) => {
                    if written.refused.total() > 0 {
                        tracing::warn!(queue = %q, agent = %routing_key,
                            too_old = written.refused.too_old,
                            too_far_in_future = written.refused.too_new,
                            "collector: samples outside the time bounds left out");
                    }
                    stats.stored.fetch_add(1, Ordering::Relaxed);
                    stats.samples.fetch_add(written.samples as u64, Ordering::Relaxed);
                    acker.ack(BasicAckOptions::default()).await
                }
                Err(e) if e.status().0.is_client_error() => {
                    stats.rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(queue = %q, agent = %routing_key, error = %e,
                        "collector: malformed batch dropped (acked, not requeued)");
                    acker.ack(BasicAckOptions::default()).await
                }
                Err(e) => {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(queue = %q, error = %e, "collector: cannot store a batch; requeued");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await
                }
            };
            if let Err(e) = acked {
                tracing::warn!(queue = %q, error = %e, "collector: ack failed; the broker redelivers");
                return;
            }
        }
    });
    Ok(Consuming { channel, tag, task })
}

/// Stops consuming a shard: cancel, then close the channel, which hands unacked deliveries
/// back to the queue.
async fn cancel(c: Consuming) {
    let _ = c.channel.basic_cancel(c.tag.as_str().into(), BasicCancelOptions::default()).await;
    let _ = c.channel.close(200, "shard released".into()).await;
    c.task.abort();
}

/// The collector's figures on `/metrics`: deliveries by outcome, shards owned, live collectors,
/// and, with `max_agents_per_collector`, how many collectors the registered agents call for.
/// `agents` is how many agents the registry holds.
pub fn write_metrics(s: &CollectorStats, cfg: &Cluster, agents: usize, out: &mut String) {
    use std::fmt::Write as _;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    out.push_str("# HELP ocelli_amqp_deliveries_total AMQP deliveries by outcome: stored (acked after the WAL), rejected (malformed, acked and dropped), failed (requeued).\n# TYPE ocelli_amqp_deliveries_total counter\n");
    for (result, v) in [("stored", &s.stored), ("rejected", &s.rejected), ("failed", &s.failed)] {
        let _ = writeln!(out, "ocelli_amqp_deliveries_total{{result=\"{result}\"}} {}", load(v));
    }
    let live = s.members.lock().len();
    let owned = s.owned.lock().len();
    let _ = writeln!(
        out,
        "# HELP ocelli_amqp_samples_total Samples stored from AMQP deliveries.\n# TYPE ocelli_amqp_samples_total counter\nocelli_amqp_samples_total {}",
        load(&s.samples)
    );
    let _ = writeln!(
        out,
        "# HELP ocelli_collector_reconnects_total Times the collector lost the broker or etcd and started over.\n# TYPE ocelli_collector_reconnects_total counter\nocelli_collector_reconnects_total {}",
        load(&s.reconnects)
    );
    let _ = writeln!(
        out,
        "# HELP ocelli_collector_shards_owned Shard queues this collector consumes.\n# TYPE ocelli_collector_shards_owned gauge\nocelli_collector_shards_owned {owned}\n# HELP ocelli_collector_shards Shard queues in the deployment.\n# TYPE ocelli_collector_shards gauge\nocelli_collector_shards {}",
        cfg.shards
    );
    let _ = writeln!(
        out,
        "# HELP ocelli_collectors_live Collectors in the member list.\n# TYPE ocelli_collectors_live gauge\nocelli_collectors_live {live}"
    );
    if cfg.max_agents_per_collector > 0 {
        let agents = agents as u64;
        let wanted = agents.div_ceil(u64::from(cfg.max_agents_per_collector)).max(1);
        let _ = writeln!(
            out,
            "# HELP ocelli_collectors_wanted Collectors the registered agents call for under max_agents_per_collector.\n# TYPE ocelli_collectors_wanted gauge\nocelli_collectors_wanted {wanted}"
        );
    }
}
