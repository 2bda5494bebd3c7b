//! OTLP: arbitrary bytes decode or fail without panicking; what decodes is valid, distinct
//! series with samples, and the OTLP encoder's request decodes back to it bit for bit.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use ocelli_wire::otlp::{Limits, decode, encode};

fuzz_target!(|data: &[u8]| {
    let Ok(decoded) = decode(data, &Limits::default()) else { return };
    common::check_valid(&decoded.series, true);
    common::check_distinct(&decoded.series);
    assert_eq!(decoded.rejected_data_points == 0, decoded.rejections.is_empty());
    let body = encode(&decoded.series).expect("re-encode");
    let again = decode(&body, &Limits::default()).expect("re-decode");
    assert_eq!(again.rejected_data_points, 0);
    common::assert_same(&again.series, &decoded.series, false);
});
