//! Prometheus remote_write 2.0, the receiving side: an `io.prometheus.write.v2.Request`
//! protobuf compressed as one snappy block, in which every string (label names and values,
//! help texts, units) is a reference into one `symbols` table.
//!
//! **Owned here.** [`negotiate`] reads a request's `Content-Type` as the 2.0 specification says
//! (`application/x-protobuf` alone or with `proto=prometheus.WriteRequest` is 1.0,
//! `proto=io.prometheus.write.v2.Request` is 2.0, anything else is refused) and
//! [`check_encoding`] its `Content-Encoding` (`snappy`, or none). [`decode`] checks the body
//! against [`Limits`] and decompresses it exactly as 1.0's [`crate::remote_write::decompress`]
//! does, then [`decode_proto`] turns the request into [`Decoded`]: float series, classic series
//! made from native histograms, metadata, exemplars and the counts the
//! `X-Prometheus-Remote-Write-*-Written` response headers report. [`encode`] is the reverse,
//! for tests, the fuzz target and clients, with [`Symbols`] to build the table.
//!
//! **Handed off.** Reading headers, answering 415 or 400 (an `Err` of [`negotiate`] or
//! [`check_encoding`] is a 415, an `Err` of [`decode`] a 400), writing the `*-Written` headers
//! and storing what was decoded are the server's.
//!
//! **Rules.** `symbols[0]` must be the empty string; every reference must be inside the table.
//! A series' `labels_refs` has an even length; its labels go through the same checks as 1.0's
//! (names valid, `__name__` present and valid, no repeated name; an empty value drops the label
//! after its name is checked). A series carries samples or histograms, not both (one with
//! neither is accepted for its metadata and exemplars, and adds no series). Samples are
//! kept bit for bit (stale markers included) and series with the same labels are merged, in
//! order of first appearance. Metadata becomes one [`exposition::Metadata`] per metric name
//! (the first series of a name that has a type, help or unit gives it; `UNSPECIFIED` is
//! [`MetricKind::Unknown`]). An exemplar becomes a [`crate::Exemplar`] whose `series` is the
//! labels of the series it came with (for a histogram series, the histogram's own name). Any
//! error returns `Err` and nothing else, naming where, e.g. `timeseries[3]: labels_refs[5] = 17
//! is past the end of the symbols table (12 symbols)`.
//!
//! **Native histograms** are converted to classic series, since the storage holds floats only:
//! `<name>_bucket{le="<bound>"}` with the cumulative count at the upper bound of every bucket
//! the spans list, in ascending order of bound (negative buckets and the zero bucket, when it
//! holds observations, included), `<name>_bucket{le="+Inf"}` and `<name>_count` with the count,
//! and `<name>_sum`. Positive bucket `i` of schema `s` has upper bound `2^(i·2^-s)`, negative
//! bucket `i` has `-2^((i-1)·2^-s)`, the zero bucket `zero_threshold`; with custom buckets
//! (schema -53) bucket `i`'s bound is `custom_values[i]` (one past the end is `+Inf`). Bounds
//! are written in their shortest decimal form, as the OTLP decoder writes them; buckets whose
//! bounds are equal are merged, and a bucket whose bound is `+Inf` is the `+Inf` series. Integer
//! histograms carry count deltas and float histograms absolute counts; a gauge histogram
//! (`reset_hint` GAUGE) is converted the same. A histogram whose `sum` is the stale marker
//! writes the stale marker to each of its classic series. Refused: a schema outside -4..8 and
//! -53, spans whose lengths disagree with the number of counts, a negative span offset after the
//! first, a negative or NaN count, an integer histogram whose buckets hold more observations
//! than its count, integer and float fields mixed, custom bounds that are not strictly
//! increasing or that reach `+Inf`, custom buckets with a zero bucket or negative buckets, and a
//! histogram series that already has an `le` label.
//!
//! **Memory.** The decompressed request is capped by [`Limits::max_decompressed_bytes`]. What
//! decoding allocates beyond it is counted against [`DECODED_BYTES_PER_PROTO_BYTE`] times that
//! cap (1 GiB with the default limits): label strings and headers once per series or exemplar,
//! each sample, each metadata entry, and the slices the walk keeps (the symbols table, each
//! series' histogram and exemplar messages). A histogram is counted before its series are
//! built, and its spans' lengths are checked against the counts it actually carries before any
//! bucket is touched, so a tiny body claiming a huge span allocates nothing. The protobuf is
//! walked by hand down to the sample, histogram and exemplar messages, which prost decodes one
//! at a time, so the request is never held decoded in full beside the result.
//!
//! **Deliberately absent.** `created_timestamp` is decoded (so a malformed one is an error) but
//! not returned: Prometheus ignores it unless its created-timestamp zero-ingestion feature flag
//! is set, and so does Ocelli. Native histograms are not stored as such, only as the classic
//! series above. [`encode`] writes what it is given: it neither checks a request nor dedups its
//! symbols, so that tests can build bad ones, and as with every prost-derived message an
//! exemplar value or histogram sum of `-0.0` is written as `0.0` (samples keep their bits).

use std::collections::HashSet;
use std::mem::size_of;

use ocelli_model::{self as model, Label, Labels, METRIC_NAME, STALE_NAN, is_valid_label_name};
use prost::Message as _;
use prost::encoding::{DecodeContext, WireType, int64, message, uint32};

