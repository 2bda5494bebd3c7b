//! The `ocelli agent` command line: the flags, declared here next to the configuration they
//! override so the binary stays a few lines. Layout: `ocelli agent [FLAGS]` runs the agent, and
//! so does `ocelli agent run [FLAGS]`; `install`, `uninstall`, `start`, `stop`, `restart` and
//! `status` are siblings of `run` in [`AgentAction`] (the systemd unit: [`crate::install`]).
//!
//! Precedence: defaults, then the config file (`--config`), then flags and their environment
//! variables.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::Result;
use crate::config::{AgentConfig, Mode};

/// `ocelli agent`: run the agent, or manage its installation as a systemd service.
#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentCommand {
    #[command(subcommand)]
    pub action: Option<AgentAction>,
    #[command(flatten)]
    pub run: AgentArgs,
}

impl AgentCommand {
    /// What was asked for: a run (with the flags given to `ocelli agent` or `ocelli agent
    /// run`), or a service verb.
    pub fn into_task(self) -> AgentTask {
        match self.action {
            None => AgentTask::Run(self.run),
            Some(AgentAction::Run(a)) => AgentTask::Run(a),
            Some(AgentAction::Install(a)) => AgentTask::Install(a),
            Some(AgentAction::Uninstall(a)) => AgentTask::Uninstall(a),
            Some(AgentAction::Start) => AgentTask::Service("start"),
            Some(AgentAction::Stop) => AgentTask::Service("stop"),
            Some(AgentAction::Restart) => AgentTask::Service("restart"),
            Some(AgentAction::Status) => AgentTask::Service("status"),
        }
    }
}

