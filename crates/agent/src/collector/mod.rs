//! Host collectors, one module each, reading Linux's /proc and /sys (and, for OS facts, files
//! under the host's root). Each turns its kernel files into metric [`Family`]s in a [`Sink`];
//! the parsing is a pure function of the file's text, tested on samples taken from a real
//! machine.
//!
//! Names and labels are node_exporter's wherever node_exporter has the metric, so dashboards and
//! alert rules written for it work; what it lacks (CB-Dragonfly's utilisation percentages, the
//! CPU count, uptime) gets an `ocelli_` name. `docs/metrics.md` lists every family.
//!
//! [`Collectors`] runs them: all for `/metrics` and push, one for `/collect/{collector}`. A
//! collector that fails is logged and reported in `ocelli_agent_collector_success`; the others
//! still report. A file that does not exist on this host (no cpufreq in a VM, no udev data) is
//! not a failure: the collector reports what there is.
//!
//! Deliberately absent: output formats (see [`crate::exposition`] and [`crate::push`]) and the
//! identity labels, which the outputs add.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::config::{CollectorsConfig, Paths};
use crate::{Error, Result};

pub mod cpu;
pub mod cpufreq;
pub mod diskstats;
pub mod filesystem;
pub mod loadavg;
pub mod meminfo;
pub mod netdev;
pub mod os;
pub mod stat;
pub mod uname;
pub mod uptime;
pub mod vmstat;

/// Every collector's name, as `GET /collect/{collector}` and `collectors.disabled` take them.
pub const NAMES: &[&str] = &[
    "cpu",
    "cpufreq",
    "diskstats",
    "filesystem",
    "loadavg",
    "meminfo",
    "netdev",
    "os",
    "stat",
    "uname",
    "uptime",
    "vmstat",
];

/// Linux reports CPU times in /proc in USER_HZ ticks, which is 100 per second on every
/// architecture node_exporter and we run on.
pub const USER_HZ: f64 = 100.0;

/// A metric family's type, as the exposition format's `# TYPE` line says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Untyped,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Untyped => "untyped",
        }
    }
}

/// One sample of a family: its own labels (names are fixed by the code) and its value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// A metric family: name, help, type and samples.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub samples: Vec<Sample>,
}