use crate::exposition::{self, MetricKind};
use crate::remote_write::{DecodedSeries, Limits, len_delimited, prost_reason, proto_err, skip};
use crate::series::{SeriesSet, float_label, labels_cost};
use crate::{Error, Result};

pub use crate::remote_write::Sample;

/// The canonical `Content-Type` of a remote_write 1.0 request.
pub const CONTENT_TYPE_V1: &str = "application/x-protobuf";
/// The `Content-Type` of a remote_write 2.0 request.
pub const CONTENT_TYPE_V2: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

/// How much memory the decoded result may take per byte of [`Limits::max_decompressed_bytes`].
/// Symbols make a request far smaller than its series (a label is two small varints on the
/// wire, two strings decoded), so the cap is a multiple of the body cap.
pub const DECODED_BYTES_PER_PROTO_BYTE: usize = 16;

/// Which remote-write message a request carries, from its Content-Type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// `prometheus.WriteRequest`: decode with [`crate::remote_write`].
    V1,
    /// `io.prometheus.write.v2.Request`: decode with this module.
    V2,
}

/// Content negotiation as the remote_write 2.0 specification says: no (or an empty)
/// `Content-Type`, or `application/x-protobuf` without `proto=` or with
/// `proto=prometheus.WriteRequest`, is [`Version::V1`]; `proto=io.prometheus.write.v2.Request` is
/// [`Version::V2`]; any other `proto=` value or any other media type is an `Err` naming the
/// content type and the two supported ones (the server answers 415).
///
/// As HTTP allows, the media type and parameter names are case-insensitive, spaces around `;`
/// and `=` are tolerated, values may be quoted, and other parameters (`charset`...) are
/// ignored. A `proto` value is compared exactly.
pub fn negotiate(content_type: Option<&str>) -> Result<Version, String> {
    let Some(ct) = content_type.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(Version::V1);
    };
    let unsupported = |why: &str| {
        format!(
            "unsupported Content-Type {ct:?} ({why}): remote write takes {CONTENT_TYPE_V1} \
             (1.0, also with ;proto=prometheus.WriteRequest) or {CONTENT_TYPE_V2} (2.0)"
        )
    };
    let mut parts = split_unquoted(ct, ';').into_iter();
    let media = parts.next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case(CONTENT_TYPE_V1) {
        return Err(unsupported("not application/x-protobuf"));
    }
    let mut proto: Option<String> = None;
    for p in parts {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        let Some((name, value)) = p.split_once('=') else {
            return Err(unsupported("a parameter without a value"));
        };
        let Some(value) = unquote(value.trim()) else {
            return Err(unsupported("an unterminated quoted value"));
        };
        if name.trim().eq_ignore_ascii_case("proto") {
            if proto.as_ref().is_some_and(|p| *p != value) {
                return Err(unsupported("two different proto parameters"));
            }
            proto = Some(value);
        }
    }
    match proto.as_deref() {
        None | Some("prometheus.WriteRequest") => Ok(Version::V1),
        Some("io.prometheus.write.v2.Request") => Ok(Version::V2),
        Some(_) => Err(unsupported("unknown proto")),
    }
}

/// `s` split at every `sep` outside a double-quoted string.
fn split_unquoted(s: &str, sep: char) -> Vec<&str> {
    let (mut out, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(&s[start..i]);
            start = i + 1;
        }
    }
    out.push(&s[start..]);
    out
}

/// A parameter value: a token as it is, or a quoted string without its quotes and escapes.
/// `None` for a quoted string that does not end where the value does.
fn unquote(v: &str) -> Option<String> {
    let Some(inner) = v.strip_prefix('"') else { return Some(v.to_owned()) };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return chars.next().is_none().then_some(out),
            c => out.push(c),
        }
    }
    None
}

/// The `Content-Encoding` check: none (or empty) and `snappy` (any case) are accepted, anything
/// else is an `Err` to answer with 415.
pub fn check_encoding(content_encoding: Option<&str>) -> Result<(), String> {
    match content_encoding.map(str::trim) {
        None | Some("") => Ok(()),
        Some(e) if e.eq_ignore_ascii_case("snappy") => Ok(()),
        Some(e) => Err(format!(
            "unsupported Content-Encoding {e:?}: remote write bodies are compressed with snappy \
             (Content-Encoding: snappy)"
        )),
    }
}

/// `io.prometheus.write.v2.Request`. Fields 1 to 3 are reserved (1.0's `WriteRequest`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    /// Every string the request uses, deduplicated; the first one must be `""`.
    #[prost(string, repeated, tag = "4")]
    pub symbols: Vec<String>,
    #[prost(message, repeated, tag = "5")]
    pub timeseries: Vec<TimeSeries>,
}

/// `io.prometheus.write.v2.TimeSeries`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    /// Name, value, name, value... as indices into [`Request::symbols`].
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub histograms: Vec<Histogram>,
    #[prost(message, repeated, tag = "4")]
    pub exemplars: Vec<Exemplar>,
    #[prost(message, optional, tag = "5")]
    pub metadata: Option<Metadata>,
    /// Milliseconds; zero means unset. Decoded, not returned (see the module doc).
    #[prost(int64, tag = "6")]
    pub created_timestamp: i64,
}

