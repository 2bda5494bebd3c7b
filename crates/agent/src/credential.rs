//! The agent's credential: the token it sends the server. In order: one given in code (the
//! server's own agent), `token_file`, the credential enrolment left in the data directory
//! ([`crate::filenames::CREDENTIAL_FILE`]), or, with a join token, a new enrolment
//! (`POST /api/v1/agents/enrol`), whose answer is written there (mode 0600, through a temporary
//! file and a rename) before it is used. No credential at all is fine for a server without auth.
//!
//! A failed enrolment stops the agent with the server's reason: an agent that cannot prove who
//! it is, or cannot verify the server (a wrong CA pin), sends nothing.

use std::path::Path;

use crate::client::{Client, ServerUrl};
use crate::config::AgentConfig;
use crate::{Error, Result};

/// The token to send, if any.
pub async fn resolve(
    cfg: &AgentConfig,
    server: Option<&ServerUrl>,
    trust: &ocelli_tls::Trust,
    timeout: std::time::Duration,
) -> Result<Option<String>> {
    if let Some(t) = &cfg.token {
        return Ok(Some(t.clone()));
    }
    if let Some(f) = &cfg.token_file {
        return read_token(f).map(Some);
    }
    let kept = cfg.data_dir.join(crate::filenames::CREDENTIAL_FILE);
    if kept.exists() {
        return read_token(&kept).map(Some);
    }
    let (Some(join), Some(url)) = (&cfg.join_token, server) else { return Ok(None) };
    let mut client = Client::new(url.clone(), timeout).with_token(Some(join));
    if url.tls {
        client = client.with_trust(trust)?;
    }
    let id = &cfg.identity;
    let body = serde_json::json!({
        "ns": id.ns, "service_type": id.service_type, "service_id": id.service_id,
        "vm_id": id.vm_id, "csp": id.csp, "region": id.region,
    });
    let answer = client
        .post(
            "/api/v1/agents/enrol",
            &[("content-type", "application/json")],
            body.to_string().into_bytes(),
        )
        .await
        .map_err(|e| Error::Config(format!("enrolment: {e}")))?;
    let v: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
    if answer.status != 201 {
        let why = v.get("error").and_then(|e| e.as_str()).unwrap_or("no reason given");
        return Err(Error::Config(format!(
            "enrolment refused by the server (HTTP {}): {why}",
            answer.status
        )));
    }
    let token = v
        .pointer("/data/token")
        .and_then(|t| t.as_str())
        .ok_or_else(|| Error::Config("enrolment: the server's answer has no token".into()))?
        .to_string();
    write_private(&kept, &token)?;
    tracing::info!(file = %kept.display(), "enrolled: the agent's credential is kept");
    Ok(Some(token))
}

fn read_token(f: &Path) -> Result<String> {
    let t = std::fs::read_to_string(f)
        .map_err(|e| Error::Config(format!("token file {}: {e}", f.display())))?;
    let t = t.trim();
    if t.is_empty() {
        return Err(Error::Config(format!("token file {}: empty", f.display())));
    }
    Ok(t.to_string())
}

/// Writes `text` to `path` readable by its owner only, atomically.
fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    let io = |e: std::io::Error| Error::Config(format!("writing {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}
