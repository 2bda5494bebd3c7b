//! The server's configuration file (TOML) and its defaults, composed of each domain's section
//! (the section types live in their domain crates), and what each domain is handed of it at
//! start and on reload. `config/server.example.toml` in the repository documents every field;
//! a test parses it and compares every section with the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, Result};

/// The default listen address. 9747 clashes with none of Prometheus (9090), Alertmanager (9093),
/// node_exporter (9100) or VictoriaMetrics (8428).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9747";
pub const DEFAULT_DATA_DIR: &str = "./data";

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to serve HTTP on.
    pub listen: SocketAddr,
    /// Where the storage engine keeps its files.
    pub data_dir: PathBuf,
    pub storage: StorageConfig,
    pub ingest: IngestConfig,
    pub query: QueryConfig,
    /// Defaults for the scrape jobs (`[scrape]`); see `crate::scrape::config`.
    pub scrape: crate::scrape::GlobalConfig,
    /// Jobs that pull metrics from targets (`[[scrape_configs]]`, Prometheus' fields).
    #[serde(deserialize_with = "crate::scrape::deserialize_jobs")]
    pub scrape_configs: Vec<crate::scrape::ScrapeConfig>,
    /// The agent registry (`[registry]`); see `crate::registry::config`.
    pub registry: crate::registry::RegistryConfig,
    /// The agent `ocelli server` runs for its own host (`[local_agent]`).
    pub local_agent: LocalAgentConfig,
    /// The alarm history (`[history]`); see `crate::alerting::history`.
    pub history: crate::alerting::history::HistoryConfig,
    /// Rule files and rule evaluation (`[rules]`); see `crate::alerting::rules`.
    pub rules: crate::alerting::rules::RulesConfig,
    /// The notifier (`[notifier]`); see `crate::alerting::notify::config`.
    pub notifier: crate::alerting::notify::NotifierConfig,
    /// Ingest aggregation rules (`[[aggregation]]`); see `crate::aggregate::config`.
    pub aggregation: Vec<crate::aggregate::AggregationConfig>,
    /// Receivers everything stored is sent on to (`[[remote_write]]`); see
    /// `crate::remote_write`.
    pub remote_write: Vec<crate::remote_write::RemoteWriteConfig>,
    /// Scale-out roles (`[cluster]`): collector, query node; see `crate::cluster`.
    pub cluster: crate::cluster::ClusterConfig,
    /// HTTPS on the listen address (`[tls]`).
    pub tls: TlsConfig,
    /// Tokens on every route (`[auth]`).
    pub auth: AuthConfig,
    /// Serve on a non-loopback address without TLS and auth (`--insecure`).
    #[serde(skip)]
    pub insecure: bool,
    /// The file this config was read from, if any: reloading reads it again.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 9747))),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            storage: StorageConfig::default(),
            ingest: IngestConfig::default(),
            query: QueryConfig::default(),
            scrape: crate::scrape::GlobalConfig::default(),
            scrape_configs: Vec::new(),
            registry: crate::registry::RegistryConfig::default(),
            local_agent: LocalAgentConfig::default(),
            history: crate::alerting::history::HistoryConfig::default(),
            rules: crate::alerting::rules::RulesConfig::default(),
            notifier: crate::alerting::notify::NotifierConfig::default(),
            aggregation: Vec::new(),
            remote_write: Vec::new(),
            cluster: crate::cluster::ClusterConfig::default(),
            tls: TlsConfig::default(),
            auth: AuthConfig::default(),
            insecure: false,
            source: None,
        }
    }
}

/// `[tls]`: the listen address speaks HTTPS when a certificate is given or `auto` is on
/// (`docs/security.md`). Files are read again when they change, so a renewed certificate
/// needs no restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The certificate chain (PEM), leaf first.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// With it, clients must present a certificate signed by this CA (PEM).
    pub client_ca_file: Option<PathBuf>,
    /// Make a CA and a server certificate in `<data_dir>/tls` on first start and serve with
    /// them (cert_file and key_file must then be unset); the CA's fingerprint is logged for
    /// clients to pin.
    pub auto: bool,
    /// Extra names (DNS or IP) for the automatic certificate, besides localhost, the loopback
    /// addresses, the host name and the listen address.
    pub auto_names: Vec<String>,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        self.auto || self.cert_file.is_some() || self.key_file.is_some()
    }
}

