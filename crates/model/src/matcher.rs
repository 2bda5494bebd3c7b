//! Label matchers with Prometheus semantics.
//!
//! `=`, `!=`, `=~`, `!~`. Regexes are fully anchored (`=~"a.*"` must match the whole value).
//! A label a series does not have has the empty value, so `foo=""` selects series without
//! `foo` and `foo!=""` selects series that have it. Storage engines use
//! [`Matcher::matches_empty`] to decide whether a matcher can select series lacking the label.

use std::fmt;

use regex::Regex;

use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Equal,
    NotEqual,
    RegexMatch,
    RegexNoMatch,
}

impl MatchOp {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::RegexMatch => "=~",
            MatchOp::RegexNoMatch => "!~",
        }
    }
}

/// One label matcher. Build it with [`Matcher::new`], which compiles the anchored regex once.
#[derive(Clone)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<Regex>,
    matches_empty: bool,
}

impl Matcher {
    pub fn new(op: MatchOp, name: impl Into<String>, value: impl Into<String>) -> Result<Matcher> {
        let name = name.into();
        let value = value.into();
        let re = match op {
            MatchOp::RegexMatch | MatchOp::RegexNoMatch => {
                Some(Regex::new(&format!("^(?s:{value})$")).map_err(|e| Error::InvalidRegex {
                    name: name.clone(),
                    regex: value.clone(),
                    source: Box::new(e),
                })?)
            }
            _ => None,
        };
        let mut m = Matcher { name, op, value, re, matches_empty: false };
        m.matches_empty = m.matches("");
        Ok(m)
    }

    /// `name="value"`; cannot fail.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Matcher {
        let (name, value) = (name.into(), value.into());
        let matches_empty = value.is_empty();
        Matcher { name, op: MatchOp::Equal, value, re: None, matches_empty }
    }

    /// Whether a label value (empty for an absent label) satisfies the matcher.
    pub fn matches(&self, v: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::NotEqual, _) => v != self.value,
            (MatchOp::RegexMatch, Some(re)) => re.is_match(v),
            (MatchOp::RegexNoMatch, Some(re)) => !re.is_match(v),
            // `new` always compiles a regex for the regex ops
            (MatchOp::RegexMatch | MatchOp::RegexNoMatch, None) => false,
        }
    }

    /// Whether series without this label are selected.
    pub fn matches_empty(&self) -> bool {
        self.matches_empty
    }

    /// For `=~"a|b|c"`-style regexes made only of literal alternatives, the literal values;
    /// lets an index look values up directly instead of scanning all of them.
    pub fn set_matches(&self) -> Option<Vec<&str>> {
        if self.op != MatchOp::RegexMatch {
            return None;
        }
        let special = |c: char| "\\.+*?()[]{}^$".contains(c);
        if self.value.chars().any(special) {
            return None;
        }
        Some(self.value.split('|').collect())
    }
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Matcher) -> bool {
        self.name == o.name && self.op == o.op && self.value == o.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(op: MatchOp, v: &str) -> Matcher {
        Matcher::new(op, "l", v).unwrap()
    }

    #[test]
    fn regexes_are_anchored() {
        assert!(m(MatchOp::RegexMatch, "a.*").matches("abc"));
        assert!(!m(MatchOp::RegexMatch, "b").matches("abc"));
        assert!(!m(MatchOp::RegexMatch, "a|b").matches("ab"));
        assert!(m(MatchOp::RegexNoMatch, "b").matches("abc"));
        assert!(m(MatchOp::RegexMatch, "a.c").matches("a\nc"));
    }

    #[test]
    fn empty_value_semantics() {
        assert!(m(MatchOp::Equal, "").matches_empty());
        assert!(!m(MatchOp::NotEqual, "").matches_empty());
        assert!(m(MatchOp::NotEqual, "x").matches_empty());
        assert!(m(MatchOp::RegexMatch, ".*").matches_empty());
        assert!(!m(MatchOp::RegexMatch, ".+").matches_empty());
        assert!(m(MatchOp::RegexNoMatch, ".+").matches_empty());
    }

    #[test]
    fn bad_regex_is_a_clear_error() {
        let e = Matcher::new(MatchOp::RegexMatch, "job", "(").unwrap_err().to_string();
        assert!(e.starts_with(r#"invalid regex "(" in matcher for label "job""#), "{e}");
    }

    #[test]
    fn set_matches() {
        assert_eq!(m(MatchOp::RegexMatch, "a|bb|c").set_matches(), Some(vec!["a", "bb", "c"]));
        assert_eq!(m(MatchOp::RegexMatch, "a.*").set_matches(), None);
        assert_eq!(m(MatchOp::Equal, "a").set_matches(), None);
    }
}
