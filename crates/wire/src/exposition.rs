//! The Prometheus text exposition format (version 0.0.4, what `/metrics` endpoints serve and
//! what `promtool` and push gateways accept), decoded into the same [`DecodedSeries`] as
//! remote_write, plus the `HELP`/`TYPE`/`UNIT` metadata of each metric family.
//!
//! [`decode`] takes an uncompressed body: decompression, content negotiation and status codes
//! are the server's job, and storing the result is the storage engine's. A body is UTF-8 text,
//! one item per line:
//!
//! - `# HELP name text` (in the text, `\\` is one backslash and `\n` a newline; any other
//!   backslash is kept), `# TYPE name type` and, from OpenMetrics, `# UNIT name unit`. A family
//!   may have each of these at most once. Types: `counter`, `gauge`, `histogram`, `summary`,
//!   `untyped` and OpenMetrics' `info`, `stateset`, `gaugehistogram` and `unknown`. Any other
//!   line whose first non-blank character is `#` is a comment; so are blank lines.
//! - `name{label="value",...} value [timestamp]`. The label set may be absent or empty and may
//!   end with a comma; spaces and tabs may separate any two tokens. Label values are
//!   double-quoted with the escapes `\\`, `\"` and `\n`; any other escape is an error. The value
//!   is a float in decimal notation (`1`, `-1.5e3`, `.5`, a leading `+` allowed) or `NaN`,
//!   `Inf`, `+Inf`, `-Inf` (case-insensitive, as Go's parser has it, and `Infinity`); one that
//!   overflows an `f64` is an error. The timestamp is integer milliseconds; without one a sample gets the
//!   caller's `default_ts_ms`.
//! - A `\r` before the `\n` is dropped; lines may start with blanks.
//!
//! OpenMetrics bodies are tolerated: `# EOF` ends the body and anything after its line is an
//! error; an exemplar (` # {labels} value [timestamp]` after the sample) is skipped, checked
//! only for its opening `{`; `_created`, `_total`, `_bucket`... series are kept as ordinary
//! series. A metric name may also be given as the first, quoted, item of the label set
//! (`{"http_requests_total",code="200"}`, and a label name may be quoted too), but only when the
//! quoted name is a valid classic name: names needing UTF-8 support are refused with an error
//! that says so.
//!
//! **Names are checked, not sanitised** (unlike [`crate::influx`]): this is Prometheus' own
//! format, so a name outside `[a-zA-Z_:][a-zA-Z0-9_:]*` (metric) or `[a-zA-Z_][a-zA-Z0-9_]*`
//! (label) is an error, as are `__name__` inside the braces and the same label name twice in
//! one sample. Labels with an empty value are dropped after that check.
//!
//! Decoding is all-or-nothing: the first error returns `Err`, naming the 1-based line and byte
//! column and what was wrong (`line 4, column 9: expected '=' after label name "job", found '"'`).
//! Samples of the same label set are gathered into one [`DecodedSeries`] in body order,
//! wherever their lines are, and series are returned in order of first appearance. The same
//! series twice with the same timestamp keeps both samples, in order (storage keeps the last).
//! Each line makes at most one sample, so memory is bounded by [`Limits::max_body_bytes`];
//! [`Limits::max_samples`] caps the sample count on top of that.
//!
//! Deliberately absent: UTF-8 metric and label names, OpenMetrics' float-seconds timestamps,
//! checking that a family's `TYPE` comes before its samples or that its samples are contiguous,
//! and checking suffixes (`_bucket`, `_sum`...) against the declared type.

use std::collections::HashMap;
use std::fmt;

use ocelli_model::{self as model, Labels, METRIC_NAME, is_valid_label_name, is_valid_metric_name};

use crate::remote_write::DecodedSeries;
use crate::series::SeriesSet;
use crate::{Error, Result};

/// Size caps for one exposition body.
pub use crate::text::Limits;

/// The type a `# TYPE` line gives a metric family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    /// The text format's default for a family without `# TYPE`.
    #[default]
    Untyped,
    /// OpenMetrics only.
    Info,
    /// OpenMetrics only.
    StateSet,
    /// OpenMetrics only.
    GaugeHistogram,
    /// OpenMetrics' name for untyped.
    Unknown,
}

impl MetricKind {
    /// Parses the type word of a `# TYPE` line.
    pub fn parse(s: &str) -> Option<MetricKind> {
        Some(match s {
            "counter" => MetricKind::Counter,
            "gauge" => MetricKind::Gauge,
            "histogram" => MetricKind::Histogram,
            "summary" => MetricKind::Summary,
            "untyped" => MetricKind::Untyped,
            "info" => MetricKind::Info,
            "stateset" => MetricKind::StateSet,
            "gaugehistogram" => MetricKind::GaugeHistogram,
            "unknown" => MetricKind::Unknown,
            _ => return None,
        })
    }

    /// The type word as written in a `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
            MetricKind::Summary => "summary",
            MetricKind::Untyped => "untyped",
            MetricKind::Info => "info",
            MetricKind::StateSet => "stateset",
            MetricKind::GaugeHistogram => "gaugehistogram",
            MetricKind::Unknown => "unknown",
        }
    }
}

