//! Paging and swapping counters from `/proc/vmstat` (node_exporter's `vmstat`): the fields
//! node_exporter reports by default (`oom_kill`, `pgpg*`, `pswp*`, `pg*fault*`), as
//! `node_vmstat_<field>`, untyped as there.

use super::{Context, Kind, Sink};

/// Whether node_exporter's default field filter (`^(oom_kill|pgpg|pswp|pg.*fault).*`) keeps
/// `field`.
pub fn reported(field: &str) -> bool {
    field.starts_with("oom_kill")
        || field.starts_with("pgpg")
        || field.starts_with("pswp")
        || field.strip_prefix("pg").is_some_and(|r| r.contains("fault"))
}

/// Parses `/proc/vmstat`, keeping the reported fields.
pub fn parse(text: &str) -> Result<Vec<(&str, f64)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut f = line.split_ascii_whitespace();
        let (Some(k), Some(v)) = (f.next(), f.next()) else { continue };
        if reported(k) {
            let v = v
                .parse()
                .map_err(|_| format!("line {}: {k} value {v:?} is not a number", i + 1))?;
            out.push((k, v));
        }
    }
    Ok(out)
}

/// The `vmstat` collector.
pub fn from_text(_ctx: &Context, text: &str, sink: &mut Sink) -> Result<(), String> {
    for (k, v) in parse(text)? {
        let help = format!("/proc/vmstat field {k}.");
        sink.single(format!("node_vmstat_{k}"), help, Kind::Untyped, v);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_fields() {
        // lines of the development machine's /proc/vmstat
        let text = "nr_free_pages 2857479\npgpgin 19809469\npgpgout 70798296\npswpin 0\n\
                    pswpout 0\npgfault 225229231\npgmajfault 44929\npgsteal_kswapd 0\noom_kill 0\n";
        let got: Vec<_> = parse(text).unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            got,
            ["pgpgin", "pgpgout", "pswpin", "pswpout", "pgfault", "pgmajfault", "oom_kill"]
        );
        assert_eq!(parse(text).unwrap()[0].1, 19809469.0);
        assert!(parse("pgfault x").unwrap_err().contains("line 1: pgfault"));
    }
}
