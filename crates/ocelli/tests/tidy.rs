//! Tidy checks that keep the code base's conventions true: every Rust source file outside
//! tests opens with a `//!` module doc that promises nothing for later, no file mentions an
//! absolute path of a developer's machine, and our crates depend on each other only downwards
//! through the layers of ARCHITECTURE.md.
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

/// The crates in dependency layers, top first: a crate's `[dependencies]` may name only our
/// crates of lower layers (ARCHITECTURE.md, "Code map"). Dev-dependencies are free.
const LAYERS: &[&[&str]] = &[
    &["ocelli"],
    &["ocelli-server", "ocelli-agent"],
    &["ocelli-alerting", "ocelli-registry"],
    &["ocelli-scrape", "ocelli-cluster"],
    &["ocelli-ingest", "ocelli-storage", "ocelli-auth"],
    &["ocelli-http"],
    &["ocelli-promql", "ocelli-tsdb", "ocelli-wire", "ocelli-spool", "ocelli-tls"],
    &["ocelli-model"],
];

/// The package name and the `ocelli-*` names under `[dependencies]` of a Cargo.toml.
fn our_dependencies(manifest: &str) -> (String, Vec<String>) {
    let mut name = String::new();
    let mut deps = Vec::new();
    let mut section = "";
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
        } else if section == "[package]" && line.starts_with("name") {
            name = line.split('"').nth(1).unwrap().to_string();
        } else if section == "[dependencies]" && line.starts_with("ocelli-") {
            deps.push(line.split(['.', ' ', '=']).next().unwrap().to_string());
        }
    }
    (name, deps)
}

#[test]
fn dependencies_point_down_the_layers() {
    let layer = |c: &str| LAYERS.iter().position(|l| l.contains(&c));
    let mut seen = 0;
    for krate in std::fs::read_dir(crates_dir()).unwrap().flatten() {
        let Ok(manifest) = std::fs::read_to_string(krate.path().join("Cargo.toml")) else {
            continue;
        };
        let (name, deps) = our_dependencies(&manifest);
        if name == "ocelli-testkit" {
            continue;
        }
        let own = layer(&name).unwrap_or_else(|| panic!("{name} is in no layer of LAYERS"));
        for d in deps {
            let theirs = layer(&d).unwrap_or_else(|| panic!("{d} is in no layer of LAYERS"));
            assert!(theirs > own, "{name} depends on {d}, which is not below it");
            assert!(d != "ocelli-server" || name == "ocelli", "{name} depends on ocelli-server");
        }
        seen += 1;
    }
    assert_eq!(seen, LAYERS.iter().map(|l| l.len()).sum::<usize>(), "a crate is missing");
}

#[test]
fn module_docs_make_no_promises() {
    // "later", "for now" and "meant to be" in a module doc go stale the day the work lands
    let mut files = Vec::new();
    rust_files(&crates_dir(), &mut files);
    for p in files {
        let text = std::fs::read_to_string(&p).unwrap();
        for line in text.lines().take_while(|l| l.starts_with("//!") || l.trim().is_empty()) {
            let l = line.to_ascii_lowercase();
            for bad in ["for now", "later work", "meant to be", "(later)", "is later"] {
                assert!(!l.contains(bad), "{}: {bad:?} in its module doc: {line}", p.display());
            }
        }
    }
}

/// TLS is rustls with ring everywhere: nothing may pull aws-lc-rs (a C build step and a second
/// crypto provider) or OpenSSL. The lock file holds every package any build of the workspace
/// can use, so one absent there is absent from every `cargo tree -i`; `cargo tree -i` is asked
/// too, as the rule is worded.
#[test]
fn no_crypto_but_ring() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).unwrap();
    for banned in ["aws-lc-rs", "aws-lc-sys", "openssl-sys", "openssl"] {
        assert!(
            !lock.lines().any(|l| l == format!("name = \"{banned}\"")),
            "Cargo.lock has {banned}: rustls must use the ring provider only"
        );
        let out = std::process::Command::new(env!("CARGO"))
            .current_dir(&root)
            .args(["tree", "--workspace", "--offline", "--locked", "-i", banned])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("did not match any packages"),
            "cargo tree -i {banned} finds it:\n{text}{err}"
        );
    }
    assert!(lock.contains("name = \"ring\""), "no ring in Cargo.lock");
}
