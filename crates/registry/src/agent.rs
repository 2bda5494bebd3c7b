//! What an agent is to the registry: its identity and key, its mode and interval, the record
//! the registry keeps (and persists) for it, and the checks of what agents and operators send.
//!
//! The checks read a request body as a JSON object field by field rather than through serde's
//! derive, so that every error names the field and, for a closed set, the allowed values
//! (`service_type: "mcis" is not allowed; expected one of vm, k8s`). Unknown fields are refused
//! too: the protocol is fixed, and a misspelt field silently ignored would be worse.
//! This module only checks and converts; storing is [`super::store`]'s job and answering HTTP
//! is [`super::api`]'s.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use ocelli_http::{Error, Result};
use ocelli_scrape::config::check_address;

pub use ocelli_model::identity::{CSPS, MAX_PART, SERVICE_TYPES};
/// Longest advertised address, in characters.
const MAX_ADDRESS: usize = 255;
/// The interval range, in whole seconds.
pub const INTERVAL_RANGE: std::ops::RangeInclusive<u32> = 1..=3600;

/// How an agent delivers its samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The agent remote_writes to the server every interval.
    Push,
    /// The server scrapes the agent's `/metrics` every interval.
    Pull,
    /// Nothing periodic; the server asks when a user asks.
    #[serde(rename = "ondemand")]
    OnDemand,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::Push, Mode::Pull, Mode::OnDemand];

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Push => "push",
            Mode::Pull => "pull",
            Mode::OnDemand => "ondemand",
        }
    }

    /// Parses a mode; the error names `field` and the allowed values.
    pub fn parse(field: &str, v: &str) -> Result<Mode> {
        Mode::ALL.into_iter().find(|m| m.as_str() == v).ok_or_else(|| {
            let allowed: Vec<&str> = Mode::ALL.iter().map(|m| m.as_str()).collect();
            let e = ocelli_model::identity::check_one_of(field, v, &allowed);
            Error::BadData(e.err().unwrap_or_default())
        })
    }
}

/// The six identity labels of an agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub ns: String,
    pub service_type: String,
    pub service_id: String,
    pub vm_id: String,
    pub csp: String,
    pub region: String,
}

impl Identity {
    /// The agent's key.
    pub fn key(&self) -> String {
        key_of(&self.ns, &self.service_type, &self.service_id, &self.vm_id, &self.csp)
    }
}

/// The key of an agent: `{ns}/{service_type}/{service_id}/{vm_id}/{csp}`.
pub fn key_of(ns: &str, service_type: &str, service_id: &str, vm_id: &str, csp: &str) -> String {
    ocelli_model::identity::key(ns, service_type, service_id, vm_id, csp)
}

/// What an agent sends on every heartbeat (the first one registers it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heartbeat {
    pub identity: Identity,
    pub address: String,
    pub version: String,
    pub mode: Mode,
    pub interval_seconds: u32,
}

/// What an operator may change with `PATCH`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Patch {
    pub mode: Option<Mode>,
    pub interval_seconds: Option<u32>,
}

/// What the registry keeps of an agent; persisted as it is (`docs/format/registry.md`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// The record's format version, [`RECORD_VERSION`].
    pub v: u32,
    pub identity: Identity,
    pub address: String,
    pub version: String,
    /// The mode the server wants the agent in.
    pub mode: Mode,
    /// The interval the server wants the agent at.
    pub interval_seconds: u32,
    /// Whether an operator set `mode`/`interval_seconds` (then the server's values win over
    /// what the agent reports; before, the server adopts what the agent runs).
    pub operator_set: bool,
    /// Unix milliseconds of the first registration.
    pub registered_at_ms: i64,
    /// Unix milliseconds of the last heartbeat or successful scrape.
    pub last_seen_ms: i64,
    /// The health last computed: after a restart the agent keeps it until its grace period
    /// passes.
    pub healthy: bool,
}

/// The version of [`Record`] this code writes and reads.
pub const RECORD_VERSION: u32 = 1;

impl Record {
    /// A new agent, with the mode and interval it reports.
    pub fn register(hb: &Heartbeat, now_ms: i64) -> Record {
        Record {
            v: RECORD_VERSION,
            identity: hb.identity.clone(),
            address: hb.address.clone(),
            version: hb.version.clone(),
            mode: hb.mode,
            interval_seconds: hb.interval_seconds,
            operator_set: false,
            registered_at_ms: now_ms,
            last_seen_ms: now_ms,
            healthy: true,
        }
    }

