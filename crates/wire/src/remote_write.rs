//! Prometheus remote_write 1.0: a `WriteRequest` protobuf compressed as one snappy block.
//!
//! Decoding has three stages, each with its own error: [`decompress`] checks the body and the
//! snappy header's declared length against [`Limits`] before anything is allocated and
//! decompresses; [`decode_raw`] walks the protobuf without copying a string, giving a
//! [`RawRequest`] whose label names and values are slices of the decompressed bytes; and
//! [`Labels::from_raw`] validates a series' labels (UTF-8, names, `__name__`, no repeated
//! name). [`decode`] runs all three on every series. The server instead hands the raw series to
//! the storage, which validates only the series it does not have yet: a label set equal byte
//! for byte to a stored one is valid. That makes a request of known series cost no allocation
//! per series or per label (measured: 2.66 to 1.17 µs of server CPU per sample in the
//! 100k-series benchmark, most of it from here).
//!
//! The protobuf walk is written by hand because prost's derived decoder allocates every string;
//! it uses prost's primitives for keys, varints and skipping unknown fields, so it accepts
//! exactly what prost accepts (a property test checks this on mutated input). A sample laid out
//! as every encoder writes it (`value` then `timestamp`, defaults omitted) is parsed straight
//! from the buffer; any other layout goes through the general field loop.
//!
//! [`encode`] is the reverse, for the agent and for tests and benchmarks. The messages are
//! written by hand from Prometheus' `prompb/remote.proto` and `types.proto` (no build script,
//! no protoc) and derive `prost::Message`, except [`Sample`]: the derive skips a proto3 `double`
//! that compares equal to `0.0`, which would encode `-0.0` as `+0.0`; here a value is skipped
//! only when its bits are zero, so every value, the stale-marker NaN included, survives a round
//! trip bit for bit.
//!
//! Exemplars (field 3 of `TimeSeries`) and native histograms (field 4) are decoded too, so that
//! a request is never answered 2xx for data that is silently dropped. They go off the fast path:
//! the walk keeps their messages as slices and only a series that has any pays for them (the
//! others cost one branch on the field tag). Such a series' labels are validated at once
//! ([`Labels::from_raw`], errors as [`decode`]'s); each native histogram sample is converted to
//! classic `_bucket{le}`, `_count` and `_sum` series by the same rules and code as
//! [`remote_write_v2`](crate::remote_write_v2) (its module doc; `Histogram` has the same fields
//! 1 to 15 in both protocols, and field 16, `custom_values`, is accepted), a histogram series
//! with an `le` label is refused, and each exemplar becomes a [`crate::Exemplar`] of its series.
//! An error names where, e.g. `timeseries[2].histograms[0]: positive_spans cover 3 buckets but
//! positive_deltas has 2 entries`. What the conversion allocates is counted against
//! [`DECODED_BYTES_PER_PROTO_BYTE`](crate::remote_write_v2::DECODED_BYTES_PER_PROTO_BYTE) times
//! [`Limits::max_decompressed_bytes`], as 2.0 counts it. See [`RawRequest::histogram_series`],
//! [`RawRequest::histograms`] and [`RawRequest::exemplars`]; [`decode`] returns the float
//! series followed by the histograms' classic series. The prost-derived [`TimeSeries`] still
//! leaves fields 3 and 4 out (its users build it with a struct literal); [`Exemplar`] and
//! [`Histogram`] are the messages for a client that writes them.
//!
//! Deliberately absent: 2.0's refusal of a series that carries both samples and histograms (1.0
//! accepts both, as Prometheus does: the float samples stay under the series' own labels);
//! native histograms as such (only their classic series); exemplars from [`decode`]'s result
//! (they are checked, and returned by [`RawRequest::exemplars`]). Metadata is decoded (so
//! malformed metadata is an error) and returned by [`RawRequest::metadata`] for the server's
//! metadata API. HTTP headers (`Content-Encoding`, `X-Prometheus-Remote-Write-Version`) and
//! remote_write 2.0 are the server's concern, not this module's.

use std::mem::size_of;

use ocelli_model::{self as model, Labels, is_valid_label_name};
use prost::Message as _;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{DecodeContext, WireType, double, int64, skip_field};

