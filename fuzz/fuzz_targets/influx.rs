//! Influx line protocol: arbitrary bytes decode or fail without panicking; what decodes is
//! valid, distinct series with samples, and survives a trip through exposition text.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use ocelli_wire::{exposition, influx};

fuzz_target!(|data: &[u8]| {
    let limits = influx::Limits::default();
    let Ok(series) =
        influx::decode_with_db(data, influx::Precision::Ns, 42_000, &limits, Some("db"))
    else {
        return;
    };
    common::check_valid(&series, true);
    common::check_distinct(&series);
    let text = common::exposition_text(&series);
    let again = exposition::decode(text.as_bytes(), 0, &exposition::Limits::default())
        .unwrap_or_else(|e| panic!("re-decode of {text:?}: {e}"));
    common::assert_same(&again.series, &series, false);
});
