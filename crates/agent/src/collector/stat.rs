//! Kernel activity from `/proc/stat` (node_exporter's `stat` collector): boot time, context
//! switches, interrupts, forks, and processes running and blocked on I/O.

use super::{Context, Kind, Sink, num};

/// The figures of `/proc/stat` besides the CPU lines.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct KernelStat {
    pub boot_time: u64,
    pub context_switches: u64,
    pub interrupts: u64,
    pub forks: u64,
    pub procs_running: u64,
    pub procs_blocked: u64,
}

/// Parses `/proc/stat`; every field named above must be present.
pub fn parse(text: &str) -> Result<KernelStat, String> {
    let mut s = KernelStat::default();
    let mut seen = 0u8;
    for line in text.lines() {
        let mut f = line.split_ascii_whitespace();
        let (Some(key), Some(v)) = (f.next(), f.next()) else { continue };
        let (slot, bit) = match key {
            "btime" => (&mut s.boot_time, 1),
            "ctxt" => (&mut s.context_switches, 2),
            "intr" => (&mut s.interrupts, 4),
            "processes" => (&mut s.forks, 8),
            "procs_running" => (&mut s.procs_running, 16),
            "procs_blocked" => (&mut s.procs_blocked, 32),
            _ => continue,
        };
        *slot = num(key, v)?;
        seen |= bit;
    }
    let names = ["btime", "ctxt", "intr", "processes", "procs_running", "procs_blocked"];
    if let Some((_, name)) = names.iter().enumerate().find(|(i, _)| seen & (1 << i) == 0) {
        return Err(format!("no {name} line"));
    }
    Ok(s)
}

/// The `stat` collector.
pub fn from_text(_ctx: &Context, text: &str, sink: &mut Sink) -> Result<(), String> {
    emit(&parse(text)?, sink);
    Ok(())
}

pub fn emit(s: &KernelStat, sink: &mut Sink) {
    let g = Kind::Gauge;
    let c = Kind::Counter;
    sink.single(
        "node_boot_time_seconds",
        "Boot time, in seconds since the Unix epoch.",
        g,
        s.boot_time as f64,
    );
    sink.single(
        "node_context_switches_total",
        "Context switches since boot.",
        c,
        s.context_switches as f64,
    );
    sink.single("node_intr_total", "Interrupts serviced since boot.", c, s.interrupts as f64);
    sink.single("node_forks_total", "Processes and threads created since boot.", c, s.forks as f64);
    sink.single("node_procs_running", "Processes in a runnable state.", g, s.procs_running as f64);
    sink.single(
        "node_procs_blocked",
        "Processes blocked waiting for I/O.",
        g,
        s.procs_blocked as f64,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::{PROC_STAT as STAT, value_of};

    #[test]
    fn kernel_activity() {
        let mut sink = Sink::default();
        emit(&parse(STAT).unwrap(), &mut sink);
        assert_eq!(value_of(&sink, "node_boot_time_seconds", &[]), 1795380557.0);
        assert_eq!(value_of(&sink, "node_context_switches_total", &[]), 9403122.0);
        assert_eq!(value_of(&sink, "node_intr_total", &[]), 7488430.0);
        assert_eq!(value_of(&sink, "node_forks_total", &[]), 145199.0);
        assert_eq!(value_of(&sink, "node_procs_running", &[]), 3.0);
        assert_eq!(value_of(&sink, "node_procs_blocked", &[]), 0.0);
    }

    #[test]
    fn missing_and_bad_fields() {
        assert_eq!(parse("ctxt 1\n").unwrap_err(), "no btime line");
        assert_eq!(parse("btime x\n").unwrap_err(), r#"btime: "x" is not a whole number"#);
    }
}
