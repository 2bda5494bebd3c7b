//! File-based service discovery: target groups read from files in Prometheus' file_sd format,
//! JSON (`[{"targets": ["host:port"], "labels": {"name": "value"}}]`) or, for names ending in
//! `.yml`/`.yaml`, the same structure in YAML (parsed by `serde-saphyr`, which is panic-free and
//! caps alias expansion); each target is also labelled `__meta_filepath` with its file.
//!
//! A pattern's last path component may hold `*`, `?` and `[...]` (`[!...]` negates). The state
//! of one `file_sd_configs` entry is kept in [`FileSdState`]: [`FileSdState::poll`] lists the
//! matching files and re-reads those whose size or modification time changed (or all of them
//! once `refresh_interval` has passed), and says whether the groups changed. A file that cannot
//! be read or parsed keeps the groups it had last time, and the error is returned to be logged;
//! a file that is gone takes its groups with it. No inotify: the manager polls once a second.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use ocelli_http::files::list;

use super::config::{FileSd, TargetGroup, target_group};

/// One group as written in a file_sd JSON file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGroup {
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// What is known of one matched file.
#[derive(Debug)]
struct FileEntry {
    stamp: (Option<SystemTime>, u64),
    groups: Vec<TargetGroup>,
}

/// The discovery state of one `file_sd_configs` entry.
#[derive(Debug)]
pub struct FileSdState {
    pub config: FileSd,
    files: BTreeMap<PathBuf, FileEntry>,
    last_full: Option<Instant>,
}

impl FileSdState {
    pub fn new(config: FileSd) -> Self {
        FileSdState { config, files: BTreeMap::new(), last_full: None }
    }

    /// All groups of all files, in path order.
    pub fn groups(&self) -> impl Iterator<Item = &TargetGroup> {
        self.files.values().flat_map(|f| f.groups.iter())
    }

    /// Lists the files and reads the changed ones (all of them when the refresh interval has
    /// passed). Returns whether any group changed, and the errors met.
    pub fn poll(&mut self, now: Instant) -> (bool, Vec<String>) {
        let full = self.last_full.is_none_or(|t| now.duration_since(t) >= self.config.refresh);
        if full {
            self.last_full = Some(now);
        }
        let mut errors = Vec::new();
        let mut seen = BTreeMap::new();
        for pattern in &self.config.patterns {
            match list(pattern) {
                Ok(paths) => seen.extend(paths.into_iter().map(|p| (p, ()))),
                Err(e) => errors.push(format!("file_sd: {e}")),
            }
        }
        let mut changed = false;
        let before = self.files.len();
        self.files.retain(|p, _| seen.contains_key(p));
        changed |= self.files.len() != before;
        for path in seen.into_keys() {
            let stamp = std::fs::metadata(&path)
                .map(|m| (m.modified().ok(), m.len()))
                .unwrap_or((None, u64::MAX));
            let known = self.files.get(&path);
            if !full && known.is_some_and(|f| f.stamp == stamp) {
                continue;
            }
            match read(&path) {
                Ok(groups) => {
                    changed |= known.is_none_or(|f| f.groups != groups);
                    self.files.insert(path, FileEntry { stamp, groups });
                }
                Err(e) => {
                    errors.push(e);
                    // keep the last good groups; try again when the file changes
                    if let Some(f) = self.files.get_mut(&path) {
                        f.stamp = stamp;
                    } else {
                        self.files.insert(path, FileEntry { stamp, groups: Vec::new() });
                    }
                }
            }
        }
        (changed, errors)
    }
}

fn read(path: &Path) -> Result<Vec<TargetGroup>, String> {
    let at = path.display();
    let text = std::fs::read(path).map_err(|e| format!("file_sd {at}: cannot read: {e}"))?;
    let yaml = path.extension().is_some_and(|e| e == "yml" || e == "yaml");
    let groups: Vec<FileGroup> = if yaml {
        serde_saphyr::from_slice(&text).map_err(|e| format!("file_sd {at}: {e}"))?
    } else {
        serde_json::from_slice(&text).map_err(|e| format!("file_sd {at}: {e}"))?
    };
    groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let mut tg = target_group(&g.targets, &g.labels)
                .map_err(|e| format!("file_sd {at}: group {i}: {e}"))?;
            tg.labels.insert("__meta_filepath".into(), path.display().to_string());
            Ok(tg)
        })
        .collect()
}

