//! OTLP/JSON: an `ExportMetricsServiceRequest` in the protobuf JSON mapping, read into the same
//! [`super::proto`] messages that the protobuf decoder fills, so that both encodings go through
//! one converter.
//!
//! The mapping, with OTLP's deviations from plain protobuf JSON:
//! - field names in lowerCamelCase (`timeUnixNano`); the `.proto` snake_case names
//!   (`time_unix_nano`) are accepted too, as protobuf JSON parsers do, but not both in one
//!   object;
//! - 64-bit integers as decimal strings (`"1544712660300000000"`) or JSON numbers; 32-bit ones
//!   (`flags`) likewise; a number with an exponent or a fraction is accepted only if it is a
//!   whole number in range;
//! - doubles as JSON numbers, numeric strings, or `"NaN"`, `"Infinity"`, `"-Infinity"`;
//! - `traceId` and `spanId` as hex strings (either case), not base64; other bytes
//!   (`bytesValue`) as base64, standard or URL-safe, padded or not;
//! - enums (`aggregationTemporality`) as integers, or as their names
//!   (`"AGGREGATION_TEMPORALITY_CUMULATIVE"`);
//! - `null` for any field means the field is absent; unknown fields are ignored (their values
//!   are not checked), as are the fields [`super::proto`] does not model;
//! - at most one member of a oneof (a metric's `gauge`/`sum`/..., a point's
//!   `asDouble`/`asInt`, an `AnyValue`'s members) may be set;
//! - a key repeated within one object is not refused: the last one counts (serde_json's map).
//!
//! Errors name the object they are in by its JSON path
//! (`resourceMetrics[0].scopeMetrics[1].metrics[0].gauge.dataPoints[2]`, with the field names
//! the client used) and then the field: `expected a string or number for timeUnixNano, found
//! true`. A body that is not JSON at all is `OTLP request: invalid JSON: ...` with serde_json's
//! line and column. Nesting deeper than serde_json's limit of 128 is refused as invalid JSON.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value as J};

use super::proto::{
    AnyValue, ArrayValue, Data, Exemplar, ExemplarValue, ExponentialHistogram,
    ExponentialHistogramDataPoint, ExportMetricsServiceRequest, Gauge, Histogram,
    HistogramDataPoint, InstrumentationScope, KeyValue, KeyValueList, Metric, NumberDataPoint,
    Resource, ResourceMetrics, ScopeMetrics, Sum, Summary, SummaryDataPoint, Value,
    ValueAtQuantile, any_value,
};
use crate::{Error, Result};

/// What an error says when the path is the whole request.
const ROOT: &str = "OTLP request";

/// Parses a JSON body into the request messages.
pub(super) fn request(body: &[u8]) -> Result<ExportMetricsServiceRequest> {
    let v: J = serde_json::from_slice(body).map_err(|e| Error::OtlpInvalid {
        path: ROOT.to_owned(),
        reason: format!("invalid JSON: {e}"),
    })?;
    let mut root = Obj::new(String::new(), v)?;
    Ok(ExportMetricsServiceRequest {
        resource_metrics: root.messages("resourceMetrics", resource_metrics)?,
    })
}

fn resource_metrics(mut o: Obj) -> Result<ResourceMetrics> {
    Ok(ResourceMetrics {
        resource: o.message("resource", |mut o| {
            Ok(Resource { attributes: o.messages("attributes", key_value)? })
        })?,
        scope_metrics: o.messages("scopeMetrics", scope_metrics)?,
    })
}

fn scope_metrics(mut o: Obj) -> Result<ScopeMetrics> {
    Ok(ScopeMetrics {
        scope: o.message("scope", |mut o| {
            Ok(InstrumentationScope {
                name: o.string("name")?,
                version: o.string("version")?,
                attributes: o.messages("attributes", key_value)?,
            })
        })?,
        metrics: o.messages("metrics", metric)?,
    })
}

