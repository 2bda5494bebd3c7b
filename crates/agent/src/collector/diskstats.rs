//! Disk I/O from `/proc/diskstats` (node_exporter's `diskstats`): reads, writes, bytes, time,
//! I/Os in progress, discards and flushes per whole disk, as many as the kernel reports
//! (4.18 added discards, 5.5 flushes). Partitions and ram, loop and floppy devices are skipped,
//! as node_exporter does by default. `node_disk_info` carries the device numbers and, where
//! udev has them (`/run/udev/data/b<major>:<minor>`), path, WWN, model, serial and revision.

use super::{Collector, Context, Kind, Sink, parse_file, read};
use crate::Result;

/// The unit of a `/proc/diskstats` field.
#[derive(Clone, Copy, Debug)]
enum Unit {
    Count,
    /// 512 bytes, whatever the device's own sector size.
    Sectors,
    /// Milliseconds; divided by 1000 (not multiplied by 0.001) to get the exact decimal.
    Millis,
}

impl Unit {
    fn convert(self, v: u64) -> f64 {
        match self {
            Unit::Count => v as f64,
            Unit::Sectors => v as f64 * 512.0,
            Unit::Millis => v as f64 / 1000.0,
        }
    }
}

/// The families, in the kernel's field order: name, help, counter or gauge, and the field's unit.
const FIELDS: [(&str, &str, Kind, Unit); 17] = [
    ("node_disk_reads_completed_total", "Reads completed.", Kind::Counter, Unit::Count),
    ("node_disk_reads_merged_total", "Adjacent reads merged.", Kind::Counter, Unit::Count),
    ("node_disk_read_bytes_total", "Bytes read.", Kind::Counter, Unit::Sectors),
    ("node_disk_read_time_seconds_total", "Seconds spent reading.", Kind::Counter, Unit::Millis),
    ("node_disk_writes_completed_total", "Writes completed.", Kind::Counter, Unit::Count),
    ("node_disk_writes_merged_total", "Adjacent writes merged.", Kind::Counter, Unit::Count),
    ("node_disk_written_bytes_total", "Bytes written.", Kind::Counter, Unit::Sectors),
    ("node_disk_write_time_seconds_total", "Seconds spent writing.", Kind::Counter, Unit::Millis),
    ("node_disk_io_now", "I/Os in progress.", Kind::Gauge, Unit::Count),
    (
        "node_disk_io_time_seconds_total",
        "Seconds the device was busy with I/O.",
        Kind::Counter,
        Unit::Millis,
    ),
    (
        "node_disk_io_time_weighted_seconds_total",
        "Seconds spent on I/O weighted by the I/Os in progress.",
        Kind::Counter,
        Unit::Millis,
    ),
    ("node_disk_discards_completed_total", "Discards completed.", Kind::Counter, Unit::Count),
    ("node_disk_discards_merged_total", "Adjacent discards merged.", Kind::Counter, Unit::Count),
    ("node_disk_discarded_sectors_total", "Sectors discarded.", Kind::Counter, Unit::Count),
    (
        "node_disk_discard_time_seconds_total",
        "Seconds spent discarding.",
        Kind::Counter,
        Unit::Millis,
    ),
    ("node_disk_flush_requests_total", "Flush requests completed.", Kind::Counter, Unit::Count),
    (
        "node_disk_flush_requests_time_seconds_total",
        "Seconds spent flushing.",
        Kind::Counter,
        Unit::Millis,
    ),
];

/// One device line: major, minor, name and its counters (4 to 17 of them).
#[derive(Clone, Debug, PartialEq)]
pub struct Disk {
    pub major: u32,
    pub minor: u32,
    pub name: String,
    pub fields: Vec<u64>,
}

/// Parses `/proc/diskstats`.
pub fn parse(text: &str) -> Result<Vec<Disk>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if f.len() < 7 {
            return Err(format!("line {}: expected at least 7 fields, got {}", i + 1, f.len()));
        }
        let at = format!("line {}", i + 1);
        let n = |s: &str| super::num(&at, s);
        out.push(Disk {
            major: n(f[0])? as u32,
            minor: n(f[1])? as u32,
            name: f[2].to_string(),
            fields: f[3..].iter().take(FIELDS.len()).map(|s| n(s)).collect::<Result<_, _>>()?,
        });
    }
    Ok(out)
}

/// node_exporter's default exclusion, `^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$`:
/// partitions of IDE, SCSI, virtio, Xen and NVMe disks, and ram, loop and floppy devices.
pub fn partition_or_virtual(name: &str) -> bool {
    fn digits(s: &str) -> bool {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
    }
    fn lead_digits(s: &str) -> Option<&str> {
        let n = s.bytes().take_while(u8::is_ascii_digit).count();
        (n > 0).then(|| &s[n..])
    }
    for p in ["ram", "loop", "fd"] {
        if name.strip_prefix(p).is_some_and(digits) {
            return true;
        }
    }
    for p in ["hd", "sd", "vd", "xvd"] {
        if let Some(r) = name.strip_prefix(p) {
            let mut c = r.chars();
            if c.next().is_some_and(|c| c.is_ascii_lowercase()) && digits(c.as_str()) {
                return true;
            }
        }
    }
    name.strip_prefix("nvme")
        .and_then(lead_digits)
        .and_then(|r| r.strip_prefix('n'))
        .and_then(lead_digits)
        .and_then(|r| r.strip_prefix('p'))
        .is_some_and(digits)
}

