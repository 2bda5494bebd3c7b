//! Filesystem size, free and available space and inodes (node_exporter's `filesystem`), for the
//! mounts in `/proc/1/mounts` (the host's mount namespace; `/proc/mounts` when pid 1's is
//! hidden), minus pseudo filesystems and the mount points the configuration excludes (by
//! default those of Debian's node_exporter 1.5 package). A mount whose `statfs(2)` fails
//! reports only `node_filesystem_device_error 1`. Added for CB-Dragonfly: used bytes and the
//! used share as `df` computes it, `used / (used + avail)`.
//!
//! Deliberately absent: node_exporter's timeout for hung network mounts; a `statfs` on a mount
//! whose server is gone blocks this collector (on the blocking pool, not the HTTP server).

use std::collections::HashSet;

use super::{Collector, Context, Kind, Sink, read};
use crate::config::CollectorsConfig;
use crate::{Error, Result};

/// One line of a mounts file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub mount_point: String,
    pub fs_type: String,
    pub options: String,
}

/// Parses a mounts file (`/proc/*/mounts`), undoing the kernel's octal escapes in mount points.
pub fn parse_mounts(text: &str) -> Result<Vec<Mount>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 4 {
            return Err(format!("line {}: expected at least 4 fields, got {:?}", i + 1, line));
        }
        out.push(Mount {
            device: f[0].to_string(),
            mount_point: unescape(f[1]),
            fs_type: f[2].to_string(),
            options: f[3].to_string(),
        });
    }
    Ok(out)
}

/// `\040` -> space, `\011` -> tab, `\012` -> newline, `\134` -> backslash.
fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 4).and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(char::from(c));
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether the configuration excludes this mount.
pub fn excluded(m: &Mount, cfg: &CollectorsConfig) -> bool {
    let mp = m.mount_point.as_str();
    let at_or_below = |p: &String| {
        let p = p.trim_end_matches('/');
        mp == p || mp.strip_prefix(p).is_some_and(|r| r.starts_with('/'))
    };
    let strictly_below = |p: &String| {
        let p = p.trim_end_matches('/');
        mp.strip_prefix(p).is_some_and(|r| r.len() > 1 && r.starts_with('/'))
    };
    cfg.filesystem_exclude_fs_types.contains(&m.fs_type)
        || cfg.filesystem_exclude_mount_points.iter().any(at_or_below)
        || cfg.filesystem_exclude_below.iter().any(strictly_below)
}

/// What `statfs(2)` says of one filesystem, in bytes and inodes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    pub size: f64,
    pub free: f64,
    pub avail: f64,
    pub files: f64,
    pub files_free: f64,
}

#[derive(Debug, Default)]
pub struct Filesystem {
    buf: String,
}

impl Collector for Filesystem {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn collect(&mut self, ctx: &Context, sink: &mut Sink) -> Result<()> {
        let mut path = ctx.proc("1/mounts");
        if !read(&path, &mut self.buf)? {
            path = ctx.proc("mounts");
            super::read_required(&path, &mut self.buf)?;
        }
        let mounts = parse_mounts(&self.buf).map_err(|d| Error::parse(&path, d))?;
        let root = ctx.paths.root.to_string_lossy().trim_end_matches('/').to_string();
        let mut seen = HashSet::new();
        let mut stats = Vec::new();
        for mut m in mounts {
            if !root.is_empty()
                && let Some(rest) = m.mount_point.strip_prefix(&root)
            {
                m.mount_point = if rest.is_empty() { "/".into() } else { rest.to_string() };
            }
            if excluded(&m, &ctx.cfg) {
                continue;
            }
            if !seen.insert((m.device.clone(), m.mount_point.clone(), m.fs_type.clone())) {
                continue;
            }
            let usage = statfs(&ctx.root(&m.mount_point));
            stats.push((m, usage));
        }
        emit(&stats, sink);
        Ok(())
    }
}

fn statfs(path: &std::path::Path) -> Option<Usage> {
    match rustix::fs::statfs(path) {
        Ok(s) => {
            let bsize = s.f_bsize as f64;
            Some(Usage {
                size: s.f_blocks as f64 * bsize,
                free: s.f_bfree as f64 * bsize,
                avail: s.f_bavail as f64 * bsize,
                files: s.f_files as f64,
                files_free: s.f_ffree as f64,
            })
        }
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "statfs failed");
            None
        }
    }
}