impl fmt::Display for MetricKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the `# HELP`, `# TYPE` and `# UNIT` lines say about one metric family. A family with
/// only a `HELP` or `UNIT` line has [`MetricKind::Untyped`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    pub family: String,
    pub kind: MetricKind,
    pub help: Option<String>,
    pub unit: Option<String>,
}

/// A decoded body: the series and the metadata of each family named in a `HELP`, `TYPE` or
/// `UNIT` line, both in order of first appearance.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parsed {
    pub series: Vec<DecodedSeries>,
    pub metadata: Vec<Metadata>,
    /// The 1-based line of the first sample that has its own timestamp, if any: for callers
    /// that refuse timestamps (a push gateway stamps every sample with the push time).
    pub first_timestamp_line: Option<usize>,
}

/// Decodes a text exposition body. See the module doc for the rules.
pub fn decode(body: &[u8], default_ts_ms: i64, limits: &Limits) -> Result<Parsed> {
    if body.len() > limits.max_body_bytes {
        return Err(Error::ExpositionBodyTooLarge { len: body.len(), max: limits.max_body_bytes });
    }
    let text = crate::text::utf8_text(body).map_err(|(line, column)| Error::ExpositionLine {
        line,
        column,
        reason: "invalid UTF-8".to_owned(),
    })?;

    let mut out = Builder::default();
    let mut first_timestamp_line = None;
    let mut lines = text.split('\n').enumerate().peekable();
    while let Some((i, raw)) = lines.next() {
        let line_no = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let at_line = |(at, reason): LineError| Error::ExpositionLine {
            line: line_no,
            column: at + 1,
            reason,
        };
        match parse_line(line).map_err(at_line)? {
            Item::Blank => {}
            Item::Eof => {
                // `split` yields one empty piece after a final newline, and nothing may follow
                if let Some((j, rest)) = lines.next()
                    && (!rest.is_empty() || lines.peek().is_some())
                {
                    return Err(Error::ExpositionLine {
                        line: j + 1,
                        column: 1,
                        reason: "unexpected text after \"# EOF\"".to_owned(),
                    });
                }
                break;
            }
            Item::Meta { family, what, at } => {
                out.meta(family, what).map_err(|r| at_line((at, r)))?
            }
            Item::Sample { labels, v, t } => {
                if out.samples == limits.max_samples {
                    return Err(Error::ExpositionTooManySamples {
                        line: line_no,
                        max: limits.max_samples,
                    });
                }
                if t.is_some() && first_timestamp_line.is_none() {
                    first_timestamp_line = Some(line_no);
                }
                out.add(labels, model::Sample::new(t.unwrap_or(default_ts_ms), v));
            }
        }
    }
    Ok(Parsed { series: out.series.into_vec(), metadata: out.metadata, first_timestamp_line })
}

/// A parse error: the 0-based byte index in the line and what was wrong.
type LineError = (usize, String);

/// What a `HELP`, `TYPE` or `UNIT` line says.
#[derive(Debug)]
enum Meta {
    Help(String),
    Type(MetricKind),
    Unit(String),
}

/// One parsed line.
#[derive(Debug)]
enum Item {
    /// A blank line or a comment.
    Blank,
    Eof,
    /// `at` is where the family name starts, for errors found later.
    Meta {
        family: String,
        what: Meta,
        at: usize,
    },
    Sample {
        labels: Labels,
        v: f64,
        t: Option<i64>,
    },
}

fn is_blank(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

fn skip_blanks(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|&c| is_blank(c)) {
        i += 1;
    }
    i
}

/// The index of the next blank at or after `i`, or the end.
fn token_end(b: &[u8], i: usize) -> usize {
    b[i..].iter().position(|&c| is_blank(c)).map_or(b.len(), |p| i + p)
}

/// Describes the character at `i` for an error message.
fn found(line: &str, i: usize) -> String {
    match line.get(i..).and_then(|s| s.chars().next()) {
        Some(c) => format!("{c:?}"),
        None => "end of line".to_owned(),
    }
}

fn parse_line(line: &str) -> Result<Item, LineError> {
    let b = line.as_bytes();
    let start = skip_blanks(b, 0);
    match b.get(start) {
        None => Ok(Item::Blank),
        Some(b'#') => parse_comment(line, start + 1),
        Some(_) => parse_sample(line, start),
    }
}

