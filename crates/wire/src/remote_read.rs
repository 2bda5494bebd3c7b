//! Prometheus remote_read, the `SAMPLES` response type: a `ReadRequest` protobuf in one snappy
//! block asks for the series matching some matchers over a time range, one query or several;
//! the `ReadResponse` answers each with its series and raw samples, in the same framing.
//!
//! [`decode_request`] checks the body against [`Limits`] before decompressing (the same caps
//! and errors as remote_write), decodes the protobuf, and turns each query's matchers into
//! [`Matcher`]s (an invalid regex or an unknown matcher type is an error naming the query and
//! the matcher). [`encode_response`] is the server's answer; [`encode_request`] and
//! [`decode_response`] are the client's side, used by tests and by a reader of Ocelli.
//!
//! The messages are written by hand from Prometheus' `prompb/remote.proto` and `types.proto`
//! (no build script, no protoc) and reuse remote_write's `TimeSeries`, `Label` and `Sample`
//! (whose encoding keeps every value bit for bit).
//!
//! Deliberately absent: the `STREAMED_XOR_CHUNKS` response type. A request that accepts only
//! that is refused with an error saying so (Prometheus' own reader asks for `SAMPLES`). Read
//! hints (field 5 of `Query`) are decoded and ignored: raw samples are always returned.

use ocelli_model::{Labels, MatchOp, Matcher, Sample};
use prost::Message as _;

use crate::remote_write::{Label, Limits, TimeSeries, decompress};
use crate::{Error, Result};

/// `prometheus.ReadRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadRequest {
    #[prost(message, repeated, tag = "1")]
    pub queries: Vec<Query>,
    #[prost(enumeration = "ResponseType", repeated, tag = "2")]
    pub accepted_response_types: Vec<i32>,
}

/// `prometheus.ReadRequest.ResponseType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ResponseType {
    Samples = 0,
    StreamedXorChunks = 1,
}

/// `prometheus.Query`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Query {
    #[prost(int64, tag = "1")]
    pub start_timestamp_ms: i64,
    #[prost(int64, tag = "2")]
    pub end_timestamp_ms: i64,
    #[prost(message, repeated, tag = "3")]
    pub matchers: Vec<LabelMatcher>,
    #[prost(message, optional, tag = "4")]
    pub hints: Option<ReadHints>,
}

/// `prometheus.LabelMatcher`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct LabelMatcher {
    #[prost(enumeration = "MatcherType", tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub value: String,
}

/// `prometheus.LabelMatcher.Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum MatcherType {
    Eq = 0,
    Neq = 1,
    Re = 2,
    Nre = 3,
}

/// `prometheus.ReadHints`: decoded so that a malformed one is an error, otherwise unused.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadHints {
    #[prost(int64, tag = "1")]
    pub step_ms: i64,
    #[prost(string, tag = "2")]
    pub func: String,
    #[prost(int64, tag = "3")]
    pub start_ms: i64,
    #[prost(int64, tag = "4")]
    pub end_ms: i64,
    #[prost(string, repeated, tag = "5")]
    pub grouping: Vec<String>,
    #[prost(bool, tag = "6")]
    pub by: bool,
    #[prost(int64, tag = "7")]
    pub range_ms: i64,
}

/// `prometheus.ReadResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReadResponse {
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<QueryResult>,
}

/// `prometheus.QueryResult`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct QueryResult {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

/// The series of one query with their samples.
pub type QueryAnswer = Vec<(Labels, Vec<Sample>)>;

/// One decoded query: series matching every matcher, samples in `[start_ms, end_ms]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadQuery {
    pub start_ms: i64,
    pub end_ms: i64,
    pub matchers: Vec<Matcher>,
}

fn bad(reason: String) -> Error {
    Error::RemoteRead { reason }
}

/// remote_write's decompression, with errors that say "remote read".
fn unsnap(body: &[u8], limits: &Limits) -> Result<Vec<u8>> {
    decompress(body, limits).map_err(|e| match e {
        Error::BodyTooLarge { len, max } => {
            bad(format!("body is {len} bytes, over the limit of {max} bytes"))
        }
        Error::DecompressedTooLarge { len, max } => {
            bad(format!("body decompresses to {len} bytes, over the limit of {max} bytes"))
        }
        Error::Snappy { source } => bad(format!("body is not one snappy block: {source}")),
        e => e,
    })
}

