#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::fmt::Write as _;

use proptest::prelude::*;

use super::*;

/// Decodes `input` and compares against `want`: one line per series, its labels then
/// `value@ms` for each sample.
fn check(input: &str, want: &str) {
    let got =
        decode(input.as_bytes(), &Limits::default()).unwrap_or_else(|e| panic!("{input:?}: {e}"));
    let mut text = String::new();
    crate::text::render(&got, &mut text);
    crate::text::assert_golden(&text, want, input);
}

#[test]
fn golden() {
    #[rustfmt::skip]
    let cases: &[(&str, &str)] = &[
        // the format's own example
        (r#"{"metric":{"__name__":"x","job":"j"},"values":[1,2],"timestamps":[1700000000000,1700000010000]}"#,
            r#"x{job="j"} 1.0@1700000000000 2.0@1700000010000"#),
        // every kind of value; members in any order; blanks anywhere JSON allows them
        (r#" { "timestamps" : [1,2,3,4,5,6,7,8] , "values" : ["NaN","Inf","+Inf","-Inf",-0.0,1e3,18446744073709551615,-7] , "metric" : {"__name__":"m"} } "#,
            "m{} NaN@1 inf@2 inf@3 -inf@4 -0.0@5 1000.0@6 1.8446744073709552e19@7 -7.0@8"),
        // lines of one label set are gathered, in body order, whatever the label order;
        // blank lines and CRLF line ends
        ("{\"metric\":{\"__name__\":\"a\",\"x\":\"1\",\"y\":\"2\"},\"values\":[1],\"timestamps\":[10]}\r\n\
          \n  \t\r\n\
          {\"metric\":{\"__name__\":\"b\"},\"values\":[2],\"timestamps\":[20]}\n\
          {\"metric\":{\"y\":\"2\",\"__name__\":\"a\",\"x\":\"1\"},\"values\":[3],\"timestamps\":[5]}\n", r#"
            a{x="1", y="2"} 1.0@10 3.0@5
            b{} 2.0@20"#),
        // empty label values are dropped; escapes and UTF-8 in values; colons in metric names
        (r#"{"metric":{"__name__":"job:rate5m","env":"","v":"ü\"\\\n\u00e9"},"values":[1],"timestamps":[-1]}"#,
            r#"job:rate5m{v="ü\"\\\né"} 1.0@-1"#),
        // no samples: nothing to store
        (r#"{"metric":{"__name__":"m"},"values":[],"timestamps":[]}"#, ""),
        ("", ""),
        // integer timestamps at the ends of i64
        (r#"{"metric":{"__name__":"m"},"values":[1,2],"timestamps":[-9223372036854775808,9223372036854775807]}"#,
            "m{} 1.0@-9223372036854775808 2.0@9223372036854775807"),
    ];
    for &(input, want) in cases {
        check(input, want);
    }
}

fn error(input: &str) -> String {
    match decode(input.as_bytes(), &Limits::default()) {
        Ok(s) => panic!("{input:?} decoded to {s:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn errors() {
    let ok = r#"{"metric":{"__name__":"m"},"values":[1],"timestamps":[1]}"#;
    #[rustfmt::skip]
    let cases: &[(&str, &str)] = &[
        (&format!("{ok}\n{ok}\n\n{{\"metric\":{{\"__name__\":\"m\",\"1a\":\"x\"}},\"values\":[1],\"timestamps\":[1]}}"),
            r#"line 4, column 30: invalid label name "1a""#),
        (r#"{"metric":{"__name__":"1m"},"values":[1],"timestamps":[1]}"#,
            r#"line 1, column 27: invalid metric name "1m""#),
        (r#"{"metric":{"__name__":""},"values":[1],"timestamps":[1]}"#,
            r#"line 1, column 25: invalid metric name """#),
        (r#"{"metric":{"job":"x"},"values":[1],"timestamps":[1]}"#,
            "line 1, column 21: label set has no __name__ label"),
        (r#"{"metric":{"__name__":"m","a":"1","a":"2"},"values":[1],"timestamps":[1]}"#,
            r#"line 1, column 37: duplicate label name "a""#),
        (r#"{"metric":{"__name__":"m","a":1},"values":[1],"timestamps":[1]}"#,
            "line 1, column 31: invalid type: integer `1`, expected a string"),
        (r#"{"metric":{"__name__":"m"},"values":[1,2],"timestamps":[1]}"#,
            r#"line 1, column 59: "values" has 2 elements but "timestamps" has 1"#),
        (r#"{"metric":{"__name__":"m"},"values":[1,"inf"],"timestamps":[1,2]}"#,
            r#"line 1, column 44: invalid value: string "inf", expected a number or one of "NaN", "Inf", "+Inf", "-Inf""#),
        (r#"{"metric":{"__name__":"m"},"values":[null],"timestamps":[1]}"#,
            r#"line 1, column 41: invalid type: null, expected a number or one of "NaN", "Inf", "+Inf", "-Inf""#),
        (r#"{"metric":{"__name__":"m"},"values":[1e400],"timestamps":[1]}"#,
            "line 1, column 42: number out of range"),
        (r#"{"metric":{"__name__":"m"},"values":[1],"timestamps":[1.5]}"#,
            "line 1, column 57: invalid type: floating point `1.5`, expected an integer timestamp in milliseconds"),
        (r#"{"metric":{"__name__":"m"},"values":[1],"timestamps":[9223372036854775808]}"#,
            "line 1, column 73: invalid value: integer `9223372036854775808`, expected an integer timestamp in milliseconds"),
        (r#"{"metric":{"__name__":"m"},"values":[1],"timestamp":[1]}"#,
            "line 1, column 51: unknown field `timestamp`, expected one of `metric`, `values`, `timestamps`"),
        (r#"{"metric":{"__name__":"m"},"values":[1]}"#,
            "line 1, column 40: missing field `timestamps`"),
        (r#"{"metric":{"__name__":"m"},"values":[1],"values":[1],"timestamps":[1]}"#,
            "line 1, column 48: duplicate field `values`"),
        (r#"{"metric":{"__name__":"m"},"values":[1],"timestamps":[1]} x"#,
            "line 1, column 59: trailing characters"),
        (r#"{"metric":{"__name__":"m"},"values":[1],"timestamps":[1]}{}"#,
            "line 1, column 58: trailing characters"),
        (r#"{"metric":{"__name__":"m"},"values":[1],"#, "line 1, column 40: EOF while parsing a value"),
        ("[1,2]", r#"line 1, column 1: invalid type: sequence, expected an object with "metric", "values" and "timestamps""#),
        ("x", "line 1, column 1: expected value"),
    ];
    crate::text::assert_errors(cases, error);
}

#[test]
fn invalid_utf8() {
    let body =
        b"{\"metric\":{\"__name__\":\"m\",\"a\":\"\xff\"},\"values\":[1],\"timestamps\":[1]}";
    assert_eq!(
        decode(body, &Limits::default()).unwrap_err().to_string(),
        "line 1, column 32: invalid unicode code point"
    );
}

#[test]
fn limits() {
    let line = r#"{"metric":{"__name__":"m"},"values":[1,2],"timestamps":[1,2]}"#;
    let body = format!("{line}\n{line}\n");
    let limits = Limits { max_body_bytes: body.len() - 1, max_samples: 10 };
    assert_eq!(
        decode(body.as_bytes(), &limits).unwrap_err().to_string(),
        format!(
            "JSON import body is {} bytes, over the limit of {} bytes",
            body.len(),
            body.len() - 1
        )
    );
    let limits = Limits { max_body_bytes: body.len(), max_samples: 4 };
    assert_eq!(decode(body.as_bytes(), &limits).unwrap()[0].samples.len(), 4);
    let limits = Limits { max_body_bytes: body.len(), max_samples: 3 };
    assert_eq!(
        decode(body.as_bytes(), &limits).unwrap_err().to_string(),
        "line 2: more than the limit of 3 samples"
    );
}

/// The tiny encoder the round trip goes through: one line per series.
fn encode(series: &[DecodedSeries]) -> String {
    let mut out = String::new();
    for s in series {
        let metric: serde_json::Map<String, serde_json::Value> =
            s.labels.iter().map(|l| (l.name.clone(), l.value.clone().into())).collect();
        let values: Vec<String> = s
            .samples
            .iter()
            .map(|x| match x.v {
                v if v.is_nan() => "\"NaN\"".to_owned(),
                f64::INFINITY => "\"+Inf\"".to_owned(),
                f64::NEG_INFINITY => "\"-Inf\"".to_owned(),
                v => format!("{v:?}"),
            })
            .collect();
        let timestamps: Vec<String> = s.samples.iter().map(|x| x.t.to_string()).collect();
        writeln!(
            out,
            r#"{{"metric":{},"values":[{}],"timestamps":[{}]}}"#,
            serde_json::Value::Object(metric),
            values.join(","),
            timestamps.join(",")
        )
        .unwrap();
    }
    out
}

fn arb_series() -> impl Strategy<Value = DecodedSeries> {
    let value = prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY), Just(-0.0)];
    crate::series::testing::arb_series(
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}",
        "[a-zA-Z_][a-zA-Z0-9_]{0,8}",
        any::<i64>(),
        value,
    )
}

/// Equal by bits, except that every NaN is the same value (the format has one NaN).
fn same(got: &[DecodedSeries], want: &[DecodedSeries]) -> bool {
    crate::series::testing::same(got, want, true)
}

proptest! {
    #[test]
    fn round_trip(mut want in prop::collection::vec(arb_series(), 0..6)) {
        // one line per label set; a repeated set would be gathered
        want.sort_by(|a, b| a.labels.cmp(&b.labels));
        want.dedup_by(|a, b| a.labels == b.labels);
        let body = encode(&want);
        let got = decode(body.as_bytes(), &Limits::default())
            .map_err(|e| TestCaseError::fail(format!("{body:?}: {e}")))?;
        prop_assert!(same(&got, &want), "{body:?}\ngot {got:?}");
    }

    #[test]
    fn random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode(&body, &Limits::default());
    }

    #[test]
    fn near_miss_text_never_panics_and_yields_valid_series(
        body in concat!(
            r#"\{("metric":\{("__name__":"[a-c1]{0,2}",?|"[a-c_1]{0,2}":"[a-c]{0,2}",?){0,3}\},?"#,
            r#"|"values":\[(([0-9.e+-]{1,4}|"[NaIf+-]{0,4}"|null),?){0,3}\],?"#,
            r#"|"timestamps":\[([0-9.-]{1,4},?){0,3}\],?|[ \n:,]){0,6}\}"#,
        ),
    ) {
        if let Ok(series) = decode(body.as_bytes(), &Limits::default()) {
            for s in series {
                prop_assert!(s.labels.validate().is_ok(), "{}", s.labels);
                prop_assert!(!s.samples.is_empty());
            }
        }
    }
}