/// Parses what follows a `#`: metadata, `EOF` or a comment.
fn parse_comment(line: &str, after_hash: usize) -> Result<Item, LineError> {
    let b = line.as_bytes();
    let word_at = skip_blanks(b, after_hash);
    if word_at == after_hash {
        return Ok(Item::Blank); // `#HELP` is a comment
    }
    let word_end = token_end(b, word_at);
    let word = &line[word_at..word_end];
    if !matches!(word, "HELP" | "TYPE" | "UNIT" | "EOF") {
        return Ok(Item::Blank);
    }
    let name_at = skip_blanks(b, word_end);
    if word == "EOF" {
        if name_at != b.len() {
            return Err((name_at, "unexpected text after \"# EOF\"".to_owned()));
        }
        return Ok(Item::Eof);
    }
    let name_end = token_end(b, name_at);
    let family = &line[name_at..name_end];
    if family.is_empty() {
        return Err((name_at, format!("missing metric name after \"# {word}\"")));
    }
    if !is_valid_metric_name(family) {
        return Err((name_at, format!("invalid metric name {family:?}")));
    }
    let rest_at = skip_blanks(b, name_end);
    let rest = &line[rest_at..];
    let what = match word {
        "HELP" => Meta::Help(unescape_help(rest)),
        "UNIT" => Meta::Unit(rest.trim_end_matches([' ', '\t']).to_owned()),
        _ => {
            let kind = rest.trim_end_matches([' ', '\t']);
            if kind.is_empty() {
                return Err((rest_at, format!("missing type for metric {family:?}")));
            }
            Meta::Type(
                MetricKind::parse(kind)
                    .ok_or_else(|| (rest_at, format!("unknown metric type {kind:?}")))?,
            )
        }
    };
    Ok(Item::Meta { family: family.to_owned(), what, at: name_at })
}

/// `\\` is one backslash and `\n` a newline; any other backslash is kept.
fn unescape_help(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.clone().next() {
            Some('\\') => {
                chars.next();
                out.push('\\');
            }
            Some('n') => {
                chars.next();
                out.push('\n');
            }
            _ => out.push('\\'),
        }
    }
    out
}

/// Parses `name{labels} value [timestamp] [# exemplar]` starting at `start`.
fn parse_sample(line: &str, start: usize) -> Result<Item, LineError> {
    let b = line.as_bytes();
    // (name, value, index of the name)
    let mut name: Option<(String, usize)> = None;
    let mut i = start;
    if b[i] != b'{' {
        let end = b[i..].iter().position(|&c| is_blank(c) || c == b'{').map_or(b.len(), |p| i + p);
        let n = &line[i..end];
        if !is_valid_metric_name(n) {
            return Err((i, format!("invalid metric name {n:?}")));
        }
        name = Some((n.to_owned(), i));
        i = skip_blanks(b, end);
    }
    let mut labels: Vec<(String, String, usize)> = Vec::new();
    if b.get(i) == Some(&b'{') {
        i = parse_label_set(line, i + 1, &mut name, &mut labels)?;
    }
    let Some((name, _)) = name else {
        return Err((start, "missing metric name".to_owned()));
    };

    let value_at = skip_blanks(b, i);
    if value_at == b.len() {
        return Err((value_at, format!("missing value for metric {name:?}")));
    }
    let value_end = token_end(b, value_at);
    let tok = &line[value_at..value_end];
    let v = parse_value(tok).map_err(|why| (value_at, format!("{why} value {tok:?}")))?;

    let mut t = None;
    let mut i = skip_blanks(b, value_end);
    if i < b.len() && b[i] != b'#' {
        let end = token_end(b, i);
        let tok = &line[i..end];
        t = Some(parse_timestamp(tok).map_err(|why| (i, format!("{why} timestamp {tok:?}")))?);
        i = skip_blanks(b, end);
    }
    if i < b.len() {
        if b[i] != b'#' {
            return Err((i, "unexpected text after the timestamp".to_owned()));
        }
        let brace = skip_blanks(b, i + 1);
        if b.get(brace) != Some(&b'{') {
            return Err((
                brace,
                format!("expected '{{' to start an exemplar, found {}", found(line, brace)),
            ));
        }
    }

    if let Some((dup, _, at)) = duplicate(&labels) {
        return Err((*at, format!("duplicate label name {dup:?}")));
    }
    let pairs = labels.into_iter().map(|(n, v, _)| (n, v));
    let labels = Labels::from_pairs(pairs.chain([(METRIC_NAME.to_owned(), name)]))
        .map_err(|e| (start, e.to_string()))?;
    Ok(Item::Sample { labels, v, t })
}

/// Parses a label set from just after its `{` to just after its `}`, returning that index. A
/// quoted name not followed by `=` is the metric name.
fn parse_label_set(
    line: &str,
    mut i: usize,
    name: &mut Option<(String, usize)>,
    labels: &mut Vec<(String, String, usize)>,
) -> Result<usize, LineError> {
    let b = line.as_bytes();
    loop {
        i = skip_blanks(b, i);
        let key_at = i;
        let key = match b.get(i) {
            Some(b'}') => return Ok(i + 1),
            Some(b'"') => {
                let (key, end) = quoted(line, i, "name")?;
                i = skip_blanks(b, end);
                if matches!(b.get(i), Some(b',' | b'}')) {
                    // `{"metric.name", ...}`
                    if name.is_some() {
                        return Err((key_at, "metric name given twice".to_owned()));
                    }
                    if !is_valid_metric_name(&key) {
                        return Err((
                            key_at,
                            format!("invalid metric name {key:?} (UTF-8 names are not supported)"),
                        ));
                    }
                    *name = Some((key, key_at));
                    if b[i] == b',' {
                        i += 1;
                    }
                    continue;
                }
                if !is_valid_label_name(&key) {
                    return Err((
                        key_at,
                        format!("invalid label name {key:?} (UTF-8 names are not supported)"),
                    ));
                }
                key
            }
            Some(&c) if c.is_ascii_alphanumeric() || c == b'_' => {
                let end = b[i..]
                    .iter()
                    .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_'))
                    .map_or(b.len(), |p| i + p);
                let key = &line[i..end];
                if !is_valid_label_name(key) {
                    return Err((i, format!("invalid label name {key:?}")));
                }
                i = skip_blanks(b, end);
                key.to_owned()
            }
            _ => return Err((i, format!("expected label name or '}}', found {}", found(line, i)))),
        };
        if key == METRIC_NAME {
            return Err((
                key_at,
                format!("label name {METRIC_NAME:?} is reserved for the metric name"),
            ));
        }
        if b.get(i) != Some(&b'=') {
            return Err((
                i,
                format!("expected '=' after label name {key:?}, found {}", found(line, i)),
            ));
        }
        i = skip_blanks(b, i + 1);
        if b.get(i) != Some(&b'"') {
            return Err((
                i,
                format!(
                    "expected '\"' to start the value of label {key:?}, found {}",
                    found(line, i)
                ),
            ));
        }
        let (value, end) = quoted(line, i, "label value")?;
        labels.push((key, value, key_at));
        i = skip_blanks(b, end);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => return Ok(i + 1),
            _ => {
                return Err((
                    i,
                    format!("expected ',' or '}}' after a label value, found {}", found(line, i)),
                ));
            }
        }
    }
}