    /// This record after a heartbeat: the agent's address, version and region are taken; its
    /// mode and interval only while no operator has set them.
    pub fn after_heartbeat(&self, hb: &Heartbeat, now_ms: i64) -> Record {
        let mut r = self.clone();
        r.identity.region = hb.identity.region.clone();
        r.address = hb.address.clone();
        r.version = hb.version.clone();
        if !r.operator_set {
            r.mode = hb.mode;
            r.interval_seconds = hb.interval_seconds;
        }
        r.last_seen_ms = r.last_seen_ms.max(now_ms);
        r
    }

    /// This record after an operator's change.
    pub fn after_patch(&self, p: Patch) -> Record {
        let mut r = self.clone();
        r.mode = p.mode.unwrap_or(r.mode);
        r.interval_seconds = p.interval_seconds.unwrap_or(r.interval_seconds);
        r.operator_set = true;
        r
    }

    /// Whether `other` differs in anything but the fields that change on every contact
    /// (`last_seen_ms`, `healthy`), which are persisted in batches.
    pub fn differs_in_substance(&self, other: &Record) -> bool {
        let strip = |r: &Record| Record { last_seen_ms: 0, healthy: false, ..r.clone() };
        strip(self) != strip(other)
    }

    pub fn key(&self) -> String {
        self.identity.key()
    }
}

/// Checks one key part: 1..=128 characters of `[A-Za-z0-9_.-]`.
pub fn check_part(field: &str, v: &str) -> Result<()> {
    ocelli_model::identity::check_part(field, v).map_err(Error::BadData)
}

/// Checks a value from a closed set.
pub fn check_one_of(field: &str, v: &str, allowed: &[&str]) -> Result<()> {
    ocelli_model::identity::check_one_of(field, v, allowed).map_err(Error::BadData)
}

/// Checks free text: 1..=`max` characters, no control characters.
fn check_text(field: &str, v: &str, max: usize) -> Result<()> {
    ocelli_model::identity::check_text(field, v, max).map_err(Error::BadData)
}

/// Checks the five parts of a key, as given in a request path.
pub fn check_key(
    ns: &str,
    service_type: &str,
    service_id: &str,
    vm_id: &str,
    csp: &str,
) -> Result<()> {
    check_part("ns", ns)?;
    check_part("service_type", service_type)?;
    check_one_of("service_type", service_type, SERVICE_TYPES)?;
    check_part("service_id", service_id)?;
    check_part("vm_id", vm_id)?;
    check_part("csp", csp)?;
    check_one_of("csp", csp, CSPS)
}

/// The JSON type of a value, for messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A request body as a JSON object whose fields are all among `known`.
fn object(body: &[u8], known: &[&str]) -> Result<Map<String, Value>> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Error::BadData(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(m) = v else {
        return Err(Error::BadData(format!("the body must be a JSON object, got {}", kind(&v))));
    };
    if let Some(k) = m.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(Error::BadData(format!(
            "{k}: unknown field; expected one of {}",
            known.join(", ")
        )));
    }
    Ok(m)
}

fn string<'a>(m: &'a Map<String, Value>, field: &str) -> Result<&'a str> {
    match m.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => {
            Err(Error::BadData(format!("{field}: expected a string, got {}", kind(other))))
        }
        None => Err(Error::BadData(format!("{field}: missing"))),
    }
}

fn interval(v: &Value) -> Result<u32> {
    let (lo, hi) = (INTERVAL_RANGE.start(), INTERVAL_RANGE.end());
    let expected = format!("expected a whole number of seconds, {lo} to {hi}");
    let Value::Number(n) = v else {
        return Err(Error::BadData(format!("interval_seconds: {expected}, got {}", kind(v))));
    };
    match n.as_u64() {
        Some(s) if s >= u64::from(*lo) && s <= u64::from(*hi) => Ok(s as u32),
        _ => Err(Error::BadData(format!("interval_seconds: {n} is not allowed; {expected}"))),
    }
}

/// The fields of a heartbeat body, in the protocol's order.
pub const HEARTBEAT_FIELDS: [&str; 10] = [
    "ns",
    "service_type",
    "service_id",
    "vm_id",
    "csp",
    "region",
    "address",
    "version",
    "mode",
    "interval_seconds",
];

