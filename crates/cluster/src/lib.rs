//! Scale-out (`[cluster]`, `docs/scale-out.md`, RFC 0004): the roles a server can take besides
//! the single-process default.
//!
//! - `collector`: consumes the RabbitMQ shard queues it owns ([`collector`]) and stores what
//!   agents publish there (their `amqp` output). With etcd endpoints, collectors share the
//!   shards evenly through etcd leases ([`etcd`], [`assign`]); without, one collector takes
//!   them all.
//! - `query`: answers the Prometheus query API over the `stores` (collectors, or any
//!   remote_read server) with their series merged and HA replicas deduplicated ([`fanout`]).
//!
//! Every role keeps the rest of the server (its own storage, the HTTP API, rules).
//!
//! Architecture invariant: this crate stores only through `ocelli-ingest` and reads other
//! servers only through their remote_read API; it knows neither the registry nor the server.

pub mod assign;
pub mod collector;
pub mod etcd;
pub mod fanout;

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

use ocelli_http::client::Url;

/// What this server does in a deployment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// One process: agents push or are scraped here, queries are answered here.
    #[default]
    Standalone,
    /// Consumes shard queues from RabbitMQ.
    Collector,
    /// Answers queries over other servers.
    Query,
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "standalone" => Ok(Role::Standalone),
            "collector" => Ok(Role::Collector),
            "query" => Ok(Role::Query),
            other => Err(format!(
                "{other:?} is not a role; expected one of standalone, collector, query"
            )),
        }
    }
}

/// `[cluster]` of the server config.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    pub role: Role,
    /// collector: the broker, `amqp://user:password@host:port/vhost`, or `amqps://` for TLS.
    pub amqp_url: String,
    /// collector: with `amqps://`, the CA (PEM) the broker's certificate must chain to, besides
    /// Mozilla's roots.
    pub amqp_ca_file: Option<std::path::PathBuf>,
    /// collector: the consistent-hash exchange agents publish to.
    pub exchange: String,
    /// collector: shard queues; fixed for a deployment, the most collectors that share work.
    pub shards: u32,
    /// collector: unacknowledged deliveries a shard's consumer may hold.
    pub prefetch: u16,
    /// collector: etcd client URLs (`http://host:2379`); empty: no coordination, this
    /// collector consumes every shard.
    pub etcd: Vec<String>,
    /// For `https://` etcd endpoints: the CA (PEM) their certificates chain to.
    pub etcd_ca_file: Option<std::path::PathBuf>,
    /// collector: this collector's name among the others; default `{host name}-{port}`.
    pub id: String,
    /// collector: the URL others (a query node) reach this server at; default from `listen`.
    pub advertise: String,
    /// collector: how long a dead collector keeps its shards (its etcd lease), e.g. `10s`.
    pub lease_ttl: String,
    /// query: base URLs of the servers to query, e.g. `http://collector-1:9747`.
    pub stores: Vec<String>,
    /// query: for `https://` stores, the CA (PEM) their certificates chain to (else Mozilla's
    /// roots).
    pub store_ca_file: Option<std::path::PathBuf>,
    /// query: a file holding the token sent to the stores (a read token; the operator's to
    /// read every namespace), for stores with `[auth] enabled`.
    pub store_token_file: Option<std::path::PathBuf>,
    /// query: the label that tells HA replicas apart (dropped from answers); empty: none.
    pub replica_label: String,
    /// query: a replica is followed until its samples have a gap longer than this.
    pub dedup_gap: String,
    /// query: timeout of one store's answer.
    pub store_timeout: String,
    /// The scale policy: agents one collector should serve at most (CB-Dragonfly's
    /// `max_host_count`); 0: none. Reported as `ocelli_collectors_wanted`.
    pub max_agents_per_collector: u32,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            role: Role::Standalone,
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            amqp_ca_file: None,
            exchange: "ocelli.metrics".into(),
            shards: 64,
            prefetch: 32,
            etcd: Vec::new(),
            etcd_ca_file: None,
            id: String::new(),
            advertise: String::new(),
            lease_ttl: "10s".into(),
            stores: Vec::new(),
            store_ca_file: None,
            store_token_file: None,
            replica_label: String::new(),
            dedup_gap: "30s".into(),
            store_timeout: "2m".into(),
            max_agents_per_collector: 0,
        }
    }
}

