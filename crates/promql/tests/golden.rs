//! Data-driven golden tests of the evaluator: `testdata/*.test` scripts load series and state
//! what queries must return, in the spirit of Prometheus' promqltest (our own scripts and
//! runner). Commands:
//!
//! - `load <interval>` then indented lines `<series> <values>`: values are numbers, `_` (no
//!   sample), `stale`, and `a+bxN` / `a-bxN` (N+1 values from a, stepping by b).
//! - `eval instant at <time> <expr>` then indented `<labels> <value>` lines, or `scalar <v>` /
//!   `string <s>`; an empty list means an empty result. Order does not matter, unless the
//!   command is `eval_ordered`.
//! - `eval range from <t> to <t> step <d> <expr>` then indented `<labels> <values>` lines.
//! - `eval_fail instant at <time> <expr>` then optionally one indented line: a substring of
//!   the error.
//! - `clear` drops all loaded data.
//!
//! Times and durations are Prometheus durations from zero (`5m`, `1h30m`, `0`).
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod common;

use std::collections::BTreeMap;

use ocelli_model::{Labels, Matcher, STALE_NAN, Sample};
use ocelli_promql::{Engine, Options, QueryValue, Storage};

#[derive(Default)]
struct Mem(BTreeMap<Labels, Vec<Sample>>);

impl Storage for Mem {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>, ocelli_promql::StorageError> {
        Ok(common::select(&self.0, matchers, mint, maxt))
    }
}

fn duration(s: &str) -> i64 {
    if s == "0" {
        return 0;
    }
    let mut total = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest.bytes().take_while(u8::is_ascii_digit).count();
        let v: i64 = rest[..n].parse().unwrap_or_else(|_| panic!("bad duration {s}"));
        rest = &rest[n..];
        let u = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        total += v * match &rest[..u] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            x => panic!("bad unit {x} in {s}"),
        };
        rest = &rest[u..];
    }
    total
}

/// Parses `name{a="b"}` or `{a="b"}` into labels.
fn parse_labels(s: &str) -> Labels {
    let (name, rest) = match s.find('{') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    if !name.is_empty() {
        pairs.push(("__name__".into(), name.into()));
    }
    let inner = rest.trim_start_matches('{').trim_end_matches('}');
    let mut chars = inner.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "bad labels {s}");
        let mut val = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => val.push(chars.next().unwrap()),
                '"' => break,
                c => val.push(c),
            }
        }
        pairs.push((key.trim().trim_start_matches(',').trim().to_string(), val));
        while chars.peek().is_some_and(|c| *c == ',' || *c == ' ') {
            chars.next();
        }
    }
    Labels::from_pairs(pairs).unwrap()
}

/// Splits `labels values...` where labels may contain spaces inside quotes.
fn split_series(line: &str) -> (&str, &str) {
    let mut in_q = false;
    let mut depth = 0;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_q = !in_q,
            '{' if !in_q => depth += 1,
            '}' if !in_q => depth -= 1,
            ' ' if !in_q && depth == 0 => return (&line[..i], line[i..].trim()),
            _ => {}
        }
    }
    (line, "")
}

fn value(s: &str) -> f64 {
    match s {
        "NaN" => f64::NAN,
        "Inf" | "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "stale" => STALE_NAN,
        s => s.parse().unwrap_or_else(|_| panic!("bad value {s}")),
    }
}

/// Expands series notation into optional values.
fn values(s: &str) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for tok in s.split_whitespace() {
        if tok == "_" {
            out.push(None);
        } else if let Some((head, n)) = tok.split_once('x') {
            let n: usize = n.parse().unwrap();
            let pos = head[1..].find(['+', '-']).map(|p| p + 1).unwrap();
            let (a, b) = head.split_at(pos);
            let (a, b) = (value(a), value(b));
            for k in 0..=n {
                out.push(Some(a + b * k as f64));
            }
        } else {
            out.push(Some(value(tok)));
        }
    }
    out
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-6 * a.abs().max(b.abs())
}