/// Decodes a remote_read request body into its queries.
pub fn decode_request(body: &[u8], limits: &Limits) -> Result<Vec<ReadQuery>> {
    let buf = unsnap(body, limits)?;
    let req = ReadRequest::decode(buf.as_slice())
        .map_err(|e| bad(format!("not a ReadRequest protobuf: {e}")))?;
    let samples = ResponseType::Samples as i32;
    if !req.accepted_response_types.is_empty() && !req.accepted_response_types.contains(&samples) {
        return Err(bad(
            "only the SAMPLES response type is served; the request accepts only streamed chunks"
                .into(),
        ));
    }
    req.queries
        .iter()
        .enumerate()
        .map(|(i, q)| {
            if q.start_timestamp_ms > q.end_timestamp_ms {
                return Err(bad(format!(
                    "queries[{i}]: start {} ms is after end {} ms",
                    q.start_timestamp_ms, q.end_timestamp_ms
                )));
            }
            let matchers = q
                .matchers
                .iter()
                .enumerate()
                .map(|(j, m)| {
                    let op = match MatcherType::try_from(m.r#type) {
                        Ok(MatcherType::Eq) => MatchOp::Equal,
                        Ok(MatcherType::Neq) => MatchOp::NotEqual,
                        Ok(MatcherType::Re) => MatchOp::RegexMatch,
                        Ok(MatcherType::Nre) => MatchOp::RegexNoMatch,
                        Err(_) => {
                            return Err(bad(format!(
                                "queries[{i}].matchers[{j}]: unknown matcher type {}",
                                m.r#type
                            )));
                        }
                    };
                    Matcher::new(op, m.name.clone(), m.value.clone())
                        .map_err(|e| bad(format!("queries[{i}].matchers[{j}]: {e}")))
                })
                .collect::<Result<Vec<_>>>()?;
            if matchers.is_empty() {
                return Err(bad(format!("queries[{i}]: no matchers")));
            }
            Ok(ReadQuery { start_ms: q.start_timestamp_ms, end_ms: q.end_timestamp_ms, matchers })
        })
        .collect()
}

fn to_proto(labels: &Labels, samples: &[Sample]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|l| Label { name: l.name.clone(), value: l.value.clone() })
            .collect(),
        samples: samples
            .iter()
            .map(|s| crate::remote_write::Sample { value: s.v, timestamp: s.t })
            .collect(),
    }
}

/// Encodes the answer: per query, in request order, its series with their samples.
pub fn encode_response(results: &[QueryAnswer]) -> Result<Vec<u8>> {
    let resp = ReadResponse {
        results: results
            .iter()
            .map(|r| QueryResult { timeseries: r.iter().map(|(l, s)| to_proto(l, s)).collect() })
            .collect(),
    };
    let buf = resp.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&buf)
        .map_err(|_| Error::EncodeTooLarge { len: buf.len() })
}

/// Encodes a request for `queries`, accepting the `SAMPLES` response type.
pub fn encode_request(queries: &[ReadQuery]) -> Result<Vec<u8>> {
    let req = ReadRequest {
        queries: queries
            .iter()
            .map(|q| Query {
                start_timestamp_ms: q.start_ms,
                end_timestamp_ms: q.end_ms,
                matchers: q
                    .matchers
                    .iter()
                    .map(|m| LabelMatcher {
                        r#type: match m.op {
                            MatchOp::Equal => MatcherType::Eq,
                            MatchOp::NotEqual => MatcherType::Neq,
                            MatchOp::RegexMatch => MatcherType::Re,
                            MatchOp::RegexNoMatch => MatcherType::Nre,
                        } as i32,
                        name: m.name.clone(),
                        value: m.value.clone(),
                    })
                    .collect(),
                hints: None,
            })
            .collect(),
        accepted_response_types: vec![ResponseType::Samples as i32],
    };
    let buf = req.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&buf)
        .map_err(|_| Error::EncodeTooLarge { len: buf.len() })
}

