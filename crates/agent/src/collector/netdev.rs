//! Network device counters from `/proc/net/dev` (node_exporter's `netdev`): bytes, packets,
//! errors, drops and the rest of the kernel's columns, received and transmitted, per device;
//! `lo` is skipped by default, as node_exporter does.

use super::{Context, Kind, Sink};

/// The columns of `/proc/net/dev` after the device name, as metric names.
const COLUMNS: [(&str, &str); 16] = [
    ("node_network_receive_bytes_total", "Bytes received."),
    ("node_network_receive_packets_total", "Packets received."),
    ("node_network_receive_errs_total", "Receive errors."),
    ("node_network_receive_drop_total", "Received packets dropped."),
    ("node_network_receive_fifo_total", "Receive FIFO buffer errors."),
    ("node_network_receive_frame_total", "Receive framing errors."),
    ("node_network_receive_compressed_total", "Compressed packets received."),
    ("node_network_receive_multicast_total", "Multicast packets received."),
    ("node_network_transmit_bytes_total", "Bytes transmitted."),
    ("node_network_transmit_packets_total", "Packets transmitted."),
    ("node_network_transmit_errs_total", "Transmit errors."),
    ("node_network_transmit_drop_total", "Transmitted packets dropped."),
    ("node_network_transmit_fifo_total", "Transmit FIFO buffer errors."),
    ("node_network_transmit_colls_total", "Collisions while transmitting."),
    ("node_network_transmit_carrier_total", "Carrier losses while transmitting."),
    ("node_network_transmit_compressed_total", "Compressed packets transmitted."),
];

/// Parses `/proc/net/dev` into (device, 16 counters).
pub fn parse(text: &str) -> Result<Vec<(&str, [u64; 16])>, String> {
    let mut out = Vec::new();
    // two header lines
    for (i, line) in text.lines().enumerate().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            return Err(format!("line {}: no ':' after the device name", i + 1));
        };
        let mut v = [0u64; 16];
        let mut n = 0;
        for (slot, f) in v.iter_mut().zip(rest.split_ascii_whitespace()) {
            *slot = super::num(&format!("line {}", i + 1), f)?;
            n += 1;
        }
        if n < 16 {
            return Err(format!("line {}: expected 16 counters, got {n}", i + 1));
        }
        out.push((name.trim(), v));
    }
    Ok(out)
}

/// The `netdev` collector: every device but the excluded ones.
pub fn from_text(ctx: &Context, text: &str, sink: &mut Sink) -> Result<(), String> {
    let mut devs = parse(text)?;
    devs.retain(|(name, _)| !ctx.cfg.netdev_exclude_devices.iter().any(|x| x == name));
    emit(&devs, sink);
    Ok(())
}

pub fn emit(devs: &[(&str, [u64; 16])], sink: &mut Sink) {
    for (i, (name, help)) in COLUMNS.iter().enumerate() {
        let f = sink.family(*name, *help, Kind::Counter);
        for (dev, v) in devs {
            f.add(&[("device", dev)], v[i] as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::value_of;

    /// The development machine's `/proc/net/dev`.
    const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 14738391594 2293834    0    0    0     0          0         0 14738391594 2293834    0    0    0     0       0          0
  ifb0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
  eth0: 243406674   12250    0    3    0     0          0         0   700003    7218    1    0    0     0       0          0
";

    #[test]
    fn counters_per_device() {
        let devs = parse(NET_DEV).unwrap();
        assert_eq!(devs.len(), 3);
        let mut sink = Sink::default();
        emit(&devs[1..], &mut sink);
        let eth0 = [("device", "eth0")];
        assert_eq!(value_of(&sink, "node_network_receive_bytes_total", &eth0), 243406674.0);
        assert_eq!(value_of(&sink, "node_network_receive_drop_total", &eth0), 3.0);
        assert_eq!(value_of(&sink, "node_network_transmit_packets_total", &eth0), 7218.0);
        assert_eq!(value_of(&sink, "node_network_transmit_errs_total", &eth0), 1.0);
        assert_eq!(sink.families.len(), 16);
        assert_eq!(sink.families[0].samples.len(), 2);
    }

    #[test]
    fn malformed_lines() {
        let head = "a\nb\n";
        assert_eq!(
            parse(&format!("{head}eth0 1 2\n")).unwrap_err(),
            "line 3: no ':' after the device name"
        );
        assert_eq!(
            parse(&format!("{head}eth0: 1 2\n")).unwrap_err(),
            "line 3: expected 16 counters, got 2"
        );
    }
}