/// `io.prometheus.write.v2.Exemplar`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    /// The exemplar's own labels as symbol references; may be empty.
    #[prost(uint32, repeated, tag = "1")]
    pub labels_refs: Vec<u32>,
    #[prost(double, tag = "2")]
    pub value: f64,
    /// Milliseconds.
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// `io.prometheus.write.v2.Metadata`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Metadata {
    #[prost(enumeration = "MetricType", tag = "1")]
    pub r#type: i32,
    #[prost(uint32, tag = "3")]
    pub help_ref: u32,
    #[prost(uint32, tag = "4")]
    pub unit_ref: u32,
}

/// `io.prometheus.write.v2.Metadata.MetricType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MetricType {
    Unspecified = 0,
    Counter = 1,
    Gauge = 2,
    Histogram = 3,
    GaugeHistogram = 4,
    Summary = 5,
    Info = 6,
    Stateset = 7,
}

impl MetricType {
    /// The exposition kind of this type.
    pub fn kind(self) -> MetricKind {
        match self {
            MetricType::Unspecified => MetricKind::Unknown,
            MetricType::Counter => MetricKind::Counter,
            MetricType::Gauge => MetricKind::Gauge,
            MetricType::Histogram => MetricKind::Histogram,
            MetricType::GaugeHistogram => MetricKind::GaugeHistogram,
            MetricType::Summary => MetricKind::Summary,
            MetricType::Info => MetricKind::Info,
            MetricType::Stateset => MetricKind::StateSet,
        }
    }
}

/// `io.prometheus.write.v2.Histogram`: a native histogram, with integer counts (`count_int`,
/// `zero_count_int`, `*_deltas`) or float counts (`count_float`, `zero_count_float`,
/// `*_counts`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    #[prost(oneof = "histogram::Count", tags = "1, 2")]
    pub count: Option<histogram::Count>,
    #[prost(double, tag = "3")]
    pub sum: f64,
    /// -4 to 8 for exponential buckets, -53 for custom ones.
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    #[prost(double, tag = "5")]
    pub zero_threshold: f64,
    #[prost(oneof = "histogram::ZeroCount", tags = "6, 7")]
    pub zero_count: Option<histogram::ZeroCount>,
    #[prost(message, repeated, tag = "8")]
    pub negative_spans: Vec<BucketSpan>,
    /// Each bucket's count minus the previous bucket's (the first one's minus zero).
    #[prost(sint64, repeated, tag = "9")]
    pub negative_deltas: Vec<i64>,
    #[prost(double, repeated, tag = "10")]
    pub negative_counts: Vec<f64>,
    #[prost(message, repeated, tag = "11")]
    pub positive_spans: Vec<BucketSpan>,
    #[prost(sint64, repeated, tag = "12")]
    pub positive_deltas: Vec<i64>,
    #[prost(double, repeated, tag = "13")]
    pub positive_counts: Vec<f64>,
    #[prost(enumeration = "ResetHint", tag = "14")]
    pub reset_hint: i32,
    /// Milliseconds.
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
    /// Custom buckets' upper bounds, strictly increasing, `+Inf` implicit.
    #[prost(double, repeated, tag = "16")]
    pub custom_values: Vec<f64>,
}

/// The oneofs of [`Histogram`].
pub mod histogram {
    /// The `count` oneof.
    #[derive(Clone, Copy, PartialEq, prost::Oneof)]
    pub enum Count {
        #[prost(uint64, tag = "1")]
        CountInt(u64),
        #[prost(double, tag = "2")]
        CountFloat(f64),
    }

    /// The `zero_count` oneof.
    #[derive(Clone, Copy, PartialEq, prost::Oneof)]
    pub enum ZeroCount {
        #[prost(uint64, tag = "6")]
        ZeroCountInt(u64),
        #[prost(double, tag = "7")]
        ZeroCountFloat(f64),
    }
}

/// `io.prometheus.write.v2.Histogram.ResetHint`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ResetHint {
    Unspecified = 0,
    Yes = 1,
    No = 2,
    Gauge = 3,
}

/// `io.prometheus.write.v2.BucketSpan`: `length` consecutive buckets, `offset` buckets after
/// the previous span (the first span's offset is its first bucket's index).
#[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
pub struct BucketSpan {
    #[prost(sint32, tag = "1")]
    pub offset: i32,
    #[prost(uint32, tag = "2")]
    pub length: u32,
}

/// A symbols table under construction, for building a [`Request`]: it starts with `""`, as the
/// specification requires, and gives each distinct string one reference.
#[derive(Clone, Debug)]
pub struct Symbols {
    table: Vec<String>,
    index: std::collections::HashMap<String, u32>,
}

impl Default for Symbols {
    fn default() -> Self {
        Symbols { table: vec![String::new()], index: [(String::new(), 0)].into_iter().collect() }
    }
}

impl Symbols {
    pub fn new() -> Self {
        Symbols::default()
    }

    /// The reference of `s`, added to the table if it is new.
    ///
    /// # Panics
    /// Past `u32::MAX` distinct strings.
    pub fn intern(&mut self, s: &str) -> u32 {
        if let Some(&r) = self.index.get(s) {
            return r;
        }
        let r = u32::try_from(self.table.len()).expect("more than u32::MAX symbols");
        self.table.push(s.to_owned());
        self.index.insert(s.to_owned(), r);
        r
    }

    /// `labels_refs` for a label set: name, value, name, value...
    pub fn labels_refs(&mut self, labels: &Labels) -> Vec<u32> {
        labels.iter().flat_map(|l| [self.intern(&l.name), self.intern(&l.value)]).collect()
    }

    /// The table, for [`Request::symbols`].
    pub fn into_table(self) -> Vec<String> {
        self.table
    }
}