/// A checked `[cluster]`.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub role: Role,
    pub amqp_url: String,
    /// The broker's TLS trust for `amqps://`: the CA file's PEM text.
    pub amqp_ca_pem: Option<String>,
    pub exchange: String,
    pub shards: u32,
    pub prefetch: u16,
    pub etcd: Option<Vec<String>>,
    pub etcd_ca_file: Option<std::path::PathBuf>,
    pub id: String,
    pub advertise: String,
    pub lease_ttl: Duration,
    pub fanout: fanout::Fanout,
    pub max_agents_per_collector: u32,
}

/// An AMQP URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}{}", &url[..s + 3], &url[at + 1..]),
        _ => url.to_string(),
    }
}

fn host_name() -> String {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let h: String = h
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
        .collect();
    if h.is_empty() { "localhost".into() } else { h }
}

impl ClusterConfig {
    /// Checks every field for the chosen role; errors name the field (`cluster.shards: ...`).
    pub fn compile(&self, listen: SocketAddr) -> Result<Cluster, String> {
        let at = |field: &str, m: String| format!("cluster.{field}: {m}");
        let dur = |field: &str, s: &str| {
            ocelli_model::time::parse_duration(s)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| at(field, format!("{s:?} is not a positive duration like 10s")))
        };
        if !(1..=1024).contains(&self.shards) {
            return Err(at(
                "shards",
                format!("{} is out of range; expected 1 to 1024", self.shards),
            ));
        }
        if self.prefetch == 0 {
            return Err(at("prefetch", "must be at least 1".into()));
        }
        let lease_ttl = dur("lease_ttl", &self.lease_ttl)?;
        if lease_ttl < Duration::from_secs(2) {
            return Err(at("lease_ttl", format!("{:?} is too short; at least 2s", self.lease_ttl)));
        }
        let dedup_gap = dur("dedup_gap", &self.dedup_gap)?;
        let store_timeout = dur("store_timeout", &self.store_timeout)?;
        if self.role == Role::Collector {
            check_amqp_url(&self.amqp_url).map_err(|m| at("amqp_url", m))?;
            let ok = !self.exchange.is_empty()
                && self.exchange.len() <= 200
                && self.exchange.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
            if !ok {
                return Err(at(
                    "exchange",
                    format!("{:?}: use letters, digits, '-', '_', '.' and ':'", self.exchange),
                ));
            }
        }
        for e in &self.etcd {
            Url::parse(e).map_err(|m| at("etcd", m))?;
        }
        let id = if self.id.is_empty() {
            format!("{}-{}", host_name(), listen.port())
        } else {
            self.id.clone()
        };
        if !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) {
            return Err(at("id", format!("{id:?}: use letters, digits, '-', '_', '.' and ':'")));
        }
        let advertise = if self.advertise.is_empty() {
            format!("http://{listen}")
        } else {
            self.advertise.clone()
        };
        let stores = self
            .stores
            .iter()
            .map(|s| Url::parse(s.trim_end_matches('/')).map_err(|m| at("stores", m)))
            .collect::<Result<Vec<_>, _>>()?;
        if self.role == Role::Query && stores.is_empty() {
            return Err(at(
                "stores",
                "the query role needs at least one store (--store URL)".into(),
            ));
        }
        if !self.replica_label.is_empty() && !ocelli_model::is_valid_label_name(&self.replica_label)
        {
            return Err(at(
                "replica_label",
                format!("{:?} is not a label name", self.replica_label),
            ));
        }
        let amqp_ca_pem = match &self.amqp_ca_file {
            Some(f) if self.role == Role::Collector => Some(
                std::fs::read_to_string(f)
                    .map_err(|e| at("amqp_ca_file", format!("{}: {e}", f.display())))?,
            ),
            _ => None,
        };
        let tls = match &self.store_ca_file {
            Some(f) if self.role == Role::Query => Some(
                ocelli_tls::client_config(&ocelli_tls::Trust::CaFile(f.clone()), None)
                    .map_err(|m| at("store_ca_file", m))?,
            ),
            _ => None,
        };
        let token = match &self.store_token_file {
            Some(f) if self.role == Role::Query => {
                let t = std::fs::read_to_string(f)
                    .map_err(|e| at("store_token_file", format!("{}: {e}", f.display())))?;
                Some(t.trim().to_string()).filter(|t| !t.is_empty())
            }
            _ => None,
        };
        Ok(Cluster {
            role: self.role,
            amqp_url: self.amqp_url.clone(),
            amqp_ca_pem,
            exchange: self.exchange.clone(),
            shards: self.shards,
            prefetch: self.prefetch,
            etcd: (!self.etcd.is_empty()).then(|| self.etcd.clone()),
            etcd_ca_file: self.etcd_ca_file.clone(),
            id,
            advertise,
            lease_ttl,
            fanout: fanout::Fanout {
                stores,
                tls,
                token,
                replica_label: (!self.replica_label.is_empty()).then(|| self.replica_label.clone()),
                dedup_gap_ms: i64::try_from(dedup_gap.as_millis()).unwrap_or(i64::MAX),
                timeout: store_timeout,
            },
            max_agents_per_collector: self.max_agents_per_collector,
        })
    }
}

