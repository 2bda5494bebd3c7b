//! JSON lines: arbitrary bytes decode or fail without panicking; what decodes is valid,
//! distinct series with samples, and encoding it as JSON lines and decoding again gives it back.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use ocelli_wire::json::{Limits, decode};

fuzz_target!(|data: &[u8]| {
    let Ok(series) = decode(data, &Limits::default()) else { return };
    common::check_valid(&series, true);
    common::check_distinct(&series);
    let text = common::json_lines(&series);
    let again = decode(text.as_bytes(), &Limits::default())
        .unwrap_or_else(|e| panic!("re-decode of {text:?}: {e}"));
    // the format has one NaN
    common::assert_same(&again, &series, true);
});
