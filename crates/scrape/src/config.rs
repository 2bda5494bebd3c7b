//! The scrape part of the server's config file: the `[scrape]` defaults and the
//! `[[scrape_configs]]` jobs, their validation, and their compiled form ([`Job`]).
//!
//! Parsing happens in two steps so that every error names the job: serde reads each job's
//! table on its own ([`deserialize_jobs`]) and prefixes any error with the job's name; then
//! [`compile`] checks what serde cannot (durations, regexes, target addresses, duplicate job
//! names, timeout above interval) and says `scrape_configs[i] (job "name"): field: reason`.
//! Field names and defaults follow Prometheus' `scrape_config`. `https` targets are verified
//! against `tls_config.ca_file` or Mozilla's roots (rustls with ring); no other TLS option.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::relabel::{self, RelabelConfig, Rule};
use ocelli_model::time::parse_duration;

/// Defaults for every job: `[scrape]` in the config file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GlobalConfig {
    /// How often a target is scraped unless its job says otherwise (Prometheus' default, 1m).
    pub scrape_interval: String,
    /// How long one scrape may take unless its job says otherwise (default 10s, and never
    /// more than the job's interval).
    pub scrape_timeout: String,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig { scrape_interval: "1m".into(), scrape_timeout: "10s".into() }
    }
}

/// One `[[scrape_configs]]` job as written in the config file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScrapeConfig {
    /// The pool's name and the default `job` label of its targets; unique across jobs.
    pub job_name: String,
    /// Overrides `[scrape].scrape_interval`.
    pub scrape_interval: Option<String>,
    /// Overrides `[scrape].scrape_timeout`.
    pub scrape_timeout: Option<String>,
    /// HTTP path to scrape (default `/metrics`).
    pub metrics_path: String,
    /// `http` (the default) or `https`.
    pub scheme: String,
    /// For `https`: what the targets' certificates are verified against.
    pub tls_config: ScrapeTls,
    /// URL query parameters; a target's `__param_<name>` label overrides the first value.
    pub params: BTreeMap<String, Vec<String>>,
    /// Keep the scraped value of a label that clashes with a target label (default false: the
    /// scraped one is renamed `exported_<name>`).
    pub honor_labels: bool,
    /// Keep timestamps the target exposes (default true); false stamps every sample with the
    /// scrape's start time.
    pub honor_timestamps: bool,
    /// A scrape with more samples than this after metric relabelling fails whole (0: no limit).
    pub sample_limit: usize,
    /// Largest response body, in bytes, compressed or not (0: `[ingest].max_decompressed_bytes`).
    pub body_size_limit: usize,
    pub static_configs: Vec<StaticConfig>,
    pub file_sd_configs: Vec<FileSdConfig>,
    pub relabel_configs: Vec<RelabelConfig>,
    pub metric_relabel_configs: Vec<RelabelConfig>,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        ScrapeConfig {
            job_name: String::new(),
            scrape_interval: None,
            scrape_timeout: None,
            metrics_path: "/metrics".into(),
            scheme: "http".into(),
            tls_config: ScrapeTls::default(),
            params: BTreeMap::new(),
            honor_labels: false,
            honor_timestamps: true,
            sample_limit: 0,
            body_size_limit: 0,
            static_configs: Vec::new(),
            file_sd_configs: Vec::new(),
            relabel_configs: Vec::new(),
            metric_relabel_configs: Vec::new(),
        }
    }
}

/// A fixed list of targets with labels for all of them.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StaticConfig {
    /// `host:port` of each target.
    pub targets: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// Targets read from files in Prometheus' file_sd format (JSON, or YAML for `.yml`/`.yaml`).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FileSdConfig {
    /// Paths of `.json`, `.yml` or `.yaml` files; the last path component may hold `*`, `?`
    /// and `[...]`. Relative paths are relative to the config file's folder.
    pub files: Vec<String>,
    /// How often every file is re-read even if unchanged (default 5m); changed files are
    /// picked up within a second.
    pub refresh_interval: Option<String>,
}

