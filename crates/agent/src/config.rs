//! The agent's configuration: a TOML file (`config/agent.example.toml` documents every key and
//! is parsed by a test), overridden by flags ([`crate::cli`]), checked whole by
//! [`AgentConfig::validate`] before anything starts.
//!
//! The identity rules and the modes are the agent <-> server protocol's: key parts are 1..=128
//! characters of `[A-Za-z0-9_.-]`, `service_type` and `csp` come from fixed lists, `region` is
//! free text, the interval is whole seconds in 1..=3600. Errors name the field and, for the
//! fixed lists, the allowed values.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::{Error, Result};

/// The default listen port (9100 is node_exporter's, 9747 the server's); the default address is
/// loopback, so a host's metrics are not on the network until asked for.
pub const DEFAULT_PORT: u16 = 9101;
pub const DEFAULT_DATA_DIR: &str = "./agent-data";
pub use ocelli_model::identity::{CSPS, SERVICE_TYPES};
use ocelli_model::identity::{MAX_PART as MAX_IDENTITY_LEN, is_key_char as allowed_key_char};

/// How the agent hands its samples over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// remote_write to the server every interval.
    Push,
    /// The server scrapes `GET /metrics` every interval.
    Pull,
    /// Nothing periodic; the server asks when a user asks.
    Ondemand,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Push => "push",
            Mode::Pull => "pull",
            Mode::Ondemand => "ondemand",
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = Error;

    fn from_str(s: &str) -> Result<Mode> {
        match s {
            "push" => Ok(Mode::Push),
            "pull" => Ok(Mode::Pull),
            "ondemand" => Ok(Mode::Ondemand),
            other => Err(Error::Config(format!(
                "mode: {other:?} is not allowed; expected one of push, pull, ondemand"
            ))),
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The multi-cloud identity every series carries.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Identity {
    pub ns: String,
    pub service_type: String,
    pub service_id: String,
    /// Empty means the host name (made to fit the allowed characters).
    pub vm_id: String,
    pub csp: String,
    pub region: String,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            ns: "default".into(),
            service_type: "vm".into(),
            service_id: "default".into(),
            vm_id: String::new(),
            csp: "onprem".into(),
            region: "unknown".into(),
        }
    }
}

impl Identity {
    /// The registry key: `{ns}/{service_type}/{service_id}/{vm_id}/{csp}`.
    pub fn key(&self) -> String {
        ocelli_model::identity::key(
            &self.ns,
            &self.service_type,
            &self.service_id,
            &self.vm_id,
            &self.csp,
        )
    }

    /// The six identity labels, in label-name order.
    pub fn labels(&self) -> [(&'static str, &str); 6] {
        [
            ("csp", &self.csp),
            ("ns", &self.ns),
            ("region", &self.region),
            ("service_id", &self.service_id),
            ("service_type", &self.service_type),
            ("vm_id", &self.vm_id),
        ]
    }

    /// Checks every field against the protocol's rules; the first bad field is the error.
    pub fn validate(&self) -> Result<()> {
        ocelli_model::identity::check(
            &self.ns,
            &self.service_type,
            &self.service_id,
            &self.vm_id,
            &self.csp,
            &self.region,
        )
        .map_err(Error::Config)
    }
}

/// The host name made into a valid `vm_id`: characters outside `[A-Za-z0-9_.-]` become `_`,
/// and it is cut to 128 characters; "localhost" when the kernel has none.
pub fn host_vm_id(hostname: &str) -> String {
    let s: String = hostname
        .trim()
        .chars()
        .take(MAX_IDENTITY_LEN)
        .map(|c| if allowed_key_char(c) { c } else { '_' })
        .collect();
    if s.is_empty() { "localhost".into() } else { s }
}

/// The on-disk buffer for push batches the server did not take.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferConfig {
    /// The most bytes of buffered batches kept; the oldest are dropped to make room.
    pub max_bytes: u64,
}

impl Default for BufferConfig {
    fn default() -> Self {
        BufferConfig { max_bytes: 64 << 20 }
    }
}

/// Where the kernel's files are (a containerised agent sees the host's under other paths).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Paths {
    pub proc: PathBuf,
    pub sys: PathBuf,
    /// The host's root: `/etc/os-release`, `/etc/passwd`, udev data and mount points are read
    /// under it.
    pub root: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths { proc: "/proc".into(), sys: "/sys".into(), root: "/".into() }
    }
}

