//! Operating system facts from `os-release` (node_exporter's `os`): `/etc/os-release`, else
//! `/usr/lib/os-release`, under the host's root. `node_os_info` carries the identifying fields
//! with value 1; `node_os_version` is the `major.minor` part of `VERSION_ID` as a number.

use super::{Collector, Context, Kind, Sink, read};
use crate::Result;

/// The os-release fields `node_os_info` carries, with their label names.
const INFO: [(&str, &str); 12] = [
    ("build_id", "BUILD_ID"),
    ("id", "ID"),
    ("id_like", "ID_LIKE"),
    ("image_id", "IMAGE_ID"),
    ("image_version", "IMAGE_VERSION"),
    ("name", "NAME"),
    ("pretty_name", "PRETTY_NAME"),
    ("variant", "VARIANT"),
    ("variant_id", "VARIANT_ID"),
    ("version", "VERSION"),
    ("version_codename", "VERSION_CODENAME"),
    ("version_id", "VERSION_ID"),
];

/// Parses os-release's `KEY=value` lines (values optionally quoted, with `\` escapes).
pub fn parse(text: &str) -> Vec<(&str, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else { continue };
        let v = v.trim();
        let v = match v.as_bytes().first() {
            Some(q @ (b'"' | b'\'')) if v.len() >= 2 && v.as_bytes()[v.len() - 1] == *q => {
                let inner = &v[1..v.len() - 1];
                let mut s = String::with_capacity(inner.len());
                let mut esc = false;
                for c in inner.chars() {
                    if esc || c != '\\' {
                        s.push(c);
                        esc = false;
                    } else {
                        esc = true;
                    }
                }
                s
            }
            _ => v.to_string(),
        };
        out.push((k.trim(), v));
    }
    out
}

/// The leading `major[.minor]` of a version as a number, if there is one.
pub fn major_minor(v: &str) -> Option<f64> {
    let end = v.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(v.len());
    let mut parts = v[..end].split('.');
    let major = parts.next().filter(|s| !s.is_empty())?;
    match parts.next().filter(|s| !s.is_empty()) {
        Some(minor) => format!("{major}.{minor}").parse().ok(),
        None => major.parse().ok(),
    }
}

#[derive(Debug, Default)]
pub struct Os {
    buf: String,
}

impl Collector for Os {
    fn name(&self) -> &'static str {
        "os"
    }

    fn collect(&mut self, ctx: &Context, sink: &mut Sink) -> Result<()> {
        if !read(&ctx.root("etc/os-release"), &mut self.buf)?
            && !read(&ctx.root("usr/lib/os-release"), &mut self.buf)?
        {
            return Ok(());
        }
        emit(&parse(&self.buf), sink);
        Ok(())
    }
}

pub fn emit(fields: &[(&str, String)], sink: &mut Sink) {
    let get = |k: &str| fields.iter().rev().find(|(n, _)| *n == k).map_or("", |(_, v)| v.as_str());
    let labels: Vec<_> = INFO.iter().map(|(label, key)| (*label, get(key))).collect();
    sink.family("node_os_info", "Facts from os-release; the value is 1.", Kind::Gauge)
        .add(&labels, 1.0);
    if let Some(v) = major_minor(get("VERSION_ID")) {
        sink.family(
            "node_os_version",
            "The major.minor part of os-release's VERSION_ID.",
            Kind::Gauge,
        )
        .add(&[("id", get("ID")), ("id_like", get("ID_LIKE")), ("name", get("NAME"))], v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::value_of;

    /// The development machine's `/etc/os-release`.
    const OS_RELEASE: &str = r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
"#;

    #[test]
    fn info_and_version() {
        let mut sink = Sink::default();
        emit(&parse(OS_RELEASE), &mut sink);
        let f = &sink.families[0];
        assert_eq!(f.samples[0].labels.len(), 12);
        assert!(
            f.samples[0].labels.contains(&("pretty_name", "Debian GNU/Linux 12 (bookworm)".into()))
        );
        assert!(f.samples[0].labels.contains(&("version_codename", "bookworm".into())));
        assert!(f.samples[0].labels.contains(&("build_id", String::new())));
        let v = [("id", "debian"), ("id_like", ""), ("name", "Debian GNU/Linux")];
        assert_eq!(value_of(&sink, "node_os_version", &v), 12.0);
    }

    #[test]
    fn versions_and_quoting() {
        assert_eq!(major_minor("22.04"), Some(22.04));
        assert_eq!(major_minor("3.18.4"), Some(3.18));
        assert_eq!(major_minor("rolling"), None);
        assert_eq!(major_minor(""), None);
        let p = parse("# c\nNAME='Arch \\\"x\\\"'\nID=arch\n");
        assert_eq!(p, [("NAME", "Arch \"x\"".to_string()), ("ID", "arch".to_string())]);
    }
}