/// Reads the `scrape_configs` array job by job, so that a serde error (an unknown field, a
/// wrong type) names the job it is in.
pub fn deserialize_jobs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ScrapeConfig>, D::Error> {
    let tables = Vec::<toml::Table>::deserialize(d)?;
    tables
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let name = match t.get("job_name") {
                Some(toml::Value::String(s)) => format!("(job {s:?})"),
                _ => "(no job_name)".to_string(),
            };
            toml::Value::Table(t)
                .try_into::<ScrapeConfig>()
                .map_err(|e| serde::de::Error::custom(format!("scrape_configs[{i}] {name}: {e}")))
        })
        .collect()
}

/// A target group: addresses with labels, from a static config or a discovery file.
#[derive(Clone, Debug, PartialEq)]
pub struct TargetGroup {
    /// Each target's own labels (`__address__` at least).
    pub targets: Vec<BTreeMap<String, String>>,
    /// Labels every target of the group gets (its own win).
    pub labels: BTreeMap<String, String>,
}

/// `tls_config` of a job (Prometheus' field name): the CA file its `https` targets' certificates
/// chain to; unset: Mozilla's roots.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScrapeTls {
    pub ca_file: Option<PathBuf>,
}

/// The rustls client setup of an outbound scrape.
pub type ClientTls = std::sync::Arc<ocelli_tls::rustls::ClientConfig>;

/// A validated job.
#[derive(Clone, Debug)]
pub struct Job {
    pub name: String,
    /// As written, to tell on reload whether the job changed.
    pub raw: ScrapeConfig,
    pub interval: Duration,
    pub timeout: Duration,
    pub body_limit: usize,
    pub static_groups: Vec<TargetGroup>,
    pub file_sd: Vec<FileSd>,
    pub relabel: Vec<Rule>,
    pub metric_relabel: std::sync::Arc<Vec<Rule>>,
    /// The TLS setup of `https` targets.
    pub tls: ClientTls,
}

/// A validated `file_sd_configs` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct FileSd {
    /// Absolute or config-relative-resolved paths; globs only in the last component.
    pub patterns: Vec<PathBuf>,
    pub refresh: Duration,
}

/// Checks `host:port`: a non-empty host without `/`, and a port number.
pub fn check_address(a: &str) -> Result<(), String> {
    let bad = || format!("{a:?} is not host:port");
    let (host, port) = a.rsplit_once(':').ok_or_else(bad)?;
    let host_ok = !host.is_empty()
        && !host.contains(['/', '?', '#', '@', ' '])
        && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')));
    if !host_ok || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(())
}

fn duration(field: &str, v: &str) -> Result<Duration, String> {
    parse_duration(v)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("{field}: invalid duration {v:?} (use e.g. 15s, 1m, 500ms)"))
}

/// Compiles and checks `[scrape]` and every job. `base` is the folder relative file_sd paths
/// are resolved against; `default_body_limit` applies where a job sets no `body_size_limit`.
pub fn compile(
    global: &GlobalConfig,
    jobs: &[ScrapeConfig],
    base: &Path,
    default_body_limit: usize,
) -> Result<Vec<Job>, String> {
    let g_interval = duration("scrape.scrape_interval", &global.scrape_interval)?;
    let g_timeout = duration("scrape.scrape_timeout", &global.scrape_timeout)?;
    if g_timeout > g_interval {
        return Err(format!(
            "scrape.scrape_timeout: {} is greater than scrape.scrape_interval {}",
            global.scrape_timeout, global.scrape_interval
        ));
    }
    let mut out: Vec<Job> = Vec::with_capacity(jobs.len());
    for (i, c) in jobs.iter().enumerate() {
        let job = compile_job(c, g_interval, g_timeout, base, default_body_limit)
            .map_err(|e| format!("scrape_configs[{i}] (job {:?}): {e}", c.job_name))?;
        if let Some(j) = out.iter().position(|o| o.name == job.name) {
            return Err(format!(
                "scrape_configs[{i}] (job {:?}): job_name: duplicate of scrape_configs[{j}]",
                c.job_name
            ));
        }
        out.push(job);
    }
    Ok(out)
}