/// Decodes a `SAMPLES` answer: per query, its series (labels validated) and samples.
pub fn decode_response(body: &[u8], limits: &Limits) -> Result<Vec<QueryAnswer>> {
    let buf = unsnap(body, limits)?;
    let resp = ReadResponse::decode(buf.as_slice())
        .map_err(|e| bad(format!("not a ReadResponse protobuf: {e}")))?;
    resp.results
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            r.timeseries
                .into_iter()
                .enumerate()
                .map(|(j, ts)| {
                    let labels = Labels::from_pairs(
                        ts.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
                    )
                    .map_err(|e| bad(format!("results[{i}].timeseries[{j}]: {e}")))?;
                    let samples =
                        ts.samples.iter().map(|s| Sample::new(s.timestamp, s.value)).collect();
                    Ok((labels, samples))
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn query(matchers: Vec<Matcher>) -> ReadQuery {
        ReadQuery { start_ms: 10, end_ms: 20, matchers }
    }

    #[test]
    fn requests_round_trip_and_bad_ones_name_the_matcher() {
        let q = query(vec![
            Matcher::equal("__name__", "up"),
            Matcher::new(MatchOp::RegexMatch, "job", "n.*").unwrap(),
        ]);
        let body = encode_request(std::slice::from_ref(&q)).unwrap();
        let got = decode_request(&body, &Limits::default()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].start_ms, got[0].end_ms), (10, 20));
        assert_eq!(got[0].matchers, q.matchers);

        let raw = |req: ReadRequest| {
            snap::raw::Encoder::new().compress_vec(&req.encode_to_vec()).unwrap()
        };
        let lm = |t: i32, v: &str| LabelMatcher { r#type: t, name: "job".into(), value: v.into() };
        let req = |m: Vec<LabelMatcher>, types: Vec<i32>| ReadRequest {
            queries: vec![Query {
                start_timestamp_ms: 0,
                end_timestamp_ms: 1,
                matchers: m,
                hints: None,
            }],
            accepted_response_types: types,
        };
        let e =
            decode_request(&raw(req(vec![lm(2, "(")], vec![])), &Limits::default()).unwrap_err();
        assert!(e.to_string().starts_with("remote read request: queries[0].matchers[0]: "), "{e}");
        let e =
            decode_request(&raw(req(vec![lm(7, "x")], vec![])), &Limits::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "remote read request: queries[0].matchers[0]: unknown matcher type 7"
        );
        let e =
            decode_request(&raw(req(vec![lm(0, "x")], vec![1])), &Limits::default()).unwrap_err();
        assert!(e.to_string().contains("only the SAMPLES response type"), "{e}");
        let e = decode_request(&raw(req(vec![], vec![])), &Limits::default()).unwrap_err();
        assert_eq!(e.to_string(), "remote read request: queries[0]: no matchers");
        let e = decode_request(b"\x05garbage", &Limits::default()).unwrap_err();
        assert!(
            e.to_string().starts_with("remote read request: body is not one snappy block"),
            "{e}"
        );
    }

    #[test]
    fn responses_keep_every_value_bit_for_bit() {
        let l = Labels::from_pairs([("__name__", "x"), ("a", "b")]).unwrap();
        let s = vec![
            Sample::new(1, -0.0),
            Sample::new(2, ocelli_model::STALE_NAN),
            Sample::new(3, f64::INFINITY),
            Sample::new(-4, 1e-300),
        ];
        let body = encode_response(&[vec![(l.clone(), s.clone())], vec![]]).unwrap();
        let got = decode_response(&body, &Limits::default()).unwrap();
        assert_eq!(got.len(), 2);
        assert!(got[1].is_empty());
        assert_eq!(got[0][0].0, l);
        let bits = |v: &[Sample]| v.iter().map(|s| (s.t, s.v.to_bits())).collect::<Vec<_>>();
        assert_eq!(bits(&got[0][0].1), bits(&s));
    }

    proptest! {
        #[test]
        fn any_bytes_decode_or_fail_without_panicking(body in prop::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_request(&body, &Limits::default());
            let framed = snap::raw::Encoder::new().compress_vec(&body).unwrap();
            let _ = decode_request(&framed, &Limits::default());
        }

        #[test]
        fn mutated_requests_decode_or_fail_without_panicking(
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let q = query(vec![
                Matcher::equal("__name__", "node_cpu_seconds_total"),
                Matcher::new(MatchOp::RegexNoMatch, "mode", "idle|iowait").unwrap(),
            ]);
            let mut raw = ReadRequest::decode(
                snap::raw::Decoder::new().decompress_vec(&encode_request(&[q]).unwrap()).unwrap().as_slice(),
            )
            .unwrap()
            .encode_to_vec();
            for (i, b) in flips {
                let at = i.index(raw.len());
                raw[at] ^= b;
            }
            let framed = snap::raw::Encoder::new().compress_vec(&raw).unwrap();
            if let Ok(qs) = decode_request(&framed, &Limits::default()) {
                for q in qs {
                    prop_assert!(q.start_ms <= q.end_ms && !q.matchers.is_empty());
                }
            }
        }
    }
}
