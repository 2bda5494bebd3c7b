//! Samples and the Prometheus staleness marker.
//!
//! Prometheus marks a series as stale by writing a sample whose value is one specific NaN bit
//! pattern. Every other NaN is an ordinary value, so the two must be told apart by bits, never
//! with `f64::is_nan` alone.

/// The bit pattern Prometheus uses for its staleness marker.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The Prometheus staleness marker as an `f64`.
pub const STALE_NAN: f64 = f64::from_bits(STALE_NAN_BITS);

/// Whether `v` is the staleness marker (and not just any NaN).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// A sample value as Prometheus writes it in its HTTP API: the shortest decimal that reads back
/// to the same float, in exponent form (Go's: `7.72e-07`, `1e+21`) when its magnitude is below
/// 1e-6 or at least 1e21, and `NaN`, `+Inf`, `-Inf`. Exposition text takes the same form.
pub fn format_value(v: f64) -> String {
    let mut s = String::new();
    write_value(&mut s, v);
    s
}

/// [`format_value`], appended to `out`.
pub fn write_value(out: &mut String, v: f64) {
    use std::fmt::Write;
    if v.is_nan() {
        out.push_str("NaN");
    } else if v == f64::INFINITY {
        out.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else if v != 0.0 && (v.abs() < 1e-6 || v.abs() >= 1e21) {
        // Rust writes `7.72e-7`; Go (and so Prometheus) a sign and at least two digits
        let e = format!("{v:e}");
        let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        let _ = write!(out, "{mantissa}e{sign}{digits:0>2}");
    } else {
        let _ = write!(out, "{v}");
    }
}

/// One sample: a timestamp in milliseconds since the Unix epoch and a value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub t: i64,
    pub v: f64,
}

impl Sample {
    pub fn new(t: i64, v: f64) -> Self {
        Sample { t, v }
    }

    /// Equality by bits, so that NaNs (and the stale marker) compare as stored.
    pub fn bit_eq(&self, other: &Sample) -> bool {
        self.t == other.t && self.v.to_bits() == other.v.to_bits()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_are_written_as_prometheus_writes_them() {
        let cases = [
            (7.72e-7, "7.72e-07"),
            (1e-7, "1e-07"),
            (-3e-10, "-3e-10"),
            (1e21, "1e+21"),
            (1.2345e25, "1.2345e+25"),
            (-1e300, "-1e+300"),
            (5e-324, "5e-324"),
            (1e-6, "0.000001"),
            (0.1, "0.1"),
            (123456.789, "123456.789"),
            (1e20, "100000000000000000000"),
            (0.0, "0"),
            (-0.0, "-0"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (v, want) in cases {
            assert_eq!(super::format_value(v), want, "{v:e}");
            if v.is_finite() {
                let back: f64 = want.parse().unwrap();
                assert_eq!(back.to_bits(), v.to_bits(), "{want} reads back");
            }
        }
    }

    use super::*;

    #[test]
    fn stale_marker_is_a_specific_nan() {
        assert!(STALE_NAN.is_nan());
        assert!(is_stale_nan(STALE_NAN));
        assert!(!is_stale_nan(f64::NAN));
        assert!(!is_stale_nan(1.0));
    }
}
