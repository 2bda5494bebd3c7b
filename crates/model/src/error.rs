//! The model crate's error type: invalid names and invalid matchers.

/// What was wrong with a label set or a matcher.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid label name {0:?}")]
    InvalidLabelName(String),
    #[error("invalid metric name {0:?}")]
    InvalidMetricName(String),
    #[error("value of label {0:?} is not valid UTF-8")]
    InvalidUtf8Value(String),
    #[error("duplicate label name {0:?}")]
    DuplicateLabel(String),
    #[error("label set has no {METRIC_NAME} label", METRIC_NAME = crate::METRIC_NAME)]
    MissingMetricName,
    #[error("invalid regex {regex:?} in matcher for label {name:?}: {source}")]
    InvalidRegex {
        name: String,
        regex: String,
        #[source]
        source: Box<regex::Error>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
