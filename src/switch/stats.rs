//! Switch counters and their two renderings: Prometheus text with a `port`
//! label (for the metrics endpoint) and a compact `key=value` line per
//! port (for xenstore, e.g. `data/xvif/ports/<name>`).
#![forbid(unsafe_code)]

use super::fdb::FdbStats;
use alloc::string::String;
use core::fmt::Write;

/// Counters of one switch port. "rx" is from the port into the switch,
/// "tx" from the switch out to the port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames accepted from the port.
    pub rx_packets: u64,
    /// Bytes accepted from the port.
    pub rx_bytes: u64,
    /// Frames from the port dropped at ingress (all reasons below).
    pub rx_drops: u64,
    /// ... shorter than an Ethernet header.
    pub rx_runts: u64,
    /// ... longer than the port's MTU (non-GSO) or than 64 KiB.
    pub rx_oversize: u64,
    /// ... whose source MAC is not the port's own (spoofed).
    pub spoofed: u64,
    /// ... whose IPv4, ARP sender or IPv6 source address is not among the
    /// port's (`ip=`).
    pub spoofed_ip: u64,
    /// ... with a multicast or all-zero source MAC.
    pub bad_src: u64,
    /// ... whose GSO or partial-checksum metadata its headers do not back.
    pub rx_bad_offload: u64,
    /// Accepted frames that were flooded (broadcast, multicast, unknown unicast).
    pub rx_flooded: u64,
    /// Frames delivered to the port (each GSO segment counts).
    pub tx_packets: u64,
    /// Bytes delivered to the port.
    pub tx_bytes: u64,
    /// Frames the port refused (ring full, down).
    pub tx_drops: u64,
    /// Frames not delivered because they could not be fitted to the port
    /// (bad headers for checksum/GSO work, larger than its MTU).
    pub tx_errors: u64,
    /// ... of which frames (not GSO) longer than the port's MTU.
    pub tx_oversize: u64,
    /// Multicast frames not delivered because the port's filter declined.
    pub mcast_filtered: u64,
    /// Frames whose checksum the switch completed for this port.
    pub csum_completed: u64,
    /// GSO frames segmented in software for this port.
    pub gso_frames: u64,
    /// Segments made from them.
    pub gso_segments: u64,
}

/// Switch-wide counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SwitchCounters {
    /// FDB counters.
    pub fdb: FdbStats,
    /// FDB entries now.
    pub fdb_entries: u64,
    /// Frames forwarded to one known port.
    pub unicast: u64,
    /// Unicast frames flooded because the destination was unknown.
    pub unknown_unicast: u64,
    /// Broadcast frames.
    pub broadcast: u64,
    /// Multicast frames.
    pub multicast: u64,
    /// Frames dropped because their destination is on their ingress port.
    pub local_drops: u64,
}

impl PortCounters {
    /// `(key, value)` pairs in a fixed order.
    pub fn fields(&self) -> [(&'static str, u64); 19] {
        [
            ("rx_packets", self.rx_packets),
            ("rx_bytes", self.rx_bytes),
            ("rx_drops", self.rx_drops),
            ("rx_runts", self.rx_runts),
            ("rx_oversize", self.rx_oversize),
            ("spoofed", self.spoofed),
            ("spoofed_ip", self.spoofed_ip),
            ("bad_src", self.bad_src),
            ("rx_bad_offload", self.rx_bad_offload),
            ("rx_flooded", self.rx_flooded),
            ("tx_packets", self.tx_packets),
            ("tx_bytes", self.tx_bytes),
            ("tx_drops", self.tx_drops),
            ("tx_errors", self.tx_errors),
            ("tx_oversize", self.tx_oversize),
            ("mcast_filtered", self.mcast_filtered),
            ("csum_completed", self.csum_completed),
            ("gso_frames", self.gso_frames),
            ("gso_segments", self.gso_segments),
        ]
    }

    /// One line `rx_packets=1 rx_bytes=60 ...` for a xenstore value.
    pub fn xenstore_text(&self) -> String {
        let mut s = String::new();
        for (i, (k, v)) in self.fields().iter().enumerate() {
            let _ = write!(s, "{}{k}={v}", if i == 0 { "" } else { " " });
        }
        s
    }
}

/// Where a port's counters go in xvif's xenstore home (relative path):
/// `data/xvif/ports/<name>`, with characters xenstore paths do not allow
/// (anything but `[A-Za-z0-9_.-]`) replaced by `_`.
pub fn xenstore_key(name: &str) -> String {
    let mut k = String::from("data/xvif/ports/");
    // xenstore path components allow only alphanumerics and -_@ (docs/misc/xenstore.txt).
    k.extend(name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '@') { c } else { '_' }));
    k
}

