//! Ocelli's native JSON push format for simple clients: VictoriaMetrics' JSON-lines import
//! format (what `/api/v1/import` takes and `/api/v1/export` writes there), decoded into the same
//! [`DecodedSeries`] as remote_write.
//!
//! [`decode`] takes an uncompressed body: decompression and status codes are the server's job,
//! and storing the result is the storage engine's. A body is one JSON object per line:
//!
//! ```text
//! {"metric":{"__name__":"up","job":"node"},"values":[1,0.5],"timestamps":[1700000000000,1700000010000]}
//! ```
//!
//! - `metric` is an object of label names to string values and must hold `__name__`. Names are
//!   checked, not sanitised: a metric name outside `[a-zA-Z_:][a-zA-Z0-9_:]*` or a label name
//!   outside `[a-zA-Z_][a-zA-Z0-9_]*` is an error, as is the same name twice. Labels with an
//!   empty value are dropped after that check.
//! - `values` is an array of numbers (any JSON number that fits an `f64`) or of the strings
//!   `"NaN"`, `"Inf"`, `"+Inf"` and `"-Inf"`; `timestamps` is an array of integer
//!   milliseconds since the Unix epoch, one per value (the two lengths must match).
//! - All three members are required and no other member is allowed (a misspelt `timestamp`
//!   is an error rather than a line silently stored without its timestamps).
//! - Blank lines are skipped and a `\r` before the `\n` is dropped.
//!
//! Decoding is all-or-nothing: the first error returns `Err`, naming the 1-based line and the
//! byte column within it where `serde_json` stopped, and what was wrong (`line 2, column 31:
//! invalid label name "1a"`). Lines with the same label set are gathered into one
//! [`DecodedSeries`], samples in body order; series come in order of first appearance.
//! Memory is bounded by [`Limits::max_body_bytes`] (a sample costs at least two bytes of body)
//! and [`Limits::max_samples`].
//!
//! Deliberately absent: `null` values (refused, not taken as stale markers), and
//! VictoriaMetrics' other import formats (CSV, native binary).

use std::collections::BTreeMap;
use std::fmt;

use ocelli_model::{
    self as model, Label, Labels, METRIC_NAME, is_valid_label_name, is_valid_metric_name,
};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::remote_write::DecodedSeries;
use crate::series::SeriesSet;
use crate::{Error, Result};

/// Size caps for one JSON-lines body.
pub use crate::text::Limits;

/// Decodes a JSON-lines body. See the module doc for the rules.
pub fn decode(body: &[u8], limits: &Limits) -> Result<Vec<DecodedSeries>> {
    if body.len() > limits.max_body_bytes {
        return Err(Error::JsonBodyTooLarge { len: body.len(), max: limits.max_body_bytes });
    }
    let mut out = SeriesSet::default();
    let mut samples = 0usize;
    for (i, raw) in body.split(|&c| c == b'\n').enumerate() {
        let line_no = i + 1;
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.iter().all(|c| c.is_ascii_whitespace()) {
            continue;
        }
        let parsed = parse_line(line).map_err(|e| line_error(line_no, &e))?;
        samples = samples.saturating_add(parsed.samples.len());
        if samples > limits.max_samples {
            return Err(Error::JsonTooManySamples { line: line_no, max: limits.max_samples });
        }
        if !parsed.samples.is_empty() {
            out.extend(parsed.labels, parsed.samples);
        }
    }
    Ok(out.into_vec())
}

/// Parses one line: exactly one object, with nothing but whitespace after it.
fn parse_line(line: &[u8]) -> serde_json::Result<DecodedSeries> {
    let mut de = serde_json::Deserializer::from_slice(line);
    let series = de.deserialize_map(LineVisitor)?;
    de.end()?;
    Ok(series)
}

/// `serde_json` appends " at line L column C" to its messages; the line is always 1 here (one
/// body line is parsed at a time), so the body's line number replaces it.
fn line_error(line: usize, e: &serde_json::Error) -> Error {
    let text = e.to_string();
    let reason = match text.rsplit_once(" at line ") {
        Some((reason, _)) if e.line() > 0 => reason.to_owned(),
        _ => text,
    };
    Error::JsonLine { line, column: e.column().max(1), reason }
}

/// The members of a line object.
const FIELDS: &[&str] = &["metric", "values", "timestamps"];

struct LineVisitor;

