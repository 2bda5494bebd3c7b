//! Uptime from `/proc/uptime` (`ocelli_uptime_seconds`, which CB-Dragonfly reports and
//! node_exporter leaves to `node_time_seconds - node_boot_time_seconds`) and the wall clock
//! (`node_time_seconds`, node_exporter's `time` collector).

use std::time::{SystemTime, UNIX_EPOCH};

use super::{Context, Kind, Sink};

/// The first field of `/proc/uptime`: seconds since boot.
pub fn parse(text: &str) -> Result<f64, String> {
    let s = text.split_ascii_whitespace().next().ok_or("empty file")?;
    s.parse().map_err(|_| format!("uptime {s:?} is not a number"))
}

/// The `uptime` collector.
pub fn from_text(_ctx: &Context, text: &str, sink: &mut Sink) -> Result<(), String> {
    let up = parse(text)?;
    sink.single("ocelli_uptime_seconds", "Seconds since the system booted.", Kind::Gauge, up);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    sink.single(
        "node_time_seconds",
        "System time in seconds since the Unix epoch.",
        Kind::Gauge,
        now,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptime() {
        // the development machine's /proc/uptime
        assert_eq!(parse("7827.14 4889.09\n").unwrap(), 7827.14);
        assert_eq!(parse("").unwrap_err(), "empty file");
        assert_eq!(parse("x 1").unwrap_err(), r#"uptime "x" is not a number"#);
    }
}
