//! remote_write_v2: arbitrary bytes decode or fail without panicking; what decodes is valid
//! (label sets valid and distinct, every series with samples, the exemplar count right), and
//! its series, encoded again as float series of a 2.0 request and decoded, come back bit for
//! bit.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use ocelli_wire::remote_write::Limits;
use ocelli_wire::remote_write_v2::{Request, Sample, Symbols, TimeSeries, decode, encode};

fuzz_target!(|data: &[u8]| {
    let Ok(d) = decode(data, &Limits::default()) else { return };
    common::check_valid(&d.series, true);
    common::check_distinct(&d.series);
    assert_eq!(d.exemplars_count, d.exemplars.len());
    for e in &d.exemplars {
        if let Err(err) = e.series.validate() {
            panic!("exemplar of an invalid series {}: {err}", e.series);
        }
    }
    let mut symbols = Symbols::new();
    let timeseries = d
        .series
        .iter()
        .map(|s| TimeSeries {
            labels_refs: symbols.labels_refs(&s.labels),
            samples: s.samples.iter().map(|x| Sample { value: x.v, timestamp: x.t }).collect(),
            ..TimeSeries::default()
        })
        .collect();
    let req = Request { symbols: symbols.into_table(), timeseries };
    let again = decode(&encode(&req), &Limits::default()).expect("re-decode");
    common::assert_same(&again.series, &d.series, false);
});
