//! Unit tests of ingest aggregation: rule validation and naming, exact outputs per interval,
//! grouping, late and stale samples, the split of a batch by `keep_input`, and a property test
//! against a plain model of the outputs.

use std::collections::BTreeMap;

use ocelli_model::{Labels, STALE_NAN, Sample};
use ocelli_tsdb::SeriesSamples;
use proptest::prelude::*;

use super::config::{AggregationConfig, compile};
use super::*;

fn entry(selector: &str, interval: &str, outputs: &[&str]) -> AggregationConfig {
    AggregationConfig {
        selector: selector.into(),
        interval: interval.into(),
        outputs: outputs.iter().map(|s| s.to_string()).collect(),
        ..AggregationConfig::default()
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied()).unwrap()
}

fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> SeriesSamples {
    SeriesSamples {
        labels: labels(pairs),
        samples: samples.iter().map(|&(t, v)| Sample::new(t, v)).collect(),
    }
}

/// The outputs as `name{labels} @t` -> value, for exact comparison.
fn outputs(out: &[SeriesSamples]) -> BTreeMap<String, f64> {
    let mut m = BTreeMap::new();
    for s in out {
        for smp in &s.samples {
            assert!(m.insert(format!("{} @{}", s.labels, smp.t), smp.v).is_none());
        }
    }
    m
}

fn aggregator(entries: &[AggregationConfig]) -> Aggregator {
    Aggregator::new(compile(entries).unwrap())
}

#[test]
fn validation_names_entry_and_field() {
    let check = |e: AggregationConfig, want: &str| {
        let err = compile(&[entry("up", "1m", &["sum"]), e]).unwrap_err();
        assert_eq!(err, want);
    };
    check(
        entry("up", "1m", &["median"]),
        "aggregation[1].outputs: \"median\" is not one of min, max, avg, last, sum, count",
    );
    check(
        entry("up", "1m", &[]),
        "aggregation[1].outputs: give at least one of min, max, avg, last, sum, count",
    );
    check(entry("up", "1m", &["sum", "sum"]), "aggregation[1].outputs: \"sum\" is given twice");
    check(
        entry("up", "1 minute", &["sum"]),
        "aggregation[1].interval: invalid duration \"1 minute\" (use e.g. 1m, 30s)",
    );
    check(
        entry("up", "0s", &["sum"]),
        "aggregation[1].interval: invalid duration \"0s\" (use e.g. 1m, 30s)",
    );
    let mut e = entry("up", "1m", &["sum"]);
    e.flush_delay = Some("soon".into());
    check(e, "aggregation[1].flush_delay: invalid duration \"soon\" (use e.g. 5s, 500ms)");
    let mut e = entry("up", "1m", &["sum"]);
    e.by = Some(vec!["a".into()]);
    e.without = Some(vec!["b".into()]);
    check(e, "aggregation[1].by: give either `by` or `without`, not both");
    let mut e = entry("up", "1m", &["sum"]);
    e.by = Some(vec!["1x".into()]);
    check(e, "aggregation[1].by: \"1x\" is not a label name that can be grouped by");
    let mut e = entry("up", "1m", &["sum"]);
    e.without = Some(vec![]);
    check(
        e,
        "aggregation[1].without: give at least one label (leave `without` out to keep all labels)",
    );
    let err = compile(&[entry("rate(up[1m])", "1m", &["sum"])]).unwrap_err();
    assert!(
        err.starts_with("aggregation[0].match: \"rate(up[1m])\" is not a series selector"),
        "{err}"
    );
}

#[test]
fn default_flush_delay() {
    let delay = |i: &str| compile(&[entry("up", i, &["sum"])]).unwrap()[0].delay_ms;
    assert_eq!(delay("1m"), 6_000);
    assert_eq!(delay("5s"), 1_000);
    assert_eq!(delay("500ms"), 500);
    assert_eq!(delay("1h"), 360_000);
}

