//! Relabelling as Prometheus does it: `relabel_configs` rewrite a target's labels before it is
//! scraped, `metric_relabel_configs` rewrite each scraped series before it is stored.
//!
//! A rule's `regex` is fully anchored (`^(?:regex)$`); `replacement` may use `$1`, `${1}` and
//! `${name}` (the `regex` crate's expansion, which reads `$1x` as a group named `1x`, as Go
//! does). Actions: `replace` (the default), `keep`, `drop`, `hashmod` (MD5 of the joined
//! source values, its last 8 bytes as a big-endian integer, modulo `modulus`: the same shard
//! numbers as Prometheus), `labelmap`, `labeldrop` and `labelkeep`. A label set to an empty
//! value is removed. This module owns the config types of one rule, their validation
//! ([`RelabelConfig::compile`]) and [`relabel`]; it does not know where label sets come from.

use std::collections::BTreeMap;

use md5::Digest;
use regex::Regex;
use serde::Deserialize;

/// A label set under relabelling: name to value, no empty values.
pub type LabelMap = BTreeMap<String, String>;

/// What a rule does.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Replace,
    Keep,
    Drop,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
}

/// One relabelling rule as written in the config file. Fields left out take Prometheus'
/// defaults: `separator = ";"`, `regex = "(.*)"`, `replacement = "$1"`, `action = "replace"`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RelabelConfig {
    /// Labels whose values are joined with `separator` and matched against `regex`.
    pub source_labels: Vec<String>,
    pub separator: Option<String>,
    pub regex: Option<String>,
    /// The label `replace` and `hashmod` write (`replace` may use `$1`... here too).
    pub target_label: Option<String>,
    pub replacement: Option<String>,
    /// `hashmod` only: the number of shards.
    pub modulus: Option<u64>,
    pub action: Action,
}

/// A validated rule, ready to apply.
#[derive(Clone, Debug)]
pub struct Rule {
    source_labels: Vec<String>,
    separator: String,
    regex: Regex,
    target_label: String,
    replacement: String,
    modulus: u64,
    action: Action,
}

impl RelabelConfig {
    /// Checks the rule and compiles its regex; the error names the field at fault.
    pub fn compile(&self) -> Result<Rule, String> {
        let regex_src = self.regex.as_deref().unwrap_or("(.*)");
        let regex = Regex::new(&format!("^(?:{regex_src})$"))
            .map_err(|e| format!("regex: invalid regular expression {regex_src:?}: {e}"))?;
        for l in &self.source_labels {
            if !ocelli_model::is_valid_label_name(l) {
                return Err(format!("source_labels: {l:?} is not a valid label name"));
            }
        }
        let target = self.target_label.clone().unwrap_or_default();
        let replacement = self.replacement.clone().unwrap_or_else(|| "$1".into());
        let action = self.action;
        let name = format!("{action:?}").to_lowercase();
        match action {
            Action::Replace => {
                if target.is_empty() {
                    return Err("target_label: the replace action needs a target_label".into());
                }
                // a target with `$` is expanded per series and checked then
                if !target.contains('$') && !ocelli_model::is_valid_label_name(&target) {
                    return Err(format!("target_label: {target:?} is not a valid label name"));
                }
            }
            Action::HashMod => {
                if !ocelli_model::is_valid_label_name(&target) {
                    return Err(format!(
                        "target_label: the hashmod action needs a valid target_label, not {target:?}"
                    ));
                }
                if self.modulus.unwrap_or(0) == 0 {
                    return Err("modulus: the hashmod action needs a modulus above 0".into());
                }
            }
            Action::LabelMap => {
                if !replacement.contains('$') && !ocelli_model::is_valid_label_name(&replacement) {
                    return Err(format!(
                        "replacement: {replacement:?} is not a valid label name for labelmap"
                    ));
                }
            }
            Action::LabelDrop | Action::LabelKeep => {
                let extra = [
                    ("source_labels", !self.source_labels.is_empty()),
                    ("separator", self.separator.is_some()),
                    ("target_label", self.target_label.is_some()),
                    ("replacement", self.replacement.is_some()),
                    ("modulus", self.modulus.is_some()),
                ];
                if let Some((field, _)) = extra.iter().find(|(_, set)| *set) {
                    return Err(format!(
                        "{field}: the {name} action takes only a regex, not {field}"
                    ));
                }
            }
            Action::Keep | Action::Drop => {}
        }
        if action != Action::HashMod && self.modulus.is_some() {
            return Err(format!("modulus: only the hashmod action takes a modulus, not {name}"));
        }
        Ok(Rule {
            source_labels: self.source_labels.clone(),
            separator: self.separator.clone().unwrap_or_else(|| ";".into()),
            regex,
            target_label: target,
            replacement,
            modulus: self.modulus.unwrap_or(0),
            action,
        })
    }
}

