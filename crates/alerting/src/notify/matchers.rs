//! Alertmanager's string form of label matchers, as `matchers:` lists, `source_matchers:` and
//! `target_matchers:` write them: `alertname="Watchdog"`, `severity=~"warning|critical"`,
//! `env!=prod` (unquoted values run to the next comma), several in one string separated by
//! commas, optionally inside `{...}`. Matchers themselves are [`ocelli_model::Matcher`], whose
//! regexes are anchored at both ends and for which an absent label has the empty value, which
//! is Alertmanager's semantics too.
//!
//! Also the one check every matcher list shares: a label name must be a Prometheus label name.

use ocelli_model::{MatchOp, Matcher, is_valid_label_name};

/// Parses one string of matchers. Errors quote the string and say what was expected where.
pub fn parse(input: &str) -> Result<Vec<Matcher>, String> {
    let trimmed = input.trim();
    let inner = match trimmed.strip_prefix('{') {
        Some(rest) => rest
            .strip_suffix('}')
            .ok_or_else(|| format!("matcher {input:?}: `{{` without a closing `}}`"))?,
        None => trimmed,
    };
    let chars: Vec<char> = inner.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= chars.len() {
            break;
        }
        let start = i;
        while i < chars.len() && !matches!(chars[i], '=' | '!' | '~') && !chars[i].is_whitespace() {
            i += 1;
        }
        let name: String = chars[start..i].iter().collect();
        if !is_valid_label_name(&name) {
            return Err(format!(
                "matcher {input:?}: {name:?} is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)"
            ));
        }
        skip_ws(&mut i);
        let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
        let op = if rest.starts_with("=~") {
            MatchOp::RegexMatch
        } else if rest.starts_with("!~") {
            MatchOp::RegexNoMatch
        } else if rest.starts_with("!=") {
            MatchOp::NotEqual
        } else if rest.starts_with('=') {
            MatchOp::Equal
        } else {
            return Err(format!("matcher {input:?}: expected one of =, !=, =~, !~ after {name:?}"));
        };
        i += op.as_str().len();
        skip_ws(&mut i);
        let value = if chars.get(i) == Some(&'"') {
            i += 1;
            let mut v = String::new();
            loop {
                match chars.get(i) {
                    None => {
                        return Err(format!(
                            "matcher {input:?}: the value of {name:?} has no closing quote"
                        ));
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some('\\') => {
                        match chars.get(i + 1) {
                            Some('n') => v.push('\n'),
                            Some('t') => v.push('\t'),
                            Some(c @ ('"' | '\\')) => v.push(*c),
                            // an unknown escape stays as written, so regexes keep their `\d`
                            Some(c) => {
                                v.push('\\');
                                v.push(*c);
                            }
                            None => {
                                return Err(format!(
                                    "matcher {input:?}: the value of {name:?} ends in a lone backslash"
                                ));
                            }
                        }
                        i += 2;
                    }
                    Some(c) => {
                        v.push(*c);
                        i += 1;
                    }
                }
            }
            v
        } else {
            let start = i;
            while i < chars.len() && chars[i] != ',' {
                i += 1;
            }
            let v: String = chars[start..i].iter().collect::<String>().trim().to_string();
            if v.contains('"') {
                return Err(format!(
                    "matcher {input:?}: the value of {name:?} has a stray quote; quote the whole value"
                ));
            }
            v
        };
        let m =
            Matcher::new(op, name.clone(), value).map_err(|e| format!("matcher {input:?}: {e}"))?;
        out.push(m);
        skip_ws(&mut i);
        match chars.get(i) {
            None => break,
            Some(',') => i += 1,
            Some(c) => {
                return Err(format!(
                    "matcher {input:?}: expected `,` or the end after the value of {name:?}, found {c:?}"
                ));
            }
        }
    }
    if out.is_empty() {
        return Err(format!("matcher {input:?}: no matcher in it"));
    }
    Ok(out)
}

/// Whether every matcher accepts the label set (an absent label is the empty value).
pub fn matches_all(matchers: &[Matcher], labels: &crate::LabelMap) -> bool {
    matchers.iter().all(|m| m.matches(labels.get(&m.name).map(String::as_str).unwrap_or("")))
}

/// `{a="b",c=~"d"}`: Alertmanager's rendering of a matcher list, used in route keys.
pub fn render(matchers: &[Matcher]) -> String {
    let parts: Vec<String> = matchers.iter().map(|m| m.to_string()).collect();
    format!("{{{}}}", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Matcher {
        let mut v = parse(s).unwrap();
        assert_eq!(v.len(), 1, "{s}");
        v.remove(0)
    }

    #[test]
    fn the_four_operators_quoted_and_not() {
        let m = one(r#"alertname="Watchdog""#);
        assert_eq!(
            (m.name.as_str(), m.op, m.value.as_str()),
            ("alertname", MatchOp::Equal, "Watchdog")
        );
        let m = one(r#"severity =~ "warning|critical""#);
        assert_eq!(m.op, MatchOp::RegexMatch);
        assert!(m.matches("critical") && !m.matches("critical2"));
        let m = one("env!=prod");
        assert_eq!((m.op, m.value.as_str()), (MatchOp::NotEqual, "prod"));
        let m = one(r#"job!~"node.*""#);
        assert!(!m.matches("node_exporter") && m.matches("other"));
        let m = one(r#"x="say \"hi\"\\""#);
        assert_eq!(m.value, "say \"hi\"\\");
        let m = one(r#"x=~"\d+""#);
        assert!(m.matches("42"));
        let m = one("x=");
        assert_eq!(m.value, "");
    }

    #[test]
    fn several_in_one_string_with_braces() {
        let v = parse(r#"{alarm_id="a1", severity=~"warning|critical",env!=dev}"#).unwrap();
        let shown: Vec<String> = v.iter().map(|m| m.to_string()).collect();
        assert_eq!(shown, [r#"alarm_id="a1""#, r#"severity=~"warning|critical""#, r#"env!="dev""#]);
        assert_eq!(render(&v), r#"{alarm_id="a1",severity=~"warning|critical",env!="dev"}"#);
    }

    #[test]
    fn errors_say_what_was_expected() {
        let e = |s: &str| parse(s).unwrap_err();
        assert_eq!(
            e("1x=\"a\""),
            r#"matcher "1x=\"a\"": "1x" is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)"#
        );
        assert_eq!(e("foo bar"), r#"matcher "foo bar": expected one of =, !=, =~, !~ after "foo""#);
        assert_eq!(e(r#"a="b"#), r#"matcher "a=\"b": the value of "a" has no closing quote"#);
        assert_eq!(
            e(r#"a="b" c="d""#),
            r#"matcher "a=\"b\" c=\"d\"": expected `,` or the end after the value of "a", found 'c'"#
        );
        assert_eq!(e(""), r#"matcher "": no matcher in it"#);
        assert_eq!(e("{a=b"), r#"matcher "{a=b": `{` without a closing `}`"#);
        assert!(e("a=~\"(\"").starts_with(r#"matcher "a=~\"(\"": "#), "{}", e("a=~\"(\""));
    }

    #[test]
    fn absent_labels_are_empty() {
        let mut l = crate::LabelMap::new();
        l.insert("a".into(), "1".into());
        assert!(matches_all(&parse(r#"a="1", b="""#).unwrap(), &l));
        assert!(!matches_all(&parse(r#"b!="""#).unwrap(), &l));
        assert!(matches_all(&[], &l));
    }
}