/// What `ocelli agent ...` asks for.
#[derive(Debug)]
pub enum AgentTask {
    Run(AgentArgs),
    Install(crate::install::InstallArgs),
    Uninstall(crate::install::InstallArgs),
    /// `systemctl VERB ocelli-agent.service`.
    Service(&'static str),
}

#[derive(clap::Subcommand, Debug)]
pub enum AgentAction {
    /// Run the agent (what `ocelli agent` does without a subcommand).
    Run(AgentArgs),
    /// Install the agent as a systemd service running unprivileged (unit and config file).
    Install(crate::install::InstallArgs),
    /// Stop and remove the systemd service (the config file and buffered data stay).
    Uninstall(crate::install::InstallArgs),
    /// systemctl start ocelli-agent.service
    Start,
    /// systemctl stop ocelli-agent.service
    Stop,
    /// systemctl restart ocelli-agent.service
    Restart,
    /// systemctl status ocelli-agent.service
    Status,
}

/// The agent's flags; each overrides the config file's key of the same name.
#[derive(clap::Args, Debug, Default)]
pub struct AgentArgs {
    /// Configuration file (TOML); see config/agent.example.toml.
    #[arg(long, short = 'c', env = "OCELLI_AGENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// push, pull or ondemand [default: pull].
    #[arg(long, env = "OCELLI_AGENT_MODE")]
    pub mode: Option<Mode>,
    /// Address of the agent's HTTP endpoints [default: 127.0.0.1:9101].
    #[arg(long, env = "OCELLI_AGENT_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// host:port the server should use to reach this agent [default: the listen address].
    #[arg(long, env = "OCELLI_AGENT_ADVERTISE")]
    pub advertise: Option<String>,
    /// The server's base URL, e.g. http://10.0.0.1:9747 (needed for push; enables heartbeats).
    #[arg(long, env = "OCELLI_AGENT_SERVER")]
    pub server: Option<String>,
    /// Push through RabbitMQ, e.g. amqp://guest:guest@10.0.0.1:5672/%2f, to the exchange of
    /// `[amqp]` in the config file [default exchange: ocelli.metrics].
    #[arg(long, env = "OCELLI_AGENT_AMQP")]
    pub amqp: Option<String>,
    /// Where the push buffer is kept [default: ./agent-data].
    #[arg(long, env = "OCELLI_AGENT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Collection interval in whole seconds, 1..=3600 [default: 10].
    #[arg(long, env = "OCELLI_AGENT_INTERVAL")]
    pub interval: Option<u32>,
    /// Namespace (tenancy boundary) [default: default].
    #[arg(long, env = "OCELLI_AGENT_NS")]
    pub ns: Option<String>,
    /// vm or k8s [default: vm].
    #[arg(long, env = "OCELLI_AGENT_SERVICE_TYPE")]
    pub service_type: Option<String>,
    /// The MCIS or cluster id [default: default].
    #[arg(long, env = "OCELLI_AGENT_SERVICE_ID")]
    pub service_id: Option<String>,
    /// The VM's id [default: the host name].
    #[arg(long, env = "OCELLI_AGENT_VM_ID")]
    pub vm_id: Option<String>,
    /// aws, azure, gcp, alibaba, ncp, ktcloud, openstack or onprem [default: onprem].
    #[arg(long, env = "OCELLI_AGENT_CSP")]
    pub csp: Option<String>,
    /// The cloud region, free text [default: unknown].
    #[arg(long, env = "OCELLI_AGENT_REGION")]
    pub region: Option<String>,
    /// https: trust the server's certificate if it chains to this CA (PEM) ([tls] ca_file).
    #[arg(long, env = "OCELLI_AGENT_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// https: trust the server's CA with this fingerprint, sha256:<hex> ([tls] ca_pin).
    #[arg(long, env = "OCELLI_AGENT_CA_PIN", conflicts_with = "ca_file")]
    pub ca_pin: Option<String>,
    /// A file holding the token to send the server (token_file).
    #[arg(long, env = "OCELLI_AGENT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Enrol once with this join token (ocelli token create --join); the credential it gets
    /// is kept in the data directory.
    #[arg(long, env = "OCELLI_AGENT_JOIN_TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// Serve the agent's endpoints over HTTPS with this certificate chain ([tls] cert_file).
    #[arg(long, env = "OCELLI_AGENT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's key ([tls] key_file).
    #[arg(long, env = "OCELLI_AGENT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl AgentArgs {
    /// The configuration: the file (or the defaults) with the flags applied. Not yet
    /// validated; [`crate::Agent::start`] does that.
    pub fn into_config(self) -> Result<AgentConfig> {
        let mut c = match &self.config {
            Some(p) => AgentConfig::load(p)?,
            None => AgentConfig::default(),
        };
        let set = |slot: &mut String, v: Option<String>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        if let Some(m) = self.mode {
            c.mode = m;
        }
        if let Some(l) = self.listen {
            c.listen = l;
        }
        c.advertise = self.advertise.or(c.advertise);
        c.server = self.server.or(c.server);
        if let Some(url) = self.amqp {
            match &mut c.amqp {
                Some(a) => a.url = url,
                None => {
                    c.amqp = Some(crate::amqp::AmqpConfig {
                        url,
                        exchange: crate::amqp::DEFAULT_EXCHANGE.into(),
                        ca_file: None,
                    })
                }
            }
        }
        if let Some(d) = self.data_dir {
            c.data_dir = d;
        }
        if let Some(i) = self.interval {
            c.interval_seconds = i;
        }
        let id = &mut c.identity;
        set(&mut id.ns, self.ns);
        set(&mut id.service_type, self.service_type);
        set(&mut id.service_id, self.service_id);
        set(&mut id.vm_id, self.vm_id);
        set(&mut id.csp, self.csp);
        set(&mut id.region, self.region);
        if self.ca_file.is_some() || self.ca_pin.is_some() {
            c.tls.ca_file = self.ca_file;
            c.tls.ca_pin = self.ca_pin;
        }
        c.token_file = self.token_file.or(c.token_file);
        c.join_token = self.join_token.or(c.join_token);
        if self.tls_cert.is_some() {
            c.tls.cert_file = self.tls_cert;
            c.tls.key_file = self.tls_key;
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        cmd: Top,
    }

    #[derive(clap::Subcommand, Debug)]
    enum Top {
        Agent(AgentCommand),
    }

    fn parse(args: &[&str]) -> Result<AgentConfig, String> {
        let cli = Cli::try_parse_from(std::iter::once("ocelli").chain(args.iter().copied()))
            .map_err(|e| e.to_string())?;
        let Top::Agent(a) = cli.cmd;
        match a.into_task() {
            AgentTask::Run(args) => args.into_config().map_err(|e| e.to_string()),
            t => Err(format!("not a run: {t:?}")),
        }
    }

    #[test]
    fn flags_override_the_file_with_or_without_run() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("agent.toml");
        std::fs::write(&file, "mode = \"push\"\nserver = \"http://a:1\"\n[identity]\nns = \"from-file\"\ncsp = \"gcp\"\n").unwrap();
        let f = file.to_str().unwrap();
        for prefix in [&["agent"][..], &["agent", "run"][..]] {
            let mut args = prefix.to_vec();
            args.extend(["--config", f, "--mode", "pull", "--ns", "from-flag", "--interval", "15"]);
            let c = parse(&args).unwrap();
            assert_eq!(c.mode, Mode::Pull);
            assert_eq!(c.identity.ns, "from-flag");
            assert_eq!(c.identity.csp, "gcp");
            assert_eq!(c.server.as_deref(), Some("http://a:1"));
            assert_eq!(c.interval_seconds, 15);
        }
        let e = parse(&["agent", "--mode", "teleport"]).unwrap_err();
        assert!(e.contains("expected one of push, pull, ondemand"), "{e}");
        let e = parse(&["agent", "--config", "/nonexistent.toml"]).unwrap_err();
        assert!(e.starts_with("config /nonexistent.toml:"), "{e}");
    }
}
