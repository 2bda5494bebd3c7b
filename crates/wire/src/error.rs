//! The wire crate's error type. Every variant says which stage of decoding failed and, for a
//! bad series, which series (`timeseries[3]`) or which line and column of a text body, so that
//! a 400 response alone explains itself.

/// What was wrong with a request body.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("remote write body is {len} bytes, over the limit of {max} bytes")]
    BodyTooLarge { len: usize, max: usize },
    #[error("remote write body: {source}")]
    Snappy {
        #[source]
        source: snap::Error,
    },
    #[error("remote write body decompresses to {len} bytes, over the limit of {max} bytes")]
    DecompressedTooLarge { len: u64, max: usize },
    #[error("remote write body: {source}")]
    Protobuf {
        #[source]
        source: prost::DecodeError,
    },
    #[error("remote write body: {path}: {reason}")]
    ProtobufField { path: String, reason: String },
    /// A remote_write 1.0 request that decodes as protobuf but breaks a rule: a bad native
    /// histogram, a bad label set of an exemplar...
    #[error("remote write request: {path}: {reason}")]
    RemoteWrite { path: String, reason: String },
    #[error("remote write request: decoded series take more than the limit of {max} bytes")]
    RemoteWriteDecodedTooLarge { max: usize },
    #[error("timeseries[{index}]: {source}")]
    InvalidSeries {
        index: usize,
        #[source]
        source: ocelli_model::Error,
    },
    #[error("influx body is {len} bytes, over the limit of {max} bytes")]
    InfluxBodyTooLarge { len: usize, max: usize },
    #[error("line {line}, column {column}: {reason}")]
    InfluxLine { line: usize, column: usize, reason: String },
    #[error("line {line}: decoded series take more than the limit of {max} bytes")]
    InfluxDecodedTooLarge { line: usize, max: usize },
    #[error("exposition body is {len} bytes, over the limit of {max} bytes")]
    ExpositionBodyTooLarge { len: usize, max: usize },
    #[error("line {line}, column {column}: {reason}")]
    ExpositionLine { line: usize, column: usize, reason: String },
    #[error("line {line}: more than the limit of {max} samples")]
    ExpositionTooManySamples { line: usize, max: usize },
    #[error("JSON import body is {len} bytes, over the limit of {max} bytes")]
    JsonBodyTooLarge { len: usize, max: usize },
    #[error("line {line}, column {column}: {reason}")]
    JsonLine { line: usize, column: usize, reason: String },
    #[error("line {line}: more than the limit of {max} samples")]
    JsonTooManySamples { line: usize, max: usize },
    #[error("OTLP request is {len} bytes, over the limit of {max} bytes")]
    OtlpBodyTooLarge { len: usize, max: usize },
    #[error("OTLP request: {source}")]
    OtlpProtobuf {
        #[source]
        source: prost::DecodeError,
    },
    #[error("{path}: {reason}")]
    OtlpInvalid { path: String, reason: String },
    #[error("OTLP request: decoded series take more than the limit of {max} bytes")]
    OtlpDecodedTooLarge { max: usize },
    #[error("timestamp {t} ms cannot be written as OTLP nanoseconds (0 to {max} ms)")]
    OtlpEncodeTimestamp { t: i64, max: i64 },
    #[error("invalid precision {0:?}: expected one of ns, n, us, u, ms, s")]
    InvalidPrecision(String),
    #[error("remote write request encodes to {len} bytes, more than one snappy block can hold")]
    EncodeTooLarge { len: usize },
    /// A remote_write 2.0 request that decodes as protobuf but breaks the protocol's rules:
    /// a reference past the symbols table, a bad histogram, a bad label set of an exemplar...
    #[error("remote write 2.0 request: {path}: {reason}")]
    RemoteWriteV2 { path: String, reason: String },
    #[error("remote write 2.0 request: decoded series take more than the limit of {max} bytes")]
    RemoteWriteV2DecodedTooLarge { max: usize },
    /// A remote_read request or answer that is not what the protocol allows.
    #[error("remote read request: {reason}")]
    RemoteRead { reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
