//! The Influx line protocol (what Telegraf and `/write`/`/api/v2/write` clients send), decoded
//! into the same [`DecodedSeries`] as remote_write.
//!
//! [`decode`] (and [`decode_with_db`], which adds a `db` label) takes an uncompressed body:
//! decompression, the `precision`/`db`/`bucket` query parameters and status codes are the
//! server's job, and storing the result is the storage engine's. A body is UTF-8 text, one point
//! per line: `measurement[,tag=value...] field=value[,field=value...] [timestamp]`.
//!
//! - Escapes follow the Influx reference: `\,` and `\ ` in the measurement; `\,`, `\=` and `\ `
//!   in tag keys, tag values and field keys; `\\` is one backslash everywhere, and a backslash
//!   before any other character is kept as it is. String field values are double-quoted with
//!   `\"` and `\\`. As in Influx, no value may contain a newline.
//! - Blank lines and lines whose first non-blank character is `#` are skipped; a `\r` before the
//!   `\n` is dropped; the sections may be separated by more than one space.
//! - Field values: floats (`1`, `-1.5`, `.5`, `3e5`; no `inf` or `NaN`, and none that overflows
//!   an `f64`), integers `12i` (must fit `i64`), unsigned `12u` (must fit `u64`), and booleans
//!   (`t`, `T`, `true`, `True`, `TRUE` and the same for false) as 1 and 0. String fields are
//!   checked but make no sample; a line must still have at least one field of some type.
//!   [`decode_full`] counts the string fields and the lines that had only strings (which store
//!   nothing) so that the server can report them, and gives each field's type
//!   ([`FieldType`]): a field written as two types in one body is an error, as in InfluxDB;
//!   across bodies the server checks.
//! - Each numeric field is one sample of the series named `{measurement}_{field}` (the
//!   VictoriaMetrics convention) whose other labels are the tags. Tags with an empty value are
//!   dropped; `__name__` as a tag, or the same tag key twice, is an error, as is the same field
//!   key twice in one line. With `db`, every series also gets `db="<db>"` unless it has a `db`
//!   tag, which wins (again as VictoriaMetrics does).
//! - **Names are sanitised**, not refused: in the metric name every character outside
//!   `[a-zA-Z0-9_:]`, and in a label name every one outside `[a-zA-Z0-9_]`, becomes one `_`
//!   (one per character, not per byte), and a name that starts with a digit gets a leading `_`.
//!   So `cpu.load-1m` becomes `cpu_load_1m`, and `1m,ü=x v=1` gives `_1m_v{_="x"}`. Keys that
//!   differ only in characters that sanitising merges count as the same key.
//! - The timestamp is an integer in the request's [`Precision`], converted to milliseconds
//!   rounding toward negative infinity; without one the point gets the caller's `now_ms`. A
//!   timestamp that does not fit `i64` (before or after conversion) is an error.
//!
//! Decoding is all-or-nothing: the first error returns `Err`, naming the 1-based line and byte
//! column and what was wrong (`line 3, column 17: field "usage" has no value`). Samples of the
//! same series are gathered into one [`DecodedSeries`] in body order, wherever their lines are;
//! series are returned in order of first appearance. The lookup is keyed on the tag set first
//! and the metric name second, so a line costs time linear in its length even when it has many
//! tags and many fields. What a tag set repeated across many fields costs in memory is counted
//! against [`Limits::max_decoded_bytes`], so a small hostile body cannot expand without bound.
//!
//! Deliberately absent: the `h` and `m` precisions of Influx 1.x, newlines inside string values,
//! and keeping string fields anywhere.

use std::collections::HashMap;
use std::mem::size_of;

use ocelli_model::{self as model, Label, Labels, METRIC_NAME};

use crate::remote_write::DecodedSeries;
use crate::series::labels_cost;
use crate::{Error, Result};

/// The unit of the timestamps in a body: the `precision` query parameter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Precision {
    /// Nanoseconds, Influx's default.
    #[default]
    Ns,
    Us,
    Ms,
    S,
}

impl Precision {
    /// Parses a `precision` parameter: `ns` or `n`, `us` or `u`, `ms`, `s`.
    pub fn parse(s: &str) -> Result<Precision> {
        match s {
            "ns" | "n" => Ok(Precision::Ns),
            "us" | "u" => Ok(Precision::Us),
            "ms" => Ok(Precision::Ms),
            "s" => Ok(Precision::S),
            _ => Err(Error::InvalidPrecision(s.to_owned())),
        }
    }

    /// Converts a timestamp in this unit to milliseconds, rounding toward negative infinity;
    /// `None` on overflow.
    fn to_ms(self, t: i64) -> Option<i64> {
        match self {
            Precision::Ns => Some(t.div_euclid(1_000_000)),
            Precision::Us => Some(t.div_euclid(1_000)),
            Precision::Ms => Some(t),
            Precision::S => t.checked_mul(1_000),
        }
    }
}

/// Size caps for one line protocol body.
pub use crate::series::Limits;