use crate::remote_write_v2::{Budget, ConvertError, classic_series, exemplar_labels};
use crate::series::{SeriesSet, labels_cost};
use crate::{Error, Result};

pub use crate::remote_write_v2::{BucketSpan, Histogram, ResetHint, histogram};

/// `prometheus.WriteRequest`. Field 2 is reserved by Prometheus.
#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

/// `prometheus.TimeSeries`, without exemplars (3, [`Exemplar`]) and native histograms (4,
/// [`Histogram`]): prost's decoder of this type skips them; [`decode_raw`] does not.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

/// `prometheus.Exemplar`, field 3 of `TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    /// The exemplar's own labels (`trace_id`...); may be empty.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(double, tag = "2")]
    pub value: f64,
    /// Milliseconds.
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`: `double value = 1; int64 timestamp = 2;` (milliseconds). See the module
/// doc for why `prost::Message` is implemented by hand.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    pub value: f64,
    pub timestamp: i64,
}

/// `prometheus.MetricMetadata`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct MetricMetadata {
    #[prost(enumeration = "MetricType", tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

impl MetricMetadata {
    /// The entry as the exposition decoder gives metadata; an unknown type number is
    /// [`MetricKind::Unknown`](crate::exposition::MetricKind::Unknown).
    pub fn into_metadata(self) -> crate::exposition::Metadata {
        use crate::exposition::MetricKind as K;
        let kind = match MetricType::try_from(self.r#type) {
            Ok(MetricType::Counter) => K::Counter,
            Ok(MetricType::Gauge) => K::Gauge,
            Ok(MetricType::Histogram) => K::Histogram,
            Ok(MetricType::GaugeHistogram) => K::GaugeHistogram,
            Ok(MetricType::Summary) => K::Summary,
            Ok(MetricType::Info) => K::Info,
            Ok(MetricType::Stateset) => K::StateSet,
            Ok(MetricType::Unknown) | Err(_) => K::Unknown,
        };
        let some = |s: String| (!s.is_empty()).then_some(s);
        crate::exposition::Metadata {
            family: self.metric_family_name,
            kind,
            help: some(self.help),
            unit: some(self.unit),
        }
    }
}

/// `prometheus.MetricMetadata.MetricType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MetricType {
    Unknown = 0,
    Counter = 1,
    Gauge = 2,
    Histogram = 3,
    GaugeHistogram = 4,
    Summary = 5,
    Info = 6,
    Stateset = 7,
}

impl prost::Message for Sample {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if self.value.to_bits() != 0 {
            double::encode(1, &self.value, buf);
        }
        if self.timestamp != 0 {
            int64::encode(2, &self.timestamp, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        let (field, res) = match tag {
            1 => ("value", double::merge(wire_type, &mut self.value, buf, ctx)),
            2 => ("timestamp", int64::merge(wire_type, &mut self.timestamp, buf, ctx)),
            _ => return skip_field(wire_type, tag, buf, ctx),
        };
        res.map_err(|mut e| {
            e.push("Sample", field);
            e
        })
    }

    fn encoded_len(&self) -> usize {
        let value = if self.value.to_bits() != 0 { double::encoded_len(1, &self.value) } else { 0 };
        let ts = if self.timestamp != 0 { int64::encoded_len(2, &self.timestamp) } else { 0 };
        value + ts
    }

    fn clear(&mut self) {
        *self = Sample::default();
    }
}

/// Parses a length-prefixed `Sample` laid out as every encoder writes it: a one-byte length,
/// then `value` (if not zero) and `timestamp` (if not zero), each once and in field order.
/// Returns the sample and the bytes it took, or `None` for any other layout, which the caller
/// hands to prost's general decoder (and its error messages).
fn canonical_sample(b: &[u8]) -> Option<(Sample, usize)> {
    let (&len, rest) = b.split_first()?;
    if len >= 0x80 {
        return None; // a longer length varint; canonical samples are at most 20 bytes
    }
    let mut body = rest.get(..usize::from(len))?;
    let mut s = Sample::default();
    if let [0x09, rest @ ..] = body
        && let Some((v, rest)) = rest.split_first_chunk::<8>()
    {
        s.value = f64::from_le_bytes(*v);
        body = rest;
    }
    if let [0x10, rest @ ..] = body {
        let mut rest = rest;
        s.timestamp = prost::encoding::decode_varint(&mut rest).ok()? as i64;
        body = rest;
    }
    body.is_empty().then_some((s, 1 + usize::from(len)))
}

/// Size caps for one request body. A body over either cap is refused before the memory for it
/// is allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest compressed body accepted, in bytes.
    pub max_body_bytes: usize,
    /// The largest decompressed protobuf accepted, in bytes, as declared by the snappy header.
    pub max_decompressed_bytes: usize,
}