/// Help text of each per-port counter, in [`PortCounters::fields`] order.
const PORT_HELP: [&str; 18] = [
    "Frames accepted from the port.",
    "Bytes accepted from the port.",
    "Frames from the port dropped at ingress.",
    "Frames from the port shorter than an Ethernet header.",
    "Frames from the port longer than its MTU.",
    "Frames from the port with a source MAC not its own.",
    "Frames from the port with a source IP address not among its own.",
    "Frames from the port with a multicast or zero source MAC.",
    "Frames from the port whose GSO or checksum offload its headers do not back.",
    "Frames from the port flooded to all ports.",
    "Frames delivered to the port.",
    "Bytes delivered to the port.",
    "Frames the port refused.",
    "Frames that could not be fitted to the port (offload errors, MTU).",
    "Multicast frames the port's filter declined.",
    "Checksums completed for the port.",
    "GSO frames segmented for the port.",
    "Segments made for the port.",
];

/// Escapes a Prometheus label value.
fn label(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Renders the switch counters in Prometheus text format:
/// `xvif_switch_<counter>_total{port="<name>"}` per port and the switch-wide
/// `xvif_switch_*` counters. `ports` yields (name, counters).
pub fn render_prometheus<'a>(
    out: &mut String,
    ports: impl Iterator<Item = (&'a str, &'a PortCounters)> + Clone,
    sw: &SwitchCounters,
) {
    for (k, help) in PORT_HELP.iter().enumerate() {
        let Some((name, _)) = PortCounters::default().fields().get(k).copied() else { continue };
        let _ = writeln!(out, "# HELP xvif_switch_{name}_total {help}\n# TYPE xvif_switch_{name}_total counter");
        for (port, c) in ports.clone() {
            let v = c.fields().get(k).map_or(0, |f| f.1);
            let _ = write!(out, "xvif_switch_{name}_total{{port=\"");
            label(out, port);
            let _ = writeln!(out, "\"}} {v}");
        }
    }
    let f = &sw.fdb;
    let global: [(&str, &str, &str, u64); 12] = [
        ("fdb_entries", "gauge", "Forwarding database entries.", sw.fdb_entries),
        ("fdb_learned_total", "counter", "MAC addresses learned.", f.learned),
        ("fdb_aged_total", "counter", "Entries aged out.", f.aged),
        ("fdb_moves_total", "counter", "MAC addresses that moved to another port.", f.moves),
        ("fdb_evictions_total", "counter", "Entries evicted from a full table.", f.evictions),
        ("fdb_flushed_total", "counter", "Entries removed with their port.", f.flushed),
        ("fdb_static_conflicts_total", "counter", "Frames claiming another port's fixed MAC.", f.static_conflicts),
        ("unicast_total", "counter", "Frames forwarded to one known port.", sw.unicast),
        ("unknown_unicast_total", "counter", "Unicast frames flooded (unknown destination).", sw.unknown_unicast),
        ("broadcast_total", "counter", "Broadcast frames.", sw.broadcast),
        ("multicast_total", "counter", "Multicast frames.", sw.multicast),
        ("local_drops_total", "counter", "Frames whose destination is on their ingress port.", sw.local_drops),
    ];
    for (name, kind, help, v) in global {
        let _ =
            writeln!(out, "# HELP xvif_switch_{name} {help}\n# TYPE xvif_switch_{name} {kind}\nxvif_switch_{name} {v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_both_forms() {
        let a = PortCounters { rx_packets: 3, spoofed: 2, ..Default::default() };
        let b = PortCounters { tx_bytes: 1500, ..Default::default() };
        let sw = SwitchCounters { fdb_entries: 7, ..Default::default() };
        let mut s = String::new();
        render_prometheus(&mut s, [("vif1.0", &a), ("we\"ird", &b)].into_iter(), &sw);
        assert!(s.contains("# TYPE xvif_switch_rx_packets_total counter\n"), "{s}");
        assert!(s.contains("xvif_switch_rx_packets_total{port=\"vif1.0\"} 3\n"));
        assert!(s.contains("xvif_switch_spoofed_total{port=\"vif1.0\"} 2\n"));
        assert!(s.contains("xvif_switch_tx_bytes_total{port=\"we\\\"ird\"} 1500\n"));
        assert!(s.contains("xvif_switch_fdb_entries 7\n"));
        assert_eq!(s.matches("# TYPE xvif_switch_rx_packets_total").count(), 1);
        let t = a.xenstore_text();
        assert!(t.starts_with("rx_packets=3 rx_bytes=0 "), "{t}");
        assert!(t.contains(" spoofed=2 "));
        assert!(t.ends_with("gso_segments=0"));
        assert_eq!(xenstore_key("vif3.0"), "data/xvif/ports/vif3_0");
        assert_eq!(xenstore_key("a/b c"), "data/xvif/ports/a_b_c");
    }
}
