//! OTLP/HTTP metrics: an `ExportMetricsServiceRequest` in protobuf (the messages are in
//! [`proto`]) or in OTLP/JSON, converted to Prometheus series as the OpenTelemetry
//! specification's "Prometheus and OpenMetrics compatibility" section says, and as Prometheus'
//! own OTLP receiver does where the specification leaves a choice.
//!
//! [`decode`] takes an uncompressed protobuf body and [`decode_json`] an uncompressed
//! `application/json` one (gzip, content types and status codes are the server's job); both
//! return [`Decoded`]: the series, the metadata of each metric family, the exemplars, and the
//! data points that were dropped because Prometheus series cannot hold them, with why. The
//! response bodies are [`Decoded::response`] and [`error_status`] for protobuf,
//! [`Decoded::response_json`] and [`error_status_json`] for JSON. [`encode`] writes series back
//! as an OTLP protobuf request of gauges, for tests, fuzzing and pushing clients.
//!
//! **JSON.** A JSON body is read into the same [`proto`] messages as a protobuf one and then
//! converted by the same code, so the same request gives the same [`Decoded`] in either
//! encoding (the paths in rejection lines and conversion errors are the protobuf field paths in
//! both). The mapping is protobuf's JSON mapping with OTLP's changes: lowerCamelCase field
//! names (the `.proto` snake_case names are accepted too), hex `traceId`/`spanId`, enums as
//! numbers or names, 64-bit integers as strings or numbers, doubles as numbers or `"NaN"`,
//! `"Infinity"`, `"-Infinity"`, unknown fields ignored. An error in the JSON itself names the
//! JSON path and field (`resourceMetrics[0].scopeMetrics[1].metrics[0].gauge.dataPoints[2]:
//! expected a string or number for timeUnixNano, found true`).
//!
//! **Names.** A metric name is split at every character outside `[a-zA-Z0-9:]` and the pieces
//! are joined with one `_` (so `http.server.request_duration` becomes
//! `http_server_request_duration`, and runs of `_` become one). The unit is added as a suffix
//! unless the name already ends with it: the main unit is mapped to its Prometheus word (`s` to
//! `seconds`, `By` to `bytes`, `ms`, `KiBy`, `Cel`, `%`... see `unit_word`; other units are
//! kept, sanitised), a unit after `/` becomes `per_<word>` (`By/s` gives `bytes_per_second`),
//! and a unit in braces (`{packet}`) is dropped. Then a monotonic cumulative sum gets `_total`
//! (unless the name already ends with it) and a gauge whose unit is `1` gets `_ratio`. A name
//! that would start with a digit gets a leading `_`. An attribute name has every character
//! outside `[a-zA-Z0-9]` replaced and runs of `_` collapsed to one `_` (so no attribute can
//! make a reserved `__` label), and gets a `key_` prefix if it starts with a digit. Attributes
//! whose names collide after that are joined: their values, in the order of the original
//! names, separated by `;`. Attribute values that are not strings are written as JSON (`true`,
//! `42`, `1.5`, `NaN`, arrays and maps as JSON text, bytes as base64). Empty values drop the
//! label, as everywhere in Prometheus.
//!
//! **Types.** A gauge and a cumulative non-monotonic sum become one series per point; a
//! cumulative monotonic sum becomes a counter (`_total`); a cumulative histogram becomes
//! `_bucket{le="<bound>"}` series with cumulative counts, `_bucket{le="+Inf"}` (the point's
//! count), `_sum` (when the point has one) and `_count`; a summary becomes `{quantile="<q>"}`
//! series, `_sum` and `_count`. Bounds and quantiles are written in the shortest decimal form
//! (`0.005`, `1`, `+Inf`). A point flagged "no recorded value" writes the stale marker
//! ([`ocelli_model::STALE_NAN`]) to every series it would have written. Timestamps go from
//! nanoseconds to milliseconds, rounding down. A number point with no value is 0, as in
//! Prometheus.
//!
//! **Resources.** `service.name` becomes `job` (`<service.namespace>/<service.name>` when
//! there is a namespace) and `service.instance.id` becomes `instance`, on every series of the
//! resource, overriding point attributes of those names. The other resource attributes become
//! one `target_info` series with value 1 (with `job` and `instance`), at the latest timestamp
//! among the resource's stored points; they are not copied onto the metrics. Generated labels
//! (`le`, `quantile`) also override attributes of the same name. Instrumentation scopes and
//! `Metric.metadata` hints are ignored (as by default in Prometheus' OTLP receiver), as are
//! start times, `min`/`max` and the exemplars of exponential histograms.
//!
//! **Metadata.** Each metric that is converted (not dropped, and with a type) gives one
//! [`Metadata`] for the family it becomes, the first time that family is seen: the family is
//! the metric's converted name as its series carry it, which is how Prometheus' OTLP receiver
//! keys metadata (a counter's family is `x_total`; a histogram's or summary's is the name
//! without `_bucket`/`_sum`/`_count`), so that looking up a series' `__name__` finds it. The
//! kind is [`MetricKind::Gauge`] for gauges and non-monotonic sums, `Counter` for monotonic
//! sums, `Histogram`, `Summary`; the help is the `description` (none when empty); the unit is
//! the words the unit gives the name (`seconds`, `bytes_per_second`, `per_second` for
//! `{packet}/s`; none for `1`, whose `_ratio` is a type suffix, or a unit in braces). A family
//! with no points still has metadata; `target_info` has none.
//!
//! **Exemplars.** The exemplars of number and histogram points become [`Exemplar`]s of the
//! series their point wrote: for a gauge or sum the point's series; for a histogram the
//! `_bucket` series of the first bound at or above the exemplar's value, else `le="+Inf"` (as
//! Prometheus places them). Their labels are the `filtered_attributes`, named and joined as
//! point attributes are, then `trace_id` and `span_id` as lowercase hex of the bytes (when not
//! empty), overriding attributes of those names. The value is `as_double` or `as_int` (0 when
//! neither), the timestamp `time_unix_nano` in milliseconds.
//!
//! **Dropped, not refused.** Points Prometheus cannot represent are dropped and reported in
//! [`Decoded::rejected_data_points`] and [`Decoded::partial_success`], OTLP's own way of
//! saying "the rest was stored": sums and histograms with delta (or unspecified) aggregation
//! temporality (Prometheus drops them too; converting delta to cumulative needs state across
//! requests, which a stateless decoder cannot hold) and exponential histograms (native
//! histograms are not stored). The client keeps its other points and is told, rather than
//! having the whole batch refused on every retry.
//!
//! **Refused.** A request that is not valid OTLP is an error, naming where
//! (`resource_metrics[0].scope_metrics[1].metrics[2].data_points[0]: ...`), and nothing of it is
//! returned: protobuf or JSON that does not decode, a metric or attribute name with no character valid
//! in a Prometheus name, a histogram point whose `bucket_counts` is neither empty nor one longer
//! than `explicit_bounds`, or whose bounds are not strictly increasing finite numbers (a last
//! bound of `+Inf` would repeat the implicit one), an exemplar attribute name with no valid
//! character. Memory is capped by [`Limits`]: the body size, and what the decoded series,
//! exemplars and metadata take (a histogram with many buckets and many attributes repeats the
//! attributes once per bucket). Before conversion a JSON body is held as a
//! `serde_json::Value` tree, several times the size of the body.