/// Parses and checks a heartbeat body; the first bad field (in the protocol's order) is named.
pub fn parse_heartbeat(body: &[u8]) -> Result<Heartbeat> {
    let m = object(body, &HEARTBEAT_FIELDS)?;
    let part = |field: &str| -> Result<String> {
        let v = string(&m, field)?;
        check_part(field, v)?;
        Ok(v.to_string())
    };
    let ns = part("ns")?;
    let service_type = part("service_type")?;
    check_one_of("service_type", &service_type, SERVICE_TYPES)?;
    let service_id = part("service_id")?;
    let vm_id = part("vm_id")?;
    let csp = part("csp")?;
    check_one_of("csp", &csp, CSPS)?;
    let region = string(&m, "region")?;
    check_text("region", region, MAX_PART)?;
    let address = string(&m, "address")?;
    check_text("address", address, MAX_ADDRESS)?;
    check_address(address).map_err(|e| Error::BadData(format!("address: {e}")))?;
    let version = string(&m, "version")?;
    check_text("version", version, MAX_PART)?;
    let mode = Mode::parse("mode", string(&m, "mode")?)?;
    let interval_seconds = match m.get("interval_seconds") {
        Some(v) => interval(v)?,
        None => return Err(Error::BadData("interval_seconds: missing".into())),
    };
    Ok(Heartbeat {
        identity: Identity { ns, service_type, service_id, vm_id, csp, region: region.into() },
        address: address.into(),
        version: version.into(),
        mode,
        interval_seconds,
    })
}

