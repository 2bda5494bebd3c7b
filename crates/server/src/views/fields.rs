//! The table of view fields: every CB-Dragonfly field name of every view metric, its unit, how
//! it is computed from the agent's series (`docs/metrics.md`) and how it is aggregated over the
//! VMs of a service or cloud. `docs/api.md` (Views) documents the same table for users; keep
//! the two in step.
//!
//! A field is one of three shapes ([`Calc`]); [`Field::promql`] turns it into a PromQL
//! expression for one statistics criterion and period, with one series per VM (labels `ns`
//! and `vm_id`). It does not run anything: [`super`] evaluates the expressions.

/// How a field is computed from the agent's series, for a criterion `c` (`avg_over_time`, ...)
/// over a period window `w` and the selector `s` naming the VMs.
#[derive(Clone, Copy, Debug)]
pub enum Calc {
    /// A gauge: `sum by (ns, vm_id) (c(<selector>{s}[w])) * scale`. The selector may carry its
    /// own matchers (`ocelli_cpu_usage_percent{mode="user"`, closed by the view).
    Gauge { selector: &'static str, scale: f64 },
    /// A gauge averaged over its series (per-CPU figures): the first selector's series, or the
    /// second's where the VM has none of the first, each `avg by (ns, vm_id)`, times `scale`.
    GaugeAvg { selector: &'static str, fallback: &'static str, scale: f64 },
    /// A counter as a per-second rate: `rate(<selector>{s}[2m])` summed per VM, taken every
    /// minute, and `c` over the period window of those per-minute rates; times `scale`.
    Rate { selector: &'static str, scale: f64 },
    /// `100 * used / (used + avail)` of two gauges summed per VM after the criterion.
    Percent { used: &'static str, avail: &'static str },
}

/// How a field of several VMs becomes one value per period.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agg {
    Avg,
    Sum,
}

impl Agg {
    pub fn as_str(self) -> &'static str {
        match self {
            Agg::Avg => "avg",
            Agg::Sum => "sum",
        }
    }
}

/// One CB-Dragonfly field.
#[derive(Clone, Copy, Debug)]
pub struct Field {
    pub name: &'static str,
    pub unit: &'static str,
    pub calc: Calc,
    pub agg: Agg,
}

/// One view metric (the `{metric}` of the routes) and its fields, in answer column order.
#[derive(Debug)]
pub struct Metric {
    pub name: &'static str,
    pub fields: &'static [Field],
}

const fn gauge(name: &'static str, unit: &'static str, selector: &'static str, agg: Agg) -> Field {
    Field { name, unit, calc: Calc::Gauge { selector, scale: 1.0 }, agg }
}

const fn rate(name: &'static str, unit: &'static str, selector: &'static str, scale: f64) -> Field {
    Field { name, unit, calc: Calc::Rate { selector, scale }, agg: Agg::Avg }
}

const PCT: &str = "percent";

