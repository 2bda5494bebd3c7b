//! What every fuzz target checks on a successful decode, and the small encoders the targets
//! re-encode with: a decoded result must be valid, and must survive a trip through an encoder
//! and the same (or a second) decoder unchanged.
#![allow(dead_code)] // not every target uses every helper

use std::fmt::Write as _;

use ocelli_wire::remote_write::DecodedSeries;

/// Every label set is valid (metric name present and well formed, label names well formed)
/// and, with `samples`, every series has at least one sample.
pub fn check_valid(series: &[DecodedSeries], samples: bool) {
    for s in series {
        if let Err(e) = s.labels.validate() {
            panic!("invalid label set {}: {e}", s.labels);
        }
        assert!(!samples || !s.samples.is_empty(), "{} has no samples", s.labels);
    }
}

/// The label sets are distinct: a decoder that gathers samples by series never returns one
/// series twice.
pub fn check_distinct(series: &[DecodedSeries]) {
    let mut seen = std::collections::HashSet::new();
    for s in series {
        assert!(seen.insert(&s.labels), "{} returned twice", s.labels);
    }
}

/// `got` equals `want`, values compared by bits; with `any_nan`, every NaN equals every other
/// (for formats with a single NaN).
pub fn assert_same(got: &[DecodedSeries], want: &[DecodedSeries], any_nan: bool) {
    assert_eq!(got.len(), want.len(), "series count");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.labels, w.labels);
        assert_eq!(g.samples.len(), w.samples.len(), "{}", w.labels);
        for (a, b) in g.samples.iter().zip(&w.samples) {
            let same = a.bit_eq(b) || (any_nan && a.t == b.t && a.v.is_nan() && b.v.is_nan());
            assert!(same, "{}: got {a:?}, want {b:?}", w.labels);
        }
    }
}

/// Series as exposition text, one line per sample with its timestamp.
pub fn exposition_text(series: &[DecodedSeries]) -> String {
    let mut out = String::new();
    for s in series {
        let name = s.labels.metric_name().unwrap_or_default();
        let mut labels = String::new();
        for l in s.labels.iter().filter(|l| l.name != "__name__") {
            let v = l.value.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n");
            let _ = write!(labels, "{}=\"{v}\",", l.name);
        }
        for x in &s.samples {
            let _ = writeln!(out, "{name}{{{labels}}} {} {}", ocelli_model::format_value(x.v), x.t);
        }
    }
    out
}

/// Series as JSON lines in the import format, one line per series.
pub fn json_lines(series: &[DecodedSeries]) -> String {
    let mut out = String::new();
    for s in series {
        let metric: serde_json::Map<String, serde_json::Value> =
            s.labels.iter().map(|l| (l.name.clone(), l.value.clone().into())).collect();
        let values: Vec<String> =
            s.samples
                .iter()
                .map(|x| {
                    if x.v.is_finite() {
                        ocelli_model::format_value(x.v)
                    } else {
                        format!("\"{}\"", ocelli_model::format_value(x.v))
                    }
                })
                .collect();
        let ts: Vec<String> = s.samples.iter().map(|x| x.t.to_string()).collect();
        let _ = writeln!(
            out,
            r#"{{"metric":{},"values":[{}],"timestamps":[{}]}}"#,
            serde_json::Value::Object(metric),
            values.join(","),
            ts.join(",")
        );
    }
    out
}
