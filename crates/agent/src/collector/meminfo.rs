//! Memory and swap from `/proc/meminfo` (node_exporter's `meminfo`): every line becomes
//! `node_memory_<Key>_bytes` (kB lines, in bytes) or `node_memory_<Key>` (counts such as
//! `HugePages_Total`), with `Active(anon)` written `Active_anon`. Added for CB-Dragonfly: used
//! memory and swap in bytes and percent, where used memory is `MemTotal - MemAvailable` (what
//! `free` calls used plus what the kernel cannot reclaim from caches).

use super::{Context, Kind, Sink};

/// One line: the metric-name form of the key, the value (bytes when the line had a unit), and
/// whether it had a unit.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub value: f64,
    pub bytes: bool,
}

/// Parses `/proc/meminfo`.
pub fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let mut out = Vec::with_capacity(64);
    for (i, line) in text.lines().enumerate() {
        let mut f = line.split_ascii_whitespace();
        let Some(key) = f.next() else { continue };
        let at = || format!("line {}", i + 1);
        let key = key.strip_suffix(':').ok_or_else(|| format!("{}: no ':' after the key", at()))?;
        let v = f.next().ok_or_else(|| format!("{}: {key} has no value", at()))?;
        let v: f64 =
            v.parse().map_err(|_| format!("{}: {key} value {v:?} is not a number", at()))?;
        let bytes = match f.next() {
            None => false,
            Some("kB") => true,
            Some(u) => return Err(format!("{}: {key} has the unknown unit {u:?}", at())),
        };
        // Active(anon) -> Active_anon
        let key = key.replace('(', "_").replace(')', "");
        out.push(Entry { key, value: if bytes { v * 1024.0 } else { v }, bytes });
    }
    Ok(out)
}

/// The `meminfo` collector.
pub fn from_text(_ctx: &Context, text: &str, sink: &mut Sink) -> Result<(), String> {
    emit(&parse(text)?, sink);
    Ok(())
}

pub fn emit(entries: &[Entry], sink: &mut Sink) {
    for e in entries {
        let (name, help) = if e.bytes {
            (
                format!("node_memory_{}_bytes", e.key),
                format!("Memory information field {}_bytes.", e.key),
            )
        } else {
            (format!("node_memory_{}", e.key), format!("Memory information field {}.", e.key))
        };
        sink.single(name, help, Kind::Gauge, e.value);
    }
    let get = |k: &str| entries.iter().find(|e| e.key == k).map(|e| e.value);
    let total = get("MemTotal").unwrap_or(0.0);
    // kernels before 3.14 have no MemAvailable; free + buffers + page cache is the old estimate
    let available = get("MemAvailable").unwrap_or_else(|| {
        get("MemFree").unwrap_or(0.0) + get("Buffers").unwrap_or(0.0) + get("Cached").unwrap_or(0.0)
    });
    let used = (total - available).max(0.0);
    let g = Kind::Gauge;
    sink.single(
        "ocelli_memory_used_bytes",
        "Memory in use: MemTotal - MemAvailable, in bytes.",
        g,
        used,
    );
    sink.single(
        "ocelli_memory_utilization_percent",
        "Memory in use as a share of MemTotal, in percent.",
        g,
        percent(used, total),
    );
    let swap_total = get("SwapTotal").unwrap_or(0.0);
    let swap_used = (swap_total - get("SwapFree").unwrap_or(0.0)).max(0.0);
    sink.single(
        "ocelli_swap_used_bytes",
        "Swap in use: SwapTotal - SwapFree, in bytes.",
        g,
        swap_used,
    );
    sink.single(
        "ocelli_swap_utilization_percent",
        "Swap in use as a share of SwapTotal, in percent (0 without swap).",
        g,
        percent(swap_used, swap_total),
    );
}

/// `100 * part / whole`, 0 when `whole` is 0.
pub fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 { 100.0 * part / whole } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::value_of;

    /// Part of the development machine's `/proc/meminfo`.
    const MEMINFO: &str = "MemTotal:       24684096 kB
MemFree:        20163720 kB
MemAvailable:   24044768 kB
Buffers:           16580 kB
Cached:          3901396 kB
Active(anon):       1536 kB
SwapTotal:             0 kB
SwapFree:              0 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
";

    #[test]
    fn fields_and_derived_figures() {
        let mut sink = Sink::default();
        emit(&parse(MEMINFO).unwrap(), &mut sink);
        assert_eq!(value_of(&sink, "node_memory_MemTotal_bytes", &[]), 24684096.0 * 1024.0);
        assert_eq!(value_of(&sink, "node_memory_Active_anon_bytes", &[]), 1536.0 * 1024.0);
        assert_eq!(value_of(&sink, "node_memory_HugePages_Total", &[]), 0.0);
        let used = (24684096.0 - 24044768.0) * 1024.0;
        assert_eq!(value_of(&sink, "ocelli_memory_used_bytes", &[]), used);
        let pct = value_of(&sink, "ocelli_memory_utilization_percent", &[]);
        assert!((pct - 2.5900).abs() < 1e-3, "{pct}");
        assert_eq!(value_of(&sink, "ocelli_swap_utilization_percent", &[]), 0.0);
        assert_eq!(sink.families.len(), 10 + 4);
    }

    #[test]
    fn malformed_lines() {
        assert_eq!(parse("MemTotal 1 kB").unwrap_err(), "line 1: no ':' after the key");
        assert_eq!(parse("A: 1\nB: x kB").unwrap_err(), r#"line 2: B value "x" is not a number"#);
        assert_eq!(parse("A: 1 MB").unwrap_err(), r#"line 1: A has the unknown unit "MB""#);
        assert_eq!(parse("A:").unwrap_err(), "line 1: A has no value");
    }
}