#[test]
fn exact_outputs_per_interval_with_names() {
    let mut e =
        entry("{__name__=~\"cpu_.*\"}", "1m", &["min", "max", "avg", "last", "sum", "count"]);
    e.flush_delay = Some("5s".into());
    let agg = aggregator(&[e]);
    let now = 60_000;
    let s = series(
        &[("__name__", "cpu_usage"), ("host", "a")],
        // interval [60s, 120s): 3, 1, 8 (last by timestamp is 8 at 119s, though 1 came later)
        &[(60_000, 3.0), (119_000, 8.0), (61_000, 1.0), (120_000, 10.0), (130_000, STALE_NAN)],
    );
    let (store, pending) =
        agg.split(vec![s, series(&[("__name__", "mem"), ("host", "a")], &[(60_000, 1.0)])]);
    assert_eq!(store.len(), 1, "only the unmatched series is stored raw");
    assert_eq!(store[0].labels.metric_name(), Some("mem"));
    agg.feed(pending, now);
    assert!(agg.flush(124_999, false).is_empty(), "not due before end + delay");
    let got = outputs(&agg.flush(125_000, false));
    let want: BTreeMap<String, f64> =
        [("min", 1.0), ("max", 8.0), ("avg", 4.0), ("last", 8.0), ("sum", 12.0), ("count", 3.0)]
            .into_iter()
            .map(|(o, v)| (format!("cpu_usage:1m_{o}{{host=\"a\"}} @120000"), v))
            .collect();
    assert_eq!(got, want);
    // the next interval holds 10 only (the stale marker is skipped); closed at shutdown
    let got = outputs(&agg.flush(125_000, true));
    assert_eq!(got.len(), 6);
    assert_eq!(got["cpu_usage:1m_count{host=\"a\"} @180000"], 1.0);
    assert_eq!(got["cpu_usage:1m_avg{host=\"a\"} @180000"], 10.0);
    assert_eq!(agg.input.load(Ordering::Relaxed), 4);
}

#[test]
fn by_and_without_group_and_name() {
    let mut by = entry("{__name__=\"req\"}", "10s", &["sum"]);
    by.by = Some(vec!["job".into()]);
    by.keep_input = true;
    let mut without = entry("req", "10s", &["count"]);
    without.without = Some(vec!["instance".into(), "code".into()]);
    let agg = aggregator(&[by, without]);
    let batch = vec![
        series(
            &[("__name__", "req"), ("job", "a"), ("instance", "1"), ("code", "200")],
            &[(0, 1.0)],
        ),
        series(
            &[("__name__", "req"), ("job", "a"), ("instance", "2"), ("code", "500")],
            &[(5, 2.0)],
        ),
        series(
            &[("__name__", "req"), ("job", "b"), ("instance", "1"), ("code", "200")],
            &[(9_999, 4.0)],
        ),
    ];
    let (store, pending) = agg.split(batch);
    assert_eq!(store.len(), 3, "one matching rule keeps input");
    agg.feed(pending, 0);
    let got = outputs(&agg.flush(i64::MAX, false));
    let want: BTreeMap<String, f64> = [
        ("req:10s_by_job_sum{job=\"a\"} @10000", 3.0),
        ("req:10s_by_job_sum{job=\"b\"} @10000", 4.0),
        ("req:10s_without_code_instance_count{job=\"a\"} @10000", 2.0),
        ("req:10s_without_code_instance_count{job=\"b\"} @10000", 1.0),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(got, want);
}

#[test]
fn late_samples_are_dropped_and_counted() {
    let mut e = entry("up", "10s", &["count"]);
    e.flush_delay = Some("2s".into());
    let agg = aggregator(&[e]);
    let up = |t: i64| series(&[("__name__", "up")], &[(t, 1.0)]);
    // at 12s, [0, 10s) is due: late even before a flush closed it
    let (_, p) = agg.split(vec![up(9_000), up(11_000)]);
    agg.feed(p, 12_000);
    assert_eq!(agg.late.load(Ordering::Relaxed), 1);
    assert_eq!(outputs(&agg.flush(22_000, false)).len(), 1);
    // a clock that went back does not reopen a closed interval
    let (_, p) = agg.split(vec![up(15_000)]);
    agg.feed(p, 0);
    assert_eq!(agg.late.load(Ordering::Relaxed), 2);
    assert!(agg.flush(i64::MAX, true).is_empty());
    let mut text = String::new();
    agg.write_metrics(&mut text);
    assert!(
        text.contains("ocelli_aggregation_dropped_samples_total{reason=\"late\"} 2\n"),
        "{text}"
    );
    assert!(text.contains("ocelli_aggregation_input_samples_total 1\n"), "{text}");
}

#[test]
fn no_rules_pass_everything_through() {
    let agg = Aggregator::default();
    assert!(agg.is_empty());
    let (store, pending) = agg.split(vec![series(&[("__name__", "up")], &[(0, 1.0)])]);
    assert_eq!(store.len(), 1);
    assert!(pending.is_empty());
}

/// The model: per (output labels, interval start), the samples in arrival order.
fn model(rule: &Rule, input: &[(usize, i64, f64)], names: &[Labels]) -> BTreeMap<String, f64> {
    let mut groups: BTreeMap<(String, i64, Labels), Vec<(i64, f64)>> = BTreeMap::new();
    for &(s, t, v) in input {
        let key = rule.output_labels(&names[s]);
        let start = t.div_euclid(rule.interval_ms) * rule.interval_ms;
        groups.entry((key.to_string(), start, key)).or_default().push((t, v));
    }
    let mut out = BTreeMap::new();
    for ((_, start, key), vals) in groups {
        let end = start + rule.interval_ms;
        let mut sum = 0.0;
        for &(_, v) in &vals {
            sum += v;
        }
        let mut last = vals[0];
        for &x in &vals {
            if x.0 >= last.0 {
                last = x;
            }
        }
        let min = vals.iter().map(|x| x.1).fold(f64::INFINITY, f64::min);
        let max = vals.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max);
        for &o in &rule.outputs {
            let v = match o {
                Output::Min => min,
                Output::Max => max,
                Output::Sum => sum,
                Output::Count => vals.len() as f64,
                Output::Avg => sum / vals.len() as f64,
                Output::Last => last.1,
            };
            let name = rule.output_name(key.metric_name().unwrap(), o);
            let pairs: Vec<_> = key
                .iter()
                .map(|l| {
                    if l.name == "__name__" {
                        (l.name.as_str(), name.as_str())
                    } else {
                        (l.name.as_str(), l.value.as_str())
                    }
                })
                .collect();
            out.insert(format!("{} @{end}", Labels::from_pairs(pairs).unwrap()), v);
        }
    }
    out
}