/// Every view metric, in the order the 400 for an unknown one lists them.
pub const METRICS: &[Metric] = &[
    Metric {
        name: "cpu",
        fields: &[
            gauge("cpu_utilization", PCT, "ocelli_cpu_utilization_percent{", Agg::Avg),
            gauge("cpu_user", PCT, "ocelli_cpu_usage_percent{mode=\"user\",", Agg::Avg),
            gauge("cpu_system", PCT, "ocelli_cpu_usage_percent{mode=\"system\",", Agg::Avg),
            gauge("cpu_idle", PCT, "ocelli_cpu_usage_percent{mode=\"idle\",", Agg::Avg),
            gauge("cpu_iowait", PCT, "ocelli_cpu_usage_percent{mode=\"iowait\",", Agg::Avg),
            gauge("cpu_hintr", PCT, "ocelli_cpu_usage_percent{mode=\"irq\",", Agg::Avg),
            gauge("cpu_sintr", PCT, "ocelli_cpu_usage_percent{mode=\"softirq\",", Agg::Avg),
            gauge("cpu_nice", PCT, "ocelli_cpu_usage_percent{mode=\"nice\",", Agg::Avg),
            gauge("cpu_steal", PCT, "ocelli_cpu_usage_percent{mode=\"steal\",", Agg::Avg),
            gauge("cpu_guest", PCT, "ocelli_cpu_usage_percent{mode=\"guest\",", Agg::Avg),
            gauge("cpu_guest_nice", PCT, "ocelli_cpu_usage_percent{mode=\"guest_nice\",", Agg::Avg),
        ],
    },
    Metric {
        name: "cpufreq",
        fields: &[Field {
            name: "cpu_speed",
            unit: "MHz",
            calc: Calc::GaugeAvg {
                selector: "node_cpu_frequency_hertz{",
                fallback: "ocelli_cpu_frequency_hertz{",
                scale: 1e-6,
            },
            agg: Agg::Avg,
        }],
    },
    Metric {
        name: "memory",
        fields: &[
            gauge("mem_utilization", PCT, "ocelli_memory_utilization_percent{", Agg::Avg),
            gauge("mem_total", "bytes", "node_memory_MemTotal_bytes{", Agg::Sum),
            gauge("mem_used", "bytes", "ocelli_memory_used_bytes{", Agg::Sum),
            gauge("mem_free", "bytes", "node_memory_MemFree_bytes{", Agg::Sum),
            gauge("mem_shared", "bytes", "node_memory_Shmem_bytes{", Agg::Sum),
            gauge("mem_buffers", "bytes", "node_memory_Buffers_bytes{", Agg::Sum),
            gauge("mem_cached", "bytes", "node_memory_Cached_bytes{", Agg::Sum),
        ],
    },
    Metric {
        name: "disk",
        fields: &[
            Field {
                name: "disk_utilization",
                unit: PCT,
                calc: Calc::Percent {
                    used: "ocelli_filesystem_used_bytes{",
                    avail: "node_filesystem_avail_bytes{",
                },
                agg: Agg::Avg,
            },
            gauge("disk_total", "bytes", "node_filesystem_size_bytes{", Agg::Sum),
            gauge("disk_used", "bytes", "ocelli_filesystem_used_bytes{", Agg::Sum),
            gauge("disk_free", "bytes", "node_filesystem_avail_bytes{", Agg::Sum),
        ],
    },
    Metric {
        name: "diskio",
        fields: &[
            rate("kb_read", "bytes/s", "node_disk_read_bytes_total{", 1.0),
            rate("kb_written", "bytes/s", "node_disk_written_bytes_total{", 1.0),
            rate("ops_read", "reads/s", "node_disk_reads_completed_total{", 1.0),
            rate("ops_write", "writes/s", "node_disk_writes_completed_total{", 1.0),
            rate("read_time", "ms/s", "node_disk_read_time_seconds_total{", 1000.0),
            rate("write_time", "ms/s", "node_disk_write_time_seconds_total{", 1000.0),
        ],
    },
    Metric {
        name: "network",
        fields: &[
            rate("bytes_in", "bytes/s", "node_network_receive_bytes_total{", 1.0),
            rate("bytes_out", "bytes/s", "node_network_transmit_bytes_total{", 1.0),
            rate("pkts_in", "packets/s", "node_network_receive_packets_total{", 1.0),
            rate("pkts_out", "packets/s", "node_network_transmit_packets_total{", 1.0),
            rate("err_in", "errors/s", "node_network_receive_errs_total{", 1.0),
            rate("err_out", "errors/s", "node_network_transmit_errs_total{", 1.0),
            rate("drop_in", "packets/s", "node_network_receive_drop_total{", 1.0),
            rate("drop_out", "packets/s", "node_network_transmit_drop_total{", 1.0),
        ],
    },
];

/// The metric named `name`, if it is one.
pub fn metric(name: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.name == name)
}

/// The window of the per-minute rates and their spacing.
const RATE_WINDOW: &str = "2m";
const RATE_STEP: &str = "1m";

fn scaled(expr: String, scale: f64) -> String {
    if scale == 1.0 { expr } else { format!("({expr}) * {scale:e}") }
}

impl Field {
    /// The field as PromQL: criterion function `c`, window `w` (a PromQL duration) and the
    /// matchers `s` (comma-separated, without braces) naming the VMs.
    pub fn promql(&self, c: &str, w: &str, s: &str) -> String {
        let sum = |sel: &str| format!("sum by (ns, vm_id) ({c}({sel}{s}}}[{w}]))");
        match self.calc {
            Calc::Gauge { selector, scale } => scaled(sum(selector), scale),
            Calc::GaugeAvg { selector, fallback, scale } => {
                let avg = |sel: &str| format!("avg by (ns, vm_id) ({c}({sel}{s}}}[{w}]))");
                scaled(format!("{} or {}", avg(selector), avg(fallback)), scale)
            }
            Calc::Rate { selector, scale } => scaled(
                format!(
                    "{c}((sum by (ns, vm_id) (rate({selector}{s}}}[{RATE_WINDOW}])))[{w}:{RATE_STEP}])"
                ),
                scale,
            ),
            Calc::Percent { used, avail } => {
                let (u, a) = (sum(used), sum(avail));
                format!("100 * {u} / ({u} + {a})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_expressions_parse() {
        let mut seen = std::collections::BTreeSet::new();
        for m in METRICS {
            for f in m.fields {
                assert!(seen.insert(f.name), "{} twice", f.name);
                for c in ["min_over_time", "max_over_time", "avg_over_time", "last_over_time"] {
                    let q = f.promql(c, "59999ms", "ns=\"a\",vm_id=\"b\"");
                    if let Err(e) = ocelli_promql::parse(&q) {
                        panic!("{}: {q}: {e}", f.name);
                    }
                }
            }
        }
    }

    #[test]
    fn shapes() {
        let cpu = metric("cpu").map(|m| m.fields[1]);
        let q = cpu.map(|f| f.promql("max_over_time", "1m", "ns=\"a\""));
        assert_eq!(
            q.as_deref(),
            Some(
                "sum by (ns, vm_id) (max_over_time(ocelli_cpu_usage_percent{mode=\"user\",ns=\"a\"}[1m]))"
            )
        );
        let net = metric("network").map(|m| m.fields[0].promql("avg_over_time", "1h", "ns=\"a\""));
        assert_eq!(
            net.as_deref(),
            Some(
                "avg_over_time((sum by (ns, vm_id) (rate(node_network_receive_bytes_total{ns=\"a\"}[2m])))[1h:1m])"
            )
        );
    }
}