/// Decodes a line protocol body into series. See the module doc for the rules.
pub fn decode(
    body: &[u8],
    precision: Precision,
    now_ms: i64,
    limits: &Limits,
) -> Result<Vec<DecodedSeries>> {
    decode_with_db(body, precision, now_ms, limits, None)
}

/// Like [`decode`], and with `db` (the `db` or `bucket` query parameter) adds `db="<db>"` to
/// every series that has no `db` tag of its own. An empty `db` adds nothing.
pub fn decode_with_db(
    body: &[u8],
    precision: Precision,
    now_ms: i64,
    limits: &Limits,
    db: Option<&str>,
) -> Result<Vec<DecodedSeries>> {
    decode_full(body, precision, now_ms, limits, db).map(|d| d.series)
}

/// The type a field value is written in. Booleans and integers are stored as floats, but a
/// field keeps its type, as in InfluxDB: a later write of another type is a conflict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldType {
    Float,
    Integer,
    Unsigned,
    Boolean,
}

impl FieldType {
    /// InfluxDB's word for the type.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Float => "float",
            FieldType::Integer => "integer",
            FieldType::Unsigned => "unsigned",
            FieldType::Boolean => "boolean",
        }
    }
}

/// A decoded body with what the series alone do not say.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decoded {
    pub series: Vec<DecodedSeries>,
    /// Each numeric field's series name (`{measurement}_{field}`) and its type, once each.
    pub field_types: Vec<(String, FieldType)>,
    /// String field values, which make no sample.
    pub string_fields: usize,
    /// Lines whose fields are all strings, which store nothing.
    pub string_only_lines: usize,
}

/// [`decode_with_db`], with the field types and the string fields the body had. A field written
/// with two types in one body is an error naming both lines.
pub fn decode_full(
    body: &[u8],
    precision: Precision,
    now_ms: i64,
    limits: &Limits,
    db: Option<&str>,
) -> Result<Decoded> {
    if body.len() > limits.max_body_bytes {
        return Err(Error::InfluxBodyTooLarge { len: body.len(), max: limits.max_body_bytes });
    }
    let text = crate::text::utf8_text(body).map_err(|(line, column)| Error::InfluxLine {
        line,
        column,
        reason: "invalid UTF-8".to_owned(),
    })?;
    let db = db.filter(|d| !d.is_empty());
    let mut out = Builder::new(limits.max_decoded_bytes);
    let mut types: HashMap<String, (FieldType, usize)> = HashMap::new();
    let mut field_types = Vec::new();
    let (mut string_fields, mut string_only_lines) = (0, 0);
    for (i, raw) in text.split('\n').enumerate() {
        let line_no = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let point = match parse_line(line, precision) {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err((at, reason)) => {
                return Err(Error::InfluxLine { line: line_no, column: at + 1, reason });
            }
        };
        string_fields += point.strings;
        if point.fields.is_empty() {
            string_only_lines += 1;
            continue;
        }
        for (name, _, ty, at) in &point.fields {
            match types.get(name) {
                None => {
                    types.insert(name.clone(), (*ty, line_no));
                    field_types.push((name.clone(), *ty));
                }
                Some(&(first, first_line)) if first != *ty => {
                    return Err(Error::InfluxLine {
                        line: line_no,
                        column: at + 1,
                        reason: format!(
                            "field type conflict: {name:?} is {} here but {} on line {first_line}",
                            ty.as_str(),
                            first.as_str()
                        ),
                    });
                }
                Some(_) => {}
            }
        }
        out.add(point, db, now_ms, line_no)?;
    }
    Ok(Decoded { series: out.series, field_types, string_fields, string_only_lines })
}

/// One parsed line: sanitised names, sorted tags with empty values dropped, numeric fields in
/// line order, the timestamp in milliseconds.
#[derive(Debug)]
struct Point {
    tags: Vec<Label>,
    /// `(metric name, value, type, index of the key in the line)`
    fields: Vec<(String, f64, FieldType, usize)>,
    /// String fields, which make no sample.
    strings: usize,
    t_ms: Option<i64>,
}

/// A parse error: the 0-based byte index in the line and what was wrong.
type LineError = (usize, String);

