//! CPU frequencies (node_exporter's `cpufreq`): current, minimum and maximum of the hardware
//! (`cpuinfo_*_freq`) and of the scaling governor (`scaling_*_freq`) per CPU, from
//! `/sys/devices/system/cpu/cpu<N>/cpufreq/`, in hertz. Virtual machines often have no
//! cpufreq in sysfs; then `ocelli_cpu_frequency_hertz` reports the "cpu MHz" lines of
//! `/proc/cpuinfo` instead (CB-Dragonfly's `cpu_speed`), so every host has a figure.

use super::{Collector, Context, Kind, Sink, read};
use crate::Result;

/// The sysfs files, in kHz, and their families.
const FILES: [(&str, &str, &str); 6] = [
    ("cpuinfo_cur_freq", "node_cpu_frequency_hertz", "Current CPU frequency in hertz."),
    ("cpuinfo_min_freq", "node_cpu_frequency_min_hertz", "Lowest CPU frequency in hertz."),
    ("cpuinfo_max_freq", "node_cpu_frequency_max_hertz", "Highest CPU frequency in hertz."),
    (
        "scaling_cur_freq",
        "node_cpu_scaling_frequency_hertz",
        "Current scaled CPU frequency in hertz.",
    ),
    (
        "scaling_min_freq",
        "node_cpu_scaling_frequency_min_hertz",
        "Lowest scaled CPU frequency in hertz.",
    ),
    (
        "scaling_max_freq",
        "node_cpu_scaling_frequency_max_hertz",
        "Highest scaled CPU frequency in hertz.",
    ),
];

/// Per-CPU frequencies from `/proc/cpuinfo`: (processor number, hertz).
pub fn parse_cpuinfo(text: &str) -> Vec<(u32, f64)> {
    let mut out = Vec::new();
    let mut cpu = None;
    for line in text.lines() {
        let Some((k, v)) = line.split_once(':') else { continue };
        match k.trim() {
            "processor" => cpu = v.trim().parse().ok(),
            "cpu MHz" => {
                if let (Some(c), Ok(mhz)) = (cpu, v.trim().parse::<f64>()) {
                    out.push((c, mhz * 1e6));
                }
            }
            _ => {}
        }
    }
    out
}

#[derive(Debug, Default)]
pub struct CpuFreq {
    buf: String,
}

impl Collector for CpuFreq {
    fn name(&self) -> &'static str {
        "cpufreq"
    }

    fn collect(&mut self, ctx: &Context, sink: &mut Sink) -> Result<()> {
        // values[file][i] = (cpu, hertz)
        let mut values: [Vec<(u32, f64)>; 6] = Default::default();
        let dir = ctx.sys("devices/system/cpu");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(crate::Error::io(&dir, e)),
        };
        let mut cpus: Vec<u32> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_prefix("cpu")?.parse().ok())
            .collect();
        cpus.sort_unstable();
        for cpu in cpus {
            for (i, (file, _, _)) in FILES.iter().enumerate() {
                let p = dir.join(format!("cpu{cpu}/cpufreq/{file}"));
                // unreadable (cpuinfo_cur_freq is root-only) or absent: not reported
                if read(&p, &mut self.buf).unwrap_or(false)
                    && let Ok(khz) = self.buf.trim().parse::<f64>()
                {
                    values[i].push((cpu, khz * 1000.0));
                }
            }
        }
        for ((_, name, help), v) in FILES.iter().zip(&values) {
            if !v.is_empty() {
                let f = sink.family(*name, *help, Kind::Gauge);
                for (cpu, hz) in v {
                    f.add(&[("cpu", &cpu.to_string())], *hz);
                }
            }
        }
        if values.iter().all(Vec::is_empty) && read(&ctx.proc("cpuinfo"), &mut self.buf)? {
            let v = parse_cpuinfo(&self.buf);
            let f = sink.family(
                "ocelli_cpu_frequency_hertz",
                "CPU frequency in hertz from /proc/cpuinfo, for hosts without cpufreq in sysfs.",
                Kind::Gauge,
            );
            for (cpu, hz) in v {
                f.add(&[("cpu", &cpu.to_string())], hz);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_frequencies() {
        // lines of the development machine's /proc/cpuinfo (a VM without cpufreq in sysfs)
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu MHz\t\t: 2596.138\n\n\
                    processor\t: 1\ncpu MHz\t\t: 2596.138\n";
        assert_eq!(parse_cpuinfo(text), [(0, 2596.138e6), (1, 2596.138e6)]);
    }

    #[test]
    fn sysfs_frequencies_from_a_copied_tree() {
        let dir = tempfile::tempdir().unwrap();
        let freq = dir.path().join("sys/devices/system/cpu/cpu0/cpufreq");
        std::fs::create_dir_all(&freq).unwrap();
        std::fs::create_dir_all(dir.path().join("sys/devices/system/cpu/cpufreq")).unwrap();
        // values from a laptop's sysfs (kHz)
        std::fs::write(freq.join("scaling_cur_freq"), "1600000\n").unwrap();
        std::fs::write(freq.join("cpuinfo_max_freq"), "4700000\n").unwrap();
        let ctx = Context {
            paths: crate::config::Paths {
                proc: dir.path().join("proc"),
                sys: dir.path().join("sys"),
                root: dir.path().into(),
            },
            cfg: Default::default(),
        };
        let mut sink = Sink::default();
        CpuFreq::default().collect(&ctx, &mut sink).unwrap();
        let names: Vec<_> = sink.families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["node_cpu_frequency_max_hertz", "node_cpu_scaling_frequency_hertz"]);
        let v =
            crate::collector::value_of(&sink, "node_cpu_scaling_frequency_hertz", &[("cpu", "0")]);
        assert_eq!(v, 1.6e9);
    }
}
