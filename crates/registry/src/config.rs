//! The `[registry]` section of the server's config file and its checked form ([`Settings`]).
//! `config/server.example.toml` documents each field with its default.

use std::time::Duration;

use serde::Deserialize;

use ocelli_model::time::parse_duration;

/// `[registry]` as written in the config file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// An agent is unhealthy after this many missed heartbeat periods (push, ondemand) or
    /// consecutive failed scrapes (pull).
    pub unhealthy_after: u32,
    /// Longest an on-demand call to an agent may take (connect, answer and body), e.g. "5s".
    pub ondemand_timeout: String,
    /// Largest answer taken from an agent on demand, in bytes.
    pub ondemand_max_bytes: usize,
    /// How often `ocelli_agent_up` is written and `last_seen` is saved, e.g. "5s".
    pub up_interval: String,
    /// Longest a scrape of a pull-mode agent may take; it is also always below the agent's
    /// interval (at most 90 % of it).
    pub scrape_timeout: String,
    /// Largest heartbeat or `PATCH` body accepted, in bytes.
    pub max_body_bytes: usize,
    /// etcd client URLs: the registry lives in etcd, shared by every server configured so
    /// (collectors); empty: in the data directory (`registry.redb`).
    pub etcd: Vec<String>,
    /// The etcd key prefix of the registry's records.
    pub etcd_prefix: String,
    /// For `https://` etcd endpoints: the CA (PEM) their certificates chain to.
    pub etcd_ca_file: Option<std::path::PathBuf>,
    /// With it, the server pulls and calls agents on demand over https, verifying their
    /// certificates (which must name the address they advertise) against this CA (PEM).
    pub agent_ca_file: Option<std::path::PathBuf>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            unhealthy_after: 3,
            ondemand_timeout: "5s".into(),
            ondemand_max_bytes: 16 << 20,
            up_interval: "5s".into(),
            scrape_timeout: "10s".into(),
            max_body_bytes: 64 << 10,
            etcd: Vec::new(),
            etcd_prefix: "/ocelli/agents/".into(),
            etcd_ca_file: None,
            agent_ca_file: None,
        }
    }
}

/// The checked `[registry]` section.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub unhealthy_after: u32,
    pub ondemand_timeout: Duration,
    pub ondemand_max_bytes: usize,
    pub up_interval: Duration,
    pub scrape_timeout: Duration,
    pub max_body_bytes: usize,
}

impl RegistryConfig {
    /// Checks every field; an error names it (`registry.<field>: ...`).
    pub fn settings(&self) -> Result<Settings, String> {
        let dur = |field: &str, v: &str| {
            parse_duration(v).filter(|d| !d.is_zero()).ok_or_else(|| {
                format!("registry.{field}: invalid duration {v:?} (use e.g. 5s, 500ms, 1m)")
            })
        };
        if self.unhealthy_after == 0 {
            return Err("registry.unhealthy_after: must be at least 1".into());
        }
        let positive = |field: &str, v: usize| {
            if v == 0 { Err(format!("registry.{field}: must be at least 1")) } else { Ok(v) }
        };
        Ok(Settings {
            unhealthy_after: self.unhealthy_after,
            ondemand_timeout: dur("ondemand_timeout", &self.ondemand_timeout)?,
            ondemand_max_bytes: positive("ondemand_max_bytes", self.ondemand_max_bytes)?,
            up_interval: dur("up_interval", &self.up_interval)?,
            scrape_timeout: dur("scrape_timeout", &self.scrape_timeout)?,
            max_body_bytes: positive("max_body_bytes", self.max_body_bytes)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_check_and_errors_name_the_field() {
        let s = RegistryConfig::default().settings().unwrap();
        assert_eq!(s.unhealthy_after, 3);
        assert_eq!(s.ondemand_timeout, Duration::from_secs(5));
        let c = RegistryConfig { ondemand_timeout: "5 s".into(), ..RegistryConfig::default() };
        assert_eq!(
            c.settings().unwrap_err(),
            "registry.ondemand_timeout: invalid duration \"5 s\" (use e.g. 5s, 500ms, 1m)"
        );
        let c = RegistryConfig { unhealthy_after: 0, ..RegistryConfig::default() };
        assert_eq!(c.settings().unwrap_err(), "registry.unhealthy_after: must be at least 1");
    }
}
