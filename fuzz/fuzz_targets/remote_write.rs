//! remote_write: arbitrary bytes decode or fail without panicking; what decodes is valid, and
//! encoding it and decoding again gives it back bit for bit.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use ocelli_wire::remote_write::{Limits, decode, encode};

fuzz_target!(|data: &[u8]| {
    let Ok(series) = decode(data, &Limits::default()) else { return };
    common::check_valid(&series, false);
    let again =
        decode(&encode(&series).expect("re-encode"), &Limits::default()).expect("re-decode");
    common::assert_same(&again, &series, false);
});