mod json;
pub mod proto;

use std::collections::HashSet;
use std::mem::size_of;

use base64::Engine as _;
use ocelli_model::{self as model, Label, Labels, METRIC_NAME, STALE_NAN};
use prost::Message as _;

use self::proto::{
    AggregationTemporality, AnyValue, Data, ExemplarValue, ExportMetricsPartialSuccess,
    ExportMetricsServiceRequest, FLAG_NO_RECORDED_VALUE, Gauge, HistogramDataPoint, KeyValue,
    Metric, NumberDataPoint, Resource, ResourceMetrics, ScopeMetrics, SummaryDataPoint, Value,
    any_value,
};
use crate::exposition::{Metadata, MetricKind};
use crate::remote_write::DecodedSeries;
use crate::series::{SeriesSet, float_label, labels_cost};
use crate::{Error, Exemplar, Result};

/// Size caps for one OTLP request.
pub use crate::series::Limits;

/// What a request decoded to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decoded {
    /// The series to store, in order of first appearance.
    pub series: Vec<DecodedSeries>,
    /// Data points dropped (see the module doc); zero when everything was converted.
    pub rejected_data_points: u64,
    /// One line per metric whose points were dropped, saying why (at most
    /// [`MAX_REJECTION_LINES`]; the rest are counted in the last line).
    pub rejections: Vec<String>,
    /// One entry per Prometheus metric family converted, in order of first appearance (see
    /// the module doc for its name, kind, help and unit).
    pub metadata: Vec<Metadata>,
    /// The exemplars of number and histogram points, in order, each attached to a series in
    /// [`Decoded::series`].
    pub exemplars: Vec<Exemplar>,
}

/// How many metrics [`Decoded::rejections`] names before it only counts.
pub const MAX_REJECTION_LINES: usize = 10;