fn parse_line(line: &str, precision: Precision) -> Result<Option<Point>, LineError> {
    let b = line.as_bytes();
    let start = b.iter().position(|&c| c != b' ' && c != b'\t').unwrap_or(b.len());
    if start == b.len() || b[start] == b'#' {
        return Ok(None);
    }

    let (measurement, mut i) = ident(line, start, b", ", b", ");
    if measurement.is_empty() {
        return Err((start, "missing measurement".to_owned()));
    }

    // (sanitised name, value, index of the key)
    let mut tags: Vec<(String, String, usize)> = Vec::new();
    while b.get(i) == Some(&b',') {
        let key_at = i + 1;
        let (key, eq) = ident(line, key_at, b",= ", b",= ");
        if key.is_empty() {
            return Err((key_at, "empty tag key".to_owned()));
        }
        if b.get(eq) != Some(&b'=') {
            return Err((eq, format!("tag {key:?} has no value")));
        }
        let (value, end) = ident(line, eq + 1, b",= ", b",= ");
        if b.get(end) == Some(&b'=') {
            return Err((end, format!("tag {key:?} has an unescaped \"=\" in its value")));
        }
        let name = sanitize(&key, false);
        if name == METRIC_NAME {
            return Err((key_at, format!("tag {key:?} is reserved for the metric name")));
        }
        tags.push((name, value, key_at));
        i = end;
    }
    if let Some((name, _, at)) = duplicate(&tags, |t| &t.0) {
        return Err((*at, format!("duplicate tag key {name:?}")));
    }

    let fields_at = skip_spaces(b, i);
    if fields_at == b.len() {
        return Err((i, "line has no fields".to_owned()));
    }
    let prefix = sanitize(&measurement, true);
    // (sanitised key, value and type if numeric, index of the key)
    let mut fields: Vec<(String, Option<Numeric>, usize)> = Vec::new();
    i = fields_at;
    loop {
        let (key, eq) = ident(line, i, b",= ", b",= ");
        if key.is_empty() {
            return Err((i, "empty field key".to_owned()));
        }
        if b.get(eq) != Some(&b'=') {
            return Err((eq, format!("field {key:?} has no value")));
        }
        let (value, end) = field_value(line, eq + 1, &key)?;
        fields.push((sanitize_rest(&key, true), value, i));
        match b.get(end) {
            Some(b',') => i = end + 1,
            Some(b' ') | None => {
                i = end;
                break;
            }
            Some(_) => {
                let c = line[end..].chars().next().unwrap_or_default();
                return Err((end, format!("unexpected {c:?} after the value of field {key:?}")));
            }
        }
    }
    if let Some((name, _, at)) = duplicate(&fields, |f| &f.0) {
        return Err((*at, format!("duplicate field key {name:?}")));
    }

    let ts_at = skip_spaces(b, i);
    let t_ms = if ts_at == b.len() {
        None
    } else {
        let ts_end = b[ts_at..].iter().position(|&c| c == b' ').map_or(b.len(), |p| ts_at + p);
        let rest = skip_spaces(b, ts_end);
        if rest != b.len() {
            return Err((rest, "unexpected text after the timestamp".to_owned()));
        }
        let tok = &line[ts_at..ts_end];
        if !is_integer(tok, true) {
            return Err((ts_at, format!("invalid timestamp {tok:?}")));
        }
        let t = tok.parse::<i64>().ok().and_then(|t| precision.to_ms(t));
        Some(t.ok_or_else(|| (ts_at, format!("timestamp {tok:?} is out of range")))?)
    };

    let mut tags: Vec<Label> = tags
        .into_iter()
        .filter(|t| !t.1.is_empty())
        .map(|(name, value, _)| Label { name, value })
        .collect();
    tags.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    let strings = fields.iter().filter(|f| f.1.is_none()).count();
    let fields = fields
        .into_iter()
        .filter_map(|(key, v, at)| {
            let (v, ty) = v?;
            Some((format!("{prefix}_{key}"), v, ty, at))
        })
        .collect();
    Ok(Some(Point { tags, fields, strings, t_ms }))
}

/// Reads an identifier from `start` up to the first unescaped byte in `stops` (or the end),
/// turning `\\` and a backslash before a byte in `escapable` into the escaped byte and keeping
/// any other backslash. Returns the text and the index where it stopped.
fn ident(line: &str, start: usize, escapable: &[u8], stops: &[u8]) -> (String, usize) {
    let b = line.as_bytes();
    let mut out = String::new();
    let mut run = start; // start of the text not yet copied
    let mut i = start;
    while let Some(&c) = b.get(i) {
        if c == b'\\'
            && let Some(&next) = b.get(i + 1)
            && (next == b'\\' || escapable.contains(&next))
        {
            out.push_str(&line[run..i]);
            run = i + 1;
            i += 2;
            continue;
        }
        if stops.contains(&c) {
            break;
        }
        i += 1;
    }
    out.push_str(&line[run..i]);
    (out, i)
}

/// A numeric field's value and the type it was written in.
type Numeric = (f64, FieldType);

/// Reads a field value starting at `start`: `None` for a string, the number and its type
/// otherwise, and the index just past the value.
fn field_value(line: &str, start: usize, key: &str) -> Result<(Option<Numeric>, usize), LineError> {
    let b = line.as_bytes();
    if b.get(start) == Some(&b'"') {
        let mut i = start + 1;
        loop {
            match b.get(i) {
                None => {
                    return Err((start, format!("field {key:?} has an unterminated string")));
                }
                Some(b'\\') => i += 2,
                Some(b'"') => return Ok((None, i + 1)),
                Some(_) => i += 1,
            }
        }
    }
    let end =
        b[start..].iter().position(|&c| c == b',' || c == b' ').map_or(b.len(), |p| start + p);
    let tok = &line[start..end];
    if tok.is_empty() {
        return Err((start, format!("field {key:?} has no value")));
    }
    match number(tok) {
        Ok(v) => Ok((Some(v), end)),
        Err(NumberError::Invalid) => {
            Err((start, format!("field {key:?} has invalid value {tok:?}")))
        }
        Err(NumberError::OutOfRange) => {
            Err((start, format!("field {key:?} value {tok:?} is out of range")))
        }
    }
}