/// Collector settings. The exclusion defaults are those of Debian's node_exporter 1.5 package,
/// so both report the same filesystems, disks and network devices.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorsConfig {
    /// Collectors not to run (names as in `GET /collect/{collector}`).
    pub disabled: Vec<String>,
    /// Mount points skipped, with everything below them.
    pub filesystem_exclude_mount_points: Vec<String>,
    /// Mount points skipped when strictly below one of these (the point itself is kept).
    pub filesystem_exclude_below: Vec<String>,
    /// Filesystem types skipped (pseudo filesystems).
    pub filesystem_exclude_fs_types: Vec<String>,
    /// Network devices skipped, by exact name.
    pub netdev_exclude_devices: Vec<String>,
    /// Skip disk partitions (sda1, vda2, nvme0n1p1, ...) and ram, loop and floppy devices.
    pub diskstats_exclude_partitions: bool,
    /// The window over which the process view measures CPU use, in milliseconds.
    pub processes_cpu_window_ms: u32,
}

impl Default for CollectorsConfig {
    fn default() -> Self {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        CollectorsConfig {
            disabled: Vec::new(),
            filesystem_exclude_mount_points: v(&[
                "/dev", "/proc", "/run", "/sys", "/mnt", "/media",
            ]),
            filesystem_exclude_below: v(&["/var/lib/docker", "/var/lib/containers/storage"]),
            filesystem_exclude_fs_types: v(&[
                "autofs",
                "binfmt_misc",
                "bpf",
                "cgroup",
                "cgroup2",
                "configfs",
                "debugfs",
                "devpts",
                "devtmpfs",
                "fusectl",
                "hugetlbfs",
                "iso9660",
                "mqueue",
                "nsfs",
                "overlay",
                "proc",
                "procfs",
                "pstore",
                "rpc_pipefs",
                "securityfs",
                "selinuxfs",
                "squashfs",
                "sysfs",
                "tracefs",
            ]),
            netdev_exclude_devices: v(&["lo"]),
            diskstats_exclude_partitions: true,
            processes_cpu_window_ms: 500,
        }
    }
}

/// Everything the agent needs to run.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    pub mode: Mode,
    /// Collection (push), scrape (pull) and heartbeat period, in whole seconds (1..=3600).
    pub interval_seconds: u32,
    /// Where the agent's HTTP endpoints listen (every mode).
    pub listen: SocketAddr,
    /// `host:port` the server should use to reach this agent; the listen address when unset.
    pub advertise: Option<String>,
    /// The server's base URL, e.g. `http://10.0.0.1:9747`. Needed for push over HTTP; enables
    /// heartbeats.
    pub server: Option<String>,
    /// Push through RabbitMQ instead of HTTP (`[amqp]`); heartbeats still go to `server`.
    pub amqp: Option<crate::amqp::AmqpConfig>,
    /// Holds the push buffer.
    pub data_dir: PathBuf,
    pub identity: Identity,
    pub buffer: BufferConfig,
    /// The longest one remote_write or heartbeat request may take, connect included.
    pub request_timeout_seconds: u32,
    pub paths: Paths,
    pub collectors: CollectorsConfig,
    /// TLS of the agent's listener, and what it trusts of the server (`[tls]`).
    pub tls: AgentTls,
    /// A file holding the token sent to the server (a write token of the agent's namespace);
    /// without it, the credential enrolment left in the data directory, if any.
    pub token_file: Option<PathBuf>,
    /// A join token to enrol with once (`--join-token`); the credential it gets is kept in the
    /// data directory and used from then on.
    pub join_token: Option<String>,
    /// A token given in code (the server's own agent); never read from a file.
    #[serde(skip)]
    pub token: Option<String>,
}

/// `[tls]` of the agent: the same keys as the server's for its listener (`cert_file`,
/// `key_file`, `client_ca_file`), and the trust of the server's certificate for `https://`
/// (`ca_file`, or `ca_pin`, else Mozilla's roots).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentTls {
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub client_ca_file: Option<PathBuf>,
    /// The CA (PEM) the server's certificate must chain to.
    pub ca_file: Option<PathBuf>,
    /// The SHA-256 fingerprint of the server's CA, `sha256:<hex>`.
    pub ca_pin: Option<String>,
}