impl Family {
    /// Adds a sample.
    pub fn add(&mut self, labels: &[(&'static str, &str)], value: f64) -> &mut Family {
        let labels = labels.iter().map(|(n, v)| (*n, v.to_string())).collect();
        self.samples.push(Sample { labels, value });
        self
    }
}

/// Where collectors put their families.
#[derive(Debug, Default)]
pub struct Sink {
    pub families: Vec<Family>,
}

impl Sink {
    /// A new, empty family (collectors open each family once).
    pub fn family(
        &mut self,
        name: impl Into<String>,
        help: impl Into<String>,
        kind: Kind,
    ) -> &mut Family {
        let f = Family { name: name.into(), help: help.into(), kind, samples: Vec::new() };
        self.families.push(f);
        let last = self.families.len() - 1;
        &mut self.families[last]
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: impl Into<String>, help: impl Into<String>, kind: Kind, v: f64) {
        self.family(name, help, kind).add(&[], v);
    }

    /// Families sorted by name, as the exposition format reads best.
    pub fn into_sorted(mut self) -> Vec<Family> {
        self.families.sort_by(|a, b| a.name.cmp(&b.name));
        self.families
    }
}

/// What every collector may read: the configured paths and collector settings.
#[derive(Debug)]
pub struct Context {
    pub paths: Paths,
    pub cfg: CollectorsConfig,
}

impl Context {
    pub fn proc(&self, rel: &str) -> PathBuf {
        self.paths.proc.join(rel)
    }

    pub fn sys(&self, rel: &str) -> PathBuf {
        self.paths.sys.join(rel)
    }

    /// A path of the host's file system (`rel` may start with `/`).
    pub fn root(&self, rel: &str) -> PathBuf {
        self.paths.root.join(rel.trim_start_matches('/'))
    }
}

/// Reads a file into `buf` (cleared first). `Ok(false)` when the file does not exist.
pub fn read(path: &Path, buf: &mut String) -> Result<bool> {
    use std::io::Read;
    buf.clear();
    match std::fs::File::open(path) {
        Ok(mut f) => {
            f.read_to_string(buf).map_err(|e| Error::io(path, e))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Reads a file that must exist.
pub fn read_required(path: &Path, buf: &mut String) -> Result<()> {
    if read(path, buf)? {
        Ok(())
    } else {
        Err(Error::io(path, std::io::Error::from(std::io::ErrorKind::NotFound)))
    }
}

/// Parses a whole number field, naming it in the error.
pub fn num(field: &str, s: &str) -> Result<u64, String> {
    s.parse().map_err(|_| format!("{field}: {s:?} is not a whole number"))
}

/// Reads the file `path`, which must exist, into `buf` and parses it; a parse error names the
/// file.
pub fn parse_file<'b, T>(
    path: &Path,
    buf: &'b mut String,
    parse: impl FnOnce(&'b str) -> Result<T, String>,
) -> Result<T> {
    read_required(path, buf)?;
    let text: &'b String = buf;
    parse(text).map_err(|d| Error::parse(path, d))
}

/// Turns the text of one /proc file into families.
pub type FromText = fn(&Context, &str, &mut Sink) -> Result<(), String>;

/// A collector that is a function of one file under /proc (loadavg, meminfo, netdev, stat,
/// uptime, vmstat); the file is read into a buffer kept between collections.
#[derive(Debug)]
pub struct ProcFile {
    name: &'static str,
    file: &'static str,
    from_text: FromText,
    buf: String,
}

impl ProcFile {
    pub fn new(name: &'static str, file: &'static str, from_text: FromText) -> ProcFile {
        ProcFile { name, file, from_text, buf: String::new() }
    }
}

impl Collector for ProcFile {
    fn name(&self) -> &'static str {
        self.name
    }

    fn collect(&mut self, ctx: &Context, sink: &mut Sink) -> Result<()> {
        let path = ctx.proc(self.file);
        let from_text = self.from_text;
        parse_file(&path, &mut self.buf, |text| from_text(ctx, text, sink))
    }
}

/// One collector.
pub trait Collector: Send + std::fmt::Debug {
    fn name(&self) -> &'static str;
    fn collect(&mut self, ctx: &Context, sink: &mut Sink) -> Result<()>;
}

/// How the last run of one collector went.
#[derive(Clone, Copy, Debug, Default)]
struct RunStat {
    seconds: f64,
    ok: bool,
}

/// The enabled collectors, with their state between collections.
#[derive(Debug)]
pub struct Collectors {
    ctx: Context,
    list: Vec<(Box<dyn Collector>, RunStat)>,
}

impl Collectors {
    /// Every collector not disabled in the configuration.
    pub fn new(paths: Paths, cfg: CollectorsConfig) -> Collectors {
        let all: Vec<Box<dyn Collector>> = vec![
            Box::new(cpu::Cpu::default()),
            Box::new(cpufreq::CpuFreq::default()),
            Box::new(diskstats::DiskStats::default()),
            Box::new(filesystem::Filesystem::default()),
            Box::new(ProcFile::new("loadavg", "loadavg", loadavg::from_text)),
            Box::new(ProcFile::new("meminfo", "meminfo", meminfo::from_text)),
            Box::new(ProcFile::new("netdev", "net/dev", netdev::from_text)),
            Box::new(os::Os::default()),
            Box::new(ProcFile::new("stat", "stat", stat::from_text)),
            Box::new(uname::Uname),
            Box::new(ProcFile::new("uptime", "uptime", uptime::from_text)),
            Box::new(ProcFile::new("vmstat", "vmstat", vmstat::from_text)),
        ];
        let list = all
            .into_iter()
            .filter(|c| !cfg.disabled.iter().any(|d| d == c.name()))
            .map(|c| (c, RunStat::default()))
            .collect();
        Collectors { ctx: Context { paths, cfg }, list }
    }

    /// Whether `name` is an enabled collector.
    pub fn enabled(&self, name: &str) -> bool {
        self.list.iter().any(|(c, _)| c.name() == name)
    }

    /// Runs every collector, then adds the families about the collectors themselves.
    pub fn collect_all(&mut self, sink: &mut Sink) {
        for i in 0..self.list.len() {
            self.run(i, sink);
        }
        let f = sink.family(
            "ocelli_agent_collector_duration_seconds",
            "How long the collector's last run took.",
            Kind::Gauge,
        );
        for (c, s) in &self.list {
            f.add(&[("collector", c.name())], s.seconds);
        }
        let f = sink.family(
            "ocelli_agent_collector_success",
            "Whether the collector's last run succeeded (1) or failed (0).",
            Kind::Gauge,
        );
        for (c, s) in &self.list {
            f.add(&[("collector", c.name())], if s.ok { 1.0 } else { 0.0 });
        }
    }

    /// Runs one collector. `Ok(false)` when it is unknown or disabled.
    pub fn collect_one(&mut self, name: &str, sink: &mut Sink) -> Result<bool> {
        let Some(i) = self.list.iter().position(|(c, _)| c.name() == name) else {
            return Ok(false);
        };
        let mut own = Sink::default();
        let res = self.list[i].0.collect(&self.ctx, &mut own);
        self.list[i].1.ok = res.is_ok();
        res?;
        sink.families.append(&mut own.families);
        Ok(true)
    }

    fn run(&mut self, i: usize, sink: &mut Sink) {
        let t0 = Instant::now();
        let before = sink.families.len();
        let (c, stat) = &mut self.list[i];
        let res = c.collect(&self.ctx, sink);
        stat.seconds = t0.elapsed().as_secs_f64();
        stat.ok = res.is_ok();
        if let Err(e) = res {
            // a failed collector contributes nothing, not half its families
            sink.families.truncate(before);
            tracing::warn!(collector = c.name(), error = %e, "collector failed");
        }
    }
}

/// `/proc/stat` of the development machine (2 CPUs; the `intr` line shortened).
#[cfg(test)]
pub(crate) const PROC_STAT: &str = "cpu  940392 0 115943 488909 8043 0 2398 3239 0 0
cpu0 459573 0 54817 260337 2179 0 861 1630 0 0
cpu1 480818 0 61125 228571 5863 0 1536 1609 0 0
intr 7488430 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
ctxt 9403122
btime 1795380557
processes 145199
procs_running 3
procs_blocked 0
softirq 4319337 0 576070 5 1821440 441536 0 579 486324 12 993371
";

/// For collector tests: the value of the sample of `name` with exactly `labels`.
#[cfg(test)]
pub(crate) fn value_of(sink: &Sink, name: &str, labels: &[(&str, &str)]) -> f64 {
    let Some(f) = sink.families.iter().find(|f| f.name == name) else {
        panic!("no family {name}");
    };
    let found = f.samples.iter().find(|s| {
        s.labels.len() == labels.len()
            && labels.iter().all(|(n, v)| s.labels.iter().any(|(a, b)| a == n && b == v))
    });
    match found {
        Some(s) => s.value,
        None => panic!("no sample {name}{labels:?} in {:?}", f.samples),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_collectors() {
        let c = Collectors::new(Paths::default(), CollectorsConfig::default());
        let names: Vec<_> = c.list.iter().map(|(c, _)| c.name()).collect();
        assert_eq!(names, NAMES);
        let cfg = CollectorsConfig { disabled: vec!["cpu".into()], ..Default::default() };
        let c = Collectors::new(Paths::default(), cfg);
        assert!(!c.enabled("cpu"));
        assert!(c.enabled("meminfo"));
    }

    #[test]
    fn a_failing_collector_is_reported_and_leaves_nothing() {
        let paths = Paths {
            proc: "/nonexistent-proc".into(),
            sys: "/nonexistent-sys".into(),
            root: "/nonexistent-root".into(),
        };
        let mut c = Collectors::new(paths, CollectorsConfig::default());
        let mut sink = Sink::default();
        c.collect_all(&mut sink);
        let fams = sink.into_sorted();
        assert!(!fams.iter().any(|f| f.name == "node_load1"));
        let success = fams.iter().find(|f| f.name == "ocelli_agent_collector_success").unwrap();
        let loadavg = success
            .samples
            .iter()
            .find(|s| s.labels == [("collector", "loadavg".to_string())])
            .unwrap();
        assert_eq!(loadavg.value, 0.0);
    }
}
