//! Silences, as Alertmanager's: a set of matchers and a time window. An alert all of whose
//! labels satisfy every matcher of a silence that is active (started, not ended) is muted:
//! not delivered, recorded in history as suppressed. A silence is `pending` before its start,
//! `active` inside its window, `expired` after its end; expiring one (`DELETE`) ends it now.
//!
//! This module owns the silence's shape (the API's JSON, Alertmanager v2's
//! `PostableSilence`/`GettableSilence`), the checks a new silence must pass, and matching. It
//! stores nothing: the dispatcher keeps silences and [`super::store`] writes them.

use ocelli_model::{MatchOp, Matcher, is_valid_label_name};
use serde::{Deserialize, Serialize};

use crate::LabelMap;

/// One matcher of a silence, Alertmanager v2's shape.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SilenceMatcher {
    pub name: String,
    pub value: String,
    pub is_regex: bool,
    /// `false` negates the matcher (`!=`, `!~`); Alertmanager's default is `true`.
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

impl SilenceMatcher {
    pub fn compile(&self) -> Result<Matcher, String> {
        let op = match (self.is_regex, self.is_equal) {
            (false, true) => MatchOp::Equal,
            (false, false) => MatchOp::NotEqual,
            (true, true) => MatchOp::RegexMatch,
            (true, false) => MatchOp::RegexNoMatch,
        };
        Matcher::new(op, self.name.clone(), self.value.clone()).map_err(|e| e.to_string())
    }
}

/// A silence as stored and as the API answers it (with `status` added).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<SilenceMatcher>,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    pub updated_at_ms: i64,
    pub created_by: String,
    pub comment: String,
}

/// Where a silence is in its window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SilenceState {
    Expired,
    Active,
    Pending,
}

impl SilenceState {
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceState::Expired => "expired",
            SilenceState::Active => "active",
            SilenceState::Pending => "pending",
        }
    }
}

impl Silence {
    pub fn state(&self, now_ms: i64) -> SilenceState {
        if self.ends_at_ms <= now_ms {
            SilenceState::Expired
        } else if self.starts_at_ms > now_ms {
            SilenceState::Pending
        } else {
            SilenceState::Active
        }
    }
}

/// A silence with its matchers compiled, as the dispatcher keeps it.
#[derive(Clone, Debug)]
pub struct Compiled {
    pub silence: Silence,
    pub matchers: Vec<Matcher>,
}

impl Compiled {
    /// Compiles a stored (already checked) silence.
    pub fn new(silence: Silence) -> Result<Compiled, String> {
        let matchers = silence
            .matchers
            .iter()
            .map(SilenceMatcher::compile)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("silence {}: {e}", silence.id))?;
        Ok(Compiled { silence, matchers })
    }

    /// Whether this silence mutes an alert with these labels now.
    pub fn mutes(&self, labels: &LabelMap, now_ms: i64) -> bool {
        self.silence.state(now_ms) == SilenceState::Active
            && super::matchers::matches_all(&self.matchers, labels)
    }
}

/// The body of `POST /api/v1/silences` (Alertmanager v2's `PostableSilence`); times are
/// RFC 3339 strings.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Postable {
    /// Set to update that silence.
    #[serde(default)]
    pub id: Option<String>,
    pub matchers: Vec<SilenceMatcher>,
    pub starts_at: String,
    pub ends_at: String,
    pub created_by: String,
    pub comment: String,
}

/// Checks a posted silence and makes it (without an id). A start in the past becomes now.
/// Errors name the field and say what is wrong.
pub fn check(p: Postable, now_ms: i64) -> Result<Silence, String> {
    if p.matchers.is_empty() {
        return Err("matchers: at least one matcher is required".into());
    }
    let mut compiled = Vec::new();
    for (i, m) in p.matchers.iter().enumerate() {
        if !is_valid_label_name(&m.name) {
            return Err(format!(
                "matchers[{i}].name: {:?} is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)",
                m.name
            ));
        }
        compiled.push(m.compile().map_err(|e| format!("matchers[{i}].value: {e}"))?);
    }
    if compiled.iter().all(|m| m.matches("")) {
        return Err("matchers: at least one matcher must not match the empty string, or the silence would mute every alert without that label".into());
    }
    let time = |field: &str, s: &str| {
        ocelli_model::time::parse_time(s).filter(|_| s.contains('T') || s.contains('t')).ok_or_else(
            || format!("{field}: {s:?} is not an RFC 3339 time (e.g. 2024-05-06T07:08:09Z)"),
        )
    };
    let starts = time("startsAt", &p.starts_at)?;
    let ends = time("endsAt", &p.ends_at)?;
    if ends < starts {
        return Err("endsAt: must not be before startsAt".into());
    }
    if ends <= now_ms {
        return Err("endsAt: must be in the future".into());
    }
    if p.created_by.trim().is_empty() {
        return Err("createdBy: must not be empty".into());
    }
    if p.comment.trim().is_empty() {
        return Err("comment: must not be empty".into());
    }
    Ok(Silence {
        id: p.id.unwrap_or_default(),
        matchers: p.matchers,
        starts_at_ms: starts.max(now_ms),
        ends_at_ms: ends,
        updated_at_ms: now_ms,
        created_by: p.created_by,
        comment: p.comment,
    })
}