/// How long the manager waits between polls of the discovery files.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(dir: &Path, pattern: &str, refresh: Duration) -> FileSdState {
        FileSdState::new(FileSd { patterns: vec![dir.join(pattern)], refresh })
    }

    #[test]
    fn reads_changes_and_keeps_last_good_groups() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = watch(dir.path(), "*.json", Duration::from_secs(300));
        let t0 = Instant::now();
        assert_eq!(st.poll(t0), (false, vec![]));
        let a = dir.path().join("a.json");
        std::fs::write(&a, r#"[{"targets": ["h1:9100"], "labels": {"env": "p"}}]"#).unwrap();
        std::fs::write(dir.path().join("ignored.txt"), "x").unwrap();
        let (changed, errors) = st.poll(t0);
        assert!(changed && errors.is_empty(), "{errors:?}");
        let g: Vec<&TargetGroup> = st.groups().collect();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].targets[0]["__address__"], "h1:9100");
        assert_eq!(g[0].labels["env"], "p");
        assert_eq!(g[0].labels["__meta_filepath"], a.display().to_string());
        // unchanged: nothing to do
        assert_eq!(st.poll(t0), (false, vec![]));
        // broken: the error is reported, the groups stay
        std::fs::write(&a, r#"[{"targets": ["no port"]}]"#).unwrap();
        let (changed, errors) = st.poll(t0);
        assert!(!changed);
        assert!(
            errors[0].contains("group 0: targets[0]: \"no port\" is not host:port"),
            "{errors:?}"
        );
        assert_eq!(st.groups().count(), 1);
        std::fs::write(&a, "{not json").unwrap();
        let (_, errors) = st.poll(t0);
        assert!(errors[0].starts_with(&format!("file_sd {}: ", a.display())), "{errors:?}");
        // removed: its groups go
        std::fs::remove_file(&a).unwrap();
        assert_eq!(st.poll(t0), (true, vec![]));
        assert_eq!(st.groups().count(), 0);
    }

    #[test]
    fn yaml_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = watch(dir.path(), "*.yml", Duration::from_secs(300));
        let y = dir.path().join("t.yml");
        std::fs::write(&y, "- targets: ['h1:9100', 'h2:9100']\n  labels:\n    env: prod\n")
            .unwrap();
        assert_eq!(st.poll(Instant::now()), (true, vec![]));
        let g: Vec<&TargetGroup> = st.groups().collect();
        assert_eq!(g[0].targets.len(), 2);
        assert_eq!(g[0].targets[1]["__address__"], "h2:9100");
        assert_eq!(g[0].labels["env"], "prod");
        std::fs::write(&y, "- targets: ['h1:9100']\n  lables: {}\n").unwrap();
        let (_, errors) = st.poll(Instant::now());
        assert!(errors[0].contains("lables"), "{errors:?}");
    }

    #[test]
    fn a_change_the_stamp_does_not_show_is_read_at_the_refresh_interval() {
        let dir = tempfile::tempdir().unwrap();
        let mut st = watch(dir.path(), "t.json", Duration::from_secs(60));
        let f = dir.path().join("t.json");
        std::fs::write(&f, r#"[{"targets": ["h1:9100"]}]"#).unwrap();
        let t0 = Instant::now();
        assert_eq!(st.poll(t0), (true, vec![]));
        // same length, modification time put back: only a full re-read sees it
        let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
        std::fs::write(&f, r#"[{"targets": ["h2:9100"]}]"#).unwrap();
        std::fs::File::options().write(true).open(&f).unwrap().set_modified(mtime).unwrap();
        assert_eq!(st.poll(t0 + Duration::from_secs(30)), (false, vec![]));
        assert_eq!(st.poll(t0 + Duration::from_secs(60)), (true, vec![]));
        assert_eq!(st.groups().next().unwrap().targets[0]["__address__"], "h2:9100");
    }
}