use super::config::Output;

proptest! {
    #[test]
    fn matches_a_plain_model(
        input in prop::collection::vec((0usize..6, -5_000i64..50_000, -1e6f64..1e6), 1..200),
        grouping in 0u8..3,
        batches in 1usize..5,
    ) {
        let mut e = entry("{__name__=~\"m.*\"}", "7s", &["min", "max", "avg", "last", "sum", "count"]);
        match grouping {
            1 => e.by = Some(vec!["a".into()]),
            2 => e.without = Some(vec!["a".into()]),
            _ => {}
        }
        let agg = aggregator(&[e]);
        let names: Vec<Labels> = (0..6)
            .map(|i| labels(&[("__name__", ["m1", "m2"][i % 2]), ("a", ["x", "y", "z"][i % 3]), ("b", &i.to_string())]))
            .collect();
        // fed in several batches, each a series per input entry, in input order
        for chunk in input.chunks(input.len().div_ceil(batches)) {
            let batch = chunk.iter().map(|&(s, t, v)| SeriesSamples { labels: names[s].clone(), samples: vec![Sample::new(t, v)] }).collect();
            let (store, pending) = agg.split(batch);
            prop_assert!(store.is_empty());
            agg.feed(pending, i64::MIN);
        }
        let got = outputs(&agg.flush(i64::MAX, false));
        let want = model(&agg.rules[0], &input, &names);
        prop_assert_eq!(got, want);
    }
}

#[test]
fn raw_batches_report_original_indices_and_feed_only_when_stored() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ocelli_tsdb::Options { background: false, ..Default::default() };
    let (db, _) = ocelli_tsdb::Db::open(dir.path(), opts).unwrap();
    let agg = aggregator(&[entry("cpu", "1h", &["count"])]);
    let smp = [Sample::new(1_000, 1.0)];
    let cpu: &[(&[u8], &[u8])] = &[(b"__name__", b"cpu"), (b"host", b"a")];
    let bad_cpu: &[(&[u8], &[u8])] = &[(b"1x", b"y"), (b"__name__", b"cpu")];
    let mem: &[(&[u8], &[u8])] = &[(b"__name__", b"mem")];
    let bad_mem: &[(&[u8], &[u8])] = &[(b"1x", b"y"), (b"__name__", b"mem")];
    let raw = |l| RawSeries { labels: l, samples: &smp };
    // an invalid consumed series, at index 1
    let e = agg.append_raw(&db, &[raw(cpu), raw(bad_cpu)], 0).unwrap_err();
    assert!(matches!(e, ocelli_tsdb::Error::InvalidLabels { index: 1, .. }), "{e}");
    // an invalid stored series after a consumed one: index 2 in the request, 1 in storage's batch
    let e = agg.append_raw(&db, &[raw(mem), raw(cpu), raw(bad_mem)], 0).unwrap_err();
    assert!(matches!(e, ocelli_tsdb::Error::InvalidLabels { index: 2, .. }), "{e}");
    assert_eq!(agg.input.load(Ordering::Relaxed), 0, "rejected batches feed nothing");
    assert!(
        db.select(&[ocelli_model::Matcher::equal("__name__", "mem")], 0, i64::MAX)
            .unwrap()
            .is_empty()
    );
    agg.append_raw(&db, &[raw(mem), raw(cpu)], 0).unwrap();
    assert_eq!(agg.input.load(Ordering::Relaxed), 1);
    agg.flush_into(&db, i64::MAX, false);
    let out = db
        .select(&[ocelli_model::Matcher::equal("__name__", "cpu:1h_count")], 0, i64::MAX)
        .unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].samples, vec![Sample::new(3_600_000, 1.0)]);
    assert!(
        db.select(&[ocelli_model::Matcher::equal("__name__", "cpu")], 0, i64::MAX)
            .unwrap()
            .is_empty()
    );
    assert_eq!(agg.output.load(Ordering::Relaxed), 1);
}