impl AgentTls {
    /// What the agent trusts of the server.
    pub fn trust(&self) -> Result<ocelli_tls::Trust> {
        match (&self.ca_file, &self.ca_pin) {
            (Some(_), Some(_)) => {
                Err(Error::Config("tls: give ca_file or ca_pin, not both".into()))
            }
            (Some(f), None) => Ok(ocelli_tls::Trust::CaFile(f.clone())),
            (None, Some(p)) => ocelli_tls::parse_pin(p)
                .map(ocelli_tls::Trust::Pin)
                .map_err(|e| Error::Config(format!("tls.ca_pin: {e}"))),
            (None, None) => Ok(ocelli_tls::Trust::System),
        }
    }

    /// The listener's files, when the agent serves HTTPS.
    pub fn server_files(&self) -> Result<Option<ocelli_tls::ServerFiles>> {
        match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => Ok(Some(ocelli_tls::ServerFiles {
                cert_file: c.clone(),
                key_file: k.clone(),
                client_ca_file: self.client_ca_file.clone(),
            })),
            (None, None) if self.client_ca_file.is_none() => Ok(None),
            (None, None) => {
                Err(Error::Config("tls.client_ca_file needs tls.cert_file and tls.key_file".into()))
            }
            _ => Err(Error::Config("tls: cert_file and key_file go together".into())),
        }
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            mode: Mode::Pull,
            interval_seconds: 10,
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            advertise: None,
            server: None,
            amqp: None,
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            identity: Identity::default(),
            buffer: BufferConfig::default(),
            request_timeout_seconds: 10,
            paths: Paths::default(),
            collectors: CollectorsConfig::default(),
            tls: AgentTls::default(),
            token_file: None,
            join_token: None,
            token: None,
        }
    }
}

impl AgentConfig {
    /// Reads a TOML file. Unknown keys are errors; missing keys take their defaults.
    pub fn load(path: &Path) -> Result<AgentConfig> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::ConfigFile { path: path.to_path_buf(), detail: e.to_string() })?;
        Self::parse(&text).map_err(|detail| Error::ConfigFile { path: path.to_path_buf(), detail })
    }

    /// Parses TOML text; the error is the parser's message (line and column included).
    pub fn parse(text: &str) -> Result<AgentConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
    }

    /// Fills what defaults to facts of the host (an empty `vm_id` becomes the host name), then
    /// checks every field. The agent calls this before it starts.
    pub fn validate(&mut self) -> Result<()> {
        if self.identity.vm_id.is_empty() {
            let host = std::fs::read_to_string(self.paths.proc.join("sys/kernel/hostname"))
                .unwrap_or_default();
            self.identity.vm_id = host_vm_id(&host);
        }
        self.identity.validate()?;
        check_interval(self.interval_seconds)?;
        if self.request_timeout_seconds == 0 {
            return Err(Error::Config("request_timeout_seconds: must be at least 1".into()));
        }
        if self.buffer.max_bytes < 1 << 16 {
            return Err(Error::Config(format!(
                "buffer.max_bytes: {} is too small; at least 65536 bytes are needed",
                self.buffer.max_bytes
            )));
        }
        if let Some(a) = &self.amqp {
            a.validate()?;
        }
        if let Some(s) = &self.server {
            crate::client::ServerUrl::parse(s)?;
        } else if self.mode == Mode::Push && self.amqp.is_none() {
            return Err(Error::Config(
                "mode push needs a server: pass --server URL or --amqp URL (or set `server` or \
                 `[amqp]` in the config file), or run with --mode pull or --mode ondemand, \
                 which work without one"
                    .into(),
            ));
        }
        if let Some(a) = &self.advertise {
            check_advertise(a)?;
        }
        let known = crate::collector::NAMES;
        for d in &self.collectors.disabled {
            if !known.contains(&d.as_str()) {
                return Err(Error::Config(format!(
                    "collectors.disabled: {d:?} is not a collector; known are {}",
                    known.join(", ")
                )));
            }
        }
        self.tls.trust()?;
        self.tls.server_files()?;
        if self.join_token.is_some() && self.server.is_none() {
            return Err(Error::Config("join_token: enrolment needs a server (--server)".into()));
        }
        Ok(())
    }
}

/// The interval rule of the protocol: whole seconds, 1..=3600.
pub fn check_interval(secs: u32) -> Result<()> {
    if (1..=3600).contains(&secs) {
        Ok(())
    } else {
        Err(Error::Config(format!("interval_seconds: {secs} is out of range; expected 1 to 3600")))
    }
}

