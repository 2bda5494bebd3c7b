//! The Prometheus text exposition format 0.0.4, written from collected families, for
//! `GET /metrics` and `GET /collect/{collector}`: `# HELP` and `# TYPE` per family, one line per
//! sample with the family's labels followed by the extra (identity) labels, no timestamps (the
//! scraper stamps them). Labels with an empty value are left out, as Prometheus treats them as
//! absent. Values are written as Prometheus writes them (shortest round-trip form, `NaN`,
//! `+Inf`, `-Inf`).
//!
//! Deliberately absent: OpenMetrics and the protobuf format.

use std::fmt::Write as _;

use ocelli_model::format_value;

use crate::collector::Family;

/// The `Content-Type` of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Appends `families` to `out`, each sample with `extra` labels after its own.
pub fn write(families: &[Family], extra: &[(&str, &str)], out: &mut String) {
    for f in families {
        out.push_str("# HELP ");
        out.push_str(&f.name);
        out.push(' ');
        escape(&f.help, false, out);
        let _ = write!(out, "\n# TYPE {} {}\n", f.name, f.kind.as_str());
        for s in &f.samples {
            out.push_str(&f.name);
            let labels =
                s.labels.iter().map(|(n, v)| (*n, v.as_str())).chain(extra.iter().copied());
            let mut first = true;
            for (n, v) in labels.filter(|(_, v)| !v.is_empty()) {
                out.push(if first { '{' } else { ',' });
                first = false;
                out.push_str(n);
                out.push_str("=\"");
                escape(v, true, out);
                out.push('"');
            }
            if !first {
                out.push('}');
            }
            out.push(' ');
            out.push_str(&format_value(s.value));
            out.push('\n');
        }
    }
}

/// Escapes `\` and newlines (and `"` in label values).
fn escape(s: &str, quote: bool, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quote => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::{Kind, Sink};

    #[test]
    fn families_with_identity_labels_parse_back() {
        let mut sink = Sink::default();
        sink.family("node_cpu_seconds_total", "Seconds.\nMore \\ help", Kind::Counter)
            .add(&[("cpu", "0"), ("mode", "idle")], 12.5)
            .add(&[("cpu", "1"), ("mode", "a\"b\\c\nd")], 1e21);
        sink.single("node_load1", "Load.", Kind::Gauge, f64::NAN);
        sink.family("node_os_info", "Info.", Kind::Gauge)
            .add(&[("build_id", ""), ("id", "debian")], 1.0);
        let mut out = String::new();
        write(&sink.families, &[("ns", "default"), ("csp", "aws")], &mut out);
        assert_eq!(
            out,
            "# HELP node_cpu_seconds_total Seconds.\\nMore \\\\ help\n\
             # TYPE node_cpu_seconds_total counter\n\
             node_cpu_seconds_total{cpu=\"0\",mode=\"idle\",ns=\"default\",csp=\"aws\"} 12.5\n\
             node_cpu_seconds_total{cpu=\"1\",mode=\"a\\\"b\\\\c\\nd\",ns=\"default\",csp=\"aws\"} 1e+21\n\
             # HELP node_load1 Load.\n# TYPE node_load1 gauge\n\
             node_load1{ns=\"default\",csp=\"aws\"} NaN\n\
             # HELP node_os_info Info.\n# TYPE node_os_info gauge\n\
             node_os_info{id=\"debian\",ns=\"default\",csp=\"aws\"} 1\n"
        );
        // the server's own parser reads it back, labels unescaped
        let limits = ocelli_wire::exposition::Limits::default();
        let parsed = ocelli_wire::exposition::decode(out.as_bytes(), 1000, &limits).unwrap();
        assert_eq!(parsed.series.len(), 4);
        let odd = parsed.series.iter().find(|s| s.labels.get("cpu") == Some("1")).unwrap();
        assert_eq!(odd.labels.get("mode"), Some("a\"b\\c\nd"));
        assert_eq!(odd.samples[0].v, 1e21);
        let mut bare = String::new();
        write(&sink.families[1..2], &[], &mut bare);
        assert!(bare.ends_with("\nnode_load1 NaN\n"), "{bare}");
    }
}
