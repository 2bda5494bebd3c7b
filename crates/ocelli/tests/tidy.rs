//! Tidy checks that keep the code base's conventions true: every Rust source file outside
//! tests opens with a `//!` module doc, and no file mentions an absolute path of a developer's
//! machine.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn every_source_file_has_a_module_doc() {
    let mut files = Vec::new();
    for krate in std::fs::read_dir(crates_dir()).unwrap().flatten() {
        for sub in ["src", "benches"] {
            let d = krate.path().join(sub);
            if d.is_dir() {
                rust_files(&d, &mut files);
            }
        }
    }
    assert!(files.len() > 10, "found only {} files", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|p| !p.ends_with("tests.rs"))
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a //! module doc: {missing:#?}");
}

#[test]
fn no_absolute_machine_paths() {
    let root = crates_dir().join("..");
    let mut files = Vec::new();
    rust_files(&crates_dir(), &mut files);
    for extra in ["README.md", "ARCHITECTURE.md", ".ci/run"] {
        files.push(root.join(extra));
    }
    let bad_prefixes = ["/work/", "/root/", "/home/"];
    for p in files {
        let text = std::fs::read_to_string(&p).unwrap_or_default();
        for b in bad_prefixes {
            // the literal below is the one allowed mention
            let hits = text.matches(b).count() - usize::from(p.ends_with("tidy.rs"));
            assert_eq!(hits, 0, "{} mentions a machine path starting with {b}", p.display());
        }
    }
}