/// `[auth]`: with `enabled`, every route but the health probes needs a token
/// (`ocelli token create`; `docs/security.md`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub enabled: bool,
}

/// The agent `ocelli server` runs in its own process for the host it runs on, so that a fresh
/// server shows live host metrics and a registered agent at once. It pushes to this server and
/// heartbeats like any other agent; the binary builds it (this crate does not know the agent)
/// and checks these values with the agent's own rules before the server starts.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalAgentConfig {
    /// Run it (`ocelli server --no-local-agent` overrides this). Default true.
    pub enabled: bool,
    /// Where its endpoints (`/metrics`, `/collect/{collector}`) listen; also its `instance`
    /// label. Default 127.0.0.1:9101, the standalone agent's default: a host runs one or the
    /// other.
    pub listen: SocketAddr,
    /// Collection interval in whole seconds. Default 10.
    pub interval_seconds: u32,
    /// Identity labels; unset ones take the agent's defaults (`default`, `vm`, `local`, the
    /// host name, `onprem`, `unknown`).
    pub ns: Option<String>,
    pub service_type: Option<String>,
    pub service_id: Option<String>,
    pub vm_id: Option<String>,
    pub csp: Option<String>,
    pub region: Option<String>,
}

impl Default for LocalAgentConfig {
    fn default() -> Self {
        LocalAgentConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9101)),
            interval_seconds: 10,
            ns: None,
            service_type: None,
            service_id: None,
            vm_id: None,
            csp: None,
            region: None,
        }
    }
}

/// Storage engine settings; see `ocelli_tsdb::Options` for what each does.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// "always", "never", or an interval like "1s" / "200ms" (the default is "1s").
    pub wal_fsync: String,
    /// Retention by age, e.g. "15d", "36h".
    pub retention: String,
    /// Retention by size in bytes (blocks + WAL).
    pub retention_bytes: u64,
    /// Cut the in-memory head into blocks once its sample data reaches this many bytes.
    pub head_max_bytes: u64,
    /// Width of block time partitions, e.g. "2h".
    pub block_duration: String,
    /// Write 5-minute and 1-hour rollups of old data (default true).
    pub downsampling: bool,
    /// Age (behind the newest sample) at which 5-minute rollups are written, and how long they
    /// are kept; the same for 1-hour rollups.
    pub rollup_5m_after: String,
    pub rollup_5m_retention: String,
    pub rollup_1h_after: String,
    pub rollup_1h_retention: String,
}

impl Default for StorageConfig {
    fn default() -> Self {
        let o = ocelli_tsdb::Options::default();
        StorageConfig {
            wal_fsync: "1s".into(),
            retention: "15d".into(),
            retention_bytes: o.retention_bytes,
            head_max_bytes: o.head_max_bytes,
            block_duration: "2h".into(),
            downsampling: true,
            rollup_5m_after: "40h".into(),
            rollup_5m_retention: "90d".into(),
            rollup_1h_after: "10d".into(),
            rollup_1h_retention: "365d".into(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest request body accepted, in bytes (compressed size).
    pub max_body_bytes: usize,
    /// Largest decompressed body accepted, in bytes.
    pub max_decompressed_bytes: usize,
    /// How far in the future a written sample may be, e.g. "10m"; later ones are refused.
    /// (Samples older than `storage.retention` are refused too.)
    pub max_future: String,
    /// How often each pushed Pushgateway group is written again, as a Pushgateway is scraped,
    /// so that it answers queries until it is deleted; at most `query.lookback_delta`.
    pub pushgateway_refresh: String,
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_body_bytes: 16 << 20,
            max_decompressed_bytes: 64 << 20,
            max_future: "10m".into(),
            pushgateway_refresh: "1m".into(),
        }
    }
}

/// The checked `[ingest]` time settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IngestOptions {
    pub bounds: ocelli_ingest::bounds::Bounds,
    pub pushgateway_refresh: std::time::Duration,
}

/// PromQL engine settings (Prometheus' `query.*` flags).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// How far back an instant selector looks for a sample, e.g. "5m".
    pub lookback_delta: String,
    /// Longest a query may run, e.g. "2m".
    pub timeout: String,
    /// Most samples one query may load or hold in memory.
    pub max_samples: usize,
    /// Step of subqueries that name none, e.g. "1m".
    pub default_subquery_step: String,
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            lookback_delta: "5m".into(),
            timeout: "2m".into(),
            max_samples: 50_000_000,
            default_subquery_step: "1m".into(),
        }
    }
}