/// The udev properties `node_disk_info` carries, from a udev database file (`E:KEY=value`).
pub fn udev_info(text: &str) -> [(&'static str, String); 5] {
    let get = |key: &str| {
        text.lines()
            .filter_map(|l| l.strip_prefix("E:"))
            .find_map(|kv| kv.strip_prefix(key).and_then(|r| r.strip_prefix('=')))
            .unwrap_or("")
            .to_string()
    };
    [
        ("path", get("ID_PATH")),
        ("wwn", get("ID_WWN")),
        ("model", get("ID_MODEL")),
        ("serial", get("ID_SERIAL_SHORT")),
        ("revision", get("ID_REVISION")),
    ]
}

#[derive(Debug, Default)]
pub struct DiskStats {
    buf: String,
    udev: String,
}

impl Collector for DiskStats {
    fn name(&self) -> &'static str {
        "diskstats"
    }

    fn collect(&mut self, ctx: &Context, sink: &mut Sink) -> Result<()> {
        let mut disks = parse_file(&ctx.proc("diskstats"), &mut self.buf, parse)?;
        if ctx.cfg.diskstats_exclude_partitions {
            disks.retain(|d| !partition_or_virtual(&d.name));
        }
        let mut infos = Vec::with_capacity(disks.len());
        for d in &disks {
            let udev = ctx.root(&format!("run/udev/data/b{}:{}", d.major, d.minor));
            // no udev database (containers, minimal VMs): the info has the device numbers only
            let found = read(&udev, &mut self.udev).unwrap_or(false);
            infos.push(udev_info(if found { &self.udev } else { "" }));
        }
        emit(&disks, &infos, sink);
        Ok(())
    }
}

pub fn emit(disks: &[Disk], infos: &[[(&'static str, String); 5]], sink: &mut Sink) {
    let f = sink.family("node_disk_info", "Block device facts; the value is 1.", Kind::Gauge);
    for (d, info) in disks.iter().zip(infos) {
        let (maj, min) = (d.major.to_string(), d.minor.to_string());
        let mut labels = vec![("device", d.name.as_str()), ("major", &maj), ("minor", &min)];
        labels.extend(info.iter().map(|(k, v)| (*k, v.as_str())));
        f.add(&labels, 1.0);
    }
    for (i, (name, help, kind, unit)) in FIELDS.iter().enumerate() {
        if !disks.iter().any(|d| d.fields.len() > i) {
            continue;
        }
        let f = sink.family(*name, *help, *kind);
        for d in disks.iter().filter(|d| d.fields.len() > i) {
            f.add(&[("device", &d.name)], unit.convert(d.fields[i]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::value_of;

    /// The development machine's `/proc/diskstats` (six loop devices left out).
    const DISKSTATS: &str = "   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
   7       1 loop1 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 254       0 vda 827093 28908 39608186 6095775 230971 140811 141596552 727878 0 198180 6869021 113453 34 102063144 35672 47057 9694
 253       0 zram0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
";

    #[test]
    fn counters_in_base_units() {
        let mut disks = parse(DISKSTATS).unwrap();
        disks.retain(|d| !partition_or_virtual(&d.name));
        let names: Vec<_> = disks.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["vda", "zram0"]);
        let infos = vec![udev_info(""), udev_info("")];
        let mut sink = Sink::default();
        emit(&disks, &infos, &mut sink);
        let vda = [("device", "vda")];
        assert_eq!(value_of(&sink, "node_disk_reads_completed_total", &vda), 827093.0);
        assert_eq!(value_of(&sink, "node_disk_read_bytes_total", &vda), 39608186.0 * 512.0);
        assert_eq!(value_of(&sink, "node_disk_read_time_seconds_total", &vda), 6095.775);
        assert_eq!(value_of(&sink, "node_disk_io_now", &vda), 0.0);
        assert_eq!(value_of(&sink, "node_disk_flush_requests_time_seconds_total", &vda), 9.694);
        let info = [
            ("device", "vda"),
            ("major", "254"),
            ("minor", "0"),
            ("path", ""),
            ("wwn", ""),
            ("model", ""),
            ("serial", ""),
            ("revision", ""),
        ];
        assert_eq!(value_of(&sink, "node_disk_info", &info), 1.0);
        assert_eq!(sink.families.len(), 1 + 17);
    }

    #[test]
    fn old_kernels_report_fewer_fields() {
        let disks = parse("8 0 sda 1 2 3 4 5 6 7 8 9 10 11\n").unwrap();
        let mut sink = Sink::default();
        emit(&disks, &[udev_info("")], &mut sink);
        assert_eq!(sink.families.len(), 1 + 11);
        assert!(parse("8 0 sda 1 x 3 4\n").unwrap_err().starts_with("line 1:"));
        assert_eq!(parse("8 0 sda\n").unwrap_err(), "line 1: expected at least 7 fields, got 3");
    }

    #[test]
    fn partitions_and_virtual_devices() {
        for yes in
            ["sda1", "vda2", "xvdb10", "hda3", "nvme0n1p1", "nvme10n2p3", "loop0", "ram15", "fd0"]
        {
            assert!(partition_or_virtual(yes), "{yes}");
        }
        for no in ["sda", "vda", "nvme0n1", "zram0", "dm-0", "md0", "sdaa1", "loop", "mmcblk0p1"] {
            assert!(!partition_or_virtual(no), "{no}");
        }
    }

    #[test]
    fn udev_properties() {
        let db = "S:disk/by-id/ata-X\nE:ID_MODEL=Samsung_SSD\nE:ID_SERIAL_SHORT=S1\nE:ID_PATH=pci-0000:00:1f.2-ata-1\n";
        let info = udev_info(db);
        assert_eq!(info[0], ("path", "pci-0000:00:1f.2-ata-1".to_string()));
        assert_eq!(info[2], ("model", "Samsung_SSD".to_string()));
        assert_eq!(info[1], ("wwn", String::new()));
    }
}
