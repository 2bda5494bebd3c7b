//! Files named by patterns in config files: rule files and file_sd discovery files. A pattern's
//! last path component may hold `*`, `?` and `[...]` (`[!...]` or `[^...]` negates), as in
//! Prometheus; folders are never globbed. Written by hand: the matching is fifty lines, and the
//! glob crates match whole paths with other rules.

use std::path::{Path, PathBuf};

/// Paths matching `pattern` (a glob in the last component only), sorted. Also lists rule
/// files (`ocelli-alerting`'s rule files) and discovery files (`ocelli-scrape`'s file_sd).
pub fn list(pattern: &Path) -> Result<Vec<PathBuf>, String> {
    let name = pattern.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if !name.contains(['*', '?', '[']) {
        return Ok(if pattern.is_file() { vec![pattern.to_path_buf()] } else { Vec::new() });
    }
    let dir = pattern.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| glob_match(name, n)))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    Ok(out)
}

/// Shell-style matching of one file name: `*` (any run), `?` (one character), `[abc]`,
/// `[a-z]`, `[!a-z]` / `[^a-z]`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // iterative matching with one backtrack point for the last `*`
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => class(&p, pi, n[ni]),
            Some(&c) if c == n[ni] => Some(pi + 1),
            _ => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ni += 1;
            }
            (None, Some((sp, sn))) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Matches `c` against the class starting at `p[start] == '['`; the index after the class on a
/// match. An unclosed `[` matches itself.
fn class(p: &[char], start: usize, c: char) -> Option<usize> {
    let mut i = start + 1;
    let negate = matches!(p.get(i), Some('!' | '^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    while let Some(&pc) = p.get(i) {
        if pc == ']' && !first {
            return (hit != negate).then_some(i + 1);
        }
        first = false;
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&e| e != ']') {
            hit |= pc <= c && c <= p[i + 2];
            i += 3;
        } else {
            hit |= pc == c;
            i += 1;
        }
    }
    (c == '[').then_some(start + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.json", "a.json"));
        assert!(glob_match("*.json", ".json"));
        assert!(!glob_match("*.json", "a.json.bak"));
        assert!(glob_match("t?-*.json", "t1-x.json"));
        assert!(!glob_match("t?-*.json", "t12-x.json"));
        assert!(glob_match("[ab]*.json", "b1.json"));
        assert!(!glob_match("[!ab]*.json", "b1.json"));
        assert!(glob_match("n[0-9].json", "n7.json"));
        assert!(!glob_match("n[0-9].json", "nx.json"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(glob_match("exact.json", "exact.json"));
        assert!(!glob_match("exact.json", "exact.jso"));
    }

    #[test]
    fn lists_matching_files_sorted() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["b.yml", "a.yml", "c.txt"] {
            std::fs::write(dir.path().join(n), "x").unwrap();
        }
        std::fs::create_dir(dir.path().join("d.yml")).unwrap();
        let names = |p: &str| -> Vec<String> {
            list(&dir.path().join(p))
                .unwrap()
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names("*.yml"), ["a.yml", "b.yml"]);
        assert_eq!(names("c.txt"), ["c.txt"]);
        assert!(names("missing.yml").is_empty());
        assert!(list(&dir.path().join("nowhere/*.yml")).unwrap().is_empty());
    }
}
