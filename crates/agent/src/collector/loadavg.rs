//! Load averages over 1, 5 and 15 minutes from `/proc/loadavg` (node_exporter's `loadavg`).

use super::{Context, Kind, Sink};

/// Parses the first three fields of `/proc/loadavg`.
pub fn parse(text: &str) -> Result<[f64; 3], String> {
    let mut f = text.split_ascii_whitespace();
    let mut out = [0.0; 3];
    for (slot, name) in out.iter_mut().zip(["1", "5", "15"]) {
        let s = f.next().ok_or_else(|| format!("no {name}-minute load average"))?;
        *slot =
            s.parse().map_err(|_| format!("{name}-minute load average {s:?} is not a number"))?;
    }
    Ok(out)
}

/// The `loadavg` collector.
pub fn from_text(_ctx: &Context, text: &str, sink: &mut Sink) -> Result<(), String> {
    let [l1, l5, l15] = parse(text)?;
    sink.single("node_load1", "Load average over 1 minute.", Kind::Gauge, l1);
    sink.single("node_load5", "Load average over 5 minutes.", Kind::Gauge, l5);
    sink.single("node_load15", "Load average over 15 minutes.", Kind::Gauge, l15);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_averages() {
        // the development machine's /proc/loadavg
        assert_eq!(parse("0.26 1.30 1.71 1/85 9588\n").unwrap(), [0.26, 1.30, 1.71]);
        assert_eq!(parse("0.26 1.30").unwrap_err(), "no 15-minute load average");
        assert_eq!(parse("0.26 x 1").unwrap_err(), r#"5-minute load average "x" is not a number"#);
    }
}