pub use ocelli_model::time::parse_duration;

impl Config {
    /// Reads a config file; errors name the file and, for syntax errors, the line.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        let mut c = Config::parse(&text, &path.display().to_string())?;
        c.source = Some(path.to_path_buf());
        Ok(c)
    }

    pub fn parse(text: &str, origin: &str) -> Result<Config> {
        let c: Config = toml::from_str(text).map_err(|e| Error::Config {
            path: origin.into(),
            detail: e.to_string().trim().to_string(),
        })?;
        c.storage_options().map_err(|detail| Error::Config { path: origin.into(), detail })?;
        c.query_options().map_err(|detail| Error::Config { path: origin.into(), detail })?;
        c.ingest_options().map_err(|detail| Error::Config { path: origin.into(), detail })?;
        c.compile_scrape_jobs().map_err(|detail| Error::Config { path: origin.into(), detail })?;
        c.registry.settings().map_err(|detail| Error::Config { path: origin.into(), detail })?;
        c.rules.settings().map_err(|detail| Error::Config { path: origin.into(), detail })?;
        c.notifier.delivery().map_err(|detail| Error::Config { path: origin.into(), detail })?;
        c.history.retention().map_err(|detail| Error::Config { path: origin.into(), detail })?;
        crate::aggregate::compile(&c.aggregation)
            .map_err(|detail| Error::Config { path: origin.into(), detail })?;
        crate::remote_write::validate(&c.remote_write)
            .map_err(|detail| Error::Config { path: origin.into(), detail })?;
        c.cluster
            .compile(c.listen)
            .map_err(|detail| Error::Config { path: origin.into(), detail })?;
        c.check_tls().map_err(|detail| Error::Config { path: origin.into(), detail })?;
        Ok(c)
    }

    /// Checks `[tls]`: a certificate comes with its key, `auto` with neither.
    pub fn check_tls(&self) -> std::result::Result<(), String> {
        let t = &self.tls;
        match (&t.cert_file, &t.key_file, t.auto) {
            (Some(_), Some(_), false) | (None, None, _) => {}
            (Some(_), None, false) => {
                return Err("tls.cert_file is set without tls.key_file".into());
            }
            (None, Some(_), false) => {
                return Err("tls.key_file is set without tls.cert_file".into());
            }
            (_, _, true) => {
                return Err("tls.auto makes its own certificate: leave tls.cert_file and tls.key_file unset".into());
            }
        }
        if t.client_ca_file.is_some() && !t.enabled() {
            return Err(
                "tls.client_ca_file needs TLS: set tls.cert_file and tls.key_file, or tls.auto"
                    .into(),
            );
        }
        Ok(())
    }

    /// The default posture: a server on an address other than loopback must have TLS and
    /// auth on, unless `--insecure` says the operator knows.
    pub fn check_exposure(&self) -> std::result::Result<(), String> {
        if self.listen.ip().is_loopback() || self.insecure {
            return Ok(());
        }
        let mut missing = Vec::new();
        if !self.tls.enabled() {
            missing.push("TLS ([tls] cert_file and key_file, or auto = true; --tls-cert/--tls-key or --tls-auto)");
        }
        if !self.auth.enabled {
            missing.push("auth ([auth] enabled = true; --auth)");
        }
        if missing.is_empty() {
            return Ok(());
        }
        Err(format!(
            "refusing to listen on {} without {}: anyone who can reach it could read and write \
             every namespace. Turn them on, or pass --insecure to serve without them anyway",
            self.listen,
            missing.join(" and ")
        ))
    }

    /// The storage engine options this config asks for.
    pub fn storage_options(&self) -> std::result::Result<ocelli_tsdb::Options, String> {
        let s = &self.storage;
        let dur = |field: &str, v: &str| {
            parse_duration(v).filter(|d| !d.is_zero()).ok_or_else(|| {
                format!("storage.{field}: invalid duration {v:?} (use e.g. 15d, 2h, 500ms)")
            })
        };
        let fsync = match s.wal_fsync.as_str() {
            "always" => ocelli_tsdb::FsyncPolicy::Always,
            "never" => ocelli_tsdb::FsyncPolicy::Never,
            v => ocelli_tsdb::FsyncPolicy::Interval(dur("wal_fsync", v)?),
        };
        if s.head_max_bytes < 1 << 20 {
            return Err(format!(
                "storage.head_max_bytes: {} is too small (at least 1048576)",
                s.head_max_bytes
            ));
        }
        // the WAL grows to several times the head before a cut and counts toward the size
        // limit; a limit near it would delete every block on every pass
        if s.retention_bytes < s.head_max_bytes.saturating_mul(16) {
            return Err(format!(
                "storage.retention_bytes: {} is below 16 x head_max_bytes ({}); the write-ahead log alone can reach that",
                s.retention_bytes,
                s.head_max_bytes.saturating_mul(16)
            ));
        }
        let rollups = if s.downsampling {
            let ms = |field: &str, v: &str| dur(field, v).map(|d| d.as_millis() as i64);
            vec![
                ocelli_tsdb::Rollup {
                    resolution_ms: 5 * 60_000,
                    after_ms: ms("rollup_5m_after", &s.rollup_5m_after)?,
                    retention_ms: ms("rollup_5m_retention", &s.rollup_5m_retention)?,
                },
                ocelli_tsdb::Rollup {
                    resolution_ms: 3_600_000,
                    after_ms: ms("rollup_1h_after", &s.rollup_1h_after)?,
                    retention_ms: ms("rollup_1h_retention", &s.rollup_1h_retention)?,
                },
            ]
        } else {
            Vec::new()
        };
        Ok(ocelli_tsdb::Options {
            fsync,
            rollups,
            retention_ms: dur("retention", &s.retention)?.as_millis() as i64,
            retention_bytes: s.retention_bytes,
            head_max_bytes: s.head_max_bytes,
            block_duration_ms: dur("block_duration", &s.block_duration)?.as_millis() as i64,
            ..ocelli_tsdb::Options::default()
        })
    }
}

