//! The engine's answers to what Prometheus' HTTP API needs besides query results: parse errors
//! worded as Prometheus 2.42 words them, `format_query`, and query statistics.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use ocelli_model::{Labels, Matcher, Sample};
use ocelli_promql::{
    Engine, Error, QueryValue, Resolution, Storage, StorageError, format_query, parse,
};

/// Bad queries and the errors a Prometheus 2.42.0 server answered for them
/// (`/api/v1/query?query=...`, less its `invalid parameter "query": ` prefix).
const PROMETHEUS_ERRORS: &[(&str, &str)] = &[
    (r#"sum(rate(x[5m])"#, r#"1:16: parse error: unclosed left parenthesis"#),
    (r#"x +"#, r#"1:4: parse error: unexpected end of input"#),
    (r#"foo{"#, r#"1:5: parse error: unexpected end of input inside braces"#),
    (
        r#"rate(x)"#,
        r#"1:6: parse error: expected type range vector in call to function "rate", got instant vector"#,
    ),
    (r#"1 +* 2"#, r#"1:4: parse error: unexpected <op:*>"#),
    (r#"foo{a="b""#, r#"1:10: parse error: unexpected end of input inside braces"#),
    (r#"foo{a=}"#, r#"1:7: parse error: unexpected "}" in label matching, expected string"#),
    (r#"foo{a=~}"#, r#"1:8: parse error: unexpected "}" in label matching, expected string"#),
    (
        r#"sum(x) by"#,
        r#"1:10: parse error: unexpected end of input in grouping opts, expected "(""#,
    ),
    (
        r#"rate(x[5m)"#,
        r#"1:10: parse error: unexpected ")" in subquery or range, expected ":" or "]""#,
    ),
    (r#"x[5m]]"#, r#"1:6: parse error: unexpected right bracket ']'"#),
    (r#")"#, r#"1:2: parse error: unexpected right parenthesis ')'"#),
    (r#"foo bar"#, r#"1:5: parse error: unexpected identifier "bar""#),
    (r#"sum by (a) x"#, r#"1:12: parse error: unexpected identifier "x" in aggregation"#),
    (r#"foo offset"#, r#"1:11: parse error: unexpected end of input in offset, expected duration"#),
    (r#"foo @"#, r#"1:6: parse error: unexpected end of input in @, expected timestamp"#),
    (r#"1 + "#, r#"1:5: parse error: unexpected end of input"#),
    (r#""unterminated"#, r#"1:1: parse error: unterminated quoted string"#),
    (r#"x[]"#, r#"1:3: parse error: missing unit character in duration"#),
    (r#"abs(x, y)"#, r#"1:1: parse error: expected 1 argument(s) in call to "abs", got 2"#),
    (r#"unknown_fn(x)"#, r#"1:1: parse error: unknown function with name "unknown_fn""#),
    (r#"foo ! bar"#, r#"1:5: parse error: unexpected character after '!': ' '"#),
    (
        r#"x and 1"#,
        r#"1:1: parse error: set operator "and" not allowed in binary scalar expression"#,
    ),
    (r#"sum(x) + by (a) y"#, r#"1:13: parse error: unexpected "(""#),
    (
        r#"x[5m] + 1"#,
        r#"1:1: parse error: binary expression must contain only scalar and instant vector types"#,
    ),
    (r#"rate(x[5m]) +"#, r#"1:14: parse error: unexpected end of input"#),
    (r#"(x + y"#, r#"1:7: parse error: unclosed left parenthesis"#),
    (r#"x + y)"#, r#"1:7: parse error: unexpected right parenthesis ')'"#),
    (r#"{}"#, r#"1:1: parse error: vector selector must contain at least one non-empty matcher"#),
    (r#"x{a!b}"#, r#"1:4: parse error: unexpected character after '!' inside braces: 'b'"#),
    ("1 +\n 2 *", r#"2:5: parse error: unexpected end of input"#),
    (
        "sum(rate(x[5m]))\n+ on(a) foo{",
        r#"2:13: parse error: unexpected end of input inside braces"#,
    ),
    ("foo\n  bar", r#"2:3: parse error: unexpected identifier "bar""#),
    (r#"x =="#, r#"1:5: parse error: unexpected end of input"#),
    (
        r#"avg_over_time(x)"#,
        r#"1:15: parse error: expected type range vector in call to function "avg_over_time", got instant vector"#,
    ),
    (
        r#"label_replace(x, "a")"#,
        r#"1:1: parse error: expected 5 argument(s) in call to "label_replace", got 2"#,
    ),
    (
        r#"topk(x)"#,
        r#"1:1: parse error: wrong number of arguments for aggregate expression provided, expected 2, got 1"#,
    ),
    (
        r#"count_values(1, x)"#,
        r#"1:14: parse error: expected type string in aggregation parameter, got scalar"#,
    ),
    (r#"x @ foo"#, r#"1:5: parse error: unexpected identifier "foo" in @, expected timestamp"#),
    (
        r#"sum(x) without"#,
        r#"1:15: parse error: unexpected end of input in grouping opts, expected "(""#,
    ),
    (r#"abs()"#, r#"1:1: parse error: expected 1 argument(s) in call to "abs", got 0"#),
    (
        r#"x{a}"#,
        r#"1:4: parse error: unexpected "}" in label matching, expected label matching operator"#,
    ),
    (
        r#"x{="a"}"#,
        r#"1:3: parse error: unexpected "=" in label matching, expected identifier or "}""#,
    ),
    (
        r#"x{a="b" c="d"}"#,
        r#"1:9: parse error: unexpected identifier "c" in label matching, expected "," or "}""#,
    ),
    (
        r#"sum by (a b) (x)"#,
        r#"1:11: parse error: unexpected identifier "b" in grouping opts, expected "," or ")""#,
    ),
    (
        r#"x + on(a b) y"#,
        r#"1:10: parse error: unexpected identifier "b" in grouping opts, expected "," or ")""#,
    ),
    (r#"x[5m:1m"#, r#"1:8: parse error: unclosed left bracket"#),
    (r#"foo{a="b"} bar"#, r#"1:12: parse error: unexpected identifier "bar""#),
    (r#"x @ start"#, r#"1:10: parse error: unexpected end of input in @, expected timestamp"#),
    (r#"rate(x[5m]) by (a)"#, r#"1:13: parse error: unexpected <by>"#),
    (r#"sum(x,)"#, r#"1:6: parse error: trailing commas not allowed in function call args"#),
    (
        r#"histogram_quantile(0.9, x[5m])"#,
        r#"1:25: parse error: expected type instant vector in call to function "histogram_quantile", got range vector"#,
    ),
    (
        r#"x offset foo"#,
        r#"1:10: parse error: unexpected identifier "foo" in offset, expected duration"#,
    ),
    (r#"(1 +)"#, r#"1:5: parse error: unexpected ")""#),
    (r#"abs(x) abs(y)"#, r#"1:8: parse error: unexpected identifier "abs""#),
];

#[test]
fn parse_errors_read_as_prometheus_words_them() {
    let mut wrong = Vec::new();
    for (q, want) in PROMETHEUS_ERRORS {
        match parse(q) {
            Err(e @ Error::Parse(_)) => {
                assert_eq!(e.error_type(), "bad_data");
                if e.to_string() != *want {
                    wrong.push(format!("{q:?}\n   got  {e}\n   want {want}"));
                }
            }
            other => wrong.push(format!("{q:?}: {other:?}")),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {}:\n{}",
        wrong.len(),
        PROMETHEUS_ERRORS.len(),
        wrong.join("\n")
    );
}

#[test]
fn known_differences_from_prometheus() {
    // promql-parser reads a duration without unit as seconds; Prometheus 2.42 answers
    // "1:3: parse error: missing unit character in duration"
    assert!(parse("x[5]").is_ok());
}

/// Queries and what Prometheus 2.42.0's `/api/v1/format_query` answered for them.
const PROMETHEUS_FORMATS: &[(&str, &str)] = &[
    ("sum(rate(x[5m]))", "sum(rate(x[5m]))"),
    ("x+y", "x + y"),
    ("-x offset 5m", "-x offset 5m"),
    ("foo[5m:1m] @ 100", "foo[5m:1m] @ 100.000"),
    ("count_values(\"v\", x) without (a,b)", "count_values without (a, b) (\"v\", x)"),
    ("sum(x) by (a)", "sum by (a) (x)"),
    ("x unless on() y", "x unless on () y"),
    ("1e3 + 0x1F + Inf + NaN", "1000 + 31 + +Inf + NaN"),
    ("x @ start()", "x @ start()"),
    (
        "sum by (job) (rate(http_requests_total{job=\"api\",code=~\"5..\"}[5m])) / ignoring(code) group_left sum by (job) (rate(http_requests_total[5m]))",
        "  sum by (job) (rate(http_requests_total{code=~\"5..\",job=\"api\"}[5m]))\n/ ignoring (code) group_left ()\n  sum by (job) (rate(http_requests_total[5m]))",
    ),
    (
        "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket{job=\"apiserver\",verb=~\"LIST|GET\",subresource!=\"log\"}[5m])))",
        "histogram_quantile(\n  0.9,\n  sum by (le) (\n    rate(http_request_duration_seconds_bucket{job=\"apiserver\",subresource!=\"log\",verb=~\"LIST|GET\"}[5m])\n  )\n)",
    ),
];

#[test]
fn format_query_answers_as_prometheus() {
    for (q, want) in PROMETHEUS_FORMATS {
        assert_eq!(format_query(q).unwrap(), *want, "{q}");
    }
    assert_eq!(
        format_query("x +").unwrap_err().to_string(),
        "1:4: parse error: unexpected end of input"
    );
    assert_eq!(format_query("x{Inf=\"Inf\"} - Inf").unwrap(), "x{Inf=\"Inf\"} - +Inf");
}

/// A storage of fixed series.
struct Mem(Vec<(Labels, Vec<Sample>)>);

impl Storage for Mem {
    fn select(
        &self,
        matchers: &[Matcher],
        mint: i64,
        maxt: i64,
    ) -> Result<Vec<(Labels, Vec<Sample>)>, StorageError> {
        Ok(self
            .0
            .iter()
            .filter(|(l, _)| matchers.iter().all(|m| m.matches(l.get(&m.name).unwrap_or(""))))
            .map(|(l, s)| {
                (l.clone(), s.iter().copied().filter(|x| x.t >= mint && x.t <= maxt).collect())
            })
            .collect())
    }
}

/// Two series `x{i="0"}`, `x{i="1"}` with a sample every 10 s from 0 to 600 s (61 each).
fn storage() -> Mem {
    let series = (0..2)
        .map(|i| {
            let l = Labels::from_pairs(vec![
                ("__name__".to_string(), "x".to_string()),
                ("i".to_string(), i.to_string()),
            ])
            .unwrap();
            (l, (0..=60).map(|k| Sample::new(k * 10_000, (k * (i + 1)) as f64)).collect())
        })
        .collect();
    Mem(series)
}

#[test]
fn stats_count_samples_per_step() {
    let e = Engine::default();
    let st = storage();
    // instant selector: one sample per series
    let (v, s) = e.instant_with_stats(&st, "x", 300_000, Resolution::Raw).unwrap();
    assert_eq!(v, e.instant(&st, "x", 300_000).unwrap());
    assert_eq!(s.samples.total_queryable_samples, 2);
    assert_eq!(s.samples.total_queryable_samples_per_step, None);
    assert!(s.samples.peak_samples >= 2);
    // range selector at the top: the samples of the closed window [240 s, 300 s], 7 a series
    let (_, s) = e.instant_with_stats(&st, "x[1m]", 300_000, Resolution::Raw).unwrap();
    assert_eq!(s.samples.total_queryable_samples, 14);
    // rate over a range query of 3 steps: each step's window counted, overlaps included
    let (v, s) =
        e.range_with_stats(&st, "rate(x[1m])", 300_000, 420_000, 60_000, Resolution::Raw).unwrap();
    assert_eq!(v, e.range(&st, "rate(x[1m])", 300_000, 420_000, 60_000).unwrap());
    assert_eq!(s.samples.total_queryable_samples, 42);
    assert_eq!(
        s.samples.total_queryable_samples_per_step,
        Some(vec![(300.0, 14), (360.0, 14), (420.0, 14)])
    );
    // instant selector in a range query: series with a value at each step
    let (v, s) = e.range_with_stats(&st, "sum(x)", 0, 1_200_000, 300_000, Resolution::Raw).unwrap();
    assert_eq!(v, e.range(&st, "sum(x)", 0, 1_200_000, 300_000).unwrap());
    // at 1200 s the newest sample (600 s) is older than the 5 m lookback
    assert_eq!(
        s.samples.total_queryable_samples_per_step,
        Some(vec![(0.0, 2), (300.0, 2), (600.0, 2), (900.0, 2), (1200.0, 0)])
    );
    assert_eq!(s.samples.total_queryable_samples, 8);
    let t = &s.timings;
    assert!(t.exec_total_time >= t.eval_total_time && t.eval_total_time >= t.inner_eval_time);
}

#[test]
fn stats_serialize_with_prometheus_names() {
    let e = Engine::default();
    let (_, s) = e.range_with_stats(&storage(), "x", 0, 10_000, 10_000, Resolution::Raw).unwrap();
    let j = serde_json::to_value(&s).unwrap();
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    let mut timings = keys(&j["timings"]);
    timings.sort();
    assert_eq!(
        timings,
        [
            "evalTotalTime",
            "execQueueTime",
            "execTotalTime",
            "innerEvalTime",
            "queryPreparationTime",
            "resultSortTime"
        ]
    );
    assert_eq!(j["samples"]["totalQueryableSamples"], 4);
    assert_eq!(
        j["samples"]["totalQueryableSamplesPerStep"],
        serde_json::json!([[0.0, 2], [10.0, 2]])
    );
    let (_, s) = e.instant_with_stats(&storage(), "x", 0, Resolution::Raw).unwrap();
    let j = serde_json::to_value(&s).unwrap();
    assert!(j["samples"].get("totalQueryableSamplesPerStep").is_none());
    let _: QueryValue = e.instant(&storage(), "1", 0).unwrap();
}