impl Default for Limits {
    /// 16 MiB compressed, 64 MiB decompressed.
    fn default() -> Self {
        Limits { max_body_bytes: 16 << 20, max_decompressed_bytes: 64 << 20 }
    }
}

/// One decoded series: a validated label set and its samples in request order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DecodedSeries {
    pub labels: Labels,
    pub samples: Vec<model::Sample>,
}

/// Decodes a remote_write 1.0 body (snappy block of a `WriteRequest`) into validated series:
/// one per `TimeSeries` with its float samples, in request order (a series with none, e.g. one
/// with only histograms, has no samples), followed by
/// [`RawRequest::histogram_series`], the classic series of its native histograms. Exemplars are
/// decoded and checked but not returned; use [`decode_raw_with_limits`] for them.
///
/// Labels with an empty value are dropped (Prometheus treats them as absent) after their names
/// have been checked. Any error, including one bad series among many, returns `Err` and no
/// series.
pub fn decode(body: &[u8], limits: &Limits) -> Result<Vec<DecodedSeries>> {
    let buf = decompress(body, limits)?;
    let mut req = decode_raw_with_limits(&buf, limits)?;
    let mut out = req
        .series()
        .enumerate()
        .map(|(index, s)| {
            let labels = Labels::from_raw(s.labels)
                .map_err(|source| Error::InvalidSeries { index, source })?;
            Ok(DecodedSeries { labels, samples: s.samples.to_vec() })
        })
        .collect::<Result<Vec<_>>>()?;
    out.append(&mut req.histogram_series);
    Ok(out)
}

/// A decoded `WriteRequest` whose label strings still point into the protobuf: the zero-copy
/// form the server ingests, so that a series the storage already has costs no allocation.
///
/// Each series' labels are sorted by name with empty values dropped; an empty-valued label's
/// name has been checked, and a name repeated with an empty value rejected, since dropping
/// them would hide both. Everything else about the labels (UTF-8, names, `__name__`) is left to
/// [`Labels::from_raw`], which the caller runs on the series it does not already have (a
/// series with native histograms or exemplars has had its labels validated already). Samples
/// are decoded fully; native histograms are converted to classic series and exemplars decoded,
/// both owned (see the module doc).
#[derive(Debug, Default)]
pub struct RawRequest<'a> {
    labels: Vec<model::RawLabel<'a>>,
    samples: Vec<model::Sample>,
    /// Per series: its labels' and its samples' ranges in the two vectors.
    series: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
    /// The request's metadata entries, in request order.
    metadata: Vec<crate::exposition::Metadata>,
    /// The classic series of the native histograms, in order of first appearance.
    histogram_series: Vec<DecodedSeries>,
    histograms: usize,
    exemplars: Vec<crate::Exemplar>,
}

impl RawRequest<'_> {
    /// Classic series converted from the request's native histograms, in request order (labels
    /// validated): for each histogram series, its `_bucket` series in ascending order of `le`,
    /// then `_count` and `_sum`. Samples of one classic series (a histogram series with several
    /// histogram samples, or two histogram series with the same labels) are gathered into one
    /// entry, in request order.
    pub fn histogram_series(&self) -> &[DecodedSeries] {
        &self.histogram_series
    }

    /// Number of native histogram samples in the request.
    pub fn histograms(&self) -> usize {
        self.histograms
    }

    /// The request's exemplars, in request order, each with the labels of its series
    /// (validated) and its own labels (names valid and not repeated, empty values dropped).
    pub fn exemplars(&self) -> &[crate::Exemplar] {
        &self.exemplars
    }

    /// The metadata the request carries (`TYPE`, `HELP` and `UNIT` of metric families), in
    /// request order; entries with an empty family name are left out.
    pub fn metadata(&self) -> &[crate::exposition::Metadata] {
        &self.metadata
    }

    /// The series in request order.
    pub fn series(&self) -> impl ExactSizeIterator<Item = model::RawSeries<'_>> {
        self.series.iter().map(|(l, s)| model::RawSeries {
            labels: &self.labels[l.clone()],
            samples: &self.samples[s.clone()],
        })
    }
}