/// Compiles a list of rules; the error names the list and the rule's index.
pub fn compile_all(list: &str, configs: &[RelabelConfig]) -> Result<Vec<Rule>, String> {
    configs
        .iter()
        .enumerate()
        .map(|(i, c)| c.compile().map_err(|e| format!("{list}[{i}].{e}")))
        .collect()
}

fn set(labels: &mut LabelMap, name: String, value: String) {
    if value.is_empty() {
        labels.remove(&name);
    } else {
        labels.insert(name, value);
    }
}

/// Applies `rules` in order. Returns `false` when a rule drops the label set (what is left in
/// `labels` is then meaningless).
pub fn relabel(rules: &[Rule], labels: &mut LabelMap) -> bool {
    rules.iter().all(|r| apply(r, labels))
}

fn apply(r: &Rule, labels: &mut LabelMap) -> bool {
    let joined = || {
        let values: Vec<&str> = r
            .source_labels
            .iter()
            .map(|n| labels.get(n).map(String::as_str).unwrap_or(""))
            .collect();
        values.join(&r.separator)
    };
    match r.action {
        Action::Keep => r.regex.is_match(&joined()),
        Action::Drop => !r.regex.is_match(&joined()),
        Action::Replace => {
            let value = joined();
            if let Some(caps) = r.regex.captures(&value) {
                let mut target = String::new();
                caps.expand(&r.target_label, &mut target);
                if ocelli_model::is_valid_label_name(&target) {
                    let mut out = String::new();
                    caps.expand(&r.replacement, &mut out);
                    set(labels, target, out);
                }
            }
            true
        }
        Action::HashMod => {
            let digest = md5::Md5::digest(joined().as_bytes());
            let mut tail = [0u8; 8];
            tail.copy_from_slice(&digest[8..16]);
            let shard = u64::from_be_bytes(tail) % r.modulus;
            set(labels, r.target_label.clone(), shard.to_string());
            true
        }
        Action::LabelMap => {
            let pairs: Vec<(String, String)> =
                labels.iter().map(|(n, v)| (n.clone(), v.clone())).collect();
            for (name, value) in pairs {
                if let Some(caps) = r.regex.captures(&name) {
                    let mut out = String::new();
                    caps.expand(&r.replacement, &mut out);
                    set(labels, out, value);
                }
            }
            true
        }
        Action::LabelDrop => {
            labels.retain(|n, _| !r.regex.is_match(n));
            true
        }
        Action::LabelKeep => {
            labels.retain(|n, _| r.regex.is_match(n));
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> LabelMap {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    fn rules(toml_text: &str) -> Vec<Rule> {
        #[derive(Deserialize)]
        struct R {
            r: Vec<RelabelConfig>,
        }
        let r: R = toml::from_str(toml_text).unwrap();
        compile_all("relabel_configs", &r.r).unwrap()
    }

    /// Applies the rules to `input` and returns the result, or None when dropped.
    fn check(rules_toml: &str, input: &[(&str, &str)]) -> Option<LabelMap> {
        let mut l = labels(input);
        relabel(&rules(rules_toml), &mut l).then_some(l)
    }

    #[test]
    fn replace_with_defaults_and_groups() {
        let out = check(
            r#"[[r]]
            source_labels = ["__address__"]
            regex = "([^:]+):\\d+"
            target_label = "host"
            replacement = "${1}"
            "#,
            &[("__address__", "node1:9100")],
        );
        assert_eq!(out, Some(labels(&[("__address__", "node1:9100"), ("host", "node1")])));
        // default regex (.*) and replacement $1: a plain copy, joined with ";"
        let out = check(
            r#"[[r]]
            source_labels = ["a", "b"]
            target_label = "ab"
            "#,
            &[("a", "x"), ("b", "y")],
        );
        assert_eq!(out.unwrap()["ab"], "x;y");
        // no match: nothing changes
        let out = check(
            r#"[[r]]
            source_labels = ["a"]
            regex = "z.*"
            target_label = "t"
            "#,
            &[("a", "x")],
        );
        assert_eq!(out, Some(labels(&[("a", "x")])));
        // the regex is anchored: "x" does not match inside "yxy"
        let out = check(
            r#"[[r]]
            source_labels = ["a"]
            regex = "x"
            target_label = "t"
            replacement = "hit"
            "#,
            &[("a", "yxy")],
        );
        assert!(!out.unwrap().contains_key("t"));
        // an empty result deletes the target label
        let out = check(
            r#"[[r]]
            source_labels = ["missing"]
            target_label = "a"
            "#,
            &[("a", "x")],
        );
        assert_eq!(out, Some(LabelMap::new()));
        // a templated target label
        let out = check(
            r#"[[r]]
            source_labels = ["k"]
            regex = "(\\w+)=(\\w+)"
            target_label = "tag_$1"
            replacement = "$2"
            "#,
            &[("k", "env=prod")],
        );
        assert_eq!(out.unwrap()["tag_env"], "prod");
    }

    #[test]
    fn keep_and_drop() {
        let keep = r#"[[r]]
            source_labels = ["__name__"]
            regex = "node_(cpu|load1)"
            action = "keep"
            "#;
        assert!(check(keep, &[("__name__", "node_load1")]).is_some());
        assert!(check(keep, &[("__name__", "node_load15")]).is_none());
        let drop = r#"[[r]]
            source_labels = ["__name__", "mode"]
            regex = "node_cpu;idle"
            action = "drop"
            "#;
        assert!(check(drop, &[("__name__", "node_cpu"), ("mode", "idle")]).is_none());
        assert!(check(drop, &[("__name__", "node_cpu"), ("mode", "user")]).is_some());
    }

    #[test]
    fn hashmod_matches_prometheus_shards() {
        // Prometheus' shard: the last 8 bytes of the MD5 as a big-endian integer, modulo the
        // modulus. Expected values computed independently (Python's hashlib):
        // md5("node1:9100") = 9ac6e2881d97430d 733a520b778e4985, % 10 = 3;
        // md5("") = d41d8cd98f00b204 e9800998ecf8427e
        let rule = |modulus: u64| {
            format!(
                "[[r]]\nsource_labels = [\"a\"]\ntarget_label = \"s\"\nmodulus = {modulus}\naction = \"hashmod\"\n"
            )
        };
        let out = check(&rule(10), &[("a", "node1:9100")]).unwrap();
        assert_eq!(out["s"], "3");
        assert_eq!(0x733a520b778e4985_u64 % 10, 3);
        let out = check(&rule(1_000_000), &[]).unwrap();
        assert_eq!(out["s"], (0xe9800998ecf8427e_u64 % 1_000_000).to_string());
    }

    #[test]
    fn labelmap_labeldrop_labelkeep() {
        let out = check(
            r#"[[r]]
            regex = "__meta_file_(.+)"
            action = "labelmap"
            "#,
            &[("__meta_file_zone", "a"), ("job", "j")],
        );
        assert_eq!(out, Some(labels(&[("__meta_file_zone", "a"), ("job", "j"), ("zone", "a")])));
        let out = check(
            r#"[[r]]
            regex = "tmp_.*"
            action = "labeldrop"
            "#,
            &[("tmp_a", "1"), ("keep", "2")],
        );
        assert_eq!(out, Some(labels(&[("keep", "2")])));
        let out = check(
            r#"[[r]]
            regex = "__name__|job"
            action = "labelkeep"
            "#,
            &[("__name__", "m"), ("job", "j"), ("other", "x")],
        );
        assert_eq!(out, Some(labels(&[("__name__", "m"), ("job", "j")])));
    }

    #[test]
    fn rules_apply_in_order() {
        let out = check(
            r#"[[r]]
            source_labels = ["a"]
            target_label = "b"
            [[r]]
            source_labels = ["b"]
            regex = "x"
            action = "drop"
            "#,
            &[("a", "x")],
        );
        assert!(out.is_none());
    }

    #[test]
    fn invalid_rules_name_the_field() {
        let err = |text: &str| {
            #[derive(Deserialize)]
            struct R {
                r: Vec<RelabelConfig>,
            }
            let r: R = toml::from_str(text).unwrap();
            compile_all("relabel_configs", &r.r).unwrap_err()
        };
        let e = err("[[r]]\nsource_labels = [\"a\"]\nregex = \"(\"\ntarget_label = \"b\"\n");
        assert!(e.starts_with("relabel_configs[0].regex: invalid regular expression \"(\""), "{e}");
        let e = err("[[r]]\nsource_labels = [\"a\"]\n");
        assert_eq!(e, "relabel_configs[0].target_label: the replace action needs a target_label");
        let e = err("[[r]]\naction = \"hashmod\"\ntarget_label = \"s\"\n");
        assert_eq!(e, "relabel_configs[0].modulus: the hashmod action needs a modulus above 0");
        let e = err("[[r]]\naction = \"labeldrop\"\nregex = \"a\"\ntarget_label = \"s\"\n");
        assert_eq!(
            e,
            "relabel_configs[0].target_label: the labeldrop action takes only a regex, not target_label"
        );
        let e = err("[[r]]\nsource_labels = [\"a-b\"]\ntarget_label = \"x\"\n");
        assert_eq!(e, "relabel_configs[0].source_labels: \"a-b\" is not a valid label name");
        let e = err("[[r]]\naction = \"keep\"\n[[r]]\ntarget_label = \"1x\"\n");
        assert_eq!(e, "relabel_configs[1].target_label: \"1x\" is not a valid label name");
    }
}