/// Encodes a request as a remote_write 2.0 body: the protobuf in one snappy block. The request
/// is written as it is (see the module doc); build its symbols with [`Symbols`].
///
/// # Panics
/// When the protobuf is over the 4 GiB one snappy block can hold.
pub fn encode(req: &Request) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("remote write request over snappy's 4 GiB block limit")
}

/// What a request decoded to. Nothing is partial: a request that does not decode whole is an
/// `Err`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decoded {
    /// The float series and the classic series made from native histograms, in order of first
    /// appearance, series with equal labels merged. Every one has samples: a `TimeSeries` with
    /// neither samples nor histograms gives only its metadata and exemplars.
    pub series: Vec<DecodedSeries>,
    /// One entry per metric name whose series carry a type, help or unit; the family is the
    /// series' `__name__` (for a histogram, the base name of its classic series).
    pub metadata: Vec<exposition::Metadata>,
    pub exemplars: Vec<crate::Exemplar>,
    /// Float samples in the request (`X-Prometheus-Remote-Write-Samples-Written`).
    pub samples: usize,
    /// Histogram samples in the request (`X-Prometheus-Remote-Write-Histograms-Written`).
    pub histograms: usize,
    /// `exemplars.len()` (`X-Prometheus-Remote-Write-Exemplars-Written`).
    pub exemplars_count: usize,
}

/// Checks the caps, decompresses (as 1.0's [`crate::remote_write::decompress`], with its
/// errors) and decodes a remote_write 2.0 body.
pub fn decode(body: &[u8], limits: &Limits) -> Result<Decoded> {
    let proto = crate::remote_write::decompress(body, limits)?;
    decode_proto(&proto, limits)
}

/// Decodes an uncompressed `io.prometheus.write.v2.Request`. See the module doc for the rules.
pub fn decode_proto(proto: &[u8], limits: &Limits) -> Result<Decoded> {
    let max = limits.max_decompressed_bytes;
    if proto.len() > max {
        return Err(Error::DecompressedTooLarge { len: proto.len() as u64, max });
    }
    let symbols = read_symbols(proto)?;
    if let Some(first) = symbols.first()
        && !first.is_empty()
    {
        return Err(v2_err(
            "symbols[0]".into(),
            format!("is {first:?}, but the symbols table must start with the empty string"),
        ));
    }
    let mut d = Decoder {
        symbols,
        series: SeriesSet::default(),
        metadata: Vec::new(),
        families: HashSet::new(),
        exemplars: Vec::new(),
        samples: 0,
        histograms: 0,
        budget: Budget::new(limits),
    };
    d.charge(d.symbols.len() * size_of::<&str>())?;
    let mut r = proto;
    let mut index = 0;
    while !r.is_empty() {
        let (tag, wt) = key(&mut r, || "Request".into())?;
        if tag == 5 {
            let msg = len_delimited(&mut r, wt).map_err(|e| proto_err(ts_path(index), e))?;
            d.timeseries(msg, index)?;
            index += 1;
        } else {
            skip(&mut r, tag, wt).map_err(|e| proto_err("Request".into(), e))?;
        }
    }
    Ok(Decoded {
        series: d.series.into_vec(),
        metadata: d.metadata,
        exemplars_count: d.exemplars.len(),
        exemplars: d.exemplars,
        samples: d.samples,
        histograms: d.histograms,
    })
}

fn ts_path(index: usize) -> String {
    format!("timeseries[{index}]")
}

fn v2_err(path: String, reason: String) -> Error {
    Error::RemoteWriteV2 { path, reason }
}

fn key(r: &mut &[u8], path: impl FnOnce() -> String) -> Result<(u32, WireType)> {
    crate::remote_write::key(r).map_err(|e| proto_err(path(), e))
}

/// The first pass: the symbols table, wherever its entries are among the series.
fn read_symbols(proto: &[u8]) -> Result<Vec<&str>> {
    let mut symbols = Vec::new();
    let mut n_series = 0;
    let mut r = proto;
    while !r.is_empty() {
        let (tag, wt) = key(&mut r, || "Request".into())?;
        if tag == 4 {
            let at = || format!("symbols[{}]", symbols.len());
            let s = len_delimited(&mut r, wt).map_err(|e| proto_err(at(), e))?;
            let s = std::str::from_utf8(s).map_err(|_| {
                proto_err(at(), "invalid string value: data is not UTF-8 encoded".into())
            })?;
            symbols.push(s);
        } else if tag == 5 {
            len_delimited(&mut r, wt).map_err(|e| proto_err(ts_path(n_series), e))?;
            n_series += 1;
        } else {
            skip(&mut r, tag, wt).map_err(|e| proto_err("Request".into(), e))?;
        }
    }
    Ok(symbols)
}

#[derive(Debug)]
struct Decoder<'a> {
    symbols: Vec<&'a str>,
    series: SeriesSet,
    metadata: Vec<exposition::Metadata>,
    /// The metric names `metadata` has an entry for.
    families: HashSet<String>,
    exemplars: Vec<crate::Exemplar>,
    samples: usize,
    histograms: usize,
    budget: Budget,
}

/// About the memory a decoded result takes so far, against a cap of
/// [`DECODED_BYTES_PER_PROTO_BYTE`] times [`Limits::max_decompressed_bytes`]. Shared with 1.0's
/// decoder, which counts its native histograms' classic series and its exemplars the same way.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Budget {
    pub(crate) used: usize,
    pub(crate) max: usize,
}

