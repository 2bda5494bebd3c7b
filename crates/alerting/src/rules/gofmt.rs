//! Go's `fmt` formatting of numbers and strings, as far as alert templates reach it: how
//! `{{ $value }}` prints a float (`%v`: shortest digits, exponent form from 1e+06 up and
//! below 1e-04), the `%.4g` that `humanize` and friends use, and `printf` with the verbs
//! `v s d f F e E g G q x X t %`, flags `- + space 0`, width and precision. Arguments of the
//! wrong kind print as Go prints them (`%!d(float64=1.5)`), as do missing and extra ones.
//!
//! Rounding is Rust's exact decimal formatting, which rounds ties to even on the exact binary
//! value as Go's `strconv` does, so the digits are the same.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A value inside a template.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Str(String),
    Float(f64),
    /// An integer constant written in the template (`80`).
    Int(i64),
    Bool(bool),
    Map(BTreeMap<String, String>),
}

impl Val {
    /// Go's name of the value's type, for error texts.
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Str(_) => "string",
            Val::Float(_) => "float64",
            Val::Int(_) => "int",
            Val::Bool(_) => "bool",
            Val::Map(_) => "map[string]string",
        }
    }

    /// The value as `{{ . }}` or `%v` prints it.
    pub fn print(&self) -> String {
        match self {
            Val::Str(s) => s.clone(),
            Val::Float(v) => format_float(*v, 'g', None, false),
            Val::Int(i) => i.to_string(),
            Val::Bool(b) => b.to_string(),
            Val::Map(m) => {
                let mut out = String::from("map[");
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push(' ');
                    }
                    let _ = write!(out, "{k}:{v}");
                }
                out.push(']');
                out
            }
        }
    }
}

/// Decimal digits of a finite, non-negative `v` without trailing zeros, and the position of
/// the decimal point (`v = 0.d1d2... × 10^dp`); rounded to `sig` significant digits if given,
/// else the shortest digits that read back to `v`. Zero has no digits and `dp` 0.
fn digits(v: f64, sig: Option<usize>) -> (Vec<u8>, i32) {
    if v == 0.0 {
        return (Vec::new(), 0);
    }
    let s = match sig {
        None => format!("{v:e}"),
        Some(p) => format!("{:.*e}", p.saturating_sub(1), v),
    };
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let mut d: Vec<u8> = mant.bytes().filter(u8::is_ascii_digit).collect();
    while d.len() > 1 && d.last() == Some(&b'0') {
        d.pop();
    }
    (d, exp + 1)
}

/// `%e` over digits: one digit, `prec` decimals, `e`, sign, at least two exponent digits.
fn fmt_e(out: &mut String, d: &[u8], dp: i32, prec: usize, upper: bool) {
    out.push(d.first().map_or('0', |&c| c as char));
    if prec > 0 {
        out.push('.');
        for i in 1..=prec {
            out.push(d.get(i).map_or('0', |&c| c as char));
        }
    }
    out.push(if upper { 'E' } else { 'e' });
    let exp = if d.is_empty() { 0 } else { dp - 1 };
    out.push(if exp < 0 { '-' } else { '+' });
    let _ = write!(out, "{:02}", exp.unsigned_abs());
}

/// `%f` over digits already rounded to fit `prec` decimals.
fn fmt_f(out: &mut String, d: &[u8], dp: i32, prec: usize) {
    if dp > 0 {
        for i in 0..dp as usize {
            out.push(d.get(i).map_or('0', |&c| c as char));
        }
    } else {
        out.push('0');
    }
    if prec > 0 {
        out.push('.');
        for i in 1..=prec as i32 {
            let j = dp + i - 1;
            out.push(if j >= 0 { d.get(j as usize).map_or('0', |&c| c as char) } else { '0' });
        }
    }
}