fn metric(mut o: Obj) -> Result<Metric> {
    const DATA: [&str; 5] = ["gauge", "sum", "histogram", "exponentialHistogram", "summary"];
    let data = match o.oneof(&DATA)? {
        None => None,
        Some((i, key, v)) => {
            let mut d = Obj::new(o.child(&key), v)?;
            Some(match i {
                0 => Data::Gauge(Gauge { data_points: d.messages("dataPoints", number)? }),
                1 => Data::Sum(Sum {
                    data_points: d.messages("dataPoints", number)?,
                    aggregation_temporality: d.temporality()?,
                    is_monotonic: d.boolean("isMonotonic")?,
                }),
                2 => Data::Histogram(Histogram {
                    data_points: d.messages("dataPoints", histogram_point)?,
                    aggregation_temporality: d.temporality()?,
                }),
                3 => Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: d
                        .messages("dataPoints", |_| Ok(ExponentialHistogramDataPoint {}))?,
                    aggregation_temporality: d.temporality()?,
                }),
                _ => {
                    Data::Summary(Summary { data_points: d.messages("dataPoints", summary_point)? })
                }
            })
        }
    };
    Ok(Metric {
        name: o.string("name")?,
        description: o.string("description")?,
        unit: o.string("unit")?,
        data,
    })
}

fn number(mut o: Obj) -> Result<NumberDataPoint> {
    let value = match o.oneof(&["asDouble", "asInt"])? {
        None => None,
        Some((0, key, v)) => Some(Value::AsDouble(o.to_double(&key, v)?)),
        Some((_, key, v)) => Some(Value::AsInt(o.to_int(&key, v)?)),
    };
    Ok(NumberDataPoint {
        attributes: o.messages("attributes", key_value)?,
        time_unix_nano: o.uint64("timeUnixNano")?,
        value,
        exemplars: o.messages("exemplars", exemplar)?,
        flags: o.uint32("flags")?,
    })
}

fn histogram_point(mut o: Obj) -> Result<HistogramDataPoint> {
    Ok(HistogramDataPoint {
        attributes: o.messages("attributes", key_value)?,
        time_unix_nano: o.uint64("timeUnixNano")?,
        count: o.uint64("count")?,
        sum: o.take("sum")?.map(|(key, v)| o.to_double(&key, v)).transpose()?,
        bucket_counts: o.scalars("bucketCounts", Obj::to_uint64)?,
        explicit_bounds: o.scalars("explicitBounds", Obj::to_double)?,
        exemplars: o.messages("exemplars", exemplar)?,
        flags: o.uint32("flags")?,
    })
}

fn summary_point(mut o: Obj) -> Result<SummaryDataPoint> {
    Ok(SummaryDataPoint {
        attributes: o.messages("attributes", key_value)?,
        time_unix_nano: o.uint64("timeUnixNano")?,
        count: o.uint64("count")?,
        sum: o.double("sum")?,
        quantile_values: o.messages("quantileValues", |mut o| {
            Ok(ValueAtQuantile { quantile: o.double("quantile")?, value: o.double("value")? })
        })?,
        flags: o.uint32("flags")?,
    })
}

fn exemplar(mut o: Obj) -> Result<Exemplar> {
    let value = match o.oneof(&["asDouble", "asInt"])? {
        None => None,
        Some((0, key, v)) => Some(ExemplarValue::AsDouble(o.to_double(&key, v)?)),
        Some((_, key, v)) => Some(ExemplarValue::AsInt(o.to_int(&key, v)?)),
    };
    Ok(Exemplar {
        filtered_attributes: o.messages("filteredAttributes", key_value)?,
        time_unix_nano: o.uint64("timeUnixNano")?,
        value,
        span_id: o.hex("spanId")?,
        trace_id: o.hex("traceId")?,
    })
}