impl Budget {
    pub(crate) fn new(limits: &Limits) -> Self {
        let max = limits.max_decompressed_bytes.saturating_mul(DECODED_BYTES_PER_PROTO_BYTE);
        Budget { used: 0, max }
    }

    /// Counts `bytes`; `false` once the total is over the cap.
    pub(crate) fn charge(&mut self, bytes: usize) -> bool {
        self.used = self.used.saturating_add(bytes);
        self.used <= self.max
    }
}

/// Why a native histogram sample was not converted by [`classic_series`].
#[derive(Debug)]
pub(crate) enum ConvertError {
    /// The histogram (or its series' labels) breaks a rule; the caller adds where.
    Invalid(String),
    /// The classic series would take the result over its [`Budget`].
    TooLarge,
}

/// One `TimeSeries` as the walk found it: scalars decoded, messages still encoded.
#[derive(Debug, Default)]
struct RawSeries<'a> {
    labels_refs: Vec<u32>,
    samples: Vec<model::Sample>,
    histograms: Vec<&'a [u8]>,
    exemplars: Vec<&'a [u8]>,
    metadata: Metadata,
}

impl<'a> Decoder<'a> {
    fn charge(&mut self, bytes: usize) -> Result<()> {
        if !self.budget.charge(bytes) {
            return Err(Error::RemoteWriteV2DecodedTooLarge { max: self.budget.max });
        }
        Ok(())
    }

