//! `ocelli agent install|uninstall|start|stop|restart|status`: the agent as a systemd service.
//!
//! `install` writes two files: the unit `/etc/systemd/system/ocelli-agent.service` and the
//! configuration `/etc/ocelli/agent.toml` (the given `--config`, or the commented example
//! config built into the binary; an existing configuration is kept unless `--force`). Under
//! `--root DIR` both go below DIR and systemctl is left alone, which is how packages and tests
//! stage an installation; `--dry-run` prints what would be written and touches nothing. On the
//! real root it then runs `systemctl daemon-reload` and `systemctl enable --now`.
//!
//! The unit runs the agent unprivileged: `DynamicUser=yes` gives it a transient user with no
//! capabilities, `StateDirectory=` a writable `/var/lib/ocelli-agent` for the push buffer, and
//! the rest of the file system is read-only to it. Everything the collectors read (/proc, /sys,
//! statfs of mount points) is readable without privileges, so nothing runs as uid 0 except
//! systemd itself.
//!
//! `uninstall` stops and disables the service and removes the unit; the configuration and the
//! buffered data stay (say so, so an operator knows what is left). The other verbs hand over
//! to `systemctl` with the unit name.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

/// The systemd unit's name.
pub const UNIT: &str = "ocelli-agent.service";
/// The unit file, relative to the root.
pub const UNIT_PATH: &str = "etc/systemd/system/ocelli-agent.service";
/// The configuration file, relative to the root.
pub const CONFIG_PATH: &str = "etc/ocelli/agent.toml";
/// The agent's state directory (the push buffer), as systemd's `StateDirectory=` creates it.
pub const STATE_DIR: &str = "/var/lib/ocelli-agent";

/// The example configuration, installed when no `--config` is given.
const EXAMPLE_CONFIG: &str = include_str!("../../../config/agent.example.toml");

/// What `install` and `uninstall` act on.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct InstallArgs {
    /// Write below this directory instead of `/`, and do not call systemctl.
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Print what would be written or run, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The configuration to install [default: the example configuration].
    #[arg(long, short = 'c')]
    pub config: Option<PathBuf>,
    /// Replace an existing configuration file.
    #[arg(long)]
    pub force: bool,
    /// The `ocelli` binary the unit runs [default: this binary].
    #[arg(long)]
    pub binary: Option<PathBuf>,
}

/// The unit file for an agent run by `binary` with the configuration at `/{CONFIG_PATH}`.
pub fn unit_file(binary: &Path) -> String {
    format!(
        "# Written by `ocelli agent install`; `ocelli agent uninstall` removes it.
[Unit]
Description=Ocelli monitoring agent
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
ExecStart={bin} agent run --config /{CONFIG_PATH}
Environment=OCELLI_AGENT_DATA_DIR={STATE_DIR}
Restart=on-failure
RestartSec=5
# unprivileged: a transient user, no capabilities, a read-only system
DynamicUser=yes
StateDirectory=ocelli-agent
CapabilityBoundingSet=
AmbientCapabilities=
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
ProtectControlGroups=yes
ProtectKernelModules=yes
RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX
LockPersonality=yes
MemoryDenyWriteExecute=yes

[Install]
WantedBy=multi-user.target
",
        bin = binary.display()
    )
}

/// Writes the unit and the configuration; on the real root, enables and starts the service.
pub fn install(args: &InstallArgs, out: &mut impl std::io::Write) -> Result<()> {
    let root = args.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe()
            .map_err(|e| Error::Install(format!("cannot find this binary's path: {e}")))?,
    };
    let config = match &args.config {
        Some(p) => std::fs::read_to_string(p)
            .map_err(|e| Error::Install(format!("reading {}: {e}", p.display())))?,
        None => EXAMPLE_CONFIG.to_string(),
    };
    // refuse a configuration the agent would refuse at start
    let invalid =
        |e: String| Error::Install(format!("the configuration to install is invalid: {e}"));
    crate::config::AgentConfig::parse(&config)
        .map_err(invalid)?
        .validate()
        .map_err(|e| invalid(e.to_string()))?;
    let unit_path = root.join(UNIT_PATH);
    let config_path = root.join(CONFIG_PATH);
    let keep_config = config_path.exists() && !args.force;
    let say = |out: &mut dyn std::io::Write, line: String| {
        writeln!(out, "{line}").map_err(|e| Error::Install(format!("writing output: {e}")))
    };
    if args.dry_run {
        say(out, format!("would write {}:\n{}", unit_path.display(), unit_file(&binary)))?;
        if keep_config {
            say(out, format!("would keep the existing {}", config_path.display()))?;
        } else {
            say(out, format!("would write {} ({} bytes)", config_path.display(), config.len()))?;
        }
        if args.root.is_none() {
            say(out, format!("would run: systemctl daemon-reload; systemctl enable --now {UNIT}"))?;
        }
        return Ok(());
    }
    write_file(&unit_path, unit_file(&binary).as_bytes())?;
    say(out, format!("wrote {}", unit_path.display()))?;
    if keep_config {
        say(out, format!("kept the existing {} (--force replaces it)", config_path.display()))?;
    } else {
        write_file(&config_path, config.as_bytes())?;
        say(out, format!("wrote {}", config_path.display()))?;
    }
    if args.root.is_none() {
        systemctl(&["daemon-reload"])?;
        systemctl(&["enable", "--now", UNIT])?;
        say(out, format!("enabled and started {UNIT}"))?;
    }
    Ok(())
}