/// Parses and checks a `PATCH` body: `mode` and/or `interval_seconds`.
pub fn parse_patch(body: &[u8]) -> Result<Patch> {
    let m = object(body, &["mode", "interval_seconds"])?;
    let mode = match m.get("mode") {
        Some(Value::String(s)) => Some(Mode::parse("mode", s)?),
        Some(other) => {
            return Err(Error::BadData(format!("mode: expected a string, got {}", kind(other))));
        }
        None => None,
    };
    let interval_seconds = m.get("interval_seconds").map(interval).transpose()?;
    if mode.is_none() && interval_seconds.is_none() {
        return Err(Error::BadData(
            "the body sets nothing; expected at least one of mode, interval_seconds".into(),
        ));
    }
    Ok(Patch { mode, interval_seconds })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"ns":"default","service_type":"vm","service_id":"mcis-1","vm_id":"vm-1","csp":"aws","region":"ap-northeast-2","address":"10.0.0.5:9101","version":"0.1.0","mode":"push","interval_seconds":10}"#;

    /// The error message for `GOOD` with `field` set to the raw JSON `value` (or removed).
    fn check(field: &str, value: Option<&str>) -> String {
        let mut m: Map<String, Value> = serde_json::from_str(GOOD).unwrap();
        match value {
            Some(v) => m.insert(field.into(), serde_json::from_str(v).unwrap()),
            None => m.remove(field),
        };
        let body = serde_json::to_vec(&m).unwrap();
        parse_heartbeat(&body).unwrap_err().to_string()
    }

    #[test]
    fn a_good_heartbeat_parses() {
        let hb = parse_heartbeat(GOOD.as_bytes()).unwrap();
        assert_eq!(hb.identity.service_id, "mcis-1");
        assert_eq!(hb.mode, Mode::Push);
        assert_eq!(hb.interval_seconds, 10);
        let r = Record::register(&hb, 5);
        assert_eq!(r.key(), "default/vm/mcis-1/vm-1/aws");
    }

    #[test]
    fn every_error_names_its_field() {
        let cases = [
            (
                "service_type",
                Some(r#""mcis""#),
                r#"service_type: "mcis" is not allowed; expected one of vm, k8s"#,
            ),
            (
                "csp",
                Some(r#""ibm""#),
                r#"csp: "ibm" is not allowed; expected one of aws, azure, gcp, alibaba, ncp, ktcloud, openstack, onprem"#,
            ),
            (
                "mode",
                Some(r#""poll""#),
                r#"mode: "poll" is not allowed; expected one of push, pull, ondemand"#,
            ),
            ("ns", None, "ns: missing"),
            ("ns", Some(r#""""#), "ns: empty; expected 1 to 128 characters of [A-Za-z0-9_.-]"),
            (
                "vm_id",
                Some(r#""vm 1""#),
                r#"vm_id: "vm 1" has ' ' at position 3; only [A-Za-z0-9_.-] is allowed"#,
            ),
            (
                "service_id",
                Some(&format!("\"{}\"", "a".repeat(129))),
                "service_id: 129 characters long; at most 128 allowed",
            ),
            ("service_id", Some("7"), "service_id: expected a string, got a number"),
            ("region", Some(r#""""#), "region: 0 characters long; expected 1 to 128 characters"),
            ("address", Some(r#""no-port""#), r#"address: "no-port" is not host:port"#),
            ("version", Some("null"), "version: expected a string, got null"),
            (
                "interval_seconds",
                Some("0"),
                "interval_seconds: 0 is not allowed; expected a whole number of seconds, 1 to 3600",
            ),
            (
                "interval_seconds",
                Some("3601"),
                "interval_seconds: 3601 is not allowed; expected a whole number of seconds, 1 to 3600",
            ),
            (
                "interval_seconds",
                Some("1.5"),
                "interval_seconds: 1.5 is not allowed; expected a whole number of seconds, 1 to 3600",
            ),
            (
                "interval_seconds",
                Some(r#""10""#),
                "interval_seconds: expected a whole number of seconds, 1 to 3600, got a string",
            ),
            ("interval_seconds", None, "interval_seconds: missing"),
            (
                "labels",
                Some("{}"),
                "labels: unknown field; expected one of ns, service_type, service_id, vm_id, csp, region, address, version, mode, interval_seconds",
            ),
        ];
        for (field, value, want) in cases {
            assert_eq!(check(field, value), want, "{field} = {value:?}");
        }
        let e = parse_heartbeat(b"[1]").unwrap_err().to_string();
        assert_eq!(e, "the body must be a JSON object, got an array");
        let e = parse_heartbeat(b"{\"ns\":").unwrap_err().to_string();
        assert!(
            e.starts_with(
                "the body is not valid JSON: EOF while parsing a value at line 1 column 6"
            ),
            "{e}"
        );
    }

    #[test]
    fn patches() {
        assert_eq!(
            parse_patch(br#"{"mode":"pull","interval_seconds":15}"#).unwrap(),
            Patch { mode: Some(Mode::Pull), interval_seconds: Some(15) }
        );
        assert_eq!(
            parse_patch(br#"{"interval_seconds":15}"#).unwrap(),
            Patch { mode: None, interval_seconds: Some(15) }
        );
        let e = parse_patch(b"{}").unwrap_err().to_string();
        assert_eq!(e, "the body sets nothing; expected at least one of mode, interval_seconds");
        let e = parse_patch(br#"{"mode":"pull","address":"x:1"}"#).unwrap_err().to_string();
        assert_eq!(e, "address: unknown field; expected one of mode, interval_seconds");
        let e = parse_patch(br#"{"mode":1}"#).unwrap_err().to_string();
        assert_eq!(e, "mode: expected a string, got a number");
    }

    #[test]
    fn the_operator_wins_once_it_has_spoken() {
        let hb = parse_heartbeat(GOOD.as_bytes()).unwrap();
        let r = Record::register(&hb, 1000);
        // before any patch, the server follows what the agent runs
        let moved = Heartbeat { mode: Mode::OnDemand, interval_seconds: 30, ..hb.clone() };
        let r2 = r.after_heartbeat(&moved, 2000);
        assert_eq!((r2.mode, r2.interval_seconds, r2.last_seen_ms), (Mode::OnDemand, 30, 2000));
        assert!(r2.differs_in_substance(&r));
        // a heartbeat that changes nothing but the time is not substance
        assert!(!r2.after_heartbeat(&moved, 3000).differs_in_substance(&r2));
        let p = r2.after_patch(Patch { mode: Some(Mode::Pull), interval_seconds: None });
        assert_eq!((p.mode, p.interval_seconds, p.operator_set), (Mode::Pull, 30, true));
        let p2 = p.after_heartbeat(&hb, 4000);
        assert_eq!((p2.mode, p2.interval_seconds), (Mode::Pull, 30));
        assert_eq!(p2.registered_at_ms, 1000);
    }
}