impl Decoded {
    /// The `partial_success` of the response: `None` when nothing was dropped.
    pub fn partial_success(&self) -> Option<ExportMetricsPartialSuccess> {
        (self.rejected_data_points > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: i64::try_from(self.rejected_data_points).unwrap_or(i64::MAX),
            error_message: self.rejections.join("; "),
        })
    }
}

impl Decoded {
    /// The encoded `ExportMetricsServiceResponse` to answer with: empty when nothing was
    /// dropped, otherwise carrying [`Decoded::partial_success`].
    pub fn response(&self) -> Vec<u8> {
        proto::ExportMetricsServiceResponse { partial_success: self.partial_success() }
            .encode_to_vec()
    }

    /// [`Decoded::response`] in OTLP/JSON, for a request that came as JSON: `{}` when nothing
    /// was dropped, otherwise
    /// `{"partialSuccess":{"rejectedDataPoints":"2","errorMessage":"..."}}` (a 64-bit integer
    /// is a string in the protobuf JSON mapping).
    pub fn response_json(&self) -> Vec<u8> {
        let body = match self.partial_success() {
            None => serde_json::json!({}),
            Some(p) => {
                let mut ps = serde_json::Map::new();
                ps.insert("rejectedDataPoints".into(), p.rejected_data_points.to_string().into());
                if !p.error_message.is_empty() {
                    ps.insert("errorMessage".into(), p.error_message.into());
                }
                serde_json::json!({ "partialSuccess": ps })
            }
        };
        body.to_string().into_bytes()
    }
}

/// An encoded `google.rpc.Status`, the body of an OTLP/HTTP error response. `code` is a
/// `google.rpc.Code` (3 `INVALID_ARGUMENT`, 13 `INTERNAL`, 14 `UNAVAILABLE`...).
pub fn error_status(code: i32, message: &str) -> Vec<u8> {
    proto::Status { code, message: message.to_owned() }.encode_to_vec()
}

/// [`error_status`] in OTLP/JSON, for a request that came as JSON: `{"code":3,"message":"..."}`.
pub fn error_status_json(code: i32, message: &str) -> Vec<u8> {
    serde_json::json!({ "code": code, "message": message }).to_string().into_bytes()
}

/// Decodes an `ExportMetricsServiceRequest` in protobuf. See the module doc for the rules.
pub fn decode(body: &[u8], limits: &Limits) -> Result<Decoded> {
    check_size(body, limits)?;
    let req = ExportMetricsServiceRequest::decode(body)
        .map_err(|source| Error::OtlpProtobuf { source })?;
    convert(&req, limits)
}

/// Decodes an `ExportMetricsServiceRequest` in OTLP/JSON (`application/json`): the same
/// request gives the same [`Decoded`] as [`decode`] gives for its protobuf. See the module doc
/// for the mapping.
pub fn decode_json(body: &[u8], limits: &Limits) -> Result<Decoded> {
    check_size(body, limits)?;
    convert(&json::request(body)?, limits)
}

fn check_size(body: &[u8], limits: &Limits) -> Result<()> {
    if body.len() > limits.max_body_bytes {
        return Err(Error::OtlpBodyTooLarge { len: body.len(), max: limits.max_body_bytes });
    }
    Ok(())
}

/// The conversion both encodings share.
fn convert(req: &ExportMetricsServiceRequest, limits: &Limits) -> Result<Decoded> {
    let mut c = Converter { max: limits.max_decoded_bytes, ..Converter::default() };
    for (i, rm) in req.resource_metrics.iter().enumerate() {
        c.resource(&format!("resource_metrics[{i}]"), rm)?;
    }
    if c.rejected_metrics > MAX_REJECTION_LINES {
        let more = c.rejected_metrics - MAX_REJECTION_LINES;
        c.rejections.push(format!("and {more} more metrics"));
    }
    Ok(Decoded {
        series: c.series.into_vec(),
        rejected_data_points: c.rejected_points,
        rejections: c.rejections,
        metadata: c.metadata,
        exemplars: c.exemplars,
    })
}

/// The largest timestamp, in milliseconds, that OTLP's unsigned nanoseconds can hold.
pub const MAX_ENCODABLE_MS: i64 = (u64::MAX / 1_000_000) as i64;

/// Encodes series as an `ExportMetricsServiceRequest`: one resource without attributes, one
/// scope, and per series one gauge named after its `__name__`, with its other labels as
/// attributes and one point per sample (a stale marker as a point flagged "no recorded
/// value"). Series as [`decode`] returns them decode back to themselves.
///
/// Fails for a timestamp before 1970 or after [`MAX_ENCODABLE_MS`].
pub fn encode(series: &[DecodedSeries]) -> Result<Vec<u8>> {
    let metrics = series.iter().map(gauge).collect::<Result<Vec<_>>>()?;
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource::default()),
            scope_metrics: vec![ScopeMetrics { scope: None, metrics }],
        }],
    };
    Ok(req.encode_to_vec())
}