/// [`decode_raw_with_limits`] with the default [`Limits`], or with a decompressed cap of
/// `proto.len()` where that is larger: the memory native histograms' classic series and
/// exemplars may take is counted against 16 times that cap (1 GiB or more).
pub fn decode_raw(proto: &[u8]) -> Result<RawRequest<'_>> {
    let mut limits = Limits::default();
    limits.max_decompressed_bytes = limits.max_decompressed_bytes.max(proto.len());
    decode_raw_with_limits(proto, &limits)
}

/// Decodes a decompressed `WriteRequest` without copying its strings; see [`RawRequest`].
/// Malformed protobuf (and malformed metadata, which is decoded and dropped) is an error that
/// names the field, e.g. `timeseries[2].samples[0]: ...`; so is a bad native histogram or
/// exemplar (see the module doc). `proto` longer than [`Limits::max_decompressed_bytes`] is an
/// error, and what native histograms and exemplars decode to is counted against
/// [`DECODED_BYTES_PER_PROTO_BYTE`](crate::remote_write_v2::DECODED_BYTES_PER_PROTO_BYTE) times
/// that cap.
pub fn decode_raw_with_limits<'a>(proto: &'a [u8], limits: &Limits) -> Result<RawRequest<'a>> {
    let max = limits.max_decompressed_bytes;
    if proto.len() > max {
        return Err(Error::DecompressedTooLarge { len: proto.len() as u64, max });
    }
    // sized for a typical request (a label takes about 32 bytes, a series about 256), so that
    // the vectors seldom grow and copy
    let mut req = RawRequest {
        labels: Vec::with_capacity(proto.len() / 32),
        samples: Vec::with_capacity(proto.len() / 256),
        series: Vec::with_capacity(proto.len() / 256),
        ..RawRequest::default()
    };
    let mut extras = Extras { budget: Budget::new(limits), ..Extras::default() };
    let mut r = proto;
    let (mut n_series, mut n_metadata) = (0, 0);
    while !r.is_empty() {
        let (tag, wt) = key(&mut r).map_err(|e| proto_err("WriteRequest".into(), e))?;
        match tag {
            1 => {
                let at = || format!("timeseries[{n_series}]");
                let msg = len_delimited(&mut r, wt).map_err(|e| proto_err(at(), e))?;
                decode_series(msg, &mut req, &mut extras, n_series)?;
                n_series += 1;
            }
            3 => {
                let at = || format!("metadata[{n_metadata}]");
                let msg = len_delimited(&mut r, wt).map_err(|e| proto_err(at(), e))?;
                let m =
                    MetricMetadata::decode(msg).map_err(|e| proto_err(at(), prost_reason(&e)))?;
                if !m.metric_family_name.is_empty() {
                    req.metadata.push(m.into_metadata());
                }
                n_metadata += 1;
            }
            _ => skip(&mut r, tag, wt).map_err(|e| proto_err("WriteRequest".into(), e))?,
        }
    }
    req.histogram_series = extras.series.into_vec();
    req.histograms = extras.histograms;
    req.exemplars = extras.exemplars;
    Ok(req)
}

/// What [`decode_raw`] gathers besides the zero-copy series: native histograms' classic series
/// and exemplars.
#[derive(Debug, Default)]
struct Extras<'a> {
    /// The current series' exemplar (`false`) and histogram (`true`) messages, in field order;
    /// reused from series to series. Not counted against the budget: it holds one series' slices
    /// at a time, fewer than the series' bytes.
    pending: Vec<(bool, &'a [u8])>,
    series: SeriesSet,
    histograms: usize,
    exemplars: Vec<crate::Exemplar>,
    budget: Budget,
}

