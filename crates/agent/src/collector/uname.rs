//! Kernel and host facts from `uname(2)` (node_exporter's `uname`): `node_uname_info` with
//! sysname, release, version, machine, nodename and domainname, value 1.

use super::{Collector, Context, Kind, Sink};
use crate::Result;

#[derive(Debug)]
pub struct Uname;

impl Collector for Uname {
    fn name(&self) -> &'static str {
        "uname"
    }

    fn collect(&mut self, _ctx: &Context, sink: &mut Sink) -> Result<()> {
        let u = rustix::system::uname();
        let s = |c: &std::ffi::CStr| c.to_string_lossy().into_owned();
        let fields = [
            ("domainname", s(u.domainname())),
            ("machine", s(u.machine())),
            ("nodename", s(u.nodename())),
            ("release", s(u.release())),
            ("sysname", s(u.sysname())),
            ("version", s(u.version())),
        ];
        emit(&fields, sink);
        Ok(())
    }
}

pub fn emit(fields: &[(&'static str, String); 6], sink: &mut Sink) {
    let labels: Vec<_> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    sink.family("node_uname_info", "Facts from uname(2); the value is 1.", Kind::Gauge)
        .add(&labels, 1.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_kernel() {
        let mut sink = Sink::default();
        let ctx = Context { paths: Default::default(), cfg: Default::default() };
        Uname.collect(&ctx, &mut sink).unwrap();
        let s = &sink.families[0].samples[0];
        assert_eq!(s.labels.len(), 6);
        assert_eq!(s.labels[4], ("sysname", "Linux".to_string()));
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert_eq!(s.labels[3].1, release.trim());
    }
}