/// Reads the double-quoted string whose `"` is at `start`, with the escapes `\\`, `\"` and
/// `\n`. Returns the text and the index just past the closing quote.
fn quoted(line: &str, start: usize, what: &str) -> Result<(String, usize), LineError> {
    let b = line.as_bytes();
    let mut out = String::new();
    let mut run = start + 1; // start of the text not yet copied
    let mut i = start + 1;
    loop {
        match b.get(i) {
            None => return Err((start, format!("unterminated {what}"))),
            Some(b'"') => {
                out.push_str(&line[run..i]);
                return Ok((out, i + 1));
            }
            Some(b'\\') => {
                out.push_str(&line[run..i]);
                match b.get(i + 1) {
                    Some(b'\\') => out.push('\\'),
                    Some(b'"') => out.push('"'),
                    Some(b'n') => out.push('\n'),
                    _ => {
                        let next = found(line, i + 1);
                        return Err((i, format!("invalid escape '\\' before {next} in {what}")));
                    }
                }
                i += 2;
                run = i;
            }
            Some(_) => i += 1,
        }
    }
}

/// Parses a sample value; the error says what kind of bad it is.
fn parse_value(tok: &str) -> Result<f64, &'static str> {
    let unsigned = tok.strip_prefix(['+', '-']).unwrap_or(tok);
    let negative = tok.starts_with('-');
    if tok.eq_ignore_ascii_case("nan") {
        return Ok(f64::NAN);
    }
    if unsigned.eq_ignore_ascii_case("inf") || unsigned.eq_ignore_ascii_case("infinity") {
        return Ok(if negative { f64::NEG_INFINITY } else { f64::INFINITY });
    }
    if !crate::text::is_decimal(unsigned) {
        return Err("invalid");
    }
    let v: f64 = tok.parse().map_err(|_| "invalid")?;
    if v.is_finite() { Ok(v) } else { Err("out of range") }
}

/// `[+-]?[0-9]+` that fits an `i64`.
fn parse_timestamp(tok: &str) -> Result<i64, &'static str> {
    let digits = tok.strip_prefix(['+', '-']).unwrap_or(tok);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return Err("invalid");
    }
    tok.parse().map_err(|_| "out of range")
}

/// The later of the first two labels found with the same name, if any.
fn duplicate(labels: &[(String, String, usize)]) -> Option<&(String, String, usize)> {
    if labels.len() < 2 {
        return None;
    }
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by(|&a, &b| labels[a].0.cmp(&labels[b].0).then(a.cmp(&b)));
    order.windows(2).find(|w| labels[w[0]].0 == labels[w[1]].0).map(|w| &labels[w[1]])
}

/// Gathers samples into series and metadata into families.
#[derive(Debug, Default)]
struct Builder {
    series: SeriesSet,
    metadata: Vec<Metadata>,
    families: HashMap<String, usize>,
    /// Which of HELP, TYPE, UNIT each family has had.
    seen: Vec<[bool; 3]>,
    samples: usize,
}

impl Builder {
    fn add(&mut self, labels: Labels, sample: model::Sample) {
        self.samples += 1;
        self.series.push(labels, sample);
    }

    /// Records one metadata line; the error is the reason only.
    fn meta(&mut self, family: String, what: Meta) -> Result<(), String> {
        let i = match self.families.get(&family) {
            Some(&i) => i,
            None => {
                let i = self.metadata.len();
                self.families.insert(family.clone(), i);
                self.metadata.push(Metadata { family, ..Metadata::default() });
                self.seen.push([false; 3]);
                i
            }
        };
        let (slot, word) = match what {
            Meta::Help(_) => (0, "HELP"),
            Meta::Type(_) => (1, "TYPE"),
            Meta::Unit(_) => (2, "UNIT"),
        };
        let m = &mut self.metadata[i];
        if std::mem::replace(&mut self.seen[i][slot], true) {
            return Err(format!("second {word} line for metric {:?}", m.family));
        }
        match what {
            Meta::Help(h) => m.help = Some(h),
            Meta::Type(k) => m.kind = k,
            Meta::Unit(u) => m.unit = Some(u),
        }
        Ok(())
    }
}