/// A float as Go's `strconv.FormatFloat` writes it with format `verb` (`e`, `E`, `f`, `F`,
/// `g`, `G`) and precision (`None`: shortest for `g`, 6 for `e` and `f`), with Go's `NaN`,
/// `+Inf`, `-Inf`; `plus` writes a `+` before non-negative numbers.
pub fn format_float(v: f64, verb: char, prec: Option<usize>, plus: bool) -> String {
    let mut out = String::new();
    if v.is_nan() {
        return if plus { "+NaN".into() } else { "NaN".into() };
    }
    if v.is_sign_negative() {
        out.push('-');
    } else if plus || v.is_infinite() {
        out.push('+');
    }
    if v.is_infinite() {
        out.push_str("Inf");
        return out;
    }
    let a = v.abs();
    let upper = verb.is_ascii_uppercase();
    match verb.to_ascii_lowercase() {
        'e' => {
            let p = prec.unwrap_or(6);
            let (d, dp) = digits(a, Some(p + 1));
            fmt_e(&mut out, &d, dp, p, upper);
        }
        'f' => {
            let _ = write!(out, "{:.*}", prec.unwrap_or(6), a);
        }
        _ => {
            let (d, dp) = digits(a, prec.map(|p| p.max(1)));
            let nd = d.len() as i32;
            let mut p = prec.map_or(nd, |p| p.max(1) as i32);
            let mut eprec = p;
            if eprec > nd && nd >= dp {
                eprec = nd;
            }
            if prec.is_none() {
                eprec = 6;
            }
            let exp = dp - 1;
            if !d.is_empty() && (exp < -4 || exp >= eprec) {
                p = p.min(nd);
                fmt_e(&mut out, &d, dp, (p - 1).max(0) as usize, upper);
            } else {
                if p > dp {
                    p = nd;
                }
                fmt_f(&mut out, &d, dp, (p - dp).max(0) as usize);
            }
        }
    }
    out
}

/// Go's `strconv.FormatFloat(v, 'e', -1, 64)`: the shortest digits in exponent form, as
/// Prometheus' alerts API writes an alert's value (`1e+00`, `8.765e-01`).
pub fn format_e_shortest(v: f64) -> String {
    if !v.is_finite() {
        return format_float(v, 'e', None, false);
    }
    let mut out = String::new();
    if v.is_sign_negative() {
        out.push('-');
    }
    let (d, dp) = digits(v.abs(), None);
    fmt_e(&mut out, &d, dp, d.len().saturating_sub(1), false);
    out
}

/// `strconv.Quote` for the characters alert texts hold.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One `%` directive's flags, width and precision.
#[derive(Default)]
struct Spec {
    minus: bool,
    plus: bool,
    space: bool,
    zero: bool,
    width: Option<usize>,
    prec: Option<usize>,
}

impl Spec {
    /// Pads `s` to the width; zero padding goes after a sign, as Go does for numbers.
    fn pad(&self, s: String, numeric: bool) -> String {
        let Some(w) = self.width else { return s };
        let n = s.chars().count();
        if n >= w {
            return s;
        }
        let fill = w - n;
        if self.minus {
            return s + &" ".repeat(fill);
        }
        if self.zero && numeric {
            let sign = s.starts_with(['+', '-', ' ']);
            let (head, tail) = s.split_at(usize::from(sign));
            return format!("{head}{}{tail}", "0".repeat(fill));
        }
        " ".repeat(fill) + &s
    }
}

/// Go's `fmt.Sprintf`.
pub fn sprintf(format: &str, args: &[Val]) -> String {
    let mut out = String::new();
    let mut next = 0;
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = Spec::default();
        while let Some(&f) = chars.peek() {
            match f {
                '-' => spec.minus = true,
                '+' => spec.plus = true,
                ' ' => spec.space = true,
                '0' => spec.zero = true,
                '#' => {}
                _ => break,
            }
            chars.next();
        }
        let num = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let mut n: Option<usize> = None;
            while let Some(d) = chars.peek().and_then(|c| c.to_digit(10)) {
                n = Some(n.unwrap_or(0).saturating_mul(10).saturating_add(d as usize).min(1 << 16));
                chars.next();
            }
            n
        };
        spec.width = num(&mut chars);
        if chars.peek() == Some(&'.') {
            chars.next();
            spec.prec = Some(num(&mut chars).unwrap_or(0));
        }
        let Some(verb) = chars.next() else {
            out.push_str("%!(NOVERB)");
            break;
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let Some(arg) = args.get(next) else {
            let _ = write!(out, "%!{verb}(MISSING)");
            continue;
        };
        next += 1;
        out.push_str(&directive(verb, &spec, arg));
    }
    if next < args.len() {
        out.push_str("%!(EXTRA ");
        for (i, a) in args[next..].iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            let _ = write!(out, "{}={}", a.type_name(), a.print());
        }
        out.push(')');
    }
    out
}

