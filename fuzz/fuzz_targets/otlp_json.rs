//! OTLP/JSON: arbitrary bytes decode or fail without panicking; what decodes is valid, distinct
//! series with samples, every exemplar belongs to one of them, each metadata family comes once,
//! the JSON response parses, and the series survive the protobuf encoder and decoder bit for
//! bit.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use ocelli_wire::otlp::{Limits, decode, decode_json, encode};

fuzz_target!(|data: &[u8]| {
    let Ok(decoded) = decode_json(data, &Limits::default()) else { return };
    common::check_valid(&decoded.series, true);
    common::check_distinct(&decoded.series);
    assert_eq!(decoded.rejected_data_points == 0, decoded.rejections.is_empty());
    for e in &decoded.exemplars {
        assert!(decoded.series.iter().any(|s| s.labels == e.series), "exemplar of {}", e.series);
    }
    let mut families = std::collections::HashSet::new();
    for m in &decoded.metadata {
        assert!(families.insert(&m.family), "metadata of {} twice", m.family);
    }
    let response: serde_json::Value =
        serde_json::from_slice(&decoded.response_json()).expect("response is JSON");
    assert!(response.is_object());
    let body = encode(&decoded.series).expect("re-encode");
    let again = decode(&body, &Limits::default()).expect("re-decode");
    assert_eq!(again.rejected_data_points, 0);
    common::assert_same(&again.series, &decoded.series, false);
});