fn gauge(s: &DecodedSeries) -> Result<Metric> {
    let attributes: Vec<KeyValue> = s
        .labels
        .iter()
        .filter(|l| l.name != METRIC_NAME)
        .map(|l| KeyValue {
            key: l.name.clone(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue(l.value.clone())) }),
        })
        .collect();
    let data_points = s
        .samples
        .iter()
        .map(|x| {
            let ns = u64::try_from(x.t)
                .ok()
                .and_then(|t| t.checked_mul(1_000_000))
                .ok_or(Error::OtlpEncodeTimestamp { t: x.t, max: MAX_ENCODABLE_MS })?;
            let stale = model::is_stale_nan(x.v);
            Ok(NumberDataPoint {
                attributes: attributes.clone(),
                time_unix_nano: ns,
                value: (!stale).then_some(Value::AsDouble(x.v)),
                exemplars: Vec::new(),
                flags: if stale { FLAG_NO_RECORDED_VALUE } else { 0 },
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Metric {
        name: s.labels.metric_name().unwrap_or_default().to_owned(),
        description: String::new(),
        unit: String::new(),
        data: Some(Data::Gauge(Gauge { data_points })),
    })
}

/// What kind of Prometheus metric an OTLP metric becomes; decides the name's suffixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Gauge,
    /// A cumulative non-monotonic sum: a gauge, but without `_ratio`.
    UpDown,
    Counter,
    Histogram,
    Summary,
}

/// The resource's `job` and `instance`, and its other attributes as `target_info` labels.
#[derive(Debug, Default)]
struct Target {
    job: Option<String>,
    instance: Option<String>,
    info: Vec<(String, String)>,
}

#[derive(Debug, Default)]
struct Converter {
    series: SeriesSet,
    used: usize,
    max: usize,
    rejected_points: u64,
    rejected_metrics: usize,
    rejections: Vec<String>,
    metadata: Vec<Metadata>,
    families: HashSet<String>,
    exemplars: Vec<Exemplar>,
}

impl Converter {
    fn resource(&mut self, path: &str, rm: &ResourceMetrics) -> Result<()> {
        let attrs = rm.resource.as_ref().map_or(&[][..], |r| &r.attributes[..]);
        let string = |key: &str| {
            attrs
                .iter()
                .find(|kv| kv.key == key)
                .map(|kv| any_to_string(kv.value.as_ref()))
                .filter(|v| !v.is_empty())
        };
        let job = string("service.name").map(|name| match string("service.namespace") {
            Some(ns) => format!("{ns}/{name}"),
            None => name,
        });
        let instance = string("service.instance.id");
        let others: Vec<&KeyValue> = attrs
            .iter()
            .filter(|kv| {
                !matches!(
                    kv.key.as_str(),
                    "service.name" | "service.namespace" | "service.instance.id"
                )
            })
            .collect();
        let info = attribute_labels(&others, || format!("{path}.resource.attributes"))?;
        let target = Target { job, instance, info };

        let mut latest: Option<i64> = None;
        for (si, sm) in rm.scope_metrics.iter().enumerate() {
            for (mi, m) in sm.metrics.iter().enumerate() {
                let path = format!("{path}.scope_metrics[{si}].metrics[{mi}]");
                self.metric(&path, m, &target, &mut latest)?;
            }
        }
        if let Some(t) = latest
            && !target.info.is_empty()
        {
            let labels = series_labels(&target.info, &target, "target_info", None);
            self.add(labels, model::Sample::new(t, 1.0))?;
        }
        Ok(())
    }

    fn reject(&mut self, path: &str, m: &Metric, points: usize, why: &str) {
        if points == 0 {
            return;
        }
        self.rejected_points = self.rejected_points.saturating_add(points as u64);
        self.rejected_metrics += 1;
        if self.rejected_metrics <= MAX_REJECTION_LINES {
            self.rejections
                .push(format!("metric {:?} ({path}): {points} data points dropped: {why}", m.name));
        }
    }

    fn metric(
        &mut self,
        path: &str,
        m: &Metric,
        target: &Target,
        latest: &mut Option<i64>,
    ) -> Result<()> {
        let cumulative = |t: i32| match AggregationTemporality::try_from(t) {
            Ok(AggregationTemporality::Cumulative) => Ok(()),
            Ok(AggregationTemporality::Delta) => {
                Err("delta aggregation temporality is not supported; configure the exporter for \
                 cumulative temporality")
            }
            _ => Err("the aggregation temporality is unspecified"),
        };
        let name = |kind| {
            metric_name(&m.name, &m.unit, kind).ok_or_else(|| Error::OtlpInvalid {
                path: path.to_owned(),
                reason: format!("metric name {:?} has no character valid in a metric name", m.name),
            })
        };
        match &m.data {
            None => Ok(()),
            Some(Data::Gauge(g)) => {
                let name = name(Kind::Gauge)?;
                self.family(&name, Kind::Gauge, m)?;
                self.numbers(path, &name, &g.data_points, target, latest)
            }
            Some(Data::Sum(s)) => match cumulative(s.aggregation_temporality) {
                Ok(()) => {
                    let kind = if s.is_monotonic { Kind::Counter } else { Kind::UpDown };
                    let name = name(kind)?;
                    self.family(&name, kind, m)?;
                    self.numbers(path, &name, &s.data_points, target, latest)
                }
                Err(why) => {
                    self.reject(path, m, s.data_points.len(), why);
                    Ok(())
                }
            },
            Some(Data::Histogram(h)) => match cumulative(h.aggregation_temporality) {
                Ok(()) => {
                    let name = name(Kind::Histogram)?;
                    self.family(&name, Kind::Histogram, m)?;
                    for (i, p) in h.data_points.iter().enumerate() {
                        let path = format!("{path}.data_points[{i}]");
                        *latest = (*latest).max(Some(self.histogram(&path, &name, p, target)?));
                    }
                    Ok(())
                }
                Err(why) => {
                    self.reject(path, m, h.data_points.len(), why);
                    Ok(())
                }
            },
            Some(Data::ExponentialHistogram(e)) => {
                self.reject(
                    path,
                    m,
                    e.data_points.len(),
                    "exponential histograms are not supported",
                );
                Ok(())
            }
            Some(Data::Summary(s)) => {
                let name = name(Kind::Summary)?;
                self.family(&name, Kind::Summary, m)?;
                for (i, p) in s.data_points.iter().enumerate() {
                    let path = format!("{path}.data_points[{i}]");
                    *latest = (*latest).max(Some(self.summary(&path, &name, p, target)?));
                }
                Ok(())
            }
        }
    }

    fn numbers(
        &mut self,
        path: &str,
        name: &str,
        points: &[NumberDataPoint],
        target: &Target,
        latest: &mut Option<i64>,
    ) -> Result<()> {
        for (i, p) in points.iter().enumerate() {
            let path = format!("{path}.data_points[{i}]");
            let attrs = attribute_labels(&p.attributes, || format!("{path}.attributes"))?;
            let t = ms(p.time_unix_nano);
            let v = match p.value {
                _ if p.flags & FLAG_NO_RECORDED_VALUE != 0 => STALE_NAN,
                Some(Value::AsDouble(v)) => v,
                Some(Value::AsInt(v)) => v as f64,
                None => 0.0,
            };
            let labels = series_labels(&attrs, target, name, None);
            let exemplar_series = (!p.exemplars.is_empty()).then(|| labels.clone());
            self.add(labels, model::Sample::new(t, v))?;
            if let Some(series) = exemplar_series {
                for (j, e) in p.exemplars.iter().enumerate() {
                    self.exemplar(&format!("{path}.exemplars[{j}]"), series.clone(), e)?;
                }
            }
            *latest = (*latest).max(Some(t));
        }
        Ok(())
    }

    /// Writes one histogram point's series; returns its timestamp.
    fn histogram(
        &mut self,
        path: &str,
        name: &str,
        p: &HistogramDataPoint,
        target: &Target,
    ) -> Result<i64> {
        let invalid = |reason: String| Error::OtlpInvalid { path: path.to_owned(), reason };
        let bounds = &p.explicit_bounds;
        if !p.bucket_counts.is_empty() && p.bucket_counts.len() != bounds.len() + 1 {
            return Err(invalid(format!(
                "histogram {name:?} has {} bucket_counts and {} explicit_bounds (want no \
                 bucket_counts, or one more than explicit_bounds)",
                p.bucket_counts.len(),
                bounds.len()
            )));
        }
        if let Some(j) = bounds.iter().position(|b| b.is_nan() || *b == f64::INFINITY) {
            return Err(invalid(format!(
                "histogram {name:?}: explicit_bounds[{j}] is {} (bounds must be finite; the +Inf \
                 bucket is implicit)",
                bounds[j]
            )));
        }
        if let Some(j) = bounds.windows(2).position(|w| w[0] >= w[1]) {
            return Err(invalid(format!(
                "histogram {name:?}: explicit_bounds must be strictly increasing, found {} then {}",
                bounds[j],
                bounds[j + 1]
            )));
        }
        let attrs = attribute_labels(&p.attributes, || format!("{path}.attributes"))?;
        let t = ms(p.time_unix_nano);
        let stale = p.flags & FLAG_NO_RECORDED_VALUE != 0;
        let value = |v: f64| if stale { STALE_NAN } else { v };
        let bucket = format!("{name}_bucket");
        if !p.bucket_counts.is_empty() {
            let mut cumulative = 0u64;
            for (b, n) in bounds.iter().zip(&p.bucket_counts) {
                cumulative = cumulative.saturating_add(*n);
                let labels = series_labels(&attrs, target, &bucket, Some(("le", float_label(*b))));
                self.add(labels, model::Sample::new(t, value(cumulative as f64)))?;
            }
        }
        let inf = series_labels(&attrs, target, &bucket, Some(("le", "+Inf".to_owned())));
        self.add(inf, model::Sample::new(t, value(p.count as f64)))?;
        if let Some(sum) = p.sum {
            let labels = series_labels(&attrs, target, &format!("{name}_sum"), None);
            self.add(labels, model::Sample::new(t, value(sum)))?;
        }
        let labels = series_labels(&attrs, target, &format!("{name}_count"), None);
        self.add(labels, model::Sample::new(t, value(p.count as f64)))?;
        // each exemplar goes to the bucket it falls in, as Prometheus does: the first written
        // bound at or above its value, else +Inf
        for (j, e) in p.exemplars.iter().enumerate() {
            let v = exemplar_value(e);
            let le = match bounds.iter().find(|b| **b >= v) {
                Some(b) if !p.bucket_counts.is_empty() => float_label(*b),
                _ => "+Inf".to_owned(),
            };
            let series = series_labels(&attrs, target, &bucket, Some(("le", le)));
            self.exemplar(&format!("{path}.exemplars[{j}]"), series, e)?;
        }
        Ok(t)
    }

    /// Writes one summary point's series; returns its timestamp.
    fn summary(
        &mut self,
        path: &str,
        name: &str,
        p: &SummaryDataPoint,
        target: &Target,
    ) -> Result<i64> {
        let attrs = attribute_labels(&p.attributes, || format!("{path}.attributes"))?;
        let t = ms(p.time_unix_nano);
        let stale = p.flags & FLAG_NO_RECORDED_VALUE != 0;
        let value = |v: f64| if stale { STALE_NAN } else { v };
        for q in &p.quantile_values {
            let labels =
                series_labels(&attrs, target, name, Some(("quantile", float_label(q.quantile))));
            self.add(labels, model::Sample::new(t, value(q.value)))?;
        }
        let labels = series_labels(&attrs, target, &format!("{name}_sum"), None);
        self.add(labels, model::Sample::new(t, value(p.sum)))?;
        let labels = series_labels(&attrs, target, &format!("{name}_count"), None);
        self.add(labels, model::Sample::new(t, value(p.count as f64)))?;
        Ok(t)
    }

    /// Records the metadata of the family `name` the first time it is converted.
    fn family(&mut self, name: &str, kind: Kind, m: &Metric) -> Result<()> {
        if self.families.contains(name) {
            return Ok(());
        }
        let (main, per) = unit_words(&m.unit);
        let unit = match (main, per) {
            (Some(main), Some(per)) => Some(format!("{main}_{per}")),
            (main, per) => main.or(per),
        };
        let meta = Metadata {
            family: name.to_owned(),
            kind: match kind {
                Kind::Gauge | Kind::UpDown => MetricKind::Gauge,
                Kind::Counter => MetricKind::Counter,
                Kind::Histogram => MetricKind::Histogram,
                Kind::Summary => MetricKind::Summary,
            },
            help: (!m.description.is_empty()).then(|| m.description.clone()),
            unit,
        };
        let cost = size_of::<Metadata>()
            + 2 * name.len()
            + meta.help.as_ref().map_or(0, String::len)
            + meta.unit.as_ref().map_or(0, String::len);
        self.charge(cost)?;
        self.families.insert(name.to_owned());
        self.metadata.push(meta);
        Ok(())
    }

    /// Adds an exemplar of the series `series`; `path` names it for errors.
    fn exemplar(&mut self, path: &str, series: Labels, e: &proto::Exemplar) -> Result<()> {
        let attrs =
            attribute_labels(&e.filtered_attributes, || format!("{path}.filtered_attributes"))?;
        let mut map: std::collections::BTreeMap<String, String> = attrs.into_iter().collect();
        if !e.trace_id.is_empty() {
            map.insert("trace_id".to_owned(), hex(&e.trace_id));
        }
        if !e.span_id.is_empty() {
            map.insert("span_id".to_owned(), hex(&e.span_id));
        }
        let labels = Labels::from_sorted(map.into_iter().map(|(n, v)| Label::new(n, v)).collect());
        self.charge(
            size_of::<Exemplar>() + labels_cost(series.as_slice()) + labels_cost(labels.as_slice()),
        )?;
        self.exemplars.push(Exemplar {
            series,
            labels,
            value: exemplar_value(e),
            timestamp: ms(e.time_unix_nano),
        });
        Ok(())
    }

    fn charge(&mut self, bytes: usize) -> Result<()> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.max {
            return Err(Error::OtlpDecodedTooLarge { max: self.max });
        }
        Ok(())
    }

    /// Adds a sample, charging the new series and the sample against the memory cap.
    fn add(&mut self, labels: Labels, sample: model::Sample) -> Result<()> {
        let cost = labels_cost(labels.as_slice()) + size_of::<DecodedSeries>();
        let new = self.series.push(labels, sample);
        self.charge(size_of::<model::Sample>() + if new { cost } else { 0 })
    }
}

