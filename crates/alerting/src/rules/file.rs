//! Prometheus rule files: YAML with `groups:` of `name`, `interval`, `limit` and `rules:`
//! (`record` or `alert`, `expr`, `for`, `keep_firing_for`, `labels`, `annotations`), parsed with
//! `serde-saphyr` (panic-free, alias expansion capped) into [`GroupSpec`]s whose source is the
//! file's path. Unknown fields are refused, as Prometheus' strict parsing does.
//!
//! Every problem of a file is reported, each naming the file, the line (and column where the
//! YAML parser gives one), the group and the rule:
//! `rules/node.yml:14: group "node", rule "HighLoad": expr: unexpected end of input`.
//! Files are listed from glob patterns whose last path component may hold `*`, `?` and
//! `[...]` (the matching of `file_sd`); a file is read only up to [`MAX_FILE_BYTES`].

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::RuleError;
use super::group::{Field, Group};
use crate::{GroupSpec, LabelMap, RuleSpec};

/// The largest rule file read.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    #[serde(default)]
    groups: Vec<Spanned<FileGroup>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGroup {
    name: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    limit: Option<Spanned<i64>>,
    #[serde(default)]
    rules: Vec<Spanned<FileRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileRule {
    record: Option<Spanned<String>>,
    alert: Option<Spanned<String>>,
    expr: Option<Spanned<String>>,
    #[serde(rename = "for")]
    for_: Option<Spanned<String>>,
    keep_firing_for: Option<Spanned<String>>,
    #[serde(default)]
    labels: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    annotations: BTreeMap<String, Spanned<String>>,
}

/// `line` or `line:column` of a node.
fn at<T>(s: &Spanned<T>) -> String {
    let (l, c) = (s.referenced.line(), s.referenced.column());
    match (l, c) {
        (0, _) => String::new(),
        (l, 0) => format!(":{l}"),
        (l, c) => format!(":{l}:{c}"),
    }
}

fn line<T>(s: &Spanned<T>) -> String {
    match s.referenced.line() {
        0 => String::new(),
        l => format!(":{l}"),
    }
}

/// Parses one rule file's text; `path` is the source of its groups and the prefix of every
/// error.
pub fn parse(
    path: &str,
    text: &str,
    default_interval: Duration,
) -> Result<Vec<GroupSpec>, Vec<RuleError>> {
    let err = |at: String, group: Option<&str>, rule: Option<&str>, message: String| RuleError {
        at: format!("{path}{at}"),
        group: group.map(str::to_string),
        rule: rule.map(str::to_string),
        message,
    };
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let doc: FileDoc = serde_saphyr::from_str(text).map_err(|e| {
        let loc = e.location().map_or(String::new(), |l| format!(":{}:{}", l.line(), l.column()));
        let msg = e.to_string();
        // the parser's text starts with the location again: `error: line 6 column 9: ...`
        let mut msg = msg.lines().next().unwrap_or("").trim();
        msg = msg.strip_prefix("error: ").unwrap_or(msg);
        if let Some(rest) = msg.strip_prefix("line ")
            && let Some((_, after)) = rest.split_once(": ")
        {
            msg = after;
        }
        vec![err(loc, None, None, format!("cannot parse YAML: {msg}"))]
    })?;
    let mut errs = Vec::new();
    let mut specs = Vec::new();
    let mut seen = BTreeMap::new();
    for g in &doc.groups {
        let gv = &g.value;
        let name = gv.name.as_ref().map(|n| n.value.clone()).unwrap_or_default();
        let gname = Some(name.as_str());
        let gline = gv.name.as_ref().map_or_else(|| line(g), line);
        if seen.insert(name.clone(), ()).is_some() {
            errs.push(err(
                gline.clone(),
                None,
                None,
                format!("group name {name:?} is repeated in the same file"),
            ));
        }
        let interval = match &gv.interval {
            None => None,
            Some(s) => match super::parse_duration(&s.value) {
                Ok(d) => Some(d),
                Err(e) => {
                    errs.push(err(at(s), gname, None, format!("interval: {e}")));
                    None
                }
            },
        };
        let limit = match &gv.limit {
            Some(l) if l.value < 0 => {
                errs.push(err(
                    at(l),
                    gname,
                    None,
                    format!("limit: {} is negative (0 means no limit)", l.value),
                ));
                0
            }
            Some(l) => l.value as usize,
            None => 0,
        };
        let mut rules = Vec::new();
        let mut rule_lines: Vec<&Spanned<FileRule>> = Vec::new();
        for r in &gv.rules {
            let rv = &r.value;
            let rname = rv
                .alert
                .as_ref()
                .or(rv.record.as_ref())
                .map(|n| n.value.clone())
                .unwrap_or_default();
            let rerr = |at: String, m: String| err(at, gname, Some(&rname), m);
            let dur = |f: &Option<Spanned<String>>, field: &str, errs: &mut Vec<RuleError>| match f
            {
                None => Duration::ZERO,
                Some(s) => super::parse_duration(&s.value).unwrap_or_else(|e| {
                    errs.push(rerr(at(s), format!("{field}: {e}")));
                    Duration::ZERO
                }),
            };
            let for_ = dur(&rv.for_, "for", &mut errs);
            let keep_firing_for = dur(&rv.keep_firing_for, "keep_firing_for", &mut errs);
            let labels: LabelMap =
                rv.labels.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect();
            let annotations: LabelMap =
                rv.annotations.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect();
            let expr = rv.expr.as_ref().map(|e| e.value.clone()).unwrap_or_default();
            let spec = match (&rv.record, &rv.alert) {
                (Some(rec), Some(al)) if !rec.value.is_empty() && !al.value.is_empty() => {
                    errs.push(rerr(line(r), "only one of 'record' and 'alert' must be set".into()));
                    continue;
                }
                (Some(rec), _) if !rec.value.is_empty() => {
                    for (field, set) in [
                        ("annotations", !annotations.is_empty()),
                        ("for", rv.for_.is_some()),
                        ("keep_firing_for", rv.keep_firing_for.is_some()),
                    ] {
                        if set {
                            errs.push(rerr(
                                line(rec),
                                format!("{field}: not allowed in a recording rule"),
                            ));
                        }
                    }
                    RuleSpec::Record { record: rec.value.clone(), expr, labels }
                }
                (_, Some(al)) if !al.value.is_empty() => RuleSpec::Alert {
                    alert: al.value.clone(),
                    expr,
                    for_,
                    keep_firing_for,
                    labels,
                    annotations,
                },
                _ => {
                    errs.push(rerr(line(r), "one of 'record' or 'alert' must be set".into()));
                    continue;
                }
            };
            rules.push(spec);
            rule_lines.push(r);
        }
        let spec =
            GroupSpec { name: name.clone(), source: path.to_string(), interval, limit, rules };
        if let Err(problems) = Group::compile(spec.clone(), default_interval, true) {
            for (i, field, message) in problems {
                let Some(i) = i else {
                    errs.push(err(gline.clone(), gname, None, message));
                    continue;
                };
                let r = &rule_lines[i].value;
                let loc = match &field {
                    Field::Expr => r.expr.as_ref().map(at),
                    Field::Name => r.record.as_ref().or(r.alert.as_ref()).map(line),
                    Field::Label(k) => r.labels.get(k).map(line),
                    Field::Annotation(k) => r.annotations.get(k).map(line),
                    Field::Rule => None,
                };
                let loc = loc.unwrap_or_else(|| line(rule_lines[i]));
                let rname = super::group::rule_name(&spec.rules[i]).to_string();
                errs.push(err(loc, gname, Some(&rname), message));
            }
        }
        specs.push(spec);
    }
    if errs.is_empty() { Ok(specs) } else { Err(errs) }
}

/// Reads and parses every file matching `patterns` (relative ones are relative to `base`),
/// by path. All problems of all files are returned together.
pub fn load(
    patterns: &[String],
    base: &Path,
    default_interval: Duration,
) -> Result<BTreeMap<String, Vec<GroupSpec>>, Vec<RuleError>> {
    let mut errs = Vec::new();
    let mut files: Vec<PathBuf> = Vec::new();
    for p in patterns {
        let full = base.join(p);
        match ocelli_http::files::list(&full) {
            Ok(found) => files.extend(found),
            Err(e) => errs.push(RuleError { at: p.clone(), group: None, rule: None, message: e }),
        }
    }
    files.sort();
    files.dedup();
    let mut out = BTreeMap::new();
    for f in files {
        let path = f.display().to_string();
        let text = match read_capped(&f) {
            Ok(t) => t,
            Err(message) => {
                errs.push(RuleError { at: path, group: None, rule: None, message });
                continue;
            }
        };
        match parse(&path, &text, default_interval) {
            Ok(groups) => {
                out.insert(path, groups);
            }
            Err(e) => errs.extend(e),
        }
    }
    if errs.is_empty() { Ok(out) } else { Err(errs) }
}

fn read_capped(path: &Path) -> Result<String, String> {
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut buf = Vec::new();
    f.take(MAX_FILE_BYTES + 1).read_to_end(&mut buf).map_err(|e| format!("cannot read: {e}"))?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("the file is larger than the limit of {MAX_FILE_BYTES} bytes"));
    }
    String::from_utf8(buf).map_err(|e| format!("not UTF-8: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
groups:
  - name: node
    interval: 30s
    limit: 10
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
        labels:
          team: infra
      - alert: HighLoad
        expr: node_load1 > 2
        for: 5m
        keep_firing_for: 1m30s
        labels:
          severity: '{{ if gt $value 4.0 }}critical{{ else }}warning{{ end }}'
        annotations:
          summary: 'load is {{ $value | humanize }} on {{ $labels.instance }}'
  - name: other
    rules: []
";

    fn errors(text: &str) -> Vec<String> {
        parse("rules/node.yml", text, Duration::from_secs(60))
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn parses_groups_and_rules() {
        let g = parse("rules/node.yml", GOOD, Duration::from_secs(60)).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].name, "node");
        assert_eq!(g[0].source, "rules/node.yml");
        assert_eq!(g[0].interval, Some(Duration::from_secs(30)));
        assert_eq!(g[0].limit, 10);
        assert_eq!(
            g[0].rules[0],
            RuleSpec::Record {
                record: "job:up:sum".into(),
                expr: "sum by (job) (up)".into(),
                labels: [("team".to_string(), "infra".to_string())].into(),
            }
        );
        let RuleSpec::Alert { alert, for_, keep_firing_for, annotations, .. } = &g[0].rules[1]
        else {
            panic!("not an alert: {:?}", g[0].rules[1]);
        };
        assert_eq!(alert, "HighLoad");
        assert_eq!(*for_, Duration::from_secs(300));
        assert_eq!(*keep_firing_for, Duration::from_secs(90));
        assert!(annotations["summary"].contains("humanize"));
        assert_eq!(g[1].interval, None);
        assert!(parse("x.yml", "", Duration::from_secs(60)).unwrap().is_empty());
    }

    #[test]
    fn expr_errors_name_file_line_group_and_rule() {
        let text = GOOD.replace("node_load1 > 2", "node_load1 >");
        let e = errors(&text);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with("rules/node.yml:11:15: group \"node\", rule \"HighLoad\": expr: "),
            "{}",
            e[0]
        );
    }

    #[test]
    fn each_validation_error_is_located() {
        let cases: &[(&str, &str, &str)] = &[
            (
                "record: job:up:sum",
                "record: job up",
                "rules/node.yml:6: group \"node\", rule \"job up\": record: invalid recording rule name \"job up\"",
            ),
            (
                "team: infra",
                "team-x: infra",
                "rules/node.yml:9: group \"node\", rule \"job:up:sum\": labels: invalid label name \"team-x\"",
            ),
            (
                "for: 5m",
                "for: 5 minutes",
                "rules/node.yml:12:14: group \"node\", rule \"HighLoad\": for: invalid duration \"5 minutes\"",
            ),
            (
                "interval: 30s",
                "interval: often",
                "rules/node.yml:3:15: group \"node\": interval: invalid duration \"often\"",
            ),
            (
                "limit: 10",
                "limit: -1",
                "rules/node.yml:4:12: group \"node\": limit: -1 is negative (0 means no limit)",
            ),
            (
                "name: other",
                "name: node",
                "rules/node.yml:18: group name \"node\" is repeated in the same file",
            ),
            (
                "{{ $value | humanize }}",
                "{{ $value | humanise }}",
                "rules/node.yml:17: group \"node\", rule \"HighLoad\": annotations.summary: template __alert_HighLoad: line 1: function \"humanise\" not defined",
            ),
            (
                "      - alert: HighLoad\n",
                "      - alert: HighLoad\n        record: x\n",
                "rules/node.yml:10: group \"node\", rule \"HighLoad\": only one of 'record' and 'alert' must be set",
            ),
            (
                "        labels:\n          team",
                "        annotations:\n          a: b\n        labels:\n          team",
                "rules/node.yml:6: group \"node\", rule \"job:up:sum\": annotations: not allowed in a recording rule",
            ),
        ];
        for (from, to, want) in cases {
            assert!(GOOD.contains(from), "{from}");
            let e = errors(&GOOD.replacen(from, to, 1));
            assert!(e.iter().any(|x| x.starts_with(want)), "{to}: want {want}\ngot {e:?}");
        }
    }

    #[test]
    fn plain_scalars_are_strings_as_in_prometheus() {
        let text = "groups:\n  - name: 1\n    rules:\n      - alert: A\n        expr: 1\n        for: 0\n        labels:\n          priority: 2\n          page: true\n";
        let g = parse("r.yml", text, Duration::from_secs(60)).unwrap();
        assert_eq!(g[0].name, "1");
        let RuleSpec::Alert { expr, for_, labels, .. } = &g[0].rules[0] else { panic!() };
        assert_eq!((expr.as_str(), *for_), ("1", Duration::ZERO));
        assert_eq!((labels["priority"].as_str(), labels["page"].as_str()), ("2", "true"));
    }

    #[test]
    fn yaml_and_schema_errors_name_the_place() {
        let e = errors(
            "groups:\n  - name: a\n    rules:\n      - alert: X\n        expr: up\n        severity: page\n",
        );
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("rules/node.yml:6:"), "{}", e[0]);
        assert_eq!(
            e[0],
            "rules/node.yml:6:9: cannot parse YAML: unknown field `severity`, expected one of record, alert, expr, for, keep_firing_for, labels, annotations"
        );
        let e = errors("groups:\n  - name: a\n   rules: [\n");
        assert!(e[0].starts_with("rules/node.yml:"), "{}", e[0]);
        let e = errors("groups:\n  - name: a\n    rules:\n      - expr: up\n");
        assert_eq!(
            e,
            ["rules/node.yml:4: group \"a\", rule \"\": one of 'record' or 'alert' must be set"]
        );
    }
}