enum NumberError {
    Invalid,
    OutOfRange,
}

/// Parses an unquoted field value: boolean, `12i`, `12u` or float.
fn number(tok: &str) -> Result<(f64, FieldType), NumberError> {
    match tok {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok((1.0, FieldType::Boolean)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok((0.0, FieldType::Boolean)),
        _ => {}
    }
    if let Some(digits) = tok.strip_suffix('i') {
        if !is_integer(digits, true) {
            return Err(NumberError::Invalid);
        }
        return digits
            .parse::<i64>()
            .map(|v| (v as f64, FieldType::Integer))
            .map_err(|_| NumberError::OutOfRange);
    }
    if let Some(digits) = tok.strip_suffix('u') {
        if !is_integer(digits, false) {
            return Err(NumberError::Invalid);
        }
        return digits
            .parse::<u64>()
            .map(|v| (v as f64, FieldType::Unsigned))
            .map_err(|_| NumberError::OutOfRange);
    }
    if !is_float(tok) {
        return Err(NumberError::Invalid);
    }
    let v: f64 = tok.parse().map_err(|_| NumberError::Invalid)?;
    if v.is_finite() { Ok((v, FieldType::Float)) } else { Err(NumberError::OutOfRange) }
}

/// `-?[0-9]+` (without the sign unless `signed`).
fn is_integer(s: &str, signed: bool) -> bool {
    let digits = if signed { s.strip_prefix('-').unwrap_or(s) } else { s };
    !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit())
}

/// `-?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?`: Influx's float syntax, which is narrower
/// than Rust's (no `inf`, `NaN` or leading `+`).
fn is_float(s: &str) -> bool {
    crate::text::is_decimal(s.strip_prefix('-').unwrap_or(s))
}

fn skip_spaces(b: &[u8], mut i: usize) -> usize {
    while b.get(i) == Some(&b' ') {
        i += 1;
    }
    i
}

/// The later of the first two items found with the same key, if any.
fn duplicate<T>(items: &[T], key: impl Fn(&T) -> &String) -> Option<&T> {
    if items.len() < 2 {
        return None;
    }
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| key(&items[a]).cmp(key(&items[b])).then(a.cmp(&b)));
    order.windows(2).find(|w| key(&items[w[0]]) == key(&items[w[1]])).map(|w| &items[w[1]])
}

/// A valid metric name (`metric`) or label name: see the module doc.
fn sanitize(s: &str, metric: bool) -> String {
    let mut out = String::with_capacity(s.len() + 1);
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.push_str(&sanitize_rest(s, metric));
    out
}

/// Replaces the characters not allowed after the first one of a metric or label name.
fn sanitize_rest(s: &str, metric: bool) -> String {
    s.chars()
        .map(
            |c| if c.is_ascii_alphanumeric() || c == '_' || (metric && c == ':') { c } else { '_' },
        )
        .collect()
}

/// Gathers points into series, charging what it keeps against a memory budget.
#[derive(Debug)]
struct Builder {
    series: Vec<DecodedSeries>,
    /// Tag set (with the `db` label, without `__name__`) to its index in `names`.
    tag_sets: HashMap<Labels, usize>,
    /// Per tag set: metric name to index in `series`.
    names: Vec<HashMap<String, usize>>,
    used: usize,
    max: usize,
}

impl Builder {
    fn new(max: usize) -> Self {
        Builder { series: vec![], tag_sets: HashMap::new(), names: vec![], used: 0, max }
    }

    fn charge(&mut self, bytes: usize, line: usize) -> Result<()> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.max {
            return Err(Error::InfluxDecodedTooLarge { line, max: self.max });
        }
        Ok(())
    }

    fn add(&mut self, point: Point, db: Option<&str>, now_ms: i64, line: usize) -> Result<()> {
        let Point { mut tags, fields, t_ms, .. } = point;
        if fields.is_empty() {
            return Ok(());
        }
        if let Some(db) = db
            && let Err(at) = tags.binary_search_by(|l| l.name.as_str().cmp("db"))
        {
            tags.insert(at, Label::new("db", db));
        }
        let tags = Labels::from_sorted(tags);
        let set = match self.tag_sets.get(&tags) {
            Some(&set) => set,
            None => {
                self.charge(
                    labels_cost(tags.as_slice()) + size_of::<HashMap<String, usize>>(),
                    line,
                )?;
                let set = self.names.len();
                self.names.push(HashMap::new());
                self.tag_sets.insert(tags.clone(), set);
                set
            }
        };
        let t = t_ms.unwrap_or(now_ms);
        for (name, v, _, _) in fields {
            self.charge(size_of::<model::Sample>(), line)?;
            let index = match self.names[set].get(&name) {
                Some(&index) => index,
                None => {
                    let labels = with_name(&tags, &name);
                    self.charge(
                        labels_cost(&labels)
                            + size_of::<DecodedSeries>()
                            + name.len()
                            + size_of::<(String, usize)>(),
                        line,
                    )?;
                    let index = self.series.len();
                    self.series.push(DecodedSeries {
                        labels: Labels::from_sorted(labels),
                        samples: vec![],
                    });
                    self.names[set].insert(name, index);
                    index
                }
            };
            self.series[index].samples.push(model::Sample::new(t, v));
        }
        Ok(())
    }
}

