//! Property tests of alerting's parsers, the entry points of rule files, the notifier's
//! Alertmanager-format file, templates, alarm definitions and history queries: on any input,
//! mutated from valid text or arbitrary, they answer (a value or a precise error naming where)
//! and never panic; what they accept is usable (an accepted alarm runs as rules that parse).

use std::time::Duration;

use proptest::prelude::*;

use super::LabelMap;
use super::alarms::spec;
use super::history::api::parse_filter;
use super::notify::config as notify_config;
use super::rules::{file, template};

const RULES: &str = r#"groups:
  - name: node
    interval: 30s
    rules:
      - record: instance:load:avg
        expr: avg by (instance) (node_load1)
        labels: { team: infra }
      - alert: HighLoad
        expr: node_load1 > 4
        for: 5m
        keep_firing_for: 1m
        labels:
          severity: '{{ if gt $value 8.0 }}critical{{ else }}warning{{ end }}'
        annotations:
          summary: 'load {{ $value | humanize }} on {{ $labels.instance }}'
"#;

const ALARM: &str = r#"{"id":"cpu-high","name":"HighCpu","metric":"ocelli_cpu_utilization_percent",
"target":{"ns":"default","service_type":"vm","vm_id":"vm-1","csp":"aws"},"comparison":">=",
"warning":80,"critical":90,"for":"1m","interval":"30s","message":"CPU","handlers":["ops"],
"labels":{"team":"infra"}}"#;

/// `text` changed by a few byte edits: deletions, insertions of bytes that matter to YAML and
/// JSON, and replacements, at positions chosen by `edits` (fractions of the length).
fn mutate(text: &str, edits: &[(u8, f64, u8)]) -> String {
    const PIECES: &[&str] = &[
        "\n", " ", "  ", ":", "- ", "{", "}", "[", "]", "\"", "'", "#", "{{", "}}", "|", ",", "0",
        "é", "\t",
    ];
    let mut b = text.as_bytes().to_vec();
    for &(kind, at, piece) in edits {
        let i = ((b.len() as f64) * at) as usize;
        let i = i.min(b.len());
        let p = PIECES[piece as usize % PIECES.len()].as_bytes();
        match kind % 3 {
            0 => {
                let end = (i + 1 + piece as usize % 8).min(b.len());
                b.drain(i..end);
            }
            1 => {
                b.splice(i..i, p.iter().copied());
            }
            _ => {
                let end = (i + p.len()).min(b.len());
                b.splice(i..end, p.iter().copied());
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

fn edits() -> impl Strategy<Value = Vec<(u8, f64, u8)>> {
    prop::collection::vec((any::<u8>(), 0.0..1.0f64, any::<u8>()), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn rule_files_answer_with_errors_naming_the_file(e in edits()) {
        let text = mutate(RULES, &e);
        if let Err(errors) = file::parse("rules/node.yml", &text, Duration::from_secs(60)) {
            prop_assert!(!errors.is_empty());
            for err in errors {
                let s = err.to_string();
                prop_assert!(s.starts_with("rules/node.yml"), "{s} for {text:?}");
                prop_assert!(!err.message.is_empty(), "{s}");
            }
        }
    }

    #[test]
    fn notifier_files_answer_with_errors_naming_the_file(e in edits()) {
        let example = include_str!("../../../config/alertmanager.example.yml");
        let text = mutate(example, &e);
        if let Err(err) = notify_config::parse(&text, "am.yml") {
            prop_assert!(err.starts_with("am.yml"), "{err} for {text:?}");
        }
    }

    #[test]
    fn templates_parse_or_refuse_and_expand_without_panicking(text in "(\\{\\{|\\}\\}|[ $.|()a-zA-Z0-9\"-])*") {
        if let Ok(t) = template::Template::parse(&text) {
            let labels: LabelMap = [("instance".to_string(), "n1".to_string())].into();
            let none = LabelMap::new();
            let data = template::Data { labels: &labels, external_labels: &none, external_url: "http://x", value: 1.5 };
            let _ = t.expand(&data);
        }
    }

    #[test]
    fn alarms_answer_and_what_they_accept_runs(e in edits()) {
        let text = mutate(ALARM, &e);
        let Ok(alarm) = spec::parse(text.as_bytes()) else { return Ok(()) };
        match alarm.check(&["ops".to_string()]) {
            Err(err) => {
                const FIELDS: &[&str] = &["id", "name", "metric", "expr", "target.ns",
                    "target.service_type", "target.service_id", "target.vm_id", "target.csp",
                    "warning", "critical", "for", "interval", "message", "handlers", "labels"];
                let field = err.split(':').next().unwrap_or_default();
                prop_assert!(FIELDS.contains(&field), "{err}");
            }
            Ok(()) => {
                let group = alarm.group().map_err(TestCaseError::fail)?;
                for r in &group.rules {
                    if let super::RuleSpec::Alert { expr, .. } = r {
                        prop_assert!(ocelli_promql::parse(expr).is_ok(), "{expr}");
                    }
                }
            }
        }
    }

    #[test]
    fn history_queries_answer(q in "([a-z_]{1,10}=[a-zA-Z0-9:.%-]{0,12}&?){0,4}") {
        let _ = parse_filter(&q);
    }
}