impl Config {
    /// The folder relative paths in the config are read from: the config file's, or the
    /// working directory for a config that came from no file.
    pub fn base_dir(&self) -> PathBuf {
        self.source
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."))
    }

    fn compile_scrape_jobs(&self) -> std::result::Result<Vec<crate::scrape::Job>, String> {
        crate::scrape::jobs_of(
            &self.scrape,
            &self.scrape_configs,
            &self.base_dir(),
            self.ingest.max_decompressed_bytes,
        )
    }

    /// The scrape manager's jobs; an error names the config file.
    pub fn scrape_jobs(&self) -> Result<Vec<crate::scrape::Job>> {
        self.compile_scrape_jobs().map_err(|detail| Error::Config {
            path: self.source.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            detail,
        })
    }

    /// How the scrape manager reads its jobs again: this config's file, loaded anew.
    pub fn scrape_reload(&self) -> ocelli_http::Reload<Vec<crate::scrape::Job>> {
        let path = self.source.clone()?;
        Some(std::sync::Arc::new(move || Config::load(&path)?.scrape_jobs()))
    }

    /// What `[notifier]` says, resolved against the config file's folder and the listen
    /// address.
    pub fn notifier_config(&self) -> crate::alerting::notify::NotifierConfig {
        let dir = self.source.as_ref().map(|_| self.base_dir());
        self.notifier.resolved(dir.as_deref(), self.listen)
    }

    /// Alerting's sections, and how its parts read them again from this config's file.
    pub fn alerting(&self) -> crate::alerting::Config {
        let notifier_reload: ocelli_http::Reload<_> = self.source.clone().map(|path| {
            std::sync::Arc::new(move || Ok(Config::load(&path)?.notifier_config())) as _
        });
        let rules_reload: ocelli_http::Reload<_> = self.source.clone().map(|path| {
            std::sync::Arc::new(move || {
                let c = Config::load(&path)?;
                Ok((c.rules.clone(), c.base_dir()))
            }) as _
        });
        crate::alerting::Config {
            data_dir: self.data_dir.clone(),
            history: self.history.clone(),
            notifier: self.notifier_config(),
            notifier_reload,
            rules: self.rules.clone(),
            rules_base: self.base_dir(),
            rules_reload,
        }
    }