fn check_advertise(a: &str) -> Result<()> {
    let ok = a.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if ok { Ok(()) } else { Err(Error::Config(format!("advertise: {a:?} is not host:port"))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> AgentConfig {
        let mut c = AgentConfig::default();
        c.identity.vm_id = "vm-1".into();
        c
    }

    #[test]
    fn identity_errors_name_the_field_and_the_allowed_values() {
        let mut c = valid();
        c.identity.service_type = "mcis".into();
        let e = c.validate().unwrap_err().to_string();
        assert_eq!(e, r#"service_type: "mcis" is not allowed; expected one of vm, k8s"#);
        let mut c = valid();
        c.identity.csp = "AWS".into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with(r#"csp: "AWS" is not allowed; expected one of aws, azure,"#), "{e}");
        let mut c = valid();
        c.identity.ns = "a/b".into();
        let e = c.validate().unwrap_err().to_string();
        assert_eq!(e, r#"ns: "a/b" has '/' at position 2; only [A-Za-z0-9_.-] is allowed"#);
        let mut c = valid();
        c.identity.service_id = "x".repeat(129);
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "service_id: 129 characters long; at most 128 allowed"
        );
        let mut c = valid();
        c.identity.region = String::new();
        assert!(c.validate().unwrap_err().to_string().starts_with("region: "));
        let mut c = valid();
        c.identity.region = "서울 1".into();
        c.validate().unwrap();
        assert_eq!(c.identity.key(), "default/vm/default/vm-1/onprem");
    }

    #[test]
    fn push_needs_a_server_and_intervals_are_bounded() {
        let mut c = valid();
        c.mode = Mode::Push;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("mode push needs a server: pass --server URL"), "{e}");
        c.server = Some("http://127.0.0.1:9747".into());
        c.validate().unwrap();
        // or a broker instead of a server
        c.server = None;
        c.amqp = Some(crate::amqp::AmqpConfig {
            url: "amqp://127.0.0.1:5672/%2f".into(),
            exchange: "ocelli.metrics".into(),
            ca_file: None,
        });
        c.validate().unwrap();
        c.amqp.as_mut().unwrap().url = "mqtt://h".into();
        assert!(c.validate().unwrap_err().to_string().starts_with("amqp.url: "));
        c.server = Some("http://127.0.0.1:9747".into());
        c.amqp = None;
        c.interval_seconds = 0;
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "interval_seconds: 0 is out of range; expected 1 to 3600"
        );
        c.interval_seconds = 3601;
        assert!(c.validate().is_err());
        let mut c = valid();
        c.collectors.disabled = vec!["cpux".into()];
        assert!(c.validate().unwrap_err().to_string().contains("\"cpux\" is not a collector"));
        let mut c = valid();
        c.advertise = Some("10.0.0.5".into());
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            r#"advertise: "10.0.0.5" is not host:port"#
        );
    }

    #[test]
    fn vm_id_defaults_to_a_cleaned_host_name() {
        assert_eq!(host_vm_id("web 01.example\n"), "web_01.example");
        assert_eq!(host_vm_id(""), "localhost");
        let mut c = AgentConfig::default();
        c.validate().unwrap();
        assert!(!c.identity.vm_id.is_empty());
    }

    #[test]
    fn unknown_keys_and_bad_modes_are_refused_with_their_place() {
        let e = AgentConfig::parse("interval_seconds = 5\nbogus = 1\n").unwrap_err();
        assert!(e.contains("bogus") && e.contains("line 2"), "{e}");
        let e = AgentConfig::parse("mode = \"pushy\"\n").unwrap_err();
        assert!(e.contains("pushy") && e.contains("push"), "{e}");
        let c = AgentConfig::parse("[identity]\nns = \"team-a\"\n").unwrap();
        assert_eq!(c.identity.ns, "team-a");
        assert_eq!(c.identity.csp, "onprem");
    }

    #[test]
    fn the_example_config_parses_and_states_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/agent.example.toml");
        let mut c = AgentConfig::load(&path).unwrap();
        // the example documents the defaults, except the identity it shows filled in
        let d = AgentConfig {
            identity: c.identity.clone(),
            server: c.server.clone(),
            ..AgentConfig::default()
        };
        assert_eq!(c, d);
        assert_eq!(c.identity.key(), "default/vm/mcis-1/vm-1/aws");
        c.validate().unwrap();
    }
}
