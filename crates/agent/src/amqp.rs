//! The AMQP push output: each batch (the same snappy remote_write body the HTTP output POSTs)
//! is published to RabbitMQ instead, for a server that runs as a pool of collectors
//! (`docs/rfcs/0004-scale-out.md`, `docs/scale-out.md`).
//!
//! - Exchange: `exchange` (default `ocelli.metrics`), declared durable and of type
//!   `x-consistent-hash` (RabbitMQ's bundled `rabbitmq_consistent_hash_exchange` plugin), the
//!   same declaration the collectors make. The routing key is the agent key, so every batch of
//!   one agent lands in the same shard queue, in order.
//! - Messages are persistent (`delivery_mode` 2), published `mandatory` on a channel in
//!   confirm mode. A batch counts as sent only when the broker acks it **and** did not return
//!   it as unroutable (no shard queue bound yet). A nack, a return, a closed connection or no
//!   confirm within the request timeout leaves the batch in the agent's disk buffer, to be
//!   published again, oldest first (at least once; the collectors store a repeated batch once).
//! - The connection is opened on first use and again after any failure.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::Deserialize;

use crate::{Error, Result};

/// The exchange agents publish to and collectors bind their shard queues to.
pub const DEFAULT_EXCHANGE: &str = "ocelli.metrics";
/// The exchange type: RabbitMQ's consistent-hash plugin.
pub const EXCHANGE_TYPE: &str = "x-consistent-hash";

/// `[amqp]` of the agent config: push through RabbitMQ instead of HTTP.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpConfig {
    /// `amqp://user:password@host:port/vhost`, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`,
    /// or `amqps://` for TLS.
    pub url: String,
    /// With `amqps://`: the CA (PEM) the broker's certificate must chain to, besides Mozilla's
    /// roots.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// The consistent-hash exchange to publish to.
    #[serde(default = "default_exchange")]
    pub exchange: String,
}

fn default_exchange() -> String {
    DEFAULT_EXCHANGE.into()
}

impl AmqpConfig {
    /// Checks the URL's shape and the exchange name; the broker is not contacted.
    pub fn validate(&self) -> Result<()> {
        check_url(&self.url).map_err(|e| Error::Config(format!("amqp.url: {e}")))?;
        check_exchange(&self.exchange).map_err(|e| Error::Config(format!("amqp.exchange: {e}")))
    }
}

/// An AMQP URL this build can use: `amqp://`, or `amqps://` (TLS: rustls with ring).
pub fn check_url(url: &str) -> std::result::Result<(), String> {
    if !url.starts_with("amqp://") && !url.starts_with("amqps://") {
        return Err(format!("{url:?} is not an amqp:// or amqps:// URL"));
    }
    url.parse::<lapin::uri::AMQPUri>().map(|_| ()).map_err(|e| format!("{url:?}: {e}"))
}

/// An exchange name RabbitMQ takes: 1..=255 bytes of letters, digits, `-`, `_`, `.`, `:`.
pub fn check_exchange(name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?}: use 1 to 255 of letters, digits, '-', '_', '.' and ':'"))
    }
}

/// Declares the exchange as agents and collectors both do (idempotent when it exists).
pub async fn declare_exchange(ch: &Channel, exchange: &str) -> lapin::Result<()> {
    ch.exchange_declare(
        exchange.into(),
        ExchangeKind::Custom(EXCHANGE_TYPE.into()),
        ExchangeDeclareOptions { durable: true, ..Default::default() },
        FieldTable::default(),
    )
    .await
}

/// A publisher with confirms, connected on demand.
#[derive(Debug)]
pub struct Publisher {
    cfg: AmqpConfig,
    routing_key: String,
    timeout: Duration,
    link: Option<(Connection, Channel)>,
}

impl Publisher {
    /// A publisher for the agent with key `routing_key`; nothing is connected yet.
    pub fn new(cfg: AmqpConfig, routing_key: String, timeout: Duration) -> Publisher {
        Publisher { cfg, routing_key, timeout, link: None }
    }

