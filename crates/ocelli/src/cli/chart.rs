//! A terminal line chart of range query results, drawn with braille characters (each one a
//! 2×4 grid of dots): every series as a line over the query's time range, a value axis with the
//! top and bottom values, the range's start and end under it, and a legend with each series'
//! last, minimum and maximum. Colours (one per series, cycling) only when asked, i.e. when
//! stdout is a terminal and `NO_COLOR` is unset.
//!
//! Deliberately simple: linear axes, no gridlines, overlapping series share dots (the one drawn
//! last colours a shared character). Points further apart than 1.5 steps are not joined, so a
//! gap in the data shows as one.

use std::fmt::Write as _;

/// One series to draw: its name and its `(unix seconds, value)` points in time order.
#[derive(Debug, Clone)]
pub struct Line {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// The chart's frame: time range, step (for gap detection) and size in characters.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub start: f64,
    pub end: f64,
    pub step: f64,
    pub width: usize,
    pub height: usize,
    pub color: bool,
}

/// ANSI colours of the series, in turn.
const COLORS: [u8; 6] = [32, 33, 34, 35, 36, 31];

/// The chart's width: `COLUMNS` when it is a number of at least 20, else 80.
pub fn terminal_width() -> usize {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).filter(|&c| c >= 20).unwrap_or(80)
}

/// The chart and its legend.
pub fn render(lines: &[Line], f: Frame) -> String {
    let finite = || lines.iter().flat_map(|l| &l.points).map(|p| p.1).filter(|v| v.is_finite());
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in finite() {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return "no data points in the range\n".into();
    }
    if hi == lo {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() / 10.0 };
        lo -= pad;
        hi += pad;
    }
    let (top, bottom) = (number(hi), number(lo));
    let label_w = top.chars().count().max(bottom.chars().count());
    let cols = f.width.saturating_sub(label_w + 2).max(10);
    let rows = f.height.max(2);
    let (pw, ph) = (cols * 2, rows * 4);
    let mut dots = vec![0u8; cols * rows];
    let mut ink = vec![usize::MAX; cols * rows];
    let span = (f.end - f.start).max(f64::MIN_POSITIVE);
    let to_px = |t: f64, v: f64| {
        let x = ((t - f.start) / span * (pw - 1) as f64).round().clamp(0.0, (pw - 1) as f64);
        let y = ((v - lo) / (hi - lo) * (ph - 1) as f64).round().clamp(0.0, (ph - 1) as f64);
        (x as i64, (ph - 1) as i64 - y as i64)
    };
    for (i, l) in lines.iter().enumerate() {
        let mut prev: Option<(f64, (i64, i64))> = None;
        for &(t, v) in &l.points {
            if !v.is_finite() {
                prev = None;
                continue;
            }
            let p = to_px(t, v);
            match prev {
                Some((pt, q)) if t - pt <= f.step * 1.5 => segment(q, p, &mut |x, y| {
                    dot(&mut dots, &mut ink, cols, x, y, i);
                }),
                _ => dot(&mut dots, &mut ink, cols, p.0, p.1, i),
            }
            prev = Some((t, p));
        }
    }
    let mut out = String::new();
    for r in 0..rows {
        let label = match r {
            0 => top.as_str(),
            _ if r == rows - 1 => bottom.as_str(),
            _ => "",
        };
        let _ = write!(out, "{label:>label_w$} ┤");
        for c in 0..cols {
            let k = r * cols + c;
            let ch = char::from_u32(0x2800 + u32::from(dots[k])).unwrap_or(' ');
            if f.color && ink[k] != usize::MAX {
                let _ = write!(out, "\x1b[{}m{ch}\x1b[0m", COLORS[ink[k] % COLORS.len()]);
            } else {
                out.push(ch);
            }
        }
        out.push('\n');
    }
    let _ = writeln!(out, "{:>label_w$} └{}", "", "─".repeat(cols));
    let (from, to) = (time_label(f.start), time_label(f.end));
    let gap = (cols + 1).saturating_sub(from.len() + to.len()).max(1);
    let _ = writeln!(out, "{:>label_w$}  {from}{}{to}", "", " ".repeat(gap));
    out.push('\n');
    legend(lines, f.color, &mut out);
    out
}