impl<'a> Extras<'a> {
    /// Decodes the pending messages of `timeseries[index]`, whose labels are `labels` (sorted,
    /// empty values dropped, not validated yet).
    fn flush(&mut self, labels: &[model::RawLabel<'a>], index: usize) -> Result<()> {
        let labels =
            Labels::from_raw(labels).map_err(|source| Error::InvalidSeries { index, source })?;
        let too_large = |b: &Budget| Error::RemoteWriteDecodedTooLarge { max: b.max };
        let pending = std::mem::take(&mut self.pending);
        let (mut n_hist, mut n_ex) = (0, 0);
        for &(is_histogram, msg) in &pending {
            if is_histogram {
                let at = || format!("timeseries[{index}].histograms[{n_hist}]");
                let h = Histogram::decode(msg).map_err(|e| proto_err(at(), prost_reason(&e)))?;
                classic_series(&h, &labels, &mut self.series, &mut self.budget).map_err(
                    |e| match e {
                        ConvertError::Invalid(reason) => rw_err(at(), reason),
                        ConvertError::TooLarge => too_large(&self.budget),
                    },
                )?;
                self.histograms += 1;
                n_hist += 1;
            } else {
                let at = || format!("timeseries[{index}].exemplars[{n_ex}]");
                let e = Exemplar::decode(msg).map_err(|e| proto_err(at(), prost_reason(&e)))?;
                let mut pairs: Vec<model::RawLabel<'_>> =
                    e.labels.iter().map(|l| (l.name.as_bytes(), l.value.as_bytes())).collect();
                pairs.sort_by(|a, b| a.0.cmp(b.0));
                let own = exemplar_labels(&pairs).map_err(|e| rw_err(at(), e.to_string()))?;
                let cost = size_of::<crate::Exemplar>()
                    + labels_cost(labels.as_slice())
                    + labels_cost(own.as_slice());
                if !self.budget.charge(cost) {
                    return Err(too_large(&self.budget));
                }
                self.exemplars.push(crate::Exemplar {
                    series: labels.clone(),
                    labels: own,
                    value: e.value,
                    timestamp: e.timestamp,
                });
                n_ex += 1;
            }
        }
        self.pending = pending;
        self.pending.clear();
        Ok(())
    }
}

fn rw_err(path: String, reason: String) -> Error {
    Error::RemoteWrite { path, reason }
}

pub(crate) fn proto_err(path: String, reason: String) -> Error {
    Error::ProtobufField { path, reason }
}

/// prost's description of a decode error, without its "failed to decode" prefix.
pub(crate) fn prost_reason(e: &prost::DecodeError) -> String {
    let s = e.to_string();
    s.strip_prefix("failed to decode Protobuf message: ").map(str::to_string).unwrap_or(s)
}

/// A field key: the field number and the wire type, with prost's checks. A one-byte key (field
/// numbers up to 15, all this schema has) is taken here; anything else goes to prost.
#[inline(always)]
pub(crate) fn key(r: &mut &[u8]) -> Result<(u32, WireType), String> {
    if let [b, rest @ ..] = *r
        && (8..0x80).contains(b)
        && let Ok(wt) = WireType::try_from(u64::from(b & 7))
    {
        *r = rest;
        return Ok((u32::from(b >> 3), wt));
    }
    prost::encoding::decode_key(r).map_err(|e| prost_reason(&e))
}

/// A varint; one- and two-byte ones (every length in a typical request) are taken here.
#[inline(always)]
fn varint(r: &mut &[u8]) -> Result<u64, String> {
    let s: &[u8] = r;
    match s {
        [b, rest @ ..] if *b < 0x80 => {
            *r = rest;
            Ok(u64::from(*b))
        }
        [b0, b1, rest @ ..] if *b1 < 0x80 => {
            *r = rest;
            Ok(u64::from(b0 & 0x7f) | (u64::from(*b1) << 7))
        }
        _ => prost::encoding::decode_varint(r).map_err(|e| prost_reason(&e)),
    }
}

/// The body of a length-delimited field of wire type `wt`.
#[inline(always)]
pub(crate) fn len_delimited<'a>(r: &mut &'a [u8], wt: WireType) -> Result<&'a [u8], String> {
    if wt != WireType::LengthDelimited {
        return Err(format!("wire type {wt:?}, expected LengthDelimited"));
    }
    let len = varint(r)?;
    match usize::try_from(len).ok().filter(|&l| l <= r.len()) {
        Some(l) => {
            let (body, rest) = r.split_at(l);
            *r = rest;
            Ok(body)
        }
        None => Err(format!("length {len} runs past the end ({} bytes left)", r.len())),
    }
}