/// Stops and disables the service (on the real root) and removes the unit file.
pub fn uninstall(args: &InstallArgs, out: &mut impl std::io::Write) -> Result<()> {
    let root = args.root.clone().unwrap_or_else(|| PathBuf::from("/"));
    let unit_path = root.join(UNIT_PATH);
    let say = |out: &mut dyn std::io::Write, line: String| {
        writeln!(out, "{line}").map_err(|e| Error::Install(format!("writing output: {e}")))
    };
    if args.dry_run {
        if args.root.is_none() {
            say(out, format!("would run: systemctl disable --now {UNIT}"))?;
        }
        say(out, format!("would remove {}", unit_path.display()))?;
        return Ok(());
    }
    if args.root.is_none() {
        systemctl(&["disable", "--now", UNIT])?;
    }
    match std::fs::remove_file(&unit_path) {
        Ok(()) => say(out, format!("removed {}", unit_path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            say(out, format!("{} was not there", unit_path.display()))?
        }
        Err(e) => return Err(Error::Install(format!("removing {}: {e}", unit_path.display()))),
    }
    if args.root.is_none() {
        systemctl(&["daemon-reload"])?;
    }
    say(
        out,
        format!(
            "kept {} and {STATE_DIR} (the configuration and any buffered samples); remove them by hand if unwanted",
            root.join(CONFIG_PATH).display()
        ),
    )
}

/// `systemctl VERB ocelli-agent.service`, for start, stop, restart and status.
pub fn control(verb: &str) -> Result<()> {
    systemctl(&[verb, UNIT])
}

fn systemctl(args: &[&str]) -> Result<()> {
    let status = Command::new("systemctl").args(args).status().map_err(|e| {
        Error::Install(format!(
            "cannot run systemctl {}: {e} (the service verbs need systemd; without it run \
             `ocelli agent run` in the foreground)",
            args.join(" ")
        ))
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Install(format!("systemctl {} failed: {status}", args.join(" "))))
    }
}

/// Writes a file through a temporary name and a rename, creating its directory.
fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    let err = |what: &str, e: std::io::Error| {
        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
            " (run as root, or stage the files with --root DIR)"
        } else {
            ""
        };
        Error::Install(format!("{what} {}: {e}{hint}", path.display()))
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err("creating the directory of", e))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut f = std::fs::File::create(&tmp).map_err(|e| err("writing", e))?;
    f.write_all(data).and_then(|()| f.sync_all()).map_err(|e| err("writing", e))?;
    std::fs::rename(&tmp, path).map_err(|e| err("writing", e))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn args(root: &Path) -> InstallArgs {
        InstallArgs {
            root: Some(root.to_path_buf()),
            binary: Some(PathBuf::from("/usr/bin/ocelli")),
            ..InstallArgs::default()
        }
    }

    #[test]
    fn install_stages_an_unprivileged_unit_and_the_config() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        install(&args(dir.path()), &mut out).unwrap();
        let unit = std::fs::read_to_string(dir.path().join(UNIT_PATH)).unwrap();
        assert!(
            unit.contains("ExecStart=/usr/bin/ocelli agent run --config /etc/ocelli/agent.toml\n")
        );
        for line in [
            "DynamicUser=yes",
            "StateDirectory=ocelli-agent",
            "NoNewPrivileges=yes",
            "CapabilityBoundingSet=\n",
        ] {
            assert!(unit.contains(line), "{line} missing from\n{unit}");
        }
        assert!(!unit.contains("User=root"));
        let config = std::fs::read_to_string(dir.path().join(CONFIG_PATH)).unwrap();
        assert_eq!(config, EXAMPLE_CONFIG);
        let said = String::from_utf8(out).unwrap();
        assert!(said.contains("wrote"), "{said}");
        assert!(!said.contains("systemctl"), "a staged install must not touch systemd: {said}");
    }

    #[test]
    fn an_existing_config_is_kept_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join(CONFIG_PATH);
        std::fs::create_dir_all(cfg.parent().unwrap()).unwrap();
        std::fs::write(&cfg, "mode = \"push\"\nserver = \"http://10.0.0.1:9747\"\n").unwrap();
        install(&args(dir.path()), &mut Vec::new()).unwrap();
        assert!(std::fs::read_to_string(&cfg).unwrap().starts_with("mode = \"push\""));
        install(&InstallArgs { force: true, ..args(dir.path()) }, &mut Vec::new()).unwrap();
        assert_eq!(std::fs::read_to_string(&cfg).unwrap(), EXAMPLE_CONFIG);
    }

    #[test]
    fn dry_run_writes_nothing_and_says_what_it_would_do() {
        let dir = tempfile::tempdir().unwrap();
        let mut out = Vec::new();
        install(&InstallArgs { dry_run: true, ..args(dir.path()) }, &mut out).unwrap();
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
        let said = String::from_utf8(out).unwrap();
        assert!(said.contains("would write") && said.contains("DynamicUser=yes"), "{said}");
    }

    #[test]
    fn an_invalid_config_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "mode = \"sideways\"\n").unwrap();
        let root = dir.path().join("root");
        let err = install(&InstallArgs { config: Some(bad), ..args(&root) }, &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid") && err.contains("mode"), "{err}");
        assert!(!root.exists());
    }

    #[test]
    fn uninstall_removes_the_unit_and_keeps_the_config() {
        let dir = tempfile::tempdir().unwrap();
        install(&args(dir.path()), &mut Vec::new()).unwrap();
        let mut out = Vec::new();
        uninstall(&args(dir.path()), &mut out).unwrap();
        assert!(!dir.path().join(UNIT_PATH).exists());
        assert!(dir.path().join(CONFIG_PATH).exists());
        assert!(String::from_utf8(out).unwrap().contains("kept"));
    }
}