impl<'de> Visitor<'de> for LineVisitor {
    type Value = DecodedSeries;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object with \"metric\", \"values\" and \"timestamps\"")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DecodedSeries, A::Error> {
        let mut labels: Option<Labels> = None;
        let mut values: Option<Vec<f64>> = None;
        let mut timestamps: Option<Vec<i64>> = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Metric if labels.is_some() => {
                    return Err(de::Error::duplicate_field("metric"));
                }
                Key::Values if values.is_some() => {
                    return Err(de::Error::duplicate_field("values"));
                }
                Key::Timestamps if timestamps.is_some() => {
                    return Err(de::Error::duplicate_field("timestamps"));
                }
                Key::Metric => labels = Some(map.next_value_seed(MetricSeed)?),
                Key::Values => values = Some(map.next_value_seed(SeqSeed(ValueSeed))?),
                Key::Timestamps => timestamps = Some(map.next_value_seed(SeqSeed(TimestampSeed))?),
            }
        }
        let labels = labels.ok_or_else(|| de::Error::missing_field("metric"))?;
        let values = values.ok_or_else(|| de::Error::missing_field("values"))?;
        let timestamps = timestamps.ok_or_else(|| de::Error::missing_field("timestamps"))?;
        if values.len() != timestamps.len() {
            return Err(de::Error::custom(format_args!(
                "\"values\" has {} elements but \"timestamps\" has {}",
                values.len(),
                timestamps.len()
            )));
        }
        let samples = timestamps.into_iter().zip(values).map(|(t, v)| model::Sample::new(t, v));
        Ok(DecodedSeries { labels, samples: samples.collect() })
    }
}

/// A member name of a line object.
enum Key {
    Metric,
    Values,
    Timestamps,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"metric\", \"values\" or \"timestamps\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Key, E> {
                match s {
                    "metric" => Ok(Key::Metric),
                    "values" => Ok(Key::Values),
                    "timestamps" => Ok(Key::Timestamps),
                    _ => Err(de::Error::unknown_field(s, FIELDS)),
                }
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// The `metric` object, checked as it is read so that errors point at the bad name.
struct MetricSeed;

impl<'de> DeserializeSeed<'de> for MetricSeed {
    type Value = Labels;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Labels, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for MetricSeed {
    type Value = Labels;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of label names to string values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
        let mut pairs: BTreeMap<String, String> = BTreeMap::new();
        while let Some(name) = map.next_key::<String>()? {
            if name != METRIC_NAME && !is_valid_label_name(&name) {
                return Err(de::Error::custom(format_args!("invalid label name {name:?}")));
            }
            if pairs.contains_key(&name) {
                return Err(de::Error::custom(format_args!("duplicate label name {name:?}")));
            }
            let value: String = map.next_value()?;
            if name == METRIC_NAME && !is_valid_metric_name(&value) {
                return Err(de::Error::custom(format_args!("invalid metric name {value:?}")));
            }
            pairs.insert(name, value);
        }
        if !pairs.contains_key(METRIC_NAME) {
            return Err(de::Error::custom(model::Error::MissingMetricName));
        }
        let labels = pairs.into_iter().filter(|(_, v)| !v.is_empty());
        Ok(Labels::from_sorted(labels.map(|(name, value)| Label { name, value }).collect()))
    }
}

/// An array whose elements are read with the seed `S`.
struct SeqSeed<S>(S);

impl<'de, S: DeserializeSeed<'de> + Copy> DeserializeSeed<'de> for SeqSeed<S> {
    type Value = Vec<S::Value>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, S: DeserializeSeed<'de> + Copy> Visitor<'de> for SeqSeed<S> {
    type Value = Vec<S::Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // no `size_hint` preallocation: the body bounds how many elements there can be
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self.0)? {
            out.push(v);
        }
        Ok(out)
    }
}

/// One element of `values`: a number, or `"NaN"`, `"Inf"`, `"+Inf"`, `"-Inf"`.
#[derive(Clone, Copy)]
struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = f64;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<f64, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for ValueSeed {
    type Value = f64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number or one of \"NaN\", \"Inf\", \"+Inf\", \"-Inf\"")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<f64, E> {
        match s {
            "NaN" => Ok(f64::NAN),
            "Inf" | "+Inf" => Ok(f64::INFINITY),
            "-Inf" => Ok(f64::NEG_INFINITY),
            _ => Err(de::Error::invalid_value(de::Unexpected::Str(s), &self)),
        }
    }
}

/// One element of `timestamps`: integer milliseconds that fit an `i64`.
#[derive(Clone, Copy)]
struct TimestampSeed;

impl<'de> DeserializeSeed<'de> for TimestampSeed {
    type Value = i64;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<i64, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for TimestampSeed {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an integer timestamp in milliseconds")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| de::Error::invalid_value(de::Unexpected::Unsigned(v), &self))
    }
}

#[cfg(test)]
mod tests;