pub(crate) fn skip(r: &mut &[u8], tag: u32, wt: WireType) -> Result<(), String> {
    skip_field(wt, tag, r, DecodeContext::default()).map_err(|e| prost_reason(&e))
}

/// Decodes `timeseries[index]` into `req`, and its histograms and exemplars into `extras`.
fn decode_series<'a>(
    mut r: &'a [u8],
    req: &mut RawRequest<'a>,
    extras: &mut Extras<'a>,
    index: usize,
) -> Result<()> {
    let (l0, s0) = (req.labels.len(), req.samples.len());
    let (mut n_labels, mut n_samples) = (0, 0);
    while !r.is_empty() {
        let (tag, wt) = key(&mut r).map_err(|e| proto_err(format!("timeseries[{index}]"), e))?;
        match tag {
            1 => {
                let at =
                    |f: &str, e| proto_err(format!("timeseries[{index}].labels[{n_labels}]{f}"), e);
                let msg = len_delimited(&mut r, wt).map_err(|e| at("", e))?;
                req.labels.push(decode_label(msg).map_err(|(f, e)| at(f, e))?);
                n_labels += 1;
            }
            2 => {
                let at = |f: &str, e| {
                    proto_err(format!("timeseries[{index}].samples[{n_samples}]{f}"), e)
                };
                if wt == WireType::LengthDelimited
                    && let Some((s, len)) = canonical_sample(r)
                {
                    req.samples.push(model::Sample::new(s.timestamp, s.value));
                    r = &r[len..];
                } else {
                    let msg = len_delimited(&mut r, wt).map_err(|e| at("", e))?;
                    let s = decode_sample(msg).map_err(|(f, e)| at(f, e))?;
                    req.samples.push(model::Sample::new(s.timestamp, s.value));
                }
                n_samples += 1;
            }
            3 | 4 => {
                let is_histogram = tag == 4;
                let msg = len_delimited(&mut r, wt).map_err(|e| {
                    let field = if is_histogram { "histograms" } else { "exemplars" };
                    let n = extras.pending.iter().filter(|p| p.0 == is_histogram).count();
                    proto_err(format!("timeseries[{index}].{field}[{n}]"), e)
                })?;
                extras.pending.push((is_histogram, msg));
            }
            _ => skip(&mut r, tag, wt).map_err(|e| proto_err(format!("timeseries[{index}]"), e))?,
        }
    }
    let labels = &mut req.labels[l0..];
    if !labels.is_sorted_by(|a, b| a.0 <= b.0) {
        labels.sort_unstable_by(|a, b| a.0.cmp(b.0));
    }
    if labels.iter().any(|l| l.1.is_empty()) {
        // dropping the label would hide a bad or repeated name: check those here
        let bad = |source| Error::InvalidSeries { index, source };
        for (i, &(name, value)) in labels.iter().enumerate() {
            if i > 0 && labels[i - 1].0 == name {
                let name = String::from_utf8_lossy(name).into_owned();
                return Err(bad(model::Error::DuplicateLabel(name)));
            }
            if value.is_empty() && !std::str::from_utf8(name).is_ok_and(is_valid_label_name) {
                let name = String::from_utf8_lossy(name).into_owned();
                return Err(bad(model::Error::InvalidLabelName(name)));
            }
        }
        let mut kept = l0;
        for i in l0..req.labels.len() {
            if !req.labels[i].1.is_empty() {
                req.labels[kept] = req.labels[i];
                kept += 1;
            }
        }
        req.labels.truncate(kept);
    }
    req.series.push((l0..req.labels.len(), s0..req.samples.len()));
    if !extras.pending.is_empty() {
        extras.flush(&req.labels[l0..], index)?;
    }
    Ok(())
}