    /// The ingest time bounds (`storage.retention`, `ingest.max_future`) and the Pushgateway
    /// refresh interval this config asks for.
    pub fn ingest_options(&self) -> std::result::Result<IngestOptions, String> {
        let retention = self.storage_options()?.retention_ms;
        let future = parse_duration(&self.ingest.max_future).ok_or_else(|| {
            format!(
                "ingest.max_future: invalid duration {:?} (use e.g. 10m, 1h)",
                self.ingest.max_future
            )
        })?;
        let refresh = parse_duration(&self.ingest.pushgateway_refresh)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                format!(
                    "ingest.pushgateway_refresh: invalid duration {:?} (use e.g. 1m, 30s)",
                    self.ingest.pushgateway_refresh
                )
            })?;
        let lookback = self.query_options()?.lookback_delta;
        if refresh > lookback {
            return Err(format!(
                "ingest.pushgateway_refresh: {} is longer than query.lookback_delta ({}): pushed \
                 groups would stop answering between refreshes",
                self.ingest.pushgateway_refresh, self.query.lookback_delta
            ));
        }
        Ok(IngestOptions {
            bounds: ocelli_ingest::bounds::Bounds {
                retention_ms: retention,
                max_future_ms: i64::try_from(future.as_millis()).unwrap_or(i64::MAX),
            },
            pushgateway_refresh: refresh,
        })
    }

    /// The PromQL engine options this config asks for.
    pub fn query_options(&self) -> std::result::Result<ocelli_promql::Options, String> {
        let q = &self.query;
        let dur = |field: &str, v: &str| {
            parse_duration(v).filter(|d| !d.is_zero()).ok_or_else(|| {
                format!("query.{field}: invalid duration {v:?} (use e.g. 5m, 2m, 30s)")
            })
        };
        if q.max_samples == 0 {
            return Err("query.max_samples: must be at least 1".into());
        }
        Ok(ocelli_promql::Options {
            lookback_delta: dur("lookback_delta", &q.lookback_delta)?,
            timeout: dur("timeout", &q.timeout)?,
            max_samples: q.max_samples,
            default_subquery_step: dur("default_subquery_step", &q.default_subquery_step)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn example_config_parses_and_matches_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/server.example.toml");
        let c = Config::load(&path).unwrap();
        let d = Config::default();
        assert_eq!(c.listen, d.listen);
        assert_eq!(c.data_dir, d.data_dir);
        assert_eq!(c.storage.wal_fsync, d.storage.wal_fsync);
        assert_eq!(c.storage.retention, d.storage.retention);
        assert_eq!(c.storage.retention_bytes, d.storage.retention_bytes);
        assert_eq!(c.storage.head_max_bytes, d.storage.head_max_bytes);
        assert_eq!(c.storage.block_duration, d.storage.block_duration);
        assert_eq!(c.ingest.max_body_bytes, d.ingest.max_body_bytes);
        assert_eq!(c.ingest.max_decompressed_bytes, d.ingest.max_decompressed_bytes);
        assert_eq!(c.ingest.max_future, d.ingest.max_future);
        assert_eq!(c.ingest.pushgateway_refresh, d.ingest.pushgateway_refresh);
        assert_eq!(c.query.lookback_delta, d.query.lookback_delta);
        assert_eq!(c.query.timeout, d.query.timeout);
        assert_eq!(c.query.max_samples, d.query.max_samples);
        assert_eq!(c.query.default_subquery_step, d.query.default_subquery_step);
        assert_eq!(c.registry, d.registry);
        assert_eq!(c.rules, d.rules);
        assert_eq!(c.history, d.history);
        assert_eq!(c.notifier, d.notifier);
        assert_eq!(c.scrape, d.scrape);
        assert!(c.scrape_configs.is_empty());
        assert!(c.aggregation.is_empty() && c.remote_write.is_empty());
        assert_eq!(c.cluster, d.cluster);
        assert_eq!(c.local_agent, d.local_agent);
        assert_eq!(c.storage.downsampling, d.storage.downsampling);
        assert_eq!(c.storage.rollup_5m_after, d.storage.rollup_5m_after);
        assert_eq!(c.storage.rollup_5m_retention, d.storage.rollup_5m_retention);
        assert_eq!(c.storage.rollup_1h_after, d.storage.rollup_1h_after);
        assert_eq!(c.storage.rollup_1h_retention, d.storage.rollup_1h_retention);
        assert_eq!(c.tls, d.tls);
        assert_eq!(c.auth, d.auth);
    }

    #[test]
    fn tls_settings_are_checked() {
        let e = |t: &str| Config::parse(t, "x.toml").unwrap_err().to_string();
        assert!(e("[tls]\ncert_file = \"c.pem\"\n").contains("without tls.key_file"));
        assert!(e("[tls]\nauto = true\nkey_file = \"k\"\n").contains("leave tls.cert_file"));
        assert!(e("[tls]\nclient_ca_file = \"ca\"\n").contains("needs TLS"));
        let c = Config::parse("[tls]\nauto = true\n[auth]\nenabled = true\n", "x.toml").unwrap();
        assert!(c.tls.enabled() && c.auth.enabled);
    }

    #[test]
    fn one_duration_grammar_for_every_section() {
        // Prometheus' compound durations are taken wherever a duration is
        let c = Config::parse(
            "[storage]\nretention = \"1w3d\"\n[[scrape_configs]]\njob_name = \"n\"\nscrape_interval = \"1m30s\"\n",
            "x.toml",
        )
        .unwrap();
        assert_eq!(c.storage_options().unwrap().retention_ms, 10 * 86_400_000);
        assert_eq!(c.scrape_jobs().unwrap()[0].interval, Duration::from_secs(90));
        let e = Config::parse("[storage]\nretention = \"1.5d\"\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("invalid duration \"1.5d\""), "{e}");
    }

    #[test]
    fn aggregation_errors_name_the_file() {
        let text = "[[aggregation]]\nmatch = 'm'\ninterval = \"1m\"\noutputs = [\"median\"]\n";
        let e = Config::parse(text, "x.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "config x.toml: aggregation[0].outputs: \"median\" is not one of min, max, avg, last, sum, count"
        );
    }

    #[test]
    fn server_config_file_rejects_a_bad_job_with_its_name_and_field() {
        let e = Config::parse(
            "[[scrape_configs]]\njob_name = \"n\"\n[[scrape_configs.relabel_configs]]\nregexp = \"a\"\n",
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("config x.toml: TOML parse error at line 1"), "{e}");
        assert!(e.contains("scrape_configs[0] (job \"n\"): unknown field `regexp`"), "{e}");
        assert!(e.contains("in `relabel_configs`"), "{e}");
        let e = Config::parse(
            "[[scrape_configs]]\njob_name = \"n\"\nscrape_interval = \"5x\"\n",
            "x.toml",
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "config x.toml: scrape_configs[0] (job \"n\"): scrape_interval: invalid duration \"5x\" (use e.g. 15s, 1m, 500ms)"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let e = Config::parse("[storage]\nretention = \"15 days\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "config x.toml: storage.retention: invalid duration \"15 days\" (use e.g. 15d, 2h, 500ms)"
        );
        let e = Config::parse("listen = 3\n", "x.toml").unwrap_err().to_string();
        assert!(e.starts_with("config x.toml: TOML parse error at line 1"), "{e}");
        let e = Config::parse("[storage]\nbogus = 1\n", "x.toml").unwrap_err().to_string();
        assert!(e.contains("unknown field `bogus`"), "{e}");
        let e = Config::parse("[[remote_write]]\nurl = \"vm:8428\"\n", "x.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("config x.toml: remote_write[0].url: "), "{e}");
        let e = Config::parse("[ingest]\nmax_future = \"soon\"\n", "x.toml").unwrap_err();
        assert_eq!(
            e.to_string(),
            "config x.toml: ingest.max_future: invalid duration \"soon\" (use e.g. 10m, 1h)"
        );
        let e = Config::parse(
            "[ingest]\npushgateway_refresh = \"10m\"\n[query]\nlookback_delta = \"5m\"\n",
            "x.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("longer than query.lookback_delta (5m)"), "{e}");
    }

    #[test]
    fn ingest_bounds_follow_the_retention() {
        let c = Config::parse("[storage]\nretention = \"2d\"\n", "x.toml").unwrap();
        let o = c.ingest_options().unwrap();
        assert_eq!(o.bounds.retention_ms, 2 * 86_400_000);
        assert_eq!(o.bounds.max_future_ms, 600_000);
        assert_eq!(o.pushgateway_refresh, Duration::from_secs(60));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("15d"), Some(Duration::from_secs(15 * 86400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5h"), None);
        assert_eq!(parse_duration("h"), None);
    }
}
