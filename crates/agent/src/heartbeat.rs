//! The heartbeat: `POST {server}/api/v1/agents/heartbeat` with the agent's identity, advertised
//! address, version and what it runs now (mode, interval), at start and then every interval
//! (at least every 30 s). The first heartbeat registers the agent. The answer's
//! `data.mode` / `data.interval_seconds` are what the server wants; when they differ from what
//! runs, [`beat`] returns them and the agent switches at once.
//!
//! An unreachable server, a 5xx or a malformed answer changes nothing: the agent keeps its
//! mode and tries again next period. A 4xx (the server refuses the registration) is logged
//! with the server's message.

use serde::{Deserialize, Serialize};

use crate::client::Client;
use crate::config::{Identity, Mode, check_interval};
use crate::{Error, Result};

/// The server's heartbeat endpoint.
pub const HEARTBEAT_PATH: &str = "/api/v1/agents/heartbeat";
/// The longest time between two heartbeats, whatever the interval.
pub const MAX_PERIOD_SECONDS: u32 = 30;

/// What the agent runs: its mode and interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunConfig {
    pub mode: Mode,
    pub interval_seconds: u32,
}

/// The heartbeat body.
#[derive(Debug, Serialize)]
pub struct Beat<'a> {
    pub ns: &'a str,
    pub service_type: &'a str,
    pub service_id: &'a str,
    pub vm_id: &'a str,
    pub csp: &'a str,
    pub region: &'a str,
    pub address: &'a str,
    pub version: &'a str,
    pub mode: Mode,
    pub interval_seconds: u32,
}

impl<'a> Beat<'a> {
    pub fn new(id: &'a Identity, address: &'a str, run: RunConfig) -> Beat<'a> {
        Beat {
            ns: &id.ns,
            service_type: &id.service_type,
            service_id: &id.service_id,
            vm_id: &id.vm_id,
            csp: &id.csp,
            region: &id.region,
            address,
            version: env!("CARGO_PKG_VERSION"),
            mode: run.mode,
            interval_seconds: run.interval_seconds,
        }
    }
}

#[derive(Debug, Deserialize)]
struct Answer {
    data: AnswerData,
}

#[derive(Debug, Deserialize)]
struct AnswerData {
    mode: Mode,
    interval_seconds: u32,
}

#[derive(Debug, Deserialize)]
struct ErrorAnswer {
    error: String,
}

/// Reads a 200/201 answer: the configuration the server wants.
pub fn parse_answer(body: &[u8]) -> Result<RunConfig> {
    let a: Answer = serde_json::from_slice(body)
        .map_err(|e| Error::Http(format!("heartbeat answer is not the expected JSON: {e}")))?;
    check_interval(a.data.interval_seconds)
        .map_err(|e| Error::Http(format!("heartbeat answer: {e}")))?;
    Ok(RunConfig { mode: a.data.mode, interval_seconds: a.data.interval_seconds })
}

/// Sends one heartbeat; returns what the server wants the agent to run.
pub async fn beat(client: &mut Client, beat: &Beat<'_>) -> Result<RunConfig> {
    let body = serde_json::to_vec(beat).map_err(|e| Error::Internal(e.to_string()))?;
    let a = client.post(HEARTBEAT_PATH, &[("content-type", "application/json")], body).await?;
    match a.status {
        200 | 201 => parse_answer(&a.body),
        s => {
            let msg = serde_json::from_slice::<ErrorAnswer>(&a.body)
                .map(|e| e.error)
                .unwrap_or_else(|_| String::from_utf8_lossy(&a.body).trim().to_string());
            Err(Error::Http(format!("heartbeat refused with HTTP {s}: {msg}")))
        }
    }
}

/// The time between heartbeats for an interval.
pub fn period_seconds(interval_seconds: u32) -> u32 {
    interval_seconds.clamp(1, MAX_PERIOD_SECONDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_and_answer_match_the_protocol() {
        let id = Identity {
            ns: "default".into(),
            service_type: "vm".into(),
            service_id: "mcis-1".into(),
            vm_id: "vm-1".into(),
            csp: "aws".into(),
            region: "ap-northeast-2".into(),
        };
        let run = RunConfig { mode: Mode::Push, interval_seconds: 10 };
        let body = serde_json::to_value(Beat::new(&id, "10.0.0.5:9101", run)).unwrap();
        let expected = serde_json::json!({"ns":"default","service_type":"vm","service_id":"mcis-1",
            "vm_id":"vm-1","csp":"aws","region":"ap-northeast-2","address":"10.0.0.5:9101",
            "version": env!("CARGO_PKG_VERSION"),"mode":"push","interval_seconds":10});
        assert_eq!(body, expected);
        let answer = br#"{"status":"success","data":{"key":"default/vm/mcis-1/vm-1/aws","mode":"pull","interval_seconds":15}}"#;
        assert_eq!(
            parse_answer(answer).unwrap(),
            RunConfig { mode: Mode::Pull, interval_seconds: 15 }
        );
        let bad = br#"{"status":"success","data":{"key":"k","mode":"pull","interval_seconds":0}}"#;
        assert!(
            parse_answer(bad)
                .unwrap_err()
                .to_string()
                .contains("interval_seconds: 0 is out of range")
        );
        let bad =
            br#"{"status":"success","data":{"key":"k","mode":"teleport","interval_seconds":5}}"#;
        assert!(parse_answer(bad).unwrap_err().to_string().contains("teleport"));
        assert_eq!(period_seconds(10), 10);
        assert_eq!(period_seconds(300), 30);
    }
}