    /// The symbol `r` refers to; `field` names the reference in `path` for the error.
    fn symbol(&self, r: u32, path: &str, field: impl FnOnce() -> String) -> Result<&'a str> {
        self.symbols.get(r as usize).copied().ok_or_else(|| {
            let n = self.symbols.len();
            let reason =
                format!("{} = {r} is past the end of the symbols table ({n} symbols)", field());
            v2_err(path.to_owned(), reason)
        })
    }

    /// Resolves label references into sorted raw pairs; `path` names their owner.
    fn label_pairs(&self, refs: &[u32], path: &str) -> Result<Vec<model::RawLabel<'a>>> {
        if !refs.len().is_multiple_of(2) {
            return Err(v2_err(
                path.to_owned(),
                format!("labels_refs has {} entries; it must hold name, value pairs", refs.len()),
            ));
        }
        let mut pairs = Vec::with_capacity(refs.len() / 2);
        for (j, pair) in refs.chunks_exact(2).enumerate() {
            let at = |k: usize| move || format!("labels_refs[{}]", 2 * j + k);
            let name = self.symbol(pair[0], path, at(0))?;
            let value = self.symbol(pair[1], path, at(1))?;
            pairs.push((name.as_bytes(), value.as_bytes()));
        }
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        Ok(pairs)
    }

    fn timeseries(&mut self, msg: &'a [u8], index: usize) -> Result<()> {
        let raw = self.walk(msg, index)?;
        let path = ts_path(index);
        let pairs = self.label_pairs(&raw.labels_refs, &path)?;
        let labels =
            series_labels(&pairs).map_err(|source| Error::InvalidSeries { index, source })?;
        if !raw.samples.is_empty() && !raw.histograms.is_empty() {
            return Err(v2_err(
                path,
                format!(
                    "has {} samples and {} histograms; a series carries one or the other",
                    raw.samples.len(),
                    raw.histograms.len()
                ),
            ));
        }
        self.metadata(&raw.metadata, &labels, &path)?;
        if !raw.samples.is_empty() {
            self.samples += raw.samples.len();
            let cost = labels_cost(labels.as_slice()) + size_of::<DecodedSeries>();
            if self.series.extend(labels.clone(), raw.samples) {
                self.charge(cost)?;
            }
        }
        for (j, msg) in raw.histograms.iter().enumerate() {
            let at = || format!("{path}.histograms[{j}]");
            let h = Histogram::decode(*msg).map_err(|e| proto_err(at(), prost_reason(&e)))?;
            self.histogram(&h, &labels, &at())?;
            self.histograms += 1;
        }
        for (j, msg) in raw.exemplars.iter().enumerate() {
            let at = format!("{path}.exemplars[{j}]");
            let e = Exemplar::decode(*msg).map_err(|e| proto_err(at.clone(), prost_reason(&e)))?;
            let pairs = self.label_pairs(&e.labels_refs, &at)?;
            let own = exemplar_labels(&pairs).map_err(|e| v2_err(at, e.to_string()))?;
            self.charge(
                size_of::<crate::Exemplar>()
                    + labels_cost(labels.as_slice())
                    + labels_cost(own.as_slice()),
            )?;
            self.exemplars.push(crate::Exemplar {
                series: labels.clone(),
                labels: own,
                value: e.value,
                timestamp: e.timestamp,
            });
        }
        Ok(())
    }

    /// Walks `timeseries[index]`, decoding its scalars and samples and keeping its other
    /// messages as slices for after the labels are known (fields may come in any order).
    fn walk(&mut self, mut r: &'a [u8], index: usize) -> Result<RawSeries<'a>> {
        let ctx = DecodeContext::default;
        let path = || ts_path(index);
        let mut s = RawSeries::default();
        let mut created = 0i64;
        while !r.is_empty() {
            let (tag, wt) = key(&mut r, path)?;
            let field = |f: &str| format!("{}.{f}", path());
            match tag {
                1 => uint32::merge_repeated(wt, &mut s.labels_refs, &mut r, ctx())
                    .map_err(|e| proto_err(field("labels_refs"), prost_reason(&e)))?,
                2 => {
                    let at = || field(&format!("samples[{}]", s.samples.len()));
                    let msg = len_delimited(&mut r, wt).map_err(|e| proto_err(at(), e))?;
                    let x = Sample::decode(msg).map_err(|e| proto_err(at(), prost_reason(&e)))?;
                    self.charge(size_of::<model::Sample>())?;
                    s.samples.push(model::Sample::new(x.timestamp, x.value));
                }
                3 | 4 => {
                    let (name, list) = if tag == 3 {
                        ("histograms", &mut s.histograms)
                    } else {
                        ("exemplars", &mut s.exemplars)
                    };
                    let at = || field(&format!("{name}[{}]", list.len()));
                    list.push(len_delimited(&mut r, wt).map_err(|e| proto_err(at(), e))?);
                    // a slice per message of two bytes or more: counted, as a sample is
                    self.charge(size_of::<&[u8]>())?;
                }
                5 => message::merge(wt, &mut s.metadata, &mut r, ctx())
                    .map_err(|e| proto_err(field("metadata"), prost_reason(&e)))?,
                6 => int64::merge(wt, &mut created, &mut r, ctx())
                    .map_err(|e| proto_err(field("created_timestamp"), prost_reason(&e)))?,
                _ => skip(&mut r, tag, wt).map_err(|e| proto_err(path(), e))?,
            }
        }
        Ok(s)
    }

    fn metadata(&mut self, m: &Metadata, labels: &Labels, path: &str) -> Result<()> {
        let path = format!("{path}.metadata");
        let Ok(ty) = MetricType::try_from(m.r#type) else {
            return Err(v2_err(path, format!("type {} is not a known metric type", m.r#type)));
        };
        let help = self.symbol(m.help_ref, &path, || "help_ref".into())?;
        let unit = self.symbol(m.unit_ref, &path, || "unit_ref".into())?;
        if ty == MetricType::Unspecified && help.is_empty() && unit.is_empty() {
            return Ok(());
        }
        let family = labels.metric_name().unwrap_or_default();
        if self.families.contains(family) {
            return Ok(());
        }
        self.charge(
            size_of::<exposition::Metadata>() + 2 * family.len() + help.len() + unit.len(),
        )?;
        self.families.insert(family.to_owned());
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        self.metadata.push(exposition::Metadata {
            family: family.to_owned(),
            kind: ty.kind(),
            help: some(help),
            unit: some(unit),
        });
        Ok(())
    }

    /// Converts one native histogram sample into classic series; see the module doc.
    fn histogram(&mut self, h: &Histogram, labels: &Labels, path: &str) -> Result<()> {
        classic_series(h, labels, &mut self.series, &mut self.budget).map_err(|e| match e {
            ConvertError::Invalid(reason) => v2_err(path.to_owned(), reason),
            ConvertError::TooLarge => Error::RemoteWriteV2DecodedTooLarge { max: self.budget.max },
        })
    }
}

/// Converts one native histogram sample of the series `labels` into classic series added to
/// `series` (see the module doc), counting them against `budget`: every series the sample can
/// make is counted before any is built. Shared by 1.0's and 2.0's decoders.
pub(crate) fn classic_series(
    h: &Histogram,
    labels: &Labels,
    series: &mut SeriesSet,
    budget: &mut Budget,
) -> Result<(), ConvertError> {
    if labels.get("le").is_some() {
        return Err(ConvertError::Invalid(
            "a histogram series may not have an le label: its classic _bucket series need it"
                .into(),
        ));
    }
    let buckets = histogram_buckets(h).map_err(ConvertError::Invalid)?;
    let count = match h.count {
        None => 0.0,
        Some(histogram::Count::CountInt(n)) => n as f64,
        Some(histogram::Count::CountFloat(f)) => f,
    };
    let name = labels.metric_name().unwrap_or_default();
    // every series this sample can make, counted before any is built
    let le_cost = size_of::<Label>() + 2 + 24;
    let per_series = labels_cost(labels.as_slice())
        + le_cost
        + "_bucket".len()
        + size_of::<DecodedSeries>()
        + size_of::<model::Sample>();
    let n = buckets.len() + 3;
    if budget.used.saturating_add(n.saturating_mul(per_series)) > budget.max {
        return Err(ConvertError::TooLarge);
    }
    let stale = h.sum.to_bits() == STALE_NAN.to_bits();
    let sample = |v: f64| model::Sample::new(h.timestamp, if stale { h.sum } else { v });
    // adds one sample, charging a new series and the sample against the cap
    let mut add = |labels: Labels, sample: model::Sample| {
        let cost = labels_cost(labels.as_slice()) + size_of::<DecodedSeries>();
        let new = series.push(labels, sample);
        if budget.charge(size_of::<model::Sample>() + if new { cost } else { 0 }) {
            Ok(())
        } else {
            Err(ConvertError::TooLarge)
        }
    };
    let bucket = format!("{name}_bucket");
    let mut cumulative = 0.0;
    for (bound, c) in buckets {
        cumulative += c;
        let l = renamed(labels, &bucket, Some(float_label(bound)));
        add(l, sample(cumulative))?;
    }
    add(renamed(labels, &bucket, Some("+Inf".into())), sample(count))?;
    add(renamed(labels, &format!("{name}_count"), None), sample(count))?;
    add(renamed(labels, &format!("{name}_sum"), None), sample(h.sum))?;
    Ok(())
}

/// A series' label set from sorted raw pairs: a repeated name (even with an empty value) and an
/// invalid name of an empty-valued label are errors, since dropping the label would hide them;
/// then empty values are dropped and [`Labels::from_raw`] checks the rest.
fn series_labels(pairs: &[model::RawLabel<'_>]) -> Result<Labels, model::Error> {
    check_names(pairs, false)?;
    let kept: Vec<model::RawLabel<'_>> =
        pairs.iter().copied().filter(|l| !l.1.is_empty()).collect();
    Labels::from_raw(&kept)
}

/// An exemplar's own label set: names valid and not repeated, empty values dropped; no
/// `__name__` needed.
pub(crate) fn exemplar_labels(pairs: &[model::RawLabel<'_>]) -> Result<Labels, model::Error> {
    check_names(pairs, true)?;
    let labels = pairs
        .iter()
        .filter(|l| !l.1.is_empty())
        .map(|&(n, v)| Label::new(String::from_utf8_lossy(n), String::from_utf8_lossy(v)))
        .collect();
    Ok(Labels::from_sorted(labels))
}

/// No repeated names; with `all`, every name valid, else only those with empty values.
fn check_names(pairs: &[model::RawLabel<'_>], all: bool) -> Result<(), model::Error> {
    for (i, &(name, value)) in pairs.iter().enumerate() {
        let lossy = || String::from_utf8_lossy(name).into_owned();
        if i > 0 && pairs[i - 1].0 == name {
            return Err(model::Error::DuplicateLabel(lossy()));
        }
        if (all || value.is_empty()) && !std::str::from_utf8(name).is_ok_and(is_valid_label_name) {
            return Err(model::Error::InvalidLabelName(lossy()));
        }
    }
    Ok(())
}

/// `labels` with `__name__` set to `name` and, if given, `le` set.
fn renamed(labels: &Labels, name: &str, le: Option<String>) -> Labels {
    let mut v: Vec<Label> = Vec::with_capacity(labels.len() + 1);
    let mut le = le;
    for l in labels.iter() {
        if let Some(value) = le.take_if(|_| l.name.as_str() > "le") {
            v.push(Label::new("le", value));
        }
        if l.name == METRIC_NAME {
            v.push(Label::new(METRIC_NAME, name));
        } else {
            v.push(l.clone());
        }
    }
    if let Some(value) = le {
        v.push(Label::new("le", value));
    }
    Labels::from_sorted(v)
}

/// The histogram's buckets as (upper bound, count) in ascending order of bound, equal bounds
/// merged and `+Inf` ones left out (the `+Inf` series is the count), after every check.
fn histogram_buckets(h: &Histogram) -> Result<Vec<(f64, f64)>, String> {
    use histogram::{Count, ZeroCount};
    let float = matches!(h.count, Some(Count::CountFloat(_)));
    let zero_count = match (float, h.zero_count) {
        (_, None) => 0.0,
        (false, Some(ZeroCount::ZeroCountInt(n))) => n as f64,
        (true, Some(ZeroCount::ZeroCountFloat(f))) => f,
        (false, Some(ZeroCount::ZeroCountFloat(_))) => {
            return Err("an integer histogram (count_int) has zero_count_float".into());
        }
        (true, Some(ZeroCount::ZeroCountInt(_))) => {
            return Err("a float histogram (count_float) has zero_count_int".into());
        }
    };
    if let Some(Count::CountFloat(c)) = h.count
        && !non_negative(c)
    {
        return Err(format!("count_float is {c}; counts must be non-negative numbers"));
    }
    if !non_negative(zero_count) {
        return Err(format!(
            "zero_count_float is {zero_count}; counts must be non-negative numbers"
        ));
    }
    let zt = h.zero_threshold;
    if !(zt.is_finite() && zt >= 0.0) {
        return Err(format!("zero_threshold is {zt}; it must be a finite number, 0 or more"));
    }
    if float {
        if let Some(f) =
            [("negative_deltas", &h.negative_deltas), ("positive_deltas", &h.positive_deltas)]
                .iter()
                .find(|(_, d)| !d.is_empty())
        {
            return Err(format!("a float histogram (count_float) has {}", f.0));
        }
    } else if let Some(f) =
        [("negative_counts", &h.negative_counts), ("positive_counts", &h.positive_counts)]
            .iter()
            .find(|(_, c)| !c.is_empty())
    {
        return Err(format!("an integer histogram (count_int) has {}", f.0));
    }
    let neg =
        side_counts(&h.negative_spans, &h.negative_deltas, &h.negative_counts, float, "negative")?;
    let pos =
        side_counts(&h.positive_spans, &h.positive_deltas, &h.positive_counts, float, "positive")?;
    if let Some(Count::CountInt(count)) = h.count {
        // integer counts: the buckets cannot hold more observations than the histogram
        let held = zero_count + neg.iter().chain(&pos).map(|b| b.1).sum::<f64>();
        if held > count as f64 {
            return Err(format!(
                "its buckets hold {held} observations, more than its count {count}"
            ));
        }
    }
    let mut out: Vec<(f64, f64)> = Vec::with_capacity(neg.len() + pos.len() + 1);
    match h.schema {
        CUSTOM_SCHEMA => {
            if zt != 0.0 || zero_count != 0.0 || !h.negative_spans.is_empty() {
                return Err(
                    "a custom-bucket histogram (schema -53) may have no zero bucket and no \
                            negative buckets"
                        .into(),
                );
            }
            let cv = &h.custom_values;
            if let Some(j) = cv.iter().position(|b| b.is_nan() || *b == f64::INFINITY) {
                return Err(format!(
                    "custom_values[{j}] is {}; bounds must be numbers below +Inf (the +Inf \
                     bucket is implicit)",
                    cv[j]
                ));
            }
            if let Some(j) = cv.windows(2).position(|w| w[0] >= w[1]) {
                return Err(format!(
                    "custom_values must be strictly increasing: [{j}] is {}, [{}] is {}",
                    cv[j],
                    j + 1,
                    cv[j + 1]
                ));
            }
            for (i, c) in pos {
                let bound = usize::try_from(i)
                    .ok()
                    .and_then(
                        |i| if i == cv.len() { Some(f64::INFINITY) } else { cv.get(i).copied() },
                    )
                    .ok_or_else(|| {
                        format!(
                            "positive bucket {i} has no bound: custom_values has {} entries",
                            cv.len()
                        )
                    })?;
                out.push((bound, c));
            }
        }
        s @ MIN_SCHEMA..=MAX_SCHEMA => {
            if !h.custom_values.is_empty() {
                return Err(format!("an exponential histogram (schema {s}) has custom_values"));
            }
            out.extend(neg.iter().rev().map(|&(i, c)| (-exp_bound(i - 1, s), c)));
            if zero_count > 0.0 {
                out.push((zt, zero_count));
            }
            out.extend(pos.iter().map(|&(i, c)| (exp_bound(i, s), c)));
        }
        s => {
            return Err(format!(
                "schema {s} is not supported ({MIN_SCHEMA} to {MAX_SCHEMA}, or {CUSTOM_SCHEMA} for \
                 custom buckets)"
            ));
        }
    }
    for b in &mut out {
        b.0 += 0.0; // -0.0 is 0
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(out.len());
    for (bound, c) in out {
        match merged.last_mut() {
            Some(last) if last.0 == bound => last.1 += c,
            _ => merged.push((bound, c)),
        }
    }
    merged.retain(|b| b.0 != f64::INFINITY);
    Ok(merged)
}

/// Whether a count is a number, 0 or more (false for NaN).
fn non_negative(c: f64) -> bool {
    c >= 0.0
}

const MIN_SCHEMA: i32 = -4;
const MAX_SCHEMA: i32 = 8;
const CUSTOM_SCHEMA: i32 = -53;

/// One side's buckets as (index, absolute count), indices increasing. The spans' total length
/// is checked against the counts given before any bucket is made.
fn side_counts(
    spans: &[BucketSpan],
    deltas: &[i64],
    counts: &[f64],
    float: bool,
    side: &str,
) -> Result<Vec<(i64, f64)>, String> {
    let (field, n) = if float { ("counts", counts.len()) } else { ("deltas", deltas.len()) };
    let total: u64 = spans.iter().map(|s| u64::from(s.length)).sum();
    if total != n as u64 {
        return Err(format!(
            "{side}_spans cover {total} buckets but {side}_{field} has {n} entries"
        ));
    }
    if let Some(k) = spans.iter().skip(1).position(|s| s.offset < 0) {
        return Err(format!(
            "{side}_spans[{}].offset is {}; only the first span's offset may be negative",
            k + 1,
            spans[k + 1].offset
        ));
    }
    let mut out = Vec::with_capacity(n);
    let mut running: i64 = 0;
    let mut j = 0;
    let mut index: i64 = 0;
    for s in spans {
        // the first span's offset is its first index; a later one's, the gap before it
        index += i64::from(s.offset);
        for _ in 0..s.length {
            let c = if float {
                let c = counts[j];
                if !non_negative(c) {
                    return Err(format!(
                        "{side}_counts[{j}] is {c}; counts must be non-negative numbers"
                    ));
                }
                c
            } else {
                running = running.checked_add(deltas[j]).filter(|c| *c >= 0).ok_or_else(|| {
                    format!(
                        "{side}_deltas[{j}] = {} makes a bucket count negative or overflow",
                        deltas[j]
                    )
                })?;
                running as f64
            };
            out.push((index, c));
            index += 1;
            j += 1;
        }
    }
    Ok(out)
}

/// The upper bound of positive bucket `i` of an exponential schema: `2^(i·2^-schema)`, exact
/// for schemas of 0 and less; `+Inf` or 0 past the range of `f64`.
fn exp_bound(i: i64, schema: i32) -> f64 {
    if schema <= 0 {
        ldexp(1.0, i.saturating_mul(1 << -schema))
    } else {
        let per_octave = 1i64 << schema;
        let frac = (i.rem_euclid(per_octave) as f64 / per_octave as f64).exp2();
        ldexp(frac, i.div_euclid(per_octave))
    }
}

/// `x · 2^e`, exact while the result is a normal number.
fn ldexp(mut x: f64, mut e: i64) -> f64 {
    const STEP: i64 = 1000;
    let step_up = 2f64.powi(STEP as i32);
    let step_down = 2f64.powi(-STEP as i32);
    while e > STEP && x.is_finite() && x != 0.0 {
        x *= step_up;
        e -= STEP;
    }
    while e < -STEP && x != 0.0 {
        x *= step_down;
        e += STEP;
    }
    if !(-STEP..=STEP).contains(&e) {
        return x; // already infinite or zero
    }
    x * 2f64.powi(e as i32)
}

#[cfg(test)]
mod tests;