fn key_value(mut o: Obj) -> Result<KeyValue> {
    Ok(KeyValue { key: o.string("key")?, value: o.message("value", any)? })
}

fn any(mut o: Obj) -> Result<AnyValue> {
    use any_value::Value as V;
    const MEMBERS: [&str; 7] = [
        "stringValue",
        "boolValue",
        "intValue",
        "doubleValue",
        "arrayValue",
        "kvlistValue",
        "bytesValue",
    ];
    let Some((i, key, v)) = o.oneof(&MEMBERS)? else {
        return Ok(AnyValue { value: None });
    };
    let value = match i {
        0 => V::StringValue(o.to_string(&key, v)?),
        1 => V::BoolValue(o.to_bool(&key, v)?),
        2 => V::IntValue(o.to_int(&key, v)?),
        3 => V::DoubleValue(o.to_double(&key, v)?),
        4 => {
            let mut a = Obj::new(o.child(&key), v)?;
            V::ArrayValue(ArrayValue { values: a.messages("values", any)? })
        }
        5 => {
            let mut kv = Obj::new(o.child(&key), v)?;
            V::KvlistValue(KeyValueList { values: kv.messages("values", key_value)? })
        }
        _ => V::BytesValue(o.to_base64(&key, v)?),
    };
    Ok(AnyValue { value: Some(value) })
}

/// One JSON object being read: its path for errors, and the fields not yet taken.
struct Obj {
    path: String,
    map: Map<String, J>,
}

impl Obj {
    fn new(path: String, v: J) -> Result<Obj> {
        match v {
            J::Object(map) => Ok(Obj { path, map }),
            other => Err(Error::OtlpInvalid {
                path: if path.is_empty() { ROOT.to_owned() } else { path },
                reason: format!("expected an object, found {}", found(&other)),
            }),
        }
    }

    fn err(&self, reason: String) -> Error {
        let path = if self.path.is_empty() { ROOT } else { &self.path };
        Error::OtlpInvalid { path: path.to_owned(), reason }
    }