fn directive(verb: char, spec: &Spec, arg: &Val) -> String {
    let sign =
        |s: String| if spec.space && !s.starts_with(['-', '+']) { format!(" {s}") } else { s };
    match (verb, arg) {
        ('v', Val::Float(v)) | ('e' | 'E' | 'f' | 'F' | 'g' | 'G', Val::Float(v)) => {
            let verb = if verb == 'v' { 'g' } else { verb };
            let prec = match verb {
                'g' | 'G' => spec.prec,
                _ => Some(spec.prec.unwrap_or(6)),
            };
            spec.pad(sign(format_float(*v, verb, prec, spec.plus)), v.is_finite())
        }
        ('v' | 'd', Val::Int(i)) => {
            let s = if spec.plus && *i >= 0 { format!("+{i}") } else { i.to_string() };
            spec.pad(sign(s), true)
        }
        ('x' | 'X', Val::Int(i)) => {
            let s = if verb == 'x' { format!("{i:x}") } else { format!("{i:X}") };
            spec.pad(s, true)
        }
        ('v' | 's', Val::Str(s)) => {
            let s = match spec.prec {
                Some(p) => s.chars().take(p).collect(),
                None => s.clone(),
            };
            spec.pad(s, false)
        }
        ('q', Val::Str(s)) => spec.pad(quote(s), false),
        ('x' | 'X', Val::Str(s)) => {
            let mut h = String::new();
            for b in s.bytes() {
                let _ = if verb == 'x' { write!(h, "{b:02x}") } else { write!(h, "{b:02X}") };
            }
            spec.pad(h, false)
        }
        ('v' | 't', Val::Bool(b)) => spec.pad(b.to_string(), false),
        ('v' | 's', Val::Map(_)) => spec.pad(arg.print(), false),
        _ => format!("%!{verb}({}={})", arg.type_name(), arg.print()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_go_prints_them() {
        let cases = [
            (0.0, "0"),
            (1.0, "1"),
            (0.5, "0.5"),
            (100000.0, "100000"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (1e21, "1e+21"),
        ];
        for (v, want) in cases {
            assert_eq!(Val::Float(v).print(), want, "{v}");
        }
    }

    #[test]
    fn percent_4g() {
        let g4 = |v: f64| format_float(v, 'g', Some(4), false);
        assert_eq!(g4(1234.0), "1234");
        assert_eq!(g4(12345.0), "1.234e+04");
        assert_eq!(g4(12355.0), "1.236e+04");
        assert_eq!(g4(1.5), "1.5");
        assert_eq!(g4(100.0), "100");
        assert_eq!(g4(10000.0), "1e+04");
        assert_eq!(g4(0.001234), "0.001234");
        assert_eq!(g4(0.00001234), "1.234e-05");
        assert_eq!(g4(0.0), "0");
        assert_eq!(g4(2.0 / 3.0), "0.6667");
        assert_eq!(g4(f64::NAN), "NaN");
    }

    #[test]
    fn shortest_exponent_form() {
        assert_eq!(format_e_shortest(1.0), "1e+00");
        assert_eq!(format_e_shortest(0.8765), "8.765e-01");
        assert_eq!(format_e_shortest(-1234.5), "-1.2345e+03");
        assert_eq!(format_e_shortest(0.0), "0e+00");
        assert_eq!(format_e_shortest(f64::INFINITY), "+Inf");
    }

    #[test]
    fn printf_verbs() {
        let f = Val::Float;
        assert_eq!(sprintf("%.2f", &[f(1.23456)]), "1.23");
        assert_eq!(sprintf("%f", &[f(1.0)]), "1.000000");
        assert_eq!(sprintf("%5.1f|%-6.1f|", &[f(2.25), f(2.35)]), "  2.2|2.4   |");
        assert_eq!(sprintf("%08.3f", &[f(-3.5)]), "-003.500");
        assert_eq!(sprintf("%e", &[f(123456.0)]), "1.234560e+05");
        assert_eq!(sprintf("%g %v", &[f(0.5), f(2e7)]), "0.5 2e+07");
        assert_eq!(
            sprintf("%s is %q", &[Val::Str("a".into()), Val::Str("b\"c".into())]),
            "a is \"b\\\"c\""
        );
        assert_eq!(sprintf("%d%%", &[Val::Int(42)]), "42%");
        assert_eq!(sprintf("%d", &[f(1.5)]), "%!d(float64=1.5)");
        assert_eq!(sprintf("%s %s", &[Val::Str("x".into())]), "x %!s(MISSING)");
        assert_eq!(sprintf("x", &[Val::Int(1)]), "x%!(EXTRA int=1)");
        assert_eq!(sprintf("%+.1f", &[f(2.0)]), "+2.0");
    }
}