fn compile_job(
    c: &ScrapeConfig,
    g_interval: Duration,
    g_timeout: Duration,
    base: &Path,
    default_body_limit: usize,
) -> Result<Job, String> {
    if c.job_name.is_empty() {
        return Err("job_name: missing or empty".into());
    }
    let interval = match &c.scrape_interval {
        Some(v) => duration("scrape_interval", v)?,
        None => g_interval,
    };
    let timeout = match &c.scrape_timeout {
        Some(v) => duration("scrape_timeout", v)?,
        // as Prometheus: the global timeout, but never above the job's interval
        None => g_timeout.min(interval),
    };
    if timeout > interval {
        return Err(format!(
            "scrape_timeout: {} is greater than scrape_interval {}",
            ocelli_model::time::format_duration(timeout),
            ocelli_model::time::format_duration(interval)
        ));
    }
    match c.scheme.as_str() {
        "http" | "https" => {}
        other => return Err(format!("scheme: {other:?} is neither http nor https")),
    }
    let trust = match &c.tls_config.ca_file {
        Some(f) => ocelli_tls::Trust::CaFile(f.clone()),
        None => ocelli_tls::Trust::System,
    };
    let tls = ocelli_tls::client_config(&trust, None).map_err(|e| format!("tls_config: {e}"))?;
    if !c.metrics_path.starts_with('/') {
        return Err(format!("metrics_path: {:?} does not start with '/'", c.metrics_path));
    }
    let mut static_groups = Vec::new();
    for (i, s) in c.static_configs.iter().enumerate() {
        static_groups.push(
            target_group(&s.targets, &s.labels).map_err(|e| format!("static_configs[{i}].{e}"))?,
        );
    }
    let mut file_sd = Vec::new();
    for (i, f) in c.file_sd_configs.iter().enumerate() {
        let field = |name: &str| format!("file_sd_configs[{i}].{name}");
        if f.files.is_empty() {
            return Err(format!("{}: no files given", field("files")));
        }
        let mut patterns = Vec::new();
        for p in &f.files {
            check_sd_pattern(p).map_err(|e| format!("{}: {e}", field("files")))?;
            patterns.push(base.join(p));
        }
        let refresh = match &f.refresh_interval {
            Some(v) => duration(&field("refresh_interval"), v)?,
            None => Duration::from_secs(300),
        };
        file_sd.push(FileSd { patterns, refresh });
    }
    let relabel = relabel::compile_all("relabel_configs", &c.relabel_configs)?;
    let metric_relabel = relabel::compile_all("metric_relabel_configs", &c.metric_relabel_configs)?;
    Ok(Job {
        name: c.job_name.clone(),
        raw: c.clone(),
        interval,
        timeout,
        body_limit: if c.body_size_limit == 0 { default_body_limit } else { c.body_size_limit },
        static_groups,
        file_sd,
        relabel,
        metric_relabel: std::sync::Arc::new(metric_relabel),
        tls,
    })
}

/// Builds a group from addresses and labels, checking both; errors start with the field name.
pub fn target_group(
    targets: &[String],
    labels: &BTreeMap<String, String>,
) -> Result<TargetGroup, String> {
    for name in labels.keys() {
        if !ocelli_model::is_valid_label_name(name) {
            return Err(format!("labels: {name:?} is not a valid label name"));
        }
    }
    let mut out = Vec::with_capacity(targets.len());
    for (i, t) in targets.iter().enumerate() {
        check_address(t).map_err(|e| format!("targets[{i}]: {e}"))?;
        out.push(BTreeMap::from([(super::target::ADDRESS.to_string(), t.clone())]));
    }
    Ok(TargetGroup { targets: out, labels: labels.clone() })
}