    fn child(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_owned() } else { format!("{}.{key}", self.path) }
    }

    /// Takes the field named `camel` or its snake_case twin, as the key the client used and
    /// its value; `None` when neither is there or it is `null`.
    fn take(&mut self, camel: &str) -> Result<Option<(String, J)>> {
        let snake = snake_case(camel);
        let a = self.map.remove(camel).filter(|v| !v.is_null());
        let b = match &snake {
            Some(s) => self.map.remove(s.as_str()).filter(|v| !v.is_null()),
            None => None,
        };
        match (a, b) {
            (Some(_), Some(_)) => Err(self
                .err(format!("both {camel} and {} are set", snake.as_deref().unwrap_or_default()))),
            (Some(v), None) => Ok(Some((camel.to_owned(), v))),
            (None, Some(v)) => Ok(Some((snake.unwrap_or_default(), v))),
            (None, None) => Ok(None),
        }
    }

    /// Takes the one member of a oneof that is set: its index in `members`, key and value.
    fn oneof(&mut self, members: &[&str]) -> Result<Option<(usize, String, J)>> {
        let mut set = None;
        for (i, m) in members.iter().enumerate() {
            if let Some((key, v)) = self.take(m)? {
                if let Some((_, first, _)) = &set {
                    return Err(self.err(format!("both {first} and {key} are set (a oneof)")));
                }
                set = Some((i, key, v));
            }
        }
        Ok(set)
    }

    fn message<T>(&mut self, camel: &str, f: impl FnOnce(Obj) -> Result<T>) -> Result<Option<T>> {
        match self.take(camel)? {
            None => Ok(None),
            Some((key, v)) => f(Obj::new(self.child(&key), v)?).map(Some),
        }
    }

    fn array(&mut self, camel: &str) -> Result<Option<(String, Vec<J>)>> {
        match self.take(camel)? {
            None => Ok(None),
            Some((key, J::Array(a))) => Ok(Some((key, a))),
            Some((key, other)) => {
                Err(self.err(format!("expected an array for {key}, found {}", found(&other))))
            }
        }
    }

    fn messages<T>(&mut self, camel: &str, mut f: impl FnMut(Obj) -> Result<T>) -> Result<Vec<T>> {
        let Some((key, a)) = self.array(camel)? else { return Ok(Vec::new()) };
        let path = self.child(&key);
        let mut out = Vec::with_capacity(a.len());
        for (i, v) in a.into_iter().enumerate() {
            out.push(f(Obj::new(format!("{path}[{i}]"), v)?)?);
        }
        Ok(out)
    }

    fn scalars<T>(&mut self, camel: &str, f: fn(&Obj, &str, J) -> Result<T>) -> Result<Vec<T>> {
        let Some((key, a)) = self.array(camel)? else { return Ok(Vec::new()) };
        a.into_iter().enumerate().map(|(i, v)| f(self, &format!("{key}[{i}]"), v)).collect()
    }

    fn string(&mut self, camel: &str) -> Result<String> {
        self.take(camel)?.map_or(Ok(String::new()), |(key, v)| self.to_string(&key, v))
    }

    fn boolean(&mut self, camel: &str) -> Result<bool> {
        self.take(camel)?.map_or(Ok(false), |(key, v)| self.to_bool(&key, v))
    }

    fn uint64(&mut self, camel: &str) -> Result<u64> {
        self.take(camel)?.map_or(Ok(0), |(key, v)| self.to_uint64(&key, v))
    }

    fn uint32(&mut self, camel: &str) -> Result<u32> {
        self.take(camel)?.map_or(Ok(0), |(key, v)| {
            self.integer(&key, v, "an unsigned 32-bit integer", |i| u32::try_from(i).ok())
        })
    }

    fn double(&mut self, camel: &str) -> Result<f64> {
        self.take(camel)?.map_or(Ok(0.0), |(key, v)| self.to_double(&key, v))
    }

    fn hex(&mut self, camel: &str) -> Result<Vec<u8>> {
        let Some((key, v)) = self.take(camel)? else { return Ok(Vec::new()) };
        let s = self.to_string(&key, v)?;
        hex_bytes(&s).ok_or_else(|| {
            self.err(format!("expected a hex string for {key}, found {}", found(&J::String(s))))
        })
    }

    /// `aggregationTemporality`: a number, or the enum value's name.
    fn temporality(&mut self) -> Result<i32> {
        let Some((key, v)) = self.take("aggregationTemporality")? else { return Ok(0) };
        let named = match &v {
            J::String(s) => match s.as_str() {
                "AGGREGATION_TEMPORALITY_UNSPECIFIED" => Some(0),
                "AGGREGATION_TEMPORALITY_DELTA" => Some(1),
                "AGGREGATION_TEMPORALITY_CUMULATIVE" => Some(2),
                _ => None,
            },
            J::Number(n) => integer(n).and_then(|i| i32::try_from(i).ok()),
            _ => None,
        };
        named.ok_or_else(|| {
            self.err(format!(
                "expected an AggregationTemporality (a number, or a name such as \
                 \"AGGREGATION_TEMPORALITY_CUMULATIVE\") for {key}, found {}",
                found(&v)
            ))
        })
    }

    fn to_string(&self, key: &str, v: J) -> Result<String> {
        match v {
            J::String(s) => Ok(s),
            other => Err(self.err(format!("expected a string for {key}, found {}", found(&other)))),
        }
    }

    fn to_bool(&self, key: &str, v: J) -> Result<bool> {
        match v {
            J::Bool(b) => Ok(b),
            other => {
                Err(self.err(format!("expected a boolean for {key}, found {}", found(&other))))
            }
        }
    }

    fn to_uint64(&self, key: &str, v: J) -> Result<u64> {
        self.integer(key, v, "an unsigned 64-bit integer", |i| u64::try_from(i).ok())
    }

    fn to_int(&self, key: &str, v: J) -> Result<i64> {
        self.integer(key, v, "a 64-bit integer", |i| i64::try_from(i).ok())
    }

    /// An integer from a JSON number or a decimal string, narrowed by `fit`.
    fn integer<T>(&self, key: &str, v: J, what: &str, fit: fn(i128) -> Option<T>) -> Result<T> {
        let i = match &v {
            J::Number(n) => integer(n),
            J::String(s) => s.parse::<i128>().ok(),
            other => {
                return Err(self.err(format!(
                    "expected a string or number for {key}, found {}",
                    found(other)
                )));
            }
        };
        i.and_then(fit)
            .ok_or_else(|| self.err(format!("expected {what} for {key}, found {}", found(&v))))
    }

    fn to_double(&self, key: &str, v: J) -> Result<f64> {
        let d = match &v {
            J::Number(n) => n.as_f64(),
            J::String(s) => match s.as_str() {
                "NaN" => Some(f64::NAN),
                "Infinity" => Some(f64::INFINITY),
                "-Infinity" => Some(f64::NEG_INFINITY),
                // Rust also reads "inf" and "nan"; protobuf JSON does not
                s if !s.is_empty() && s.bytes().all(|c| b"0123456789+-.eE".contains(&c)) => {
                    s.parse::<f64>().ok().filter(|d| d.is_finite())
                }
                _ => None,
            },
            _ => None,
        };
        d.ok_or_else(|| {
            self.err(format!(
                "expected a number, or \"NaN\", \"Infinity\" or \"-Infinity\", for {key}, \
                 found {}",
                found(&v)
            ))
        })
    }

    fn to_base64(&self, key: &str, v: J) -> Result<Vec<u8>> {
        /// Standard or URL-safe (mapped to standard first), padded or not.
        const LENIENT: GeneralPurpose = GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            GeneralPurposeConfig::new()
                .with_decode_padding_mode(DecodePaddingMode::Indifferent)
                .with_decode_allow_trailing_bits(true),
        );
        let s = self.to_string(key, v)?;
        let standard: String = s
            .chars()
            .map(|c| {
                if c == '-' {
                    '+'
                } else if c == '_' {
                    '/'
                } else {
                    c
                }
            })
            .collect();
        LENIENT.decode(standard).map_err(|_| {
            self.err(format!("expected a base64 string for {key}, found {}", found(&J::String(s))))
        })
    }
}