/// `tags` plus `__name__`, still sorted.
fn with_name(tags: &Labels, name: &str) -> Vec<Label> {
    let tags = tags.as_slice();
    let at = tags.partition_point(|l| l.name.as_str() < METRIC_NAME);
    let mut v = Vec::with_capacity(tags.len() + 1);
    v.extend_from_slice(&tags[..at]);
    v.push(Label::new(METRIC_NAME, name));
    v.extend_from_slice(&tags[at..]);
    v
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::fmt::Write as _;

    use proptest::prelude::*;

    use super::*;

    const NOW: i64 = 42_000;

    /// Decodes `input` and compares against `want`: one line per series, its labels then
    /// `value@ms` for each sample.
    fn check(precision: Precision, db: Option<&str>, input: &str, want: &str) {
        let got = decode_with_db(input.as_bytes(), precision, NOW, &Limits::default(), db)
            .unwrap_or_else(|e| panic!("{input:?}: {e}"));
        let mut text = String::new();
        crate::text::render(&got, &mut text);
        crate::text::assert_golden(&text, want, input);
    }

    #[test]
    fn field_types_strings_and_conflicts() {
        let body = "m s=\"x\",f=1,i=2i,u=3u,b=t 1\nm s=\"only\" 2\nm f=2,i=5i 3\n";
        let d = decode_full(body.as_bytes(), Precision::Ms, NOW, &Limits::default(), None).unwrap();
        assert_eq!(d.string_fields, 2);
        assert_eq!(d.string_only_lines, 1);
        assert_eq!(
            d.field_types,
            vec![
                ("m_f".to_owned(), FieldType::Float),
                ("m_i".to_owned(), FieldType::Integer),
                ("m_u".to_owned(), FieldType::Unsigned),
                ("m_b".to_owned(), FieldType::Boolean),
            ]
        );
        assert_eq!(d.series.len(), 4);
        let e = decode_full(
            "m f=1 1\nm,h=a g=1,f=2i 2".as_bytes(),
            Precision::Ms,
            NOW,
            &Limits::default(),
            None,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2, column 11: field type conflict: \"m_f\" is integer here but float on line 1"
        );
    }

    #[test]
    fn golden() {
        use Precision::*;
        #[rustfmt::skip]
        let cases: &[(Precision, Option<&str>, &str, &str)] = &[
            // basic, nanoseconds by default
            (Ns, None, "cpu,host=a usage=1.5 1000000000", r#"cpu_usage{host="a"} 1.5@1000"#),
            // every numeric type, in field order
            (Ms, None, "m a=1,b=-3e5,c=12i,d=12u,e=-0.0,g=1.,h=.5,i=1E2,j=2e-1,k=-7i 5", "
                m_a{} 1.0@5
                m_b{} -300000.0@5
                m_c{} 12.0@5
                m_d{} 12.0@5
                m_e{} -0.0@5
                m_g{} 1.0@5
                m_h{} 0.5@5
                m_i{} 100.0@5
                m_j{} 0.2@5
                m_k{} -7.0@5"),
            (Ms, None, "m a=9223372036854775807i,b=-9223372036854775808i,c=18446744073709551615u 1", "
                m_a{} 9.223372036854776e18@1
                m_b{} -9.223372036854776e18@1
                m_c{} 1.8446744073709552e19@1"),
            // booleans
            (Ms, None, "b a=t,b=T,c=true,d=True,e=TRUE,f=f,g=F,h=false,i=False,j=FALSE 1", "
                b_a{} 1.0@1
                b_b{} 1.0@1
                b_c{} 1.0@1
                b_d{} 1.0@1
                b_e{} 1.0@1
                b_f{} 0.0@1
                b_g{} 0.0@1
                b_h{} 0.0@1
                b_i{} 0.0@1
                b_j{} 0.0@1"),
            // escapes
            (Ms, None, r"my\ m\,x,k\=1\ 2=v\,a\=l\ ue f\=\ \,x=1 1",
                r#"my_m_x_f___x{k_1_2="v,a=l ue"} 1.0@1"#),
            (Ms, None, r"m,a=x\\y,b=c\d,c=\\ f=1 1", r#"m_f{a="x\\y", b="c\\d", c="\\"} 1.0@1"#),
            (Ms, None, r"m\=x f=1 1", r#"m__x_f{} 1.0@1"#),
            (Ms, None, "m,t=ü€\t\"x\" f=1 1", r#"m_f{t="ü€\t\"x\""} 1.0@1"#),
            // string fields parse and are skipped
            (Ms, None, r#"m s="a, b=c \"q\" \\",n=2,u="" 1"#, r#"m_n{} 2.0@1"#),
            (Ms, None, r##"m s="# x=1 \\" 1"##, ""),
            // precision and rounding toward negative infinity
            (Ns, None, "m f=1 -1\nm f=2 1999999", "m_f{} 1.0@-1 2.0@1"),
            (Us, None, "m f=1 -1500\nm f=2 1500", "m_f{} 1.0@-2 2.0@1"),
            (Ms, None, "m f=1 -1500", "m_f{} 1.0@-1500"),
            (S, None, "m f=1 5\nm f=2 -9223372036854775", "m_f{} 1.0@5000 2.0@-9223372036854775000"),
            // missing timestamp
            (Ns, None, "m f=1\nm f=2 ", "m_f{} 1.0@42000 2.0@42000"),
            // db label; a db tag wins; an empty db adds nothing
            (Ms, Some("telegraf"), "m,host=a f=1 1\nm,db=x f=1 1", r#"
                m_f{db="telegraf", host="a"} 1.0@1
                m_f{db="x"} 1.0@1"#),
            (Ms, Some(""), "m f=1 1", "m_f{} 1.0@1"),
            // empty tag values are dropped
            (Ms, None, "m,a=,b=1 f=1 1", r#"m_f{b="1"} 1.0@1"#),
            // name sanitising
            (Ms, None, "1cpu,host-name=a,ü=b,9k=c usage.idle=1,x:y=2 1", r#"
                _1cpu_usage_idle{_="b", _9k="c", host_name="a"} 1.0@1
                _1cpu_x:y{_="b", _9k="c", host_name="a"} 2.0@1"#),
            (Ms, None, "node:cpu,A=1 €=1 1", r#"node:cpu__{A="1"} 1.0@1"#),
            // grouping: the same series anywhere in the body, samples in body order
            (Ms, None, "m,h=a f=1 1\nm,h=b f=2 1\nm,h=a f=3,g=4 2\nm,h=a f=5 3", r#"
                m_f{h="a"} 1.0@1 3.0@2 5.0@3
                m_f{h="b"} 2.0@1
                m_g{h="a"} 4.0@2"#),
            // tag order does not matter
            (Ms, None, "m,a=1,b=2 f=1 1\nm,b=2,a=1 f=2 2", r#"m_f{a="1", b="2"} 1.0@1 2.0@2"#),
            // blank lines, comments, CRLF, leading and repeated spaces
            (Ms, None, "\n# comment\r\n  \t\r\n   # indented\n  m f=1   1  \r\n\nm  f=2\r\n", "
                m_f{} 1.0@1 2.0@42000"),
            (Ms, None, "", ""),
        ];
        for &(precision, db, input, want) in cases {
            check(precision, db, input, want);
        }
    }

    fn error(precision: Precision, input: &str) -> String {
        match decode(input.as_bytes(), precision, NOW, &Limits::default()) {
            Ok(s) => panic!("{input:?} decoded to {s:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn errors() {
        use Precision::*;
        #[rustfmt::skip]
        let cases: &[(Precision, &str, &str)] = &[
            (Ns, "m f=1\n\ncpu,host=a usage", r#"line 3, column 17: field "usage" has no value"#),
            (Ns, "cpu,host=a usage= 1", r#"line 1, column 18: field "usage" has no value"#),
            (Ns, "cpu usage=1,", "line 1, column 13: empty field key"),
            (Ns, "cpu =1", "line 1, column 5: empty field key"),
            (Ns, "cpu", "line 1, column 4: line has no fields"),
            (Ns, "cpu,a=b   ", "line 1, column 8: line has no fields"),
            (Ns, ",a=b f=1", "line 1, column 1: missing measurement"),
            (Ns, "m, f=1", "line 1, column 3: empty tag key"),
            (Ns, "m,host f=1", r#"line 1, column 7: tag "host" has no value"#),
            (Ns, "m,a=b=c f=1", r#"line 1, column 6: tag "a" has an unescaped "=" in its value"#),
            (Ns, "m,__name__=x f=1", r#"line 1, column 3: tag "__name__" is reserved for the metric name"#),
            (Ns, "m,a=1,b=2,a=3 f=1", r#"line 1, column 11: duplicate tag key "a""#),
            (Ns, "m,a-b=1,a_b=2 f=1", r#"line 1, column 9: duplicate tag key "a_b""#),
            (Ns, "m,a=,a=1 f=1", r#"line 1, column 6: duplicate tag key "a""#),
            (Ns, "m f=1,g=2,f=3", r#"line 1, column 11: duplicate field key "f""#),
            (Ns, r#"m f="x",f=3"#, r#"line 1, column 9: duplicate field key "f""#),
            (Ns, "m f=1.2.3", r#"line 1, column 5: field "f" has invalid value "1.2.3""#),
            (Ns, "m f=inf", r#"line 1, column 5: field "f" has invalid value "inf""#),
            (Ns, "m f=NaN", r#"line 1, column 5: field "f" has invalid value "NaN""#),
            (Ns, "m f=+1", r#"line 1, column 5: field "f" has invalid value "+1""#),
            (Ns, "m f=1e", r#"line 1, column 5: field "f" has invalid value "1e""#),
            (Ns, "m f=-", r#"line 1, column 5: field "f" has invalid value "-""#),
            (Ns, "m f=12x", r#"line 1, column 5: field "f" has invalid value "12x""#),
            (Ns, "m f=-1u", r#"line 1, column 5: field "f" has invalid value "-1u""#),
            (Ns, "m f=1_000", r#"line 1, column 5: field "f" has invalid value "1_000""#),
            (Ns, "m f=yes", r#"line 1, column 5: field "f" has invalid value "yes""#),
            (Ns, "m f=1e400", r#"line 1, column 5: field "f" value "1e400" is out of range"#),
            (Ns, "m f=9223372036854775808i", r#"line 1, column 5: field "f" value "9223372036854775808i" is out of range"#),
            (Ns, "m f=18446744073709551616u", r#"line 1, column 5: field "f" value "18446744073709551616u" is out of range"#),
            (Ns, r#"m f="abc"#, r#"line 1, column 5: field "f" has an unterminated string"#),
            (Ns, r#"m f="abc\""#, r#"line 1, column 5: field "f" has an unterminated string"#),
            (Ns, r#"m f="abc"x"#, r#"line 1, column 10: unexpected 'x' after the value of field "f""#),
            (Ns, "m f=1 12a", r#"line 1, column 7: invalid timestamp "12a""#),
            (Ns, "m f=1 1.5", r#"line 1, column 7: invalid timestamp "1.5""#),
            (Ns, "m f=1 99999999999999999999", r#"line 1, column 7: timestamp "99999999999999999999" is out of range"#),
            (S, "m f=1 9223372036854776", r#"line 1, column 7: timestamp "9223372036854776" is out of range"#),
            (Ns, "m f=1 1 2", "line 1, column 9: unexpected text after the timestamp"),
            (Ns, "m f=1\nm f=1\r\nm f=\u{e9}", r#"line 3, column 5: field "f" has invalid value "é""#),
        ];
        for &(precision, input, want) in cases {
            assert_eq!(error(precision, input), want, "input: {input:?}");
        }
    }

    #[test]
    fn invalid_utf8() {
        let err = decode(b"m f=1\nm,t=a\xff f=1", Precision::Ns, 0, &Limits::default());
        assert_eq!(err.unwrap_err().to_string(), "line 2, column 6: invalid UTF-8");
    }

    #[test]
    fn limits() {
        let limits = Limits { max_body_bytes: 10, max_decoded_bytes: 1 << 20 };
        let err = decode(b"m f=1 1\nm f=2 2", Precision::Ns, 0, &limits).unwrap_err();
        assert_eq!(err.to_string(), "influx body is 15 bytes, over the limit of 10 bytes");

        // many tags times many fields would expand far beyond the body
        let tags: String = (0..200).map(|i| format!(",tag{i}=value{i}")).collect();
        let fields: Vec<String> = (0..200).map(|i| format!("f{i}=1")).collect();
        let body = format!("m{tags} {}", fields.join(","));
        let limits = Limits { max_body_bytes: 1 << 20, max_decoded_bytes: 1 << 20 };
        let err = decode(body.as_bytes(), Precision::Ns, 0, &limits).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 1: decoded series take more than the limit of 1048576 bytes"
        );
        assert!(decode(body.as_bytes(), Precision::Ns, 0, &Limits::default()).is_ok());
    }

    #[test]
    fn precision_parse() {
        for (s, p) in [
            ("ns", Precision::Ns),
            ("n", Precision::Ns),
            ("us", Precision::Us),
            ("u", Precision::Us),
            ("ms", Precision::Ms),
            ("s", Precision::S),
        ] {
            assert_eq!(Precision::parse(s).unwrap(), p);
        }
        assert_eq!(
            Precision::parse("h").unwrap_err().to_string(),
            r#"invalid precision "h": expected one of ns, n, us, u, ms, s"#
        );
    }

    /// A field value as the test encoder writes it.
    #[derive(Clone, Debug)]
    enum Value {
        Float(f64),
        Int(i64),
        Uint(u64),
        Bool(bool),
        Str(String),
    }

    #[derive(Clone, Debug)]
    struct TestPoint {
        measurement: String,
        tags: Vec<(String, String)>,
        fields: Vec<(String, Value)>,
        t: Option<i64>,
    }

    /// Writes `s` with a backslash before `\` and each byte in `special`.
    fn escape(s: &str, special: &str) -> String {
        let mut out = String::new();
        for c in s.chars() {
            if c == '\\' || special.contains(c) {
                out.push('\\');
            }
            out.push(c);
        }
        out
    }

    /// The tiny encoder the round trip goes through.
    fn encode_line(p: &TestPoint) -> String {
        let mut line = escape(&p.measurement, ", ");
        for (k, v) in &p.tags {
            write!(line, ",{}={}", escape(k, ",= "), escape(v, ",= ")).unwrap();
        }
        for (i, (k, v)) in p.fields.iter().enumerate() {
            line.push(if i == 0 { ' ' } else { ',' });
            write!(line, "{}=", escape(k, ",= ")).unwrap();
            match v {
                Value::Float(f) => write!(line, "{f:?}"),
                Value::Int(n) => write!(line, "{n}i"),
                Value::Uint(n) => write!(line, "{n}u"),
                Value::Bool(b) => write!(line, "{b}"),
                Value::Str(s) => write!(line, "\"{}\"", escape(s, "\"")),
            }
            .unwrap();
        }
        if let Some(t) = p.t {
            write!(line, " {t}").unwrap();
        }
        line
    }

    fn name() -> impl Strategy<Value = String> {
        "[a-zA-Z_][a-zA-Z0-9_ ,=\\\\.\"é:-]{0,6}"
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::Float),
            any::<i64>().prop_map(Value::Int),
            any::<u64>().prop_map(Value::Uint),
            any::<bool>().prop_map(Value::Bool),
            "[^\n]{0,8}".prop_map(Value::Str),
        ]
    }

    fn point() -> impl Strategy<Value = TestPoint> {
        (
            name(),
            prop::collection::vec((name(), "[^\n]{0,8}"), 0..4),
            prop::collection::vec((name(), value()), 1..5),
            prop::option::of(-(1i64 << 50)..(1i64 << 50)),
        )
            .prop_map(|(measurement, mut tags, mut fields, t)| {
                let mut seen = Vec::new();
                tags.retain(|(k, _)| {
                    let n = sanitize(k, false);
                    !seen.contains(&n) && {
                        seen.push(n);
                        true
                    }
                });
                let mut seen = Vec::new();
                fields.retain(|(k, _)| {
                    let n = sanitize_rest(k, true);
                    !seen.contains(&n) && {
                        seen.push(n);
                        true
                    }
                });
                TestPoint { measurement, tags, fields, t }
            })
    }

    /// What decoding the encoded points should give, built without the decoder's grouping.
    fn expected(points: &[TestPoint], precision: Precision) -> Vec<DecodedSeries> {
        let mut out: Vec<DecodedSeries> = Vec::new();
        for p in points {
            let t = match (p.t, precision) {
                (None, _) => NOW,
                (Some(t), Precision::Ns) => t.div_euclid(1_000_000),
                (Some(t), Precision::Us) => t.div_euclid(1_000),
                (Some(t), Precision::Ms) => t,
                (Some(t), Precision::S) => t * 1_000,
            };
            for (k, v) in &p.fields {
                let v = match v {
                    Value::Float(f) => *f,
                    Value::Int(n) => *n as f64,
                    Value::Uint(n) => *n as f64,
                    Value::Bool(b) => f64::from(u8::from(*b)),
                    Value::Str(_) => continue,
                };
                let name = format!("{}_{}", sanitize(&p.measurement, true), sanitize_rest(k, true));
                let pairs = p.tags.iter().map(|(k, v)| (sanitize(k, false), v.clone()));
                let labels =
                    Labels::from_pairs(pairs.chain([(METRIC_NAME.to_owned(), name)])).unwrap();
                let sample = model::Sample::new(t, v);
                match out.iter_mut().find(|s| s.labels == labels) {
                    Some(s) => s.samples.push(sample),
                    None => out.push(DecodedSeries { labels, samples: vec![sample] }),
                }
            }
        }
        out
    }

    fn precision() -> impl Strategy<Value = Precision> {
        prop_oneof![
            Just(Precision::Ns),
            Just(Precision::Us),
            Just(Precision::Ms),
            Just(Precision::S)
        ]
    }

    proptest! {
        #[test]
        fn round_trip(
            points in prop::collection::vec(point(), 0..6),
            precision in precision(),
            crlf in any::<bool>(),
        ) {
            let sep = if crlf { "\r\n" } else { "\n" };
            let body: Vec<String> = points.iter().map(encode_line).collect();
            let body = body.join(sep);
            let got = decode(body.as_bytes(), precision, NOW, &Limits::default())
                .map_err(|e| TestCaseError::fail(format!("{body:?}: {e}")))?;
            let want = expected(&points, precision);
            prop_assert_eq!(got.len(), want.len(), "{:?}", body);
            for (g, w) in got.iter().zip(&want) {
                prop_assert_eq!(&g.labels, &w.labels);
                prop_assert_eq!(g.samples.len(), w.samples.len());
                for (gs, ws) in g.samples.iter().zip(&w.samples) {
                    prop_assert!(gs.bit_eq(ws), "{}: got {:?}, want {:?}", w.labels, gs, ws);
                }
            }
        }

        #[test]
        fn random_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&body, Precision::Ns, NOW, &Limits::default());
        }

        #[test]
        fn near_miss_text_never_panics_and_yields_valid_series(
            body in "[a-c0-9 ,=\\\\\"\n\r#.eE+iutf:-]{0,80}",
            db in prop::option::of("[a-z]{0,3}"),
        ) {
            let (limits, db) = (Limits::default(), db.as_deref());
            if let Ok(series) = decode_with_db(body.as_bytes(), Precision::Ms, NOW, &limits, db) {
                for s in series {
                    prop_assert!(s.labels.validate().is_ok(), "{}", s.labels);
                    prop_assert!(!s.samples.is_empty());
                }
            }
        }
    }
}
