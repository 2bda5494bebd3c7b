//! Small lexical helpers shared by the text formats' decoders (line protocol, exposition, JSON
//! lines), and the size caps of the formats whose memory is bounded by a sample count.

/// Size caps for one text body whose every sample costs at least a few bytes of it
/// (exposition text, JSON lines).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest (already decompressed) body accepted, in bytes.
    pub max_body_bytes: usize,
    /// The most samples one body may hold.
    pub max_samples: usize,
}

impl Default for Limits {
    /// 64 MiB of text, ten million samples.
    fn default() -> Self {
        Limits { max_body_bytes: 64 << 20, max_samples: 10_000_000 }
    }
}

/// The body as UTF-8 text, or the 1-based (line, byte column) of the first invalid byte.
pub(crate) fn utf8_text(body: &[u8]) -> Result<&str, (usize, usize)> {
    std::str::from_utf8(body).map_err(|e| {
        let before = &body[..e.valid_up_to()];
        let line = before.iter().filter(|&&c| c == b'\n').count() + 1;
        let line_start = before.iter().rposition(|&c| c == b'\n').map_or(0, |p| p + 1);
        (line, before.len() - line_start + 1)
    })
}

/// `([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?`
pub(crate) fn is_decimal(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |b: &[u8]| b.iter().take_while(|c| c.is_ascii_digit()).count();
    let int = digits(b);
    let mut rest = &b[int..];
    let mut frac = 0;
    if let [b'.', r @ ..] = rest {
        frac = digits(r);
        rest = &r[frac..];
    }
    if int + frac == 0 {
        return false;
    }
    match rest {
        [] => true,
        [b'e' | b'E', exp @ ..] => {
            let exp = exp.strip_prefix(b"+").or_else(|| exp.strip_prefix(b"-")).unwrap_or(exp);
            !exp.is_empty() && digits(exp) == exp.len()
        }
        _ => false,
    }
}

/// Renders decoded series one per line (`labels v@t v@t ...`) for golden tests.
#[cfg(test)]
pub(crate) fn render(series: &[crate::remote_write::DecodedSeries], out: &mut String) {
    use std::fmt::Write;
    for s in series {
        assert!(s.labels.validate().is_ok(), "invalid labels {}", s.labels);
        let _ = write!(out, "{}", s.labels);
        for sample in &s.samples {
            let _ = write!(out, " {:?}@{}", sample.v, sample.t);
        }
        out.push('\n');
    }
}

/// Compares rendered output with a golden block whose lines may be indented (and may start
/// with a blank line) for readability in the test source.
#[cfg(test)]
pub(crate) fn assert_golden(got: &str, want: &str, input: &str) {
    let want: String = want.lines().map(|l| format!("{}\n", l.trim())).collect();
    assert_eq!(got, want.trim_start(), "input: {input:?}");
}

/// Runs `(input, expected message)` cases through `error`, reporting every mismatch at once.
#[cfg(test)]
pub(crate) fn assert_errors(cases: &[(&str, &str)], error: impl Fn(&str) -> String) {
    let mut failed = Vec::new();
    for &(input, want) in cases {
        let got = error(input);
        if got != want {
            failed.push(format!("input: {input:?}\n  got: {got}\n want: {want}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