/// The whole number a JSON number is, if it is one (`5`, `-5`, `5.0`, `5e3`).
fn integer(n: &serde_json::Number) -> Option<i128> {
    if let Some(u) = n.as_u64() {
        return Some(i128::from(u));
    }
    if let Some(i) = n.as_i64() {
        return Some(i128::from(i));
    }
    // 2^64 as a float, and the bound past which i128 casts would saturate anyway
    let d = n.as_f64()?;
    (d.fract() == 0.0 && d.abs() <= 18_446_744_073_709_551_616.0).then_some(d as i128)
}

/// `timeUnixNano` gives `time_unix_nano`; `None` for a one-word name.
fn snake_case(camel: &str) -> Option<String> {
    if !camel.bytes().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    Some(out)
}

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16);
    s.as_bytes().chunks(2).map(|p| Some((digit(p[0])? * 16 + digit(p[1])?) as u8)).collect()
}

/// A JSON value as an error shows it: scalars as written (strings cut at 40 characters),
/// arrays and objects by kind.
fn found(v: &J) -> String {
    match v {
        J::Array(_) => "an array".to_owned(),
        J::Object(_) => "an object".to_owned(),
        J::String(s) if s.chars().count() > 40 => {
            format!("{:?}...", s.chars().take(40).collect::<String>())
        }
        other => other.to_string(),
    }
}