fn check(file: &str, lineno: usize, cmd: &str, got: &QueryValue, expect: &[String], ordered: bool) {
    let ctx = format!("{file}:{lineno}: {cmd}");
    match got {
        QueryValue::Scalar(_, v) => {
            assert_eq!(expect.len(), 1, "{ctx}: got scalar {v}");
            let e = expect[0]
                .strip_prefix("scalar ")
                .unwrap_or_else(|| panic!("{ctx}: got scalar {v}"));
            assert!(same(*v, value(e)), "{ctx}: got scalar {v}, want {e}");
        }
        QueryValue::String(_, s) => {
            assert_eq!(expect, [format!("string {s}")], "{ctx}");
        }
        QueryValue::Vector(vs) => {
            let want: Vec<(Labels, f64)> = expect
                .iter()
                .map(|l| {
                    let (ls, v) = split_series(l);
                    (parse_labels(ls), value(v))
                })
                .collect();
            assert_eq!(vs.len(), want.len(), "{ctx}: got {vs:?}");
            for (k, (l, v)) in want.iter().enumerate() {
                let hit = if ordered {
                    (vs[k].0 == *l).then_some(&vs[k])
                } else {
                    vs.iter().find(|x| x.0 == *l)
                };
                let hit = hit.unwrap_or_else(|| panic!("{ctx}: no {l} in {vs:?}"));
                assert!(same(hit.2, *v), "{ctx}: {l} = {}, want {v}", hit.2);
            }
        }
        QueryValue::Matrix(ms) => {
            assert_eq!(ms.len(), expect.len(), "{ctx}: got {ms:?}");
            for line in expect {
                let (ls, vs) = split_series(line);
                let l = parse_labels(ls);
                let series = ms
                    .iter()
                    .find(|x| x.0 == l)
                    .unwrap_or_else(|| panic!("{ctx}: no {l} in {ms:?}"));
                let want: Vec<Option<f64>> = values(vs);
                let got: Vec<f64> = series.1.iter().map(|s| s.v).collect();
                let want_present: Vec<f64> = want.iter().flatten().copied().collect();
                assert_eq!(got.len(), want_present.len(), "{ctx}: {l}: got {got:?}, want {want:?}");
                for (g, w) in got.iter().zip(&want_present) {
                    assert!(same(*g, *w), "{ctx}: {l}: got {got:?}, want {want:?}");
                }
            }
        }
    }
}

fn run_file(path: &std::path::Path) -> usize {
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let engine = Engine::new(Options::default());
    let mut mem = Mem::default();
    let mut i = 0;
    let mut evals = 0;
    while i < lines.len() {
        let line = lines[i].trim_end();
        let lineno = i + 1;
        i += 1;
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let mut body: Vec<String> = Vec::new();
        while i < lines.len() && lines[i].starts_with(' ') && !lines[i].trim().is_empty() {
            body.push(lines[i].trim().to_string());
            i += 1;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[0] {
            "clear" => mem = Mem::default(),
            "load" => {
                let step = duration(words[1]);
                for b in &body {
                    let (ls, vs) = split_series(b);
                    let e = mem.0.entry(parse_labels(ls)).or_default();
                    for (k, v) in values(vs).into_iter().enumerate() {
                        if let Some(v) = v {
                            e.push(Sample::new(k as i64 * step, v));
                        }
                    }
                }
            }
            "eval" | "eval_ordered" | "eval_fail" => {
                evals += 1;
                let ordered = words[0] == "eval_ordered";
                let result = if words[1] == "instant" {
                    assert_eq!(words[2], "at", "{name}:{lineno}");
                    let t = duration(words[3]);
                    let expr = line.splitn(5, ' ').nth(4).unwrap();
                    engine.instant(&mem, expr, t)
                } else {
                    // eval range from A to B step S expr
                    let (a, b, s) = (duration(words[3]), duration(words[5]), duration(words[7]));
                    let expr = line.splitn(9, ' ').nth(8).unwrap();
                    engine.range(&mem, expr, a, b, s)
                };
                if words[0] == "eval_fail" {
                    let err = match result {
                        Err(e) => e.to_string(),
                        Ok(v) => panic!("{name}:{lineno}: expected an error, got {v:?}"),
                    };
                    if let Some(want) = body.first() {
                        assert!(
                            err.contains(want.as_str()),
                            "{name}:{lineno}: error {err:?} lacks {want:?}"
                        );
                    }
                } else {
                    let v = result.unwrap_or_else(|e| panic!("{name}:{lineno}: {line}: {e}"));
                    check(&name, lineno, line, &v, &body, ordered);
                }
            }
            other => panic!("{name}:{lineno}: unknown command {other}"),
        }
    }
    evals
}

#[test]
fn golden_scripts() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut total = 0;
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "test")) {
        total += run_file(f);
    }
    assert!(total >= 100, "only {total} evaluations ran");
}
