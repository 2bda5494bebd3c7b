//! The on-demand process view (`GET /collect/processes?top=N`): the top N processes by CPU use,
//! then by memory, with pid, user, CPU percent, resident memory and command line, as
//! CB-Dragonfly's process information.
//!
//! CPU percent is measured as `top` does: two reads of every `/proc/<pid>/stat` a short window
//! apart (configurable, 500 ms by default), the CPU time spent in between as a share of the
//! window; 100 is one whole CPU. Memory is `VmRSS` from `/proc/<pid>/status`, in bytes; users
//! are named from the host's `/etc/passwd` (the numeric uid when it has no entry). A process
//! that exits between the reads is left out.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use crate::collector::USER_HZ;

/// One process in the answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub user: String,
    pub cpu_percent: f64,
    pub memory_bytes: u64,
    pub command: String,
}

/// One read of a process.
#[derive(Clone, Debug, PartialEq)]
pub struct ProcSample {
    pub pid: u32,
    pub comm: String,
    /// User plus system time, in USER_HZ ticks.
    pub ticks: u64,
    pub uid: u32,
    pub rss_bytes: u64,
}

/// From `/proc/<pid>/stat`: the command name and user + system ticks. The name is in
/// parentheses and may itself hold spaces and parentheses, so fields are counted from the last
/// `)`.
pub fn parse_stat(text: &str) -> Option<(String, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    // after ")": state(3) ppid(4) ... utime(14) stime(15)
    let mut f = text.get(close + 1..)?.split_ascii_whitespace().skip(11);
    let utime: u64 = f.next()?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some((comm, utime + stime))
}

/// From `/proc/<pid>/status`: the real uid and the resident memory in bytes (0 for kernel
/// threads, which have no `VmRSS`).
pub fn parse_status(text: &str) -> Option<(u32, u64)> {
    let mut uid = None;
    let mut rss = 0;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("Uid:") {
            uid = v.split_ascii_whitespace().next()?.parse().ok();
        } else if let Some(v) = line.strip_prefix("VmRSS:") {
            let kb: u64 = v.split_ascii_whitespace().next()?.parse().ok()?;
            rss = kb * 1024;
        }
    }
    Some((uid?, rss))
}

/// uid -> user name from a passwd file.
pub fn parse_passwd(text: &str) -> HashMap<u32, String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

/// Reads every process under `proc`.
pub fn snapshot(proc: &Path) -> Vec<ProcSample> {
    let Ok(dir) = std::fs::read_dir(proc) else { return Vec::new() };
    let mut out = Vec::with_capacity(256);
    let mut buf = String::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let p = e.path();
        // a process may exit at any moment: whatever cannot be read is skipped
        if crate::collector::read(&p.join("stat"), &mut buf).unwrap_or(false) {
            let Some((comm, ticks)) = parse_stat(&buf) else { continue };
            if crate::collector::read(&p.join("status"), &mut buf).unwrap_or(false)
                && let Some((uid, rss_bytes)) = parse_status(&buf)
            {
                out.push(ProcSample { pid, comm, ticks, uid, rss_bytes });
            }
        }
    }
    out
}

/// Ranks the processes of `after` by CPU use since `before` (over `window_secs`), then by
/// memory, and returns the first `n` without their command lines.
pub fn rank(
    before: &[ProcSample],
    after: Vec<ProcSample>,
    window_secs: f64,
    n: usize,
) -> Vec<(ProcSample, f64)> {
    let prev: HashMap<u32, u64> = before.iter().map(|p| (p.pid, p.ticks)).collect();
    let mut ranked: Vec<(ProcSample, f64)> = after
        .into_iter()
        .map(|p| {
            let spent = p.ticks.saturating_sub(prev.get(&p.pid).copied().unwrap_or(0));
            let pct =
                if window_secs > 0.0 { spent as f64 / USER_HZ / window_secs * 100.0 } else { 0.0 };
            (p, (pct * 100.0).round() / 100.0)
        })
        .collect();
    ranked.sort_by(|(a, ca), (b, cb)| {
        cb.total_cmp(ca).then(b.rss_bytes.cmp(&a.rss_bytes)).then(a.pid.cmp(&b.pid))
    });
    ranked.truncate(n);
    ranked
}

/// Completes ranked processes with user names and command lines (`[comm]` for kernel threads,
/// as `ps` writes them).
pub fn describe(ranked: Vec<(ProcSample, f64)>, proc: &Path, root: &Path) -> Vec<ProcessInfo> {
    let users = std::fs::read_to_string(root.join("etc/passwd"))
        .map(|t| parse_passwd(&t))
        .unwrap_or_default();
    ranked
        .into_iter()
        .map(|(p, cpu_percent)| {
            let cmdline =
                std::fs::read(proc.join(p.pid.to_string()).join("cmdline")).unwrap_or_default();
            let command =
                String::from_utf8_lossy(&cmdline).trim_end_matches('\0').replace('\0', " ");
            ProcessInfo {
                pid: p.pid,
                user: users.get(&p.uid).cloned().unwrap_or_else(|| p.uid.to_string()),
                cpu_percent,
                memory_bytes: p.rss_bytes,
                command: if command.is_empty() { format!("[{}]", p.comm) } else { command },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_status_and_passwd() {
        // the development machine's /proc/1/stat, with a command name holding ") ("
        let stat = "1 (sh) (x) S 0 1 1 0 -1 4194560 1157 9369 3 4 17 25 31 8 20 0 1 0 106 4349952 262 \
                    18446744073709551615 1 1 0 0 0 0 0 0 65538 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(parse_stat(stat), Some(("sh) (x".to_string(), 42)));
        assert_eq!(parse_stat("1 (sh) S 0"), None);
        let status = "Name:\tsh\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t1000\t1000\t1000\t1000\n\
                      VmRSS:\t    1048 kB\n";
        assert_eq!(parse_status(status), Some((1000, 1048 * 1024)));
        assert_eq!(parse_status("Name:\tkthreadd\nUid:\t0\t0\t0\t0\n"), Some((0, 0)));
        let users =
            parse_passwd("root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534::/:/x\nbad\n");
        assert_eq!(users.get(&65534).map(String::as_str), Some("nobody"));
        assert_eq!(users.len(), 2);
    }

    #[test]
    fn ranked_by_cpu_then_memory() {
        let p =
            |pid, ticks, rss| ProcSample { pid, comm: "c".into(), ticks, uid: 0, rss_bytes: rss };
        let before = [p(1, 100, 10), p(2, 100, 10), p(3, 0, 10)];
        let after = vec![p(1, 150, 10), p(2, 100, 99), p(3, 0, 50), p(4, 10, 1)];
        let r = rank(&before, after, 0.5, 3);
        let got: Vec<_> = r.iter().map(|(p, c)| (p.pid, *c)).collect();
        // pid 1: 50 ticks = 0.5 s in 0.5 s = 100 %; pid 4 started in the window: 10 ticks = 20 %
        assert_eq!(got, [(1, 100.0), (4, 20.0), (2, 0.0)]);
    }

    #[test]
    fn this_process_is_found() {
        let me = std::process::id();
        let snap = snapshot(Path::new("/proc"));
        let mine = snap.iter().find(|p| p.pid == me).unwrap();
        assert!(mine.rss_bytes > 0);
        let info = describe(vec![(mine.clone(), 1.0)], Path::new("/proc"), Path::new("/"));
        assert!(info[0].command.contains("ocelli_agent"), "{:?}", info[0]);
    }
}