/// `[[aggregation]]` as the server's config file holds it (the server's own test checks the
/// whole file's errors, which name the file).
fn section(text: &str) -> Result<Vec<AggregationConfig>, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        aggregation: Vec<AggregationConfig>,
    }
    let f: File = toml::from_str(text).map_err(|e| e.to_string())?;
    compile(&f.aggregation)?;
    Ok(f.aggregation)
}

#[test]
fn config_file_section() {
    let text = "[[aggregation]]\nmatch = '{__name__=~\"node_cpu_.*\"}'\ninterval = \"1m\"\n\
                outputs = [\"avg\", \"max\"]\nby = [\"instance\"]\n";
    let c = section(text).unwrap();
    assert_eq!(c.len(), 1);
    let rules = compile(&c).unwrap();
    assert_eq!(
        rules[0].output_name("node_cpu_seconds_total", Output::Avg),
        "node_cpu_seconds_total:1m_by_instance_avg"
    );
    assert!(!rules[0].keep_input);
    let e = section(&text.replace("\"max\"", "\"median\"")).unwrap_err();
    assert_eq!(
        e,
        "aggregation[0].outputs: \"median\" is not one of min, max, avg, last, sum, count"
    );
    let e = section(&format!("{text}bogus = 1\n")).unwrap_err();
    assert!(e.contains("unknown field `bogus`"), "{e}");
}

#[test]
fn the_commented_example_is_valid() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/server.example.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let start = text.find("# [[aggregation]]").unwrap();
    let text: String = text[start..]
        .lines()
        .take_while(|l| !l.is_empty())
        .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(l.trim_start_matches('#'))))
        .collect();
    let c = section(&text).unwrap();
    let rules = compile(&c).unwrap();
    assert_eq!(rules[0].outputs, vec![Output::Avg, Output::Max]);
    assert_eq!(rules[0].delay_ms, 6_000);
    assert_eq!(rules[0].output_name("node_cpu_x", Output::Max), "node_cpu_x:1m_by_instance_max");
}

#[test]
fn open_groups_are_capped_per_rule() {
    let mut e = entry("up", "10s", &["count"]);
    e.max_series = Some(2);
    let agg = aggregator(&[e]);
    let up = |i: &str, t: i64| series(&[("__name__", "up"), ("i", i)], &[(t, 1.0)]);
    // 2 groups in [0, 10s); a third there and one in [10s, 20s) are refused; known ones grow
    let (_, p) = agg.split(vec![up("a", 0), up("b", 1), up("c", 2), up("a", 3), up("a", 10_000)]);
    agg.feed(p, 0);
    assert_eq!(agg.full.load(Ordering::Relaxed), 2);
    let got = outputs(&agg.flush(i64::MAX, false));
    assert_eq!(got["up:10s_count{i=\"a\"} @10000"], 2.0);
    assert_eq!(got.len(), 2);
    // closing frees the room
    let (_, p) = agg.split(vec![up("c", 20_000)]);
    agg.feed(p, 0);
    assert_eq!(outputs(&agg.flush(i64::MAX, true)).len(), 1);
    let mut e = entry("up", "10s", &["count"]);
    e.max_series = Some(0);
    assert_eq!(compile(&[e]).unwrap_err(), "aggregation[0].max_series: must be at least 1");
}