fn legend(lines: &[Line], color: bool, out: &mut String) {
    let mut t = super::output::Table::new(&["", "SERIES", "LAST", "MIN", "MAX"]);
    for (i, l) in lines.iter().enumerate() {
        let vals: Vec<f64> = l.points.iter().map(|p| p.1).filter(|v| v.is_finite()).collect();
        let stat =
            |f: fn(f64, f64) -> f64| vals.iter().copied().reduce(f).map_or("-".into(), number);
        let last = l.points.last().map_or("-".into(), |p| number(p.1));
        let mark = if color {
            format!("\x1b[{}m●\x1b[0m", COLORS[i % COLORS.len()])
        } else {
            "●".into()
        };
        t.row(vec![mark, l.name.clone(), last, stat(f64::min), stat(f64::max)]);
    }
    out.push_str(&t.render());
}

/// Sets one dot; `x`, `y` in pixels from the top left.
fn dot(dots: &mut [u8], ink: &mut [usize], cols: usize, x: i64, y: i64, series: usize) {
    let (Ok(x), Ok(y)) = (usize::try_from(x), usize::try_from(y)) else { return };
    let k = (y / 4) * cols + x / 2;
    if x / 2 >= cols || k >= dots.len() {
        return;
    }
    // braille dot bits: left column 1,2,3,7 and right column 4,5,6,8, top to bottom
    const BITS: [[u8; 4]; 2] = [[0x01, 0x02, 0x04, 0x40], [0x08, 0x10, 0x20, 0x80]];
    dots[k] |= BITS[x % 2][y % 4];
    ink[k] = series;
}

/// Calls `plot` for each pixel of the straight segment from `a` to `b` (Bresenham).
fn segment(a: (i64, i64), b: (i64, i64), plot: &mut impl FnMut(i64, i64)) {
    let (dx, dy) = ((b.0 - a.0).abs(), -(b.1 - a.1).abs());
    let (sx, sy) = (if a.0 < b.0 { 1 } else { -1 }, if a.1 < b.1 { 1 } else { -1 });
    let (mut x, mut y, mut err) = (a.0, a.1, dx + dy);
    loop {
        plot(x, y);
        if (x, y) == b {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

/// A value in at most about 8 characters: `12.5`, `1.25e6`.
pub fn number(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf".into() } else { "-Inf".into() };
    }
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        return format!("{v:.2e}");
    }
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// `HH:MM:SS` in UTC, with the date in front: `2026-11-22 10:00:00`.
fn time_label(secs: f64) -> String {
    let ms = (secs * 1000.0) as i64;
    let s = super::rfc3339_ms(ms - ms.rem_euclid(1000));
    s.trim_end_matches('Z').replace('T', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(width: usize, height: usize) -> Frame {
        Frame { start: 0.0, end: 100.0, step: 10.0, width, height, color: false }
    }

    #[test]
    fn a_rising_line_goes_from_bottom_left_to_top_right() {
        let l = Line {
            name: "up".into(),
            points: (0..=10).map(|i| (i as f64 * 10.0, i as f64)).collect(),
        };
        let out = render(&[l], frame(40, 4));
        let rows: Vec<&str> = out.lines().collect();
        assert!(rows[0].starts_with("10 ┤"), "{out}");
        assert!(rows[3].starts_with(" 0 ┤"), "{out}");
        let plot = |r: usize| rows[r].split('┤').nth(1).unwrap().chars().collect::<Vec<_>>();
        // bottom row: ink at the left end, none at the right; top row the other way round
        assert_ne!(plot(3)[0], '\u{2800}', "{out}");
        assert_eq!(*plot(3).last().unwrap(), '\u{2800}', "{out}");
        assert_ne!(*plot(0).last().unwrap(), '\u{2800}', "{out}");
        assert_eq!(plot(0)[0], '\u{2800}', "{out}");
        assert_eq!(plot(0).len(), 40 - 4);
        assert!(
            out.contains("1970-01-01 00:00:00") && out.contains("1970-01-01 00:01:40"),
            "{out}"
        );
        assert!(out.contains("●  up      10    0    10"), "{out}");
        assert!(!out.contains('\x1b'));
    }

    #[test]
    fn gaps_are_not_joined_and_empty_data_says_so() {
        let l = Line { name: "x".into(), points: vec![(0.0, 0.0), (100.0, 1.0)] };
        let out = render(&[l], frame(30, 2));
        let dots: usize = out
            .chars()
            .filter(|c| ('\u{2801}'..='\u{28ff}').contains(c))
            .map(|c| (c as u32 - 0x2800).count_ones() as usize)
            .sum();
        assert_eq!(dots, 2, "{out}");
        assert_eq!(render(&[], frame(30, 2)), "no data points in the range\n");
    }

    #[test]
    fn numbers_are_short() {
        assert_eq!(number(12.5), "12.5");
        assert_eq!(number(3.0), "3");
        assert_eq!(number(1_250_000.0), "1.25e6");
        assert_eq!(number(f64::INFINITY), "+Inf");
    }
}