/// Decodes one `Label`; a repeated field takes the last value, as protobuf says.
fn decode_label(mut r: &[u8]) -> Result<model::RawLabel<'_>, (&'static str, String)> {
    let (mut name, mut value): (&[u8], &[u8]) = (b"", b"");
    while !r.is_empty() {
        let (tag, wt) = key(&mut r).map_err(|e| ("", e))?;
        let (field, slot) = match tag {
            1 => (".name", &mut name),
            2 => (".value", &mut value),
            _ => {
                skip(&mut r, tag, wt).map_err(|e| ("", e))?;
                continue;
            }
        };
        // the value replaced is dropped unseen, but protobuf still requires it to be UTF-8
        if !slot.is_empty() && std::str::from_utf8(slot).is_err() {
            return Err((field, "invalid string value: data is not UTF-8 encoded".into()));
        }
        *slot = len_delimited(&mut r, wt).map_err(|e| (field, e))?;
    }
    Ok((name, value))
}

/// Decodes one `Sample` in any layout; repeated fields take the last value.
fn decode_sample(mut r: &[u8]) -> Result<Sample, (&'static str, String)> {
    let mut s = Sample::default();
    while !r.is_empty() {
        let (tag, wt) = key(&mut r).map_err(|e| ("", e))?;
        let (field, res) = match tag {
            1 => (".value", double::merge(wt, &mut s.value, &mut r, DecodeContext::default())),
            2 => {
                (".timestamp", int64::merge(wt, &mut s.timestamp, &mut r, DecodeContext::default()))
            }
            _ => ("", skip_field(wt, tag, &mut r, DecodeContext::default())),
        };
        res.map_err(|e| (field, prost_reason(&e)))?;
    }
    Ok(s)
}

/// Encodes series as a remote_write 1.0 body: a `WriteRequest` protobuf in one snappy block.
///
/// Fails only when the protobuf is too large for one snappy block (about 3.6 GiB).
pub fn encode(series: &[DecodedSeries]) -> Result<Vec<u8>> {
    let req = WriteRequest { timeseries: series.iter().map(to_proto).collect(), metadata: vec![] };
    let buf = req.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&buf)
        .map_err(|_| Error::EncodeTooLarge { len: buf.len() })
}

/// Checks the caps, then decompresses into a buffer of exactly the declared length: the first
/// stage of [`decode`], for callers that go on with [`decode_raw`].
pub fn decompress(body: &[u8], limits: &Limits) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    decompress_into(body, limits, &mut buf)?;
    Ok(buf)
}

/// [`decompress`] into `buf` (resized to the declared length), so that a caller can reuse one
/// buffer across requests instead of having fresh pages zeroed for each.
pub fn decompress_into(body: &[u8], limits: &Limits, buf: &mut Vec<u8>) -> Result<()> {
    let max = limits.max_decompressed_bytes;
    if body.len() > limits.max_body_bytes {
        return Err(Error::BodyTooLarge { len: body.len(), max: limits.max_body_bytes });
    }
    let len = match snap::raw::decompress_len(body) {
        Ok(len) => len,
        // a declared length over snappy's own 4 GiB cap is a bomb, not a corrupt header
        Err(snap::Error::TooBig { given, .. }) => {
            return Err(Error::DecompressedTooLarge { len: given, max });
        }
        Err(source) => return Err(Error::Snappy { source }),
    };
    if len > max {
        return Err(Error::DecompressedTooLarge { len: len as u64, max });
    }
    buf.clear();
    buf.resize(len, 0);
    snap::raw::Decoder::new().decompress(body, buf).map_err(|source| Error::Snappy { source })?;
    Ok(())
}

fn to_proto(s: &DecodedSeries) -> TimeSeries {
    TimeSeries {
        labels: s
            .labels
            .iter()
            .map(|l| Label { name: l.name.clone(), value: l.value.clone() })
            .collect(),
        samples: s.samples.iter().map(|s| Sample { value: s.v, timestamp: s.t }).collect(),
    }
}

#[cfg(test)]
mod tests;