fn exemplar_value(e: &proto::Exemplar) -> f64 {
    match e.value {
        Some(ExemplarValue::AsDouble(v)) => v,
        Some(ExemplarValue::AsInt(v)) => v as f64,
        None => 0.0,
    }
}

/// Bytes as lowercase hex: how trace and span ids are written as labels.
fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter().fold(String::with_capacity(b.len() * 2), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn ms(ns: u64) -> i64 {
    // u64::MAX ns is about 1.8e13 ms, well inside i64
    (ns / 1_000_000) as i64
}

/// A point's label set: its attributes, then `job`/`instance` from the resource, then the
/// generated label (`le`, `quantile`), each overriding the one before, then `__name__`.
fn series_labels(
    attrs: &[(String, String)],
    target: &Target,
    name: &str,
    extra: Option<(&str, String)>,
) -> Labels {
    let mut map: std::collections::BTreeMap<&str, &str> =
        attrs.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    if let Some(job) = &target.job {
        map.insert("job", job);
    }
    if let Some(instance) = &target.instance {
        map.insert("instance", instance);
    }
    if let Some((n, v)) = &extra {
        map.insert(n, v);
    }
    map.insert(METRIC_NAME, name);
    Labels::from_sorted(
        map.into_iter().filter(|(_, v)| !v.is_empty()).map(|(n, v)| Label::new(n, v)).collect(),
    )
}

/// Attributes as sanitised label pairs, sorted by name, with colliding names joined (values in
/// the order of the original names, separated by `;`) and empty values dropped. `path` names the
/// attribute list (`....attributes`) for errors.
fn attribute_labels<'a, K: std::borrow::Borrow<KeyValue> + 'a>(
    attrs: &'a [K],
    path: impl Fn() -> String,
) -> Result<Vec<(String, String)>> {
    let mut v: Vec<(String, &str, String)> = Vec::with_capacity(attrs.len());
    for (i, kv) in attrs.iter().enumerate() {
        let kv = kv.borrow();
        let name = label_name(&kv.key).ok_or_else(|| Error::OtlpInvalid {
            path: format!("{}[{i}]", path()),
            reason: format!("attribute name {:?} has no character valid in a label name", kv.key),
        })?;
        let value = any_to_string(kv.value.as_ref());
        if !value.is_empty() {
            v.push((name, &kv.key, value));
        }
    }
    v.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    let mut out: Vec<(String, String)> = Vec::with_capacity(v.len());
    for (name, _, value) in v {
        match out.last_mut() {
            Some((last, joined)) if *last == name => {
                joined.push(';');
                joined.push_str(&value);
            }
            _ => out.push((name, value)),
        }
    }
    Ok(out)
}

/// The label name for an attribute name, or `None` if nothing valid is left of it.
fn label_name(key: &str) -> Option<String> {
    let mut out = String::with_capacity(key.len() + 4);
    for c in key.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    if out.bytes().all(|c| c == b'_') {
        return None;
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    }
    Some(out)
}

/// The Prometheus metric name for an OTLP metric, or `None` if it would be empty.
fn metric_name(name: &str, unit: &str, kind: Kind) -> Option<String> {
    let mut out = words(name);
    let type_suffix = match kind {
        Kind::Counter => "total",
        Kind::Gauge if unit.trim() == "1" => "ratio",
        _ => "",
    };
    strip_word(&mut out, type_suffix);
    let (main, per) = unit_words(unit);
    if let Some(per) = &per {
        strip_word(&mut out, per);
    }
    if let Some(main) = main
        && !ends_with_word(&out, &main)
    {
        push_word(&mut out, &main);
    }
    if let Some(per) = per {
        push_word(&mut out, &per);
    }
    push_word(&mut out, type_suffix);
    if out.is_empty() {
        return None;
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    Some(out)
}

/// The pieces of `s` between characters outside `[a-zA-Z0-9:]`, joined with one `_`.
fn words(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for w in s.split(|c: char| !(c.is_ascii_alphanumeric() || c == ':')).filter(|w| !w.is_empty()) {
        push_word(&mut out, w);
    }
    out
}

fn push_word(out: &mut String, w: &str) {
    if w.is_empty() {
        return;
    }
    if !out.is_empty() {
        out.push('_');
    }
    out.push_str(w);
}

/// Whether `s` is `w` or ends with `_w`.
fn ends_with_word(s: &str, w: &str) -> bool {
    s.strip_suffix(w).is_some_and(|rest| rest.is_empty() || rest.ends_with('_'))
}

/// Removes a trailing `_w` (or the whole of `s` if it is `w`); returns whether it did.
fn strip_word(s: &mut String, w: &str) -> bool {
    if w.is_empty() || !ends_with_word(s, w) {
        return false;
    }
    let keep = s.len().saturating_sub(w.len() + 1);
    s.truncate(keep);
    true
}

/// The words a unit adds to a name: the main unit's (`bytes`) and the one after `/`
/// (`per_second`), each `None` when empty, dimensionless or in braces.
fn unit_words(unit: &str) -> (Option<String>, Option<String>) {
    let (main, per) = unit.split_once('/').unwrap_or((unit, ""));
    (unit_part(main, unit_word), unit_part(per, per_unit_word).map(|w| format!("per_{w}")))
}

/// One side of a unit: dropped when empty or in braces, otherwise mapped by `word` and
/// sanitised.
fn unit_part(part: &str, word: fn(&str) -> Option<&'static str>) -> Option<String> {
    let part = part.trim();
    if part.is_empty() || part.contains(['{', '}']) {
        return None;
    }
    let w = words(word(part).unwrap_or(part));
    (!w.is_empty()).then_some(w)
}

/// The Prometheus word for a UCUM unit (`s` is `seconds`); `1` has none.
fn unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tebibytes",
        "kBy" | "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        "1" => "",
        _ => return None,
    })
}

