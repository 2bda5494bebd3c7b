//! `ocelli server` with the agent for its own host: the server starts, then an agent that
//! pushes to it and heartbeats into its registry, so the first command of the README shows
//! live host metrics and a registered agent at once. The two only meet over HTTP, as any
//! agent and server do; this module just builds the agent's configuration from the server's
//! `[local_agent]` section and runs both until SIGINT/SIGTERM.
//!
//! The local agent is a convenience: if it cannot start (another agent holds its port), the
//! server runs on without it and says why.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use anyhow::Context;
use ocelli_agent::{AgentConfig, Mode};

/// The local agent's configuration, checked, or `None` when it is disabled.
pub fn config(cfg: &ocelli_server::Config) -> anyhow::Result<Option<AgentConfig>> {
    let l = &cfg.local_agent;
    if !l.enabled {
        return Ok(None);
    }
    let mut a = AgentConfig {
        mode: Mode::Push,
        interval_seconds: l.interval_seconds,
        listen: l.listen,
        server: Some(format!("http://{}", reachable(cfg.listen))),
        data_dir: cfg.data_dir.join("local-agent"),
        ..AgentConfig::default()
    };
    a.identity.service_id = "local".into();
    let id = &mut a.identity;
    for (field, value) in [
        (&mut id.ns, &l.ns),
        (&mut id.service_type, &l.service_type),
        (&mut id.service_id, &l.service_id),
        (&mut id.vm_id, &l.vm_id),
        (&mut id.csp, &l.csp),
        (&mut id.region, &l.region),
    ] {
        if let Some(v) = value {
            field.clone_from(v);
        }
    }
    a.validate().context("[local_agent]")?;
    Ok(Some(a))
}

/// Where a process on this host reaches a server listening on `addr`: the loopback address
/// when it listens on every interface.
fn reachable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// The local agent's way in to a server with TLS or auth: https trusting the server's own CA
/// (`[tls] auto`; with a certificate of the operator's, Mozilla's roots, so that certificate
/// must name the loopback address), and, with auth, a write token of its namespace bound to its
/// identity, made at each start (the previous one revoked), as an enrolled agent's would be.
fn secure(
    mut a: AgentConfig,
    server: &ocelli_server::Server,
    listen: SocketAddr,
) -> anyhow::Result<AgentConfig> {
    if server.tls {
        a.server = Some(format!("https://{}", reachable(listen)));
        if let Some((ca, _)) = &server.auto_ca {
            a.tls.ca_file = Some(ca.clone());
        }
    }
    if server.auth.enabled {
        const MADE_FOR: &str = "the server's own agent (made at start)";
        let store = &server.auth.store;
        let now = ocelli_model::time::now_ms();
        for old in store.list(None, false).iter().filter(|t| t.description == MADE_FOR) {
            store.revoke(&old.id, now).context("revoking the local agent's previous token")?;
        }
        let id = &a.identity;
        let labels =
            id.labels().iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect();
        let new = ocelli_auth::NewToken {
            namespace: Some(id.ns.clone()),
            scope: Some(ocelli_auth::Scope::Write),
            agent: Some(id.key()),
            labels,
            description: MADE_FOR.into(),
            ..ocelli_auth::NewToken::default()
        };
        let (_, token) =
            store.create(new, "local", now).context("making the local agent's token")?;
        a.token = Some(token);
    }
    Ok(a)
}

/// Runs the server, and the local agent when given, until SIGINT or SIGTERM.
pub async fn serve(cfg: ocelli_server::Config, local: Option<AgentConfig>) -> anyhow::Result<()> {
    let listen = cfg.listen;
    let server = ocelli_server::Server::start(cfg).await?;
    #[cfg(unix)]
    let hup = server.reload_on_sighup();
    let local = match local {
        Some(a) => Some(secure(a, &server, listen)?),
        None => None,
    };
    let agent = match local {
        None => None,
        Some(a) => {
            let listen = a.listen;
            match ocelli_agent::Agent::start(a).await {
                Ok(agent) => Some(agent),
                Err(e) => {
                    tracing::warn!(%listen, error = %e, "the local agent did not start; the server runs without it (set [local_agent] listen, or --no-local-agent)");
                    None
                }
            }
        }
    };
    ocelli_agent::shutdown_signal().await;
    #[cfg(unix)]
    hup.abort();
    tracing::info!("shutting down");
    if let Some(a) = agent
        && let Err(e) = a.stop().await
    {
        tracing::warn!(error = %e, "stopping the local agent");
    }
    Ok(server.stop().await?)
}