    /// Where it publishes, for logs (the URL without its password).
    pub fn target(&self) -> String {
        let u = &self.cfg.url;
        match (u.find("://"), u.rfind('@')) {
            (Some(s), Some(at)) if at > s => {
                format!("{}{} ({})", &u[..s + 3], &u[at + 1..], self.cfg.exchange)
            }
            _ => format!("{u} ({})", self.cfg.exchange),
        }
    }

    /// Publishes one batch and waits for the broker's confirm. `Err` says why it is not
    /// (known to be) stored; the caller keeps the batch and tries again later.
    pub async fn publish(&mut self, body: &[u8]) -> std::result::Result<(), String> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.publish_inner(body)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.link = None;
                Err(e)
            }
            Err(_) => {
                self.link = None;
                Err(format!("no confirm from the broker within {timeout:?}"))
            }
        }
    }

    async fn publish_inner(&mut self, body: &[u8]) -> std::result::Result<(), String> {
        let ch = self.channel().await?;
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/x-protobuf".into())
            .with_content_encoding("snappy".into());
        let opts = BasicPublishOptions { mandatory: true, ..Default::default() };
        let confirm = ch
            .basic_publish(
                self.cfg.exchange.as_str().into(),
                self.routing_key.as_str().into(),
                opts,
                body,
                props,
            )
            .await
            .map_err(|e| format!("publish: {e}"))?
            .await
            .map_err(|e| format!("waiting for the confirm: {e}"))?;
        if confirm.is_nack() {
            return Err("the broker refused the batch (nack)".into());
        }
        if confirm.take_message().is_some() {
            return Err(format!(
                "the broker has no queue bound to exchange {:?} yet (no collector has started); keeping the batch",
                self.cfg.exchange
            ));
        }
        Ok(())
    }

    async fn channel(&mut self) -> std::result::Result<Channel, String> {
        let alive = self
            .link
            .as_ref()
            .is_some_and(|(c, ch)| c.status().connected() && ch.status().connected());
        if !alive {
            self.link = None;
            let cert_chain = match &self.cfg.ca_file {
                Some(f) => Some(
                    std::fs::read_to_string(f)
                        .map_err(|e| format!("amqp.ca_file {}: {e}", f.display()))?,
                ),
                None => None,
            };
            let tls = lapin::tcp::OwnedTLSConfig { identity: None, cert_chain };
            let runtime = lapin::runtime::default_runtime()
                .map_err(|e| format!("cannot set up the AMQP client: {e}"))?;
            let conn = Connection::connect_with_config(
                &self.cfg.url,
                ConnectionProperties::default(),
                tls,
                runtime,
            )
            .await
            .map_err(|e| format!("cannot connect to {}: {e}", self.target()))?;
            let ch = conn.create_channel().await.map_err(|e| format!("open a channel: {e}"))?;
            declare_exchange(&ch, &self.cfg.exchange).await.map_err(|e| {
                format!(
                    "declare exchange {:?} of type {EXCHANGE_TYPE} (is the rabbitmq_consistent_hash_exchange plugin enabled?): {e}",
                    self.cfg.exchange
                )
            })?;
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| format!("turn on publisher confirms: {e}"))?;
            self.link = Some((conn, ch));
        }
        match &self.link {
            Some((_, ch)) => Ok(ch.clone()),
            None => Err("no channel".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_exchange_names_are_checked() {
        check_url("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        check_url("amqp://127.0.0.1").unwrap();
        check_url("amqps://guest:guest@mq.example:5671/%2f").unwrap();
        assert!(check_url("http://h").unwrap_err().contains("not an amqp:// or amqps:// URL"));
        assert!(check_url("amqp://h:notaport").is_err());
        check_exchange("ocelli.metrics").unwrap();
        assert!(check_exchange("").is_err());
        assert!(check_exchange("a b").is_err());
        let p = Publisher::new(
            AmqpConfig {
                url: "amqp://u:secret@h:5672/%2f".into(),
                exchange: "x".into(),
                ca_file: None,
            },
            "k".into(),
            Duration::from_secs(1),
        );
        assert_eq!(p.target(), "amqp://h:5672/%2f (x)");
    }
}
