//! CPU time per CPU and mode, from the `cpu` lines of `/proc/stat`: node_exporter's
//! `node_cpu_seconds_total{cpu,mode}` and `node_cpu_guest_seconds_total{cpu,mode}`, plus
//! CB-Dragonfly's figures that node_exporter lacks: the CPU count and the share of CPU time
//! per mode and in total (busy = everything but idle and iowait) since the previous collection
//! (since boot on the first), over all CPUs.
//!
//! As in node_exporter, `user` and `nice` include guest time, which is also reported alone.

use super::{Collector, Context, Kind, Sink, USER_HZ, num, parse_file};
use crate::Result;

/// The modes of a `cpu` line, in the kernel's field order.
const MODES: [&str; 8] = ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];

/// One `cpu` line in ticks: the eight modes, then guest and guest_nice.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Times(pub [u64; 10]);

impl Times {
    /// All time spent, guest time not counted twice.
    fn total(&self) -> u64 {
        self.0[..8].iter().sum()
    }
}

/// The parsed `cpu` lines: the all-CPU line and one per CPU (number, times).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuStat {
    pub all: Times,
    pub cpus: Vec<(u32, Times)>,
}

/// Parses the `cpu` lines of `/proc/stat`. Older kernels have fewer fields; missing ones are 0.
pub fn parse(text: &str) -> Result<CpuStat, String> {
    let mut out = CpuStat::default();
    for (i, line) in text.lines().enumerate() {
        let Some(rest) = line.strip_prefix("cpu") else { continue };
        let mut fields = rest.split_ascii_whitespace();
        // "cpu  ..." is all CPUs, "cpuN ..." one
        let id = if rest.starts_with(' ') { None } else { fields.next() };
        let mut t = Times::default();
        for (slot, f) in t.0.iter_mut().zip(fields) {
            *slot = num(&format!("line {}", i + 1), f)?;
        }
        match id {
            None => out.all = t,
            Some(id) => {
                let n = id.parse().map_err(|_| format!("line {}: bad CPU number {id:?}", i + 1))?;
                out.cpus.push((n, t));
            }
        }
    }
    if out.cpus.is_empty() {
        return Err("no per-CPU lines".into());
    }
    Ok(out)
}

/// Keeps the previous all-CPU times for the percentages.
#[derive(Debug, Default)]
pub struct Cpu {
    buf: String,
    prev: Times,
}

impl Collector for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn collect(&mut self, ctx: &Context, sink: &mut Sink) -> Result<()> {
        let stat = parse_file(&ctx.proc("stat"), &mut self.buf, parse)?;
        emit(&stat, &self.prev, sink);
        self.prev = stat.all;
        Ok(())
    }
}

/// Writes the families for `stat`, with percentages since `prev`.
pub fn emit(stat: &CpuStat, prev: &Times, sink: &mut Sink) {
    let f = sink.family(
        "node_cpu_seconds_total",
        "Seconds the CPU spent in each mode since boot.",
        Kind::Counter,
    );
    for (n, t) in &stat.cpus {
        let cpu = n.to_string();
        for (mode, ticks) in MODES.iter().zip(t.0) {
            f.add(&[("cpu", &cpu), ("mode", mode)], ticks as f64 / USER_HZ);
        }
    }
    let f = sink.family(
        "node_cpu_guest_seconds_total",
        "Seconds the CPU spent running guests (virtual machines), by mode.",
        Kind::Counter,
    );
    for (n, t) in &stat.cpus {
        let cpu = n.to_string();
        f.add(&[("cpu", &cpu), ("mode", "user")], t.0[8] as f64 / USER_HZ);
        f.add(&[("cpu", &cpu), ("mode", "nice")], t.0[9] as f64 / USER_HZ);
    }
    sink.single("ocelli_cpu_count", "Number of CPUs online.", Kind::Gauge, stat.cpus.len() as f64);

    let d: Vec<u64> = stat.all.0.iter().zip(prev.0).map(|(a, b)| a.saturating_sub(b)).collect();
    let total = stat.all.total().saturating_sub(prev.total()) as f64;
    let pct = |ticks: u64| if total > 0.0 { 100.0 * ticks as f64 / total } else { 0.0 };
    let f = sink.family(
        "ocelli_cpu_usage_percent",
        "Share of all CPUs' time spent in each mode since the previous collection, in percent.",
        Kind::Gauge,
    );
    let modes = MODES.iter().chain(&["guest", "guest_nice"]);
    for (mode, ticks) in modes.zip(&d) {
        f.add(&[("mode", mode)], pct(*ticks));
    }
    let idle = d[3] + d[4];
    let busy = if total > 0.0 { 100.0 - pct(idle) } else { 0.0 };
    sink.single(
        "ocelli_cpu_utilization_percent",
        "Share of all CPUs' time not idle and not waiting for I/O since the previous collection, \
         in percent.",
        Kind::Gauge,
        busy,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::PROC_STAT as STAT;
    use crate::collector::value_of as value;

    #[test]
    fn seconds_per_cpu_and_mode() {
        let stat = parse(STAT).unwrap();
        assert_eq!(stat.cpus.len(), 2);
        let mut sink = Sink::default();
        emit(&stat, &Times::default(), &mut sink);
        assert_eq!(
            value(&sink, "node_cpu_seconds_total", &[("cpu", "1"), ("mode", "user")]),
            4808.18
        );
        assert_eq!(
            value(&sink, "node_cpu_seconds_total", &[("cpu", "0"), ("mode", "steal")]),
            16.3
        );
        assert_eq!(
            value(&sink, "node_cpu_guest_seconds_total", &[("cpu", "0"), ("mode", "nice")]),
            0.0
        );
        assert_eq!(sink.families[0].samples.len(), 16);
        assert_eq!(value(&sink, "ocelli_cpu_count", &[]), 2.0);
        // since boot: idle + iowait = 496952 of 1558924 ticks
        let busy = value(&sink, "ocelli_cpu_utilization_percent", &[]);
        assert!((busy - 68.1220).abs() < 1e-3, "{busy}");
    }

    #[test]
    fn percentages_are_over_the_time_since_the_previous_collection() {
        let before = parse(STAT).unwrap();
        let mut next = before.clone();
        // 100 ticks later: 30 user, 10 system, 50 idle, 10 iowait
        for (i, add) in [(0, 30), (2, 10), (3, 50), (4, 10)] {
            next.all.0[i] += add;
        }
        let mut sink = Sink::default();
        emit(&next, &before.all, &mut sink);
        assert_eq!(value(&sink, "ocelli_cpu_utilization_percent", &[]), 40.0);
        assert_eq!(value(&sink, "ocelli_cpu_usage_percent", &[("mode", "user")]), 30.0);
        assert_eq!(value(&sink, "ocelli_cpu_usage_percent", &[("mode", "iowait")]), 10.0);
        // no time passed: zeros, not NaN
        let mut sink = Sink::default();
        emit(&next, &next.all, &mut sink);
        assert_eq!(value(&sink, "ocelli_cpu_utilization_percent", &[]), 0.0);
    }

    #[test]
    fn malformed_lines_are_errors_with_the_line() {
        assert_eq!(
            parse("cpu  1 2\ncpu0 1 x\n").unwrap_err(),
            r#"line 2: "x" is not a whole number"#
        );
        assert_eq!(parse("cpu  1 2\n").unwrap_err(), "no per-CPU lines");
        // a kernel with only four fields per line
        let s = parse("cpu  1 2 3 4\ncpu0 1 2 3 4\n").unwrap();
        assert_eq!(s.cpus[0].1.0[3], 4);
    }
}