fn check_sd_pattern(p: &str) -> Result<(), String> {
    let path = Path::new(p);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let dir = path.parent().map(|d| d.to_string_lossy().to_string()).unwrap_or_default();
    if dir.contains(['*', '?', '[']) {
        return Err(format!("{p:?}: wildcards are allowed only in the file name"));
    }
    if ![".json", ".yml", ".yaml"].iter().any(|ext| name.ends_with(ext)) {
        return Err(format!("{p:?}: the file name must end in .json, .yml or .yaml"));
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Doc {
        #[serde(default)]
        scrape: GlobalConfig,
        #[serde(default, deserialize_with = "deserialize_jobs")]
        scrape_configs: Vec<ScrapeConfig>,
    }

    /// The jobs of a config file's scrape part.
    pub(crate) fn parse(text: &str) -> Result<Vec<Job>, String> {
        let d: Doc = toml::from_str(text).map_err(|e| e.to_string())?;
        compile(&d.scrape, &d.scrape_configs, Path::new("/etc/ocelli"), 1 << 20)
    }

    #[test]
    fn defaults_as_prometheus() {
        let jobs = parse("[[scrape_configs]]\njob_name = \"a\"\n").unwrap();
        let j = &jobs[0];
        assert_eq!(j.interval, Duration::from_secs(60));
        assert_eq!(j.timeout, Duration::from_secs(10));
        assert_eq!(j.raw.metrics_path, "/metrics");
        assert!(j.raw.honor_timestamps && !j.raw.honor_labels);
        assert_eq!(j.body_limit, 1 << 20);
        // a job interval below the global timeout caps the timeout
        let jobs =
            parse("[[scrape_configs]]\njob_name = \"a\"\nscrape_interval = \"5s\"\n").unwrap();
        assert_eq!(jobs[0].timeout, Duration::from_secs(5));
        let jobs = parse(
            "[scrape]\nscrape_interval = \"30s\"\nscrape_timeout = \"3s\"\n[[scrape_configs]]\njob_name = \"a\"\n",
        )
        .unwrap();
        assert_eq!(
            (jobs[0].interval, jobs[0].timeout),
            (Duration::from_secs(30), Duration::from_secs(3))
        );
    }

    #[test]
    fn full_job_parses() {
        let jobs = parse(
            r#"
            [[scrape_configs]]
            job_name = "node"
            scrape_interval = "15s"
            scrape_timeout = "5s"
            metrics_path = "/probe"
            params = { module = ["http_2xx"] }
            honor_labels = true
            honor_timestamps = false
            sample_limit = 1000
            [[scrape_configs.static_configs]]
            targets = ["localhost:9100", "[::1]:9100"]
            labels = { env = "prod" }
            [[scrape_configs.file_sd_configs]]
            files = ["targets/*.json"]
            refresh_interval = "1m"
            [[scrape_configs.relabel_configs]]
            source_labels = ["__address__"]
            target_label = "instance"
            [[scrape_configs.metric_relabel_configs]]
            source_labels = ["__name__"]
            regex = "go_.*"
            action = "drop"
            "#,
        )
        .unwrap();
        let j = &jobs[0];
        assert_eq!(j.static_groups[0].targets.len(), 2);
        assert_eq!(j.file_sd[0].patterns, vec![PathBuf::from("/etc/ocelli/targets/*.json")]);
        assert_eq!(j.file_sd[0].refresh, Duration::from_secs(60));
        assert_eq!((j.relabel.len(), j.metric_relabel.len()), (1, 1));
    }

    #[test]
    fn errors_name_the_job_and_field() {
        let cases = [
            (
                "[[scrape_configs]]\njob_name = \"n\"\nscrape_intervall = \"1s\"\n",
                "scrape_configs[0] (job \"n\"): unknown field `scrape_intervall`",
            ),
            (
                "[[scrape_configs]]\njob_name = \"n\"\n[[scrape_configs.relabel_configs]]\nregexp = \"a\"\n",
                "scrape_configs[0] (job \"n\"): unknown field `regexp`",
            ),
            (
                "[[scrape_configs]]\njob_name = \"n\"\n[[scrape_configs.relabel_configs]]\naction = \"explode\"\n",
                "scrape_configs[0] (job \"n\"): unknown variant `explode`",
            ),
            (
                "[[scrape_configs]]\njob_name = \"n\"\nscrape_interval = \"1 minute\"\n",
                "scrape_configs[0] (job \"n\"): scrape_interval: invalid duration \"1 minute\"",
            ),
            (
                "[[scrape_configs]]\njob_name = \"n\"\nscrape_interval = \"1s\"\nscrape_timeout = \"2s\"\n",
                "scrape_configs[0] (job \"n\"): scrape_timeout: 2s is greater than scrape_interval 1s",
            ),
            (
                "[[scrape_configs]]\njob_name = \"a\"\n[[scrape_configs]]\njob_name = \"a\"\n",
                "scrape_configs[1] (job \"a\"): job_name: duplicate of scrape_configs[0]",
            ),
            (
                "[[scrape_configs]]\njob_name = \"n\"\n[[scrape_configs.static_configs]]\ntargets = [\"ok:1\", \"http://x:1\"]\n",
                "scrape_configs[0] (job \"n\"): static_configs[0].targets[1]: \"http://x:1\" is not host:port",
            ),
            (
                "[[scrape_configs]]\njob_name = \"n\"\n[[scrape_configs.static_configs]]\ntargets = [\"x:99999\"]\n",
                "is not host:port",
            ),
            (
                "[[scrape_configs]]\njob_name = \"n\"\n[[scrape_configs.metric_relabel_configs]]\nsource_labels = [\"a\"]\nregex = \"[\"\ntarget_label = \"b\"\n",
                "scrape_configs[0] (job \"n\"): metric_relabel_configs[0].regex: invalid regular expression \"[\"",
            ),
            (
                "[[scrape_configs]]\njob_name = \"n\"\nscheme = \"ftp\"\n",
                "scrape_configs[0] (job \"n\"): scheme: \"ftp\" is neither http nor https",
            ),
            (
                "[[scrape_configs]]\njob_name = \"n\"\n[[scrape_configs.file_sd_configs]]\nfiles = [\"*/t.json\"]\n",
                "file_sd_configs[0].files: \"*/t.json\": wildcards are allowed only in the file name",
            ),
            (
                "[[scrape_configs]]\njob_name = \"n\"\n[[scrape_configs.file_sd_configs]]\nfiles = [\"t.txt\"]\n",
                "file_sd_configs[0].files: \"t.txt\": the file name must end in .json, .yml or .yaml",
            ),
            ("[[scrape_configs]]\nscrape_interval = \"1s\"\n", "job_name: missing or empty"),
            ("[scrape]\nscrape_timeout = \"2m\"\n", "scrape.scrape_timeout: 2m is greater than"),
            ("[scrape]\nbogus = 1\n", "unknown field `bogus`"),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "config:\n{text}\nerror: {e}\nwanted: {want}");
        }
    }

    #[test]
    fn example_config_scrape_job_compiles() {
        // the server's test checks the file's `[scrape]`; the commented example job,
        // uncommented, is valid
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/server.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let start = text.find("# [[scrape_configs]]").unwrap();
        let job: String = text[start..]
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l.trim_start_matches('#')))
            .map(|l| format!("{l}\n"))
            .collect();
        let jobs = parse(&job).unwrap();
        assert_eq!(jobs[0].name, "node");
        assert_eq!(jobs[0].interval, Duration::from_secs(15));
        assert_eq!((jobs[0].relabel.len(), jobs[0].metric_relabel.len()), (1, 1));
        assert_eq!(jobs[0].static_groups[0].targets[0]["__address__"], "127.0.0.1:9100");
    }

    #[test]
    fn addresses() {
        for ok in ["localhost:9100", "10.0.0.1:80", "[::1]:9100", "my-host.example:1"] {
            assert_eq!(check_address(ok), Ok(()), "{ok}");
        }
        for bad in ["localhost", ":9100", "a/b:1", "::1:9100", "h:", "h:x", "u@h:1"] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }
}