/// Writes the families for mounts and their usage (`None`: statfs failed).
pub fn emit(stats: &[(Mount, Option<Usage>)], sink: &mut Sink) {
    let g = Kind::Gauge;
    let labels = |m: &Mount| {
        [
            ("device", m.device.clone()),
            ("fstype", m.fs_type.clone()),
            ("mountpoint", m.mount_point.clone()),
        ]
    };
    let mut add = |name: &str, help: &str, value: &dyn Fn(&Mount, &Usage) -> f64, errors: bool| {
        let f = sink.family(name, help, g);
        for (m, u) in stats {
            let v = match (u, errors) {
                (_, true) => f64::from(u8::from(u.is_none())),
                (Some(u), false) => value(m, u),
                (None, false) => continue,
            };
            let l = labels(m);
            f.add(&[(l[0].0, &l[0].1), (l[1].0, &l[1].1), (l[2].0, &l[2].1)], v);
        }
    };
    add(
        "node_filesystem_device_error",
        "Whether statfs failed for this filesystem (1) or not (0).",
        &|_, _| 0.0,
        true,
    );
    add("node_filesystem_size_bytes", "Filesystem size in bytes.", &|_, u| u.size, false);
    add("node_filesystem_free_bytes", "Free space in bytes.", &|_, u| u.free, false);
    add(
        "node_filesystem_avail_bytes",
        "Space available to unprivileged users in bytes.",
        &|_, u| u.avail,
        false,
    );
    add("node_filesystem_files", "Inodes in total.", &|_, u| u.files, false);
    add("node_filesystem_files_free", "Free inodes.", &|_, u| u.files_free, false);
    add(
        "node_filesystem_readonly",
        "Whether the filesystem is mounted read-only (1) or not (0).",
        &|m, _| f64::from(u8::from(m.options.split(',').any(|o| o == "ro"))),
        false,
    );
    add(
        "ocelli_filesystem_used_bytes",
        "Space in use (size - free) in bytes.",
        &|_, u| u.size - u.free,
        false,
    );
    add(
        "ocelli_filesystem_utilization_percent",
        "Space in use as a share of the space usable by unprivileged users (used / (used + avail)), in percent.",
        &|_, u| super::meminfo::percent(u.size - u.free, u.size - u.free + u.avail),
        false,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::value_of;

    /// The development machine's `/proc/1/mounts`, cgroup lines shortened to two.
    const MOUNTS: &str = "proc /proc proc rw,relatime 0 0
sysfs /sys sysfs rw,relatime 0 0
devtmpfs /dev devtmpfs rw,relatime,size=12334524k,nr_inodes=3083631,mode=755 0 0
tmpfs /dev/shm tmpfs rw,relatime,size=24684096k 0 0
/dev/vda / ext4 rw,relatime,discard,resv_strict,resuid=65534,resgid=65534 0 0
model_tools_unavailable /mnt/sandboxing/model_tools_env/v1/python tmpfs ro,nosuid,nodev,relatime,size=4k,mode=755 0 0
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
";

    #[test]
    fn pseudo_filesystems_and_excluded_mount_points_are_skipped() {
        let cfg = CollectorsConfig::default();
        let kept: Vec<_> = parse_mounts(MOUNTS)
            .unwrap()
            .into_iter()
            .filter(|m| !excluded(m, &cfg))
            .map(|m| m.mount_point)
            .collect();
        assert_eq!(kept, ["/"]);
        let m = |mp: &str, t: &str| Mount {
            device: "d".into(),
            mount_point: mp.into(),
            fs_type: t.into(),
            options: "rw".into(),
        };
        assert!(!excluded(&m("/var/lib/docker", "ext4"), &cfg));
        assert!(excluded(&m("/var/lib/docker/overlay2/x", "ext4"), &cfg));
        assert!(!excluded(&m("/devices", "ext4"), &cfg));
        assert!(excluded(&m("/run/user/1000", "tmpfs"), &cfg));
        assert!(!excluded(&m("/home", "xfs"), &cfg));
        assert!(excluded(&m("/home", "squashfs"), &cfg));
    }

    #[test]
    fn escapes_and_malformed_lines() {
        let m = parse_mounts("/dev/sdb1 /media/my\\040disk\\134x vfat rw 0 0\n").unwrap();
        assert_eq!(m[0].mount_point, "/media/my disk\\x");
        assert_eq!(unescape("a\\b"), "a\\b");
        assert_eq!(
            parse_mounts("a b c\n").unwrap_err(),
            r#"line 1: expected at least 4 fields, got "a b c""#
        );
    }

    #[test]
    fn families_with_usage_and_errors() {
        let mounts = parse_mounts("/dev/vda / ext4 rw 0 0\nnfs:/x /data nfs4 ro 0 0\n").unwrap();
        let usage = Usage { size: 1000.0, free: 400.0, avail: 300.0, files: 10.0, files_free: 4.0 };
        let stats = vec![(mounts[0].clone(), Some(usage)), (mounts[1].clone(), None)];
        let mut sink = Sink::default();
        emit(&stats, &mut sink);
        let root = [("device", "/dev/vda"), ("fstype", "ext4"), ("mountpoint", "/")];
        let data = [("device", "nfs:/x"), ("fstype", "nfs4"), ("mountpoint", "/data")];
        assert_eq!(value_of(&sink, "node_filesystem_size_bytes", &root), 1000.0);
        assert_eq!(value_of(&sink, "node_filesystem_device_error", &root), 0.0);
        assert_eq!(value_of(&sink, "node_filesystem_device_error", &data), 1.0);
        assert_eq!(value_of(&sink, "node_filesystem_readonly", &root), 0.0);
        assert_eq!(value_of(&sink, "ocelli_filesystem_used_bytes", &root), 600.0);
        assert_eq!(value_of(&sink, "ocelli_filesystem_utilization_percent", &root), 600.0 / 9.0);
        let size = sink.families.iter().find(|f| f.name == "node_filesystem_size_bytes").unwrap();
        assert_eq!(size.samples.len(), 1, "a failed mount has no size");
    }

    #[test]
    fn statfs_of_the_root_filesystem() {
        let u = statfs(std::path::Path::new("/")).unwrap();
        assert!(u.size > 0.0 && u.free <= u.size && u.avail <= u.free, "{u:?}");
        assert!(statfs(std::path::Path::new("/nonexistent/x")).is_none());
    }
}