/// Whether `new` can replace `old` in place (same id) as Alertmanager allows: `old` not
/// expired, the same matchers, and (for an active one) the same start, and an end not moved
/// into the past. Otherwise the old one is expired and the new one gets a new id.
pub fn can_update_in_place(old: &Silence, new: &Silence, now_ms: i64) -> bool {
    match old.state(now_ms) {
        SilenceState::Expired => false,
        SilenceState::Active => {
            old.matchers == new.matchers && old.starts_at_ms <= now_ms && new.ends_at_ms > now_ms
        }
        SilenceState::Pending => old.matchers == new.matchers,
    }
}

/// A new silence id: a random UUID (version 4).
pub fn new_id() -> Result<String, String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| format!("cannot draw a random silence id: {e}"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000; // 2023-11-14T22:13:20Z

    fn postable(matchers: Vec<SilenceMatcher>, starts: &str, ends: &str) -> Postable {
        Postable {
            id: None,
            matchers,
            starts_at: starts.into(),
            ends_at: ends.into(),
            created_by: "ops".into(),
            comment: "maintenance".into(),
        }
    }

    fn m(name: &str, value: &str, is_regex: bool, is_equal: bool) -> SilenceMatcher {
        SilenceMatcher { name: name.into(), value: value.into(), is_regex, is_equal }
    }

    #[test]
    fn a_silence_mutes_matching_alerts_while_active() {
        let s = check(
            postable(
                vec![m("alertname", "HighLoad", false, true), m("instance", "n[12]", true, true)],
                "2023-11-14T22:00:00Z",
                "2023-11-14T23:00:00Z",
            ),
            NOW,
        )
        .unwrap();
        // a start in the past becomes now
        assert_eq!(s.starts_at_ms, NOW);
        let c = Compiled::new(s).unwrap();
        let l = |i: &str| -> LabelMap {
            [("alertname", "HighLoad"), ("instance", i)]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(c.mutes(&l("n1"), NOW));
        assert!(!c.mutes(&l("n3"), NOW));
        assert!(!c.mutes(&l("n1"), NOW + 3_600_000), "expired");
        assert_eq!(c.silence.state(NOW - 1), SilenceState::Pending);
        assert_eq!(c.silence.state(NOW + 3_600_000).as_str(), "expired");
    }

    #[test]
    fn checks_name_the_field() {
        let e = |p: Postable| check(p, NOW).unwrap_err();
        let later = "2023-11-15T00:00:00Z";
        assert_eq!(
            e(postable(vec![], "2023-11-14T22:00:00Z", later)),
            "matchers: at least one matcher is required"
        );
        assert_eq!(
            e(postable(vec![m("1a", "x", false, true)], "2023-11-14T22:00:00Z", later)),
            "matchers[0].name: \"1a\" is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)"
        );
        assert!(
            e(postable(vec![m("a", "(", true, true)], "2023-11-14T22:00:00Z", later))
                .starts_with("matchers[0].value: ")
        );
        assert!(
            e(postable(vec![m("a", ".*", true, true)], "2023-11-14T22:00:00Z", later))
                .starts_with("matchers: at least one matcher must not match the empty string")
        );
        assert_eq!(
            e(postable(vec![m("a", "b", false, true)], "yesterday", later)),
            "startsAt: \"yesterday\" is not an RFC 3339 time (e.g. 2024-05-06T07:08:09Z)"
        );
        assert_eq!(
            e(postable(vec![m("a", "b", false, true)], later, "2023-11-14T23:00:00Z")),
            "endsAt: must not be before startsAt"
        );
        assert_eq!(
            e(postable(
                vec![m("a", "b", false, true)],
                "2023-11-14T20:00:00Z",
                "2023-11-14T21:00:00Z"
            )),
            "endsAt: must be in the future"
        );
        let mut p = postable(vec![m("a", "b", false, true)], "2023-11-14T22:00:00Z", later);
        p.comment = " ".into();
        assert_eq!(e(p), "comment: must not be empty");
    }

    #[test]
    fn ids_are_uuids_and_updates_follow_alertmanager() {
        let id = new_id().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, new_id().unwrap());
        let s = check(
            postable(
                vec![m("a", "b", false, true)],
                "2023-11-14T22:00:00Z",
                "2023-11-15T00:00:00Z",
            ),
            NOW,
        )
        .unwrap();
        let mut longer = s.clone();
        longer.ends_at_ms += 1000;
        assert!(can_update_in_place(&s, &longer, NOW));
        let mut other = s.clone();
        other.matchers[0].value = "c".into();
        assert!(!can_update_in_place(&s, &other, NOW));
        assert!(!can_update_in_place(&s, &longer, s.ends_at_ms), "expired");
    }
}
