//! Exposition text: arbitrary bytes decode or fail without panicking; what decodes is valid,
//! distinct series with samples, and encoding it as text and decoding again gives it back.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use ocelli_wire::exposition::{Limits, decode};

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = decode(data, 42_000, &Limits::default()) else { return };
    common::check_valid(&parsed.series, true);
    common::check_distinct(&parsed.series);
    let text = common::exposition_text(&parsed.series);
    let again = decode(text.as_bytes(), 0, &Limits::default())
        .unwrap_or_else(|e| panic!("re-decode of {text:?}: {e}"));
    // the text format has one NaN, so the stale marker's bits do not survive
    common::assert_same(&again.series, &parsed.series, true);
});
