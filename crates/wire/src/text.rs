//! Small lexical helpers shared by the text formats' decoders (line protocol, exposition).

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