/// The Prometheus word for the unit after `/` (`s` is `second`).
fn per_unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

/// An attribute value as a label value: strings as they are, anything else as JSON.
fn any_to_string(v: Option<&AnyValue>) -> String {
    use any_value::Value as V;
    match v.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(V::StringValue(s)) => s.clone(),
        Some(V::BoolValue(b)) => b.to_string(),
        Some(V::IntValue(i)) => i.to_string(),
        Some(V::DoubleValue(d)) => match json_number(*d) {
            serde_json::Value::String(s) => s,
            n => n.to_string(),
        },
        Some(V::BytesValue(b)) => base64::engine::general_purpose::STANDARD.encode(b),
        Some(other) => any_to_json(Some(other)).to_string(),
    }
}

/// A double as JSON: a number, or the strings `NaN`, `Infinity`, `-Infinity`.
fn json_number(d: f64) -> serde_json::Value {
    match serde_json::Number::from_f64(d) {
        Some(n) => serde_json::Value::Number(n),
        None if d.is_nan() => "NaN".into(),
        None if d > 0.0 => "Infinity".into(),
        None => "-Infinity".into(),
    }
}

/// An attribute value inside an array or map, as JSON.
fn any_to_json(v: Option<&any_value::Value>) -> serde_json::Value {
    use any_value::Value as V;
    match v {
        None => serde_json::Value::Null,
        Some(V::StringValue(s)) => s.as_str().into(),
        Some(V::BoolValue(b)) => (*b).into(),
        Some(V::IntValue(i)) => (*i).into(),
        Some(V::DoubleValue(d)) => json_number(*d),
        Some(V::BytesValue(b)) => base64::engine::general_purpose::STANDARD.encode(b).into(),
        Some(V::ArrayValue(a)) => {
            a.values.iter().map(|x| any_to_json(x.value.as_ref())).collect::<Vec<_>>().into()
        }
        Some(V::KvlistValue(kv)) => serde_json::Value::Object(
            kv.values
                .iter()
                .map(|kv| {
                    (kv.key.clone(), any_to_json(kv.value.as_ref().and_then(|v| v.value.as_ref())))
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests;