fn check_amqp_url(url: &str) -> Result<(), String> {
    if !url.starts_with("amqp://") && !url.starts_with("amqps://") {
        return Err(format!("{:?} is not an amqp:// or amqps:// URL", redact(url)));
    }
    url.parse::<lapin::uri::AMQPUri>().map(|_| ()).map_err(|e| format!("{:?}: {e}", redact(url)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listen() -> SocketAddr {
        "127.0.0.1:9747".parse().unwrap()
    }

    #[test]
    fn roles_check_their_fields() {
        let c = ClusterConfig::default().compile(listen()).unwrap();
        assert_eq!(c.role, Role::Standalone);
        assert!(c.id.ends_with("-9747"), "{}", c.id);
        assert_eq!(c.advertise, "http://127.0.0.1:9747");
        let bad = |f: fn(&mut ClusterConfig)| {
            let mut c = ClusterConfig::default();
            f(&mut c);
            c.compile(listen()).unwrap_err()
        };
        assert_eq!(bad(|c| c.shards = 0), "cluster.shards: 0 is out of range; expected 1 to 1024");
        assert!(bad(|c| c.lease_ttl = "1s".into()).starts_with("cluster.lease_ttl: "));
        assert!(bad(|c| c.lease_ttl = "soon".into()).contains("not a positive duration"));
        assert!(
            bad(|c| {
                c.role = Role::Collector;
                c.amqp_url = "mqtt://u:pw@h/".into();
            })
            .starts_with("cluster.amqp_url: \"mqtt://h/\" is not an amqp:// or amqps:// URL")
        );
        assert!(bad(|c| c.role = Role::Query).contains("needs at least one store"));
        assert!(bad(|c| c.stores = vec!["nohttp".into()]).starts_with("cluster.stores: "));
        assert!(bad(|c| c.replica_label = "1x".into()).starts_with("cluster.replica_label: "));
        assert!(bad(|c| c.id = "a/b".into()).starts_with("cluster.id: "));
        assert_eq!("collector".parse::<Role>(), Ok(Role::Collector));
        assert!("leader".parse::<Role>().unwrap_err().contains("expected one of"));
        assert_eq!(redact("amqp://guest:secret@h:5672/%2f"), "amqp://h:5672/%2f");
    }
}
