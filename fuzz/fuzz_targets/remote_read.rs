//! remote_read: arbitrary bytes decode or fail without panicking; a request that decodes has
//! ordered time ranges and matchers, and encoding its queries and decoding again gives them
//! back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ocelli_wire::remote_read::{decode_request, encode_request};
use ocelli_wire::remote_write::Limits;

fuzz_target!(|data: &[u8]| {
    let Ok(queries) = decode_request(data, &Limits::default()) else { return };
    for q in &queries {
        assert!(q.start_ms <= q.end_ms, "start after end");
        assert!(!q.matchers.is_empty(), "no matchers");
    }
    let again =
        decode_request(&encode_request(&queries).expect("re-encode"), &Limits::default())
            .expect("re-decode");
    assert_eq!(again, queries);
});