/// A label value escaped for the text format (`\\`, `\"`, `\n`), without its quotes: the
/// inverse of what the decoder reads.
pub fn escape_label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::fmt::Write as _;

    use proptest::prelude::*;

    use super::*;

    const NOW: i64 = 42_000;

    /// Decodes `input` and compares against `want`: one line per metadata family
    /// (`meta family kind help unit`), then one per series, its labels then `value@ms` for each
    /// sample.
    fn check(input: &str, want: &str) {
        let got = decode(input.as_bytes(), NOW, &Limits::default())
            .unwrap_or_else(|e| panic!("{input:?}: {e}"));
        let mut text = String::new();
        for m in &got.metadata {
            writeln!(text, "meta {} {} {:?} {:?}", m.family, m.kind, m.help, m.unit).unwrap();
        }
        crate::text::render(&got.series, &mut text);
        crate::text::assert_golden(&text, want, input);
    }

    #[test]
    fn golden() {
        #[rustfmt::skip]
        let cases: &[(&str, &str)] = &[
            // node_exporter-like output
            (r#"# HELP node_cpu_seconds_total Seconds the CPUs spent in each mode.
# TYPE node_cpu_seconds_total counter
node_cpu_seconds_total{cpu="0",mode="idle"} 2.58277e+06
node_cpu_seconds_total{cpu="0",mode="user"} 1234.5
# HELP node_load1 1m load average.
# TYPE node_load1 gauge
node_load1 0.21
"#, r#"
                meta node_cpu_seconds_total counter Some("Seconds the CPUs spent in each mode.") None
                meta node_load1 gauge Some("1m load average.") None
                node_cpu_seconds_total{cpu="0", mode="idle"} 2582770.0@42000
                node_cpu_seconds_total{cpu="0", mode="user"} 1234.5@42000
                node_load1{} 0.21@42000"#),
            // histogram with le, +Inf bucket
            (r#"# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{le="0.05"} 24054
http_request_duration_seconds_bucket{le="0.1"} 33444
http_request_duration_seconds_bucket{le="+Inf"} 144320
http_request_duration_seconds_sum 53423
http_request_duration_seconds_count 144320
"#, r#"
                meta http_request_duration_seconds histogram None None
                http_request_duration_seconds_bucket{le="0.05"} 24054.0@42000
                http_request_duration_seconds_bucket{le="0.1"} 33444.0@42000
                http_request_duration_seconds_bucket{le="+Inf"} 144320.0@42000
                http_request_duration_seconds_sum{} 53423.0@42000
                http_request_duration_seconds_count{} 144320.0@42000"#),
            // summary with quantile, NaN quantile
            (r#"# TYPE rpc_duration_seconds summary
rpc_duration_seconds{quantile="0.5"} 4773
rpc_duration_seconds{quantile="0.99"} NaN
rpc_duration_seconds_sum 1.7560473e+07
rpc_duration_seconds_count 2693
"#, r#"
                meta rpc_duration_seconds summary None None
                rpc_duration_seconds{quantile="0.5"} 4773.0@42000
                rpc_duration_seconds{quantile="0.99"} NaN@42000
                rpc_duration_seconds_sum{} 17560473.0@42000
                rpc_duration_seconds_count{} 2693.0@42000"#),
            // values: special and integer forms
            ("m{a=\"1\"} +Inf\nm{a=\"2\"} -Inf\nm{a=\"3\"} Inf\nm{a=\"4\"} nan\nm{a=\"5\"} -0\n\
              m{a=\"6\"} +12\nm{a=\"7\"} .5\nm{a=\"8\"} 1.\nm{a=\"9\"} 1E-2\nm{a=\"10\"} -inf", r#"
                m{a="1"} inf@42000
                m{a="2"} -inf@42000
                m{a="3"} inf@42000
                m{a="4"} NaN@42000
                m{a="5"} -0.0@42000
                m{a="6"} 12.0@42000
                m{a="7"} 0.5@42000
                m{a="8"} 1.0@42000
                m{a="9"} 0.01@42000
                m{a="10"} -inf@42000"#),
            // escapes in label values and help
            (r#"# HELP m a \\ back\slash\nnewline "q"
m{path="C:\\dir",msg="say \"hi\"\nbye"} 1
"#, r#"
                meta m untyped Some("a \\ back\\slash\nnewline \"q\"") None
                m{msg="say \"hi\"\nbye", path="C:\\dir"} 1.0@42000"#),
            // timestamps, including negative; same series and timestamp twice keeps both
            ("m 1 1000\nm 2 -5\nm 3 1000\nm 4\nm 5 +7", "m{} 1.0@1000 2.0@-5 3.0@1000 4.0@42000 5.0@7"),
            // comments, blank lines, CRLF, blanks everywhere, trailing comma, empty braces
            ("\r\n# just a comment\r\n#HELP m not metadata\r\n  \t\r\n# TYPE m gauge\r\n\
              \t m { a = \"x\" , b=\"y\", } \t 1 \t 2 \t\r\nm{} 3\r\n", r#"
                meta m gauge None None
                m{a="x", b="y"} 1.0@2
                m{} 3.0@42000"#),
            // grouping in order of first appearance, label order does not matter
            ("m{a=\"1\"} 1\nn 2\nm{a=\"2\"} 3\nm{a=\"1\"} 4 9\nn{} 5", r#"
                m{a="1"} 1.0@42000 4.0@9
                n{} 2.0@42000 5.0@42000
                m{a="2"} 3.0@42000"#),
            ("m{a=\"1\",b=\"2\"} 1\nm{b=\"2\",a=\"1\"} 2", r#"m{a="1", b="2"} 1.0@42000 2.0@42000"#),
            // empty values are dropped
            ("m{a=\"\",b=\"1\"} 1", r#"m{b="1"} 1.0@42000"#),
            // metadata without samples; HELP with no text; UNIT; one family, three lines
            ("# HELP a\n# TYPE b untyped\n# UNIT c seconds\n# TYPE c gauge\n# HELP c C.", r#"
                meta a untyped Some("") None
                meta b untyped None None
                meta c gauge Some("C.") Some("seconds")"#),
            // every type word
            ("# TYPE a info\n# TYPE b stateset\n# TYPE c gaugehistogram\n# TYPE d unknown\n# TYPE e counter", "
                meta a info None None
                meta b stateset None None
                meta c gaugehistogram None None
                meta d unknown None None
                meta e counter None None"),
            // OpenMetrics: EOF, exemplars, _created, UNIT
            (r#"# TYPE foo counter
# UNIT foo seconds
# HELP foo Foo.
foo_total{a="b"} 17 1520879607789 # {trace_id="KOO5S4vxi0o"} 0.67
foo_created{a="b"} 1520430000123
foo_bucket{le="1"} 3 # {trace_id="x"} 0.5 1520879607
# EOF
"#, r#"
                meta foo counter Some("Foo.") Some("seconds")
                foo_total{a="b"} 17.0@1520879607789
                foo_created{a="b"} 1520430000123.0@42000
                foo_bucket{le="1"} 3.0@42000"#),
            ("m 1\n# EOF", "m{} 1.0@42000"),
            ("m +Infinity # {a=\"b\"} 1\nm -INF 5 #{}", "m{} inf@42000 -inf@5"),
            ("m 1\n# EOF\r\n", "m{} 1.0@42000"),
            // quoted metric and label names, when they are classic names
            (r#"{"http_requests_total", code="200"} 1
{code="500","http_requests_total"} 2
{"up"} 3
m{"quoted"="v"} 4"#, r#"
                http_requests_total{code="200"} 1.0@42000
                http_requests_total{code="500"} 2.0@42000
                up{} 3.0@42000
                m{quoted="v"} 4.0@42000"#),
            // colons in metric names, UTF-8 in label values
            ("job:rate5m{v=\"ü€ #{}\"} 1", r#"job:rate5m{v="ü€ #{}"} 1.0@42000"#),
            ("", ""),
        ];
        for &(input, want) in cases {
            check(input, want);
        }
    }

    fn error(input: &str) -> String {
        match decode(input.as_bytes(), NOW, &Limits::default()) {
            Ok(p) => panic!("{input:?} decoded to {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn errors() {
        #[rustfmt::skip]
        let cases: &[(&str, &str)] = &[
            ("a 1\nb 2\n\nup{job  \"x\"} 1", r#"line 4, column 9: expected '=' after label name "job", found '"'"#),
            ("up{job=x} 1", r#"line 1, column 8: expected '"' to start the value of label "job", found 'x'"#),
            ("up{job=\"x\" a=\"b\"} 1", r#"line 1, column 12: expected ',' or '}' after a label value, found 'a'"#),
            ("up{job=\"x\"", "line 1, column 11: expected ',' or '}' after a label value, found end of line"),
            ("up{job=\"x\",", "line 1, column 12: expected label name or '}', found end of line"),
            ("up{job=\"x} 1", "line 1, column 8: unterminated label value"),
            ("up{job=\"a\\tb\"} 1", r#"line 1, column 10: invalid escape '\' before 't' in label value"#),
            ("up{,} 1", "line 1, column 4: expected label name or '}', found ','"),
            ("up{1a=\"x\"} 1", r#"line 1, column 4: invalid label name "1a""#),
            ("up{a-b=\"x\"} 1", r#"line 1, column 5: expected '=' after label name "a", found '-'"#),
            ("up{a=\"1\",b=\"2\",a=\"3\"} 1", r#"line 1, column 16: duplicate label name "a""#),
            ("up{a=\"\",a=\"3\"} 1", r#"line 1, column 9: duplicate label name "a""#),
            ("up{__name__=\"x\"} 1", r#"line 1, column 4: label name "__name__" is reserved for the metric name"#),
            ("1up 1", r#"line 1, column 1: invalid metric name "1up""#),
            ("my.metric 1", r#"line 1, column 1: invalid metric name "my.metric""#),
            ("{\"my.metric\", a=\"b\"} 1", r#"line 1, column 2: invalid metric name "my.metric" (UTF-8 names are not supported)"#),
            ("{\"a.b\"=\"c\", \"m\"} 1", r#"line 1, column 2: invalid label name "a.b" (UTF-8 names are not supported)"#),
            ("up{\"m\"} 1", "line 1, column 4: metric name given twice"),
            ("{a=\"b\"} 1", "line 1, column 1: missing metric name"),
            ("up", r#"line 1, column 3: missing value for metric "up""#),
            ("up{} ", r#"line 1, column 6: missing value for metric "up""#),
            ("up 1.2.3", r#"line 1, column 4: invalid value "1.2.3""#),
            ("up 0x10", r#"line 1, column 4: invalid value "0x10""#),
            ("up +NaN", r#"line 1, column 4: invalid value "+NaN""#),
            ("up 1e400", r#"line 1, column 4: out of range value "1e400""#),
            ("up 1 1.5", r#"line 1, column 6: invalid timestamp "1.5""#),
            ("up 1 99999999999999999999", r#"line 1, column 6: out of range timestamp "99999999999999999999""#),
            ("up 1 2 3", "line 1, column 8: unexpected text after the timestamp"),
            ("up 1 2 # x", "line 1, column 10: expected '{' to start an exemplar, found 'x'"),
            ("# HELP", r##"line 1, column 7: missing metric name after "# HELP""##),
            ("# TYPE 1m gauge", r#"line 1, column 8: invalid metric name "1m""#),
            ("# TYPE m", r#"line 1, column 9: missing type for metric "m""#),
            ("# TYPE m  timer", r#"line 1, column 11: unknown metric type "timer""#),
            ("# TYPE m gauge\n# TYPE m counter", r#"line 2, column 8: second TYPE line for metric "m""#),
            ("# HELP m a\n# HELP m b", r#"line 2, column 8: second HELP line for metric "m""#),
            ("m 1\n# EOF\nm 2", r##"line 3, column 1: unexpected text after "# EOF""##),
            ("m 1\n# EOF\n\n", r##"line 3, column 1: unexpected text after "# EOF""##),
            ("# EOF x", r##"line 1, column 7: unexpected text after "# EOF""##),
        ];
        crate::text::assert_errors(cases, error);
    }

    #[test]
    fn invalid_utf8() {
        let err = decode(b"m 1\nm{t=\"a\xff\"} 1", 0, &Limits::default());
        assert_eq!(err.unwrap_err().to_string(), "line 2, column 7: invalid UTF-8");
    }

    #[test]
    fn first_timestamp_line() {
        let line = |body: &str| decode(body.as_bytes(), NOW, &Limits::default()).unwrap();
        assert_eq!(line("a 1\n# c\nb 2\n").first_timestamp_line, None);
        assert_eq!(line("a 1\n\nb 2 5\nc 3 6\n").first_timestamp_line, Some(3));
        // an exemplar's timestamp is not the sample's
        assert_eq!(line("a 1 # {x=\"y\"} 1 5\n").first_timestamp_line, None);
    }

    #[test]
    fn limits() {
        let limits = Limits { max_body_bytes: 5, max_samples: 10 };
        let err = decode(b"m 1\nm 2", 0, &limits).unwrap_err();
        assert_eq!(err.to_string(), "exposition body is 7 bytes, over the limit of 5 bytes");

        let limits = Limits { max_body_bytes: 1 << 20, max_samples: 2 };
        assert!(decode(b"m 1\n# c\nm 2\n", 0, &limits).is_ok());
        let err = decode(b"m 1\n# c\nm 2\nm 3", 0, &limits).unwrap_err();
        assert_eq!(err.to_string(), "line 4: more than the limit of 2 samples");
    }

    #[test]
    fn kind_words_round_trip() {
        for k in [
            MetricKind::Counter,
            MetricKind::Gauge,
            MetricKind::Histogram,
            MetricKind::Summary,
            MetricKind::Untyped,
            MetricKind::Info,
            MetricKind::StateSet,
            MetricKind::GaugeHistogram,
            MetricKind::Unknown,
        ] {
            assert_eq!(MetricKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(MetricKind::parse("Counter"), None);
    }

    #[derive(Clone, Debug)]
    struct TestSample {
        name: String,
        labels: Vec<(String, String)>,
        v: f64,
        t: Option<i64>,
    }

    #[derive(Clone, Debug)]
    struct Family {
        help: Option<String>,
        kind: Option<MetricKind>,
        samples: Vec<TestSample>,
    }

    /// Blanks the encoder puts between tokens, chosen by the test.
    #[derive(Clone, Debug)]
    struct Style {
        blank: &'static str,
        trailing_comma: bool,
        crlf: bool,
    }

    fn escape_value(s: &str) -> String {
        s.replace('\\', r"\\").replace('"', "\\\"").replace('\n', r"\n")
    }

    /// The tiny encoder the round trip goes through.
    fn encode(families: &[Family], style: &Style) -> String {
        let nl = if style.crlf { "\r\n" } else { "\n" };
        let sp = style.blank;
        let mut out = String::new();
        for (i, f) in families.iter().enumerate() {
            let family = format!("fam{i}");
            if let Some(h) = &f.help {
                let h = h.replace('\\', r"\\").replace('\n', r"\n");
                write!(out, "# HELP {family} {h}{nl}").unwrap();
            }
            if let Some(k) = f.kind {
                write!(out, "# TYPE {family} {k}{nl}").unwrap();
            }
            for s in &f.samples {
                out.push_str(&s.name);
                if !s.labels.is_empty() || style.trailing_comma {
                    out.push('{');
                    for (n, v) in &s.labels {
                        write!(out, "{sp}{n}{sp}={sp}\"{}\"{sp},", escape_value(v)).unwrap();
                    }
                    if !style.trailing_comma {
                        out.pop();
                    }
                    out.push('}');
                }
                write!(out, "{sp} {}", ocelli_model::format_value(s.v)).unwrap();
                if let Some(t) = s.t {
                    write!(out, " {sp}{t}").unwrap();
                }
                write!(out, "{sp}{nl}").unwrap();
            }
        }
        out
    }

    fn sample() -> impl Strategy<Value = TestSample> {
        (
            "[a-c][a-c_:0-9]{0,3}",
            prop::collection::btree_map("[a-c_][a-c_0-9]{0,2}", "[^\r]{0,6}", 0..4),
            prop_oneof![any::<f64>(), Just(f64::NAN), Just(f64::INFINITY), Just(-0.0)],
            prop::option::of(any::<i64>()),
        )
            .prop_map(|(name, labels, v, t)| TestSample {
                name,
                labels: labels.into_iter().filter(|(n, _)| n != METRIC_NAME).collect(),
                v,
                t,
            })
    }

    fn family() -> impl Strategy<Value = Family> {
        (
            prop::option::of("[^\r]{0,8}"),
            prop::option::of(prop_oneof![
                Just(MetricKind::Counter),
                Just(MetricKind::Gauge),
                Just(MetricKind::Histogram),
                Just(MetricKind::Untyped),
            ]),
            prop::collection::vec(sample(), 0..5),
        )
            .prop_map(|(help, kind, samples)| Family { help, kind, samples })
    }

    fn style() -> impl Strategy<Value = Style> {
        (prop_oneof![Just(""), Just(" "), Just("\t ")], any::<bool>(), any::<bool>())
            .prop_map(|(blank, trailing_comma, crlf)| Style { blank, trailing_comma, crlf })
    }

    /// What decoding the encoded families should give, built without the decoder's grouping.
    fn expected(families: &[Family]) -> Parsed {
        let mut out = Parsed::default();
        for (i, f) in families.iter().enumerate() {
            if f.help.is_some() || f.kind.is_some() {
                // the blanks between the family name and the help text are not part of it
                out.metadata.push(Metadata {
                    family: format!("fam{i}"),
                    kind: f.kind.unwrap_or_default(),
                    help: f.help.as_ref().map(|h| h.trim_start_matches([' ', '\t']).to_owned()),
                    unit: None,
                });
            }
            for s in &f.samples {
                let pairs = s.labels.iter().cloned();
                let labels =
                    Labels::from_pairs(pairs.chain([(METRIC_NAME.to_owned(), s.name.clone())]))
                        .unwrap();
                let sample = model::Sample::new(s.t.unwrap_or(NOW), s.v);
                match out.series.iter_mut().find(|d| d.labels == labels) {
                    Some(d) => d.samples.push(sample),
                    None => out.series.push(DecodedSeries { labels, samples: vec![sample] }),
                }
            }
        }
        out
    }

    fn same_value(a: f64, b: f64) -> bool {
        (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
    }

    proptest! {
        #[test]
        fn round_trip(
            families in prop::collection::vec(family(), 0..4),
            style in style(),
            eof in any::<bool>(),
        ) {
            let mut body = encode(&families, &style);
            if eof {
                body.push_str("# EOF\n");
            }
            let got = decode(body.as_bytes(), NOW, &Limits::default())
                .map_err(|e| TestCaseError::fail(format!("{body:?}: {e}")))?;
            let want = expected(&families);
            prop_assert_eq!(&got.metadata, &want.metadata, "{:?}", body);
            prop_assert_eq!(got.series.len(), want.series.len(), "{:?}", body);
            for (g, w) in got.series.iter().zip(&want.series) {
                prop_assert_eq!(&g.labels, &w.labels);
                prop_assert_eq!(g.samples.len(), w.samples.len());
                for (gs, ws) in g.samples.iter().zip(&w.samples) {
                    prop_assert!(
                        gs.t == ws.t && same_value(gs.v, ws.v),
                        "{}: got {:?}, want {:?}", w.labels, gs, ws
                    );
                }
            }
        }

        #[test]
        fn random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&body, NOW, &Limits::default());
        }

        #[test]
        fn near_miss_text_never_panics_and_yields_valid_series(
            body in "[a-c0-9 {}=,\"\\\\\n\r#.eE+:_-]{0,80}|# (HELP|TYPE|UNIT|EOF)[ a-c\n]{0,20}",
        ) {
            if let Ok(parsed) = decode(body.as_bytes(), NOW, &Limits::default()) {
                for s in parsed.series {
                    prop_assert!(s.labels.validate().is_ok(), "{}", s.labels);
                    prop_assert!(!s.samples.is_empty());
                }
            }
        }
    }
}
