//! Counters in the Prometheus text exposition format, served over HTTP/1.0.
#![forbid(unsafe_code)]

use super::MgmtStats;
use crate::drivers::port::PortStats;
use alloc::format;
use alloc::string::String;
use core::fmt::Write;

fn metric(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(out, "# HELP xvif_{name} {help}\n# TYPE xvif_{name} {kind}");
    for (labels, v) in samples {
        if labels.is_empty() {
            let _ = writeln!(out, "xvif_{name} {v}");
        } else {
            let _ = writeln!(out, "xvif_{name}{{{labels}}} {v}");
        }
    }
}

/// Renders every counter.
pub fn render(out: &mut String, port: &str, p: &PortStats, m: &MgmtStats, now_ns: u64) {
    let rx = format!("port=\"{port}\",dir=\"rx\"");
    let tx = format!("port=\"{port}\",dir=\"tx\"");
    let pl = format!("port=\"{port}\"");
    let c = "counter";
    metric(out, "port_packets_total", c, "Frames passed.", &[(&rx, p.rx.packets), (&tx, p.tx.packets)]);
    metric(out, "port_bytes_total", c, "Bytes passed.", &[(&rx, p.rx.bytes), (&tx, p.tx.bytes)]);
    metric(out, "port_drops_total", c, "Frames dropped for lack of room.", &[(&rx, p.rx.drops), (&tx, p.tx.drops)]);
    metric(out, "port_errors_total", c, "Bad frames dropped.", &[(&rx, p.rx.errors), (&tx, p.tx.errors)]);
    metric(out, "port_rx_runts_total", c, "Frames shorter than an Ethernet header.", &[(&pl, p.rx_runts)]);
    metric(out, "port_rx_oversize_total", c, "Frames longer than 1518 bytes.", &[(&pl, p.rx_oversize)]);
    metric(out, "port_resets_total", c, "Device resets after a hang.", &[(&pl, p.resets)]);
    metric(out, "port_link_changes_total", c, "Link state changes.", &[(&pl, p.link_changes)]);
    metric(out, "port_irqs_total", c, "Interrupts handled.", &[(&pl, p.irqs)]);
    let f = &m.filter;
    metric(out, "mgmt_rx_malformed_total", c, "Frames whose headers do not parse.", &[("", f.malformed)]);
    metric(
        out,
        "mgmt_rx_bad_checksum_total",
        c,
        "Frames with a bad IP/UDP/TCP/ICMP checksum.",
        &[("", f.bad_checksum)],
    );
    metric(out, "mgmt_rx_unknown_ethertype_total", c, "Frames of an unknown EtherType.", &[("", f.unknown_ethertype)]);
    metric(out, "mgmt_icmp_echo_requests_total", c, "ICMP and ICMPv6 echo requests.", &[("", f.echo_requests)]);
    metric(out, "mgmt_udp_echo_packets_total", c, "UDP datagrams echoed.", &[("", m.udp_echo_packets)]);
    metric(out, "mgmt_udp_echo_bytes_total", c, "UDP payload bytes echoed.", &[("", m.udp_echo_bytes)]);
    metric(out, "mgmt_udp_echo_drops_total", c, "UDP datagrams not echoed.", &[("", m.udp_echo_drops)]);
    metric(out, "mgmt_http_requests_total", c, "HTTP requests answered.", &[("", m.http_requests)]);
    metric(out, "mgmt_dhcp_leases_total", c, "DHCP leases acquired.", &[("", m.dhcp_leases)]);
    metric(out, "uptime_seconds", "gauge", "Seconds since boot.", &[("", now_ns / 1_000_000_000)]);
}

/// An HTTP/1.0 response with a text body.
pub fn response(code: u16, reason: &str, body: &str) -> String {
    format!(
        "HTTP/1.0 {code} {reason}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let mut p = PortStats::default();
        p.rx.packets = 5;
        p.tx.bytes = 700;
        let m = MgmtStats { udp_echo_packets: 3, ..Default::default() };
        let mut s = String::new();
        render(&mut s, "e1000", &p, &m, 2_500_000_000);
        assert!(s.contains("xvif_port_packets_total{port=\"e1000\",dir=\"rx\"} 5\n"), "{s}");
        assert!(s.contains("xvif_port_bytes_total{port=\"e1000\",dir=\"tx\"} 700\n"));
        assert!(s.contains("# TYPE xvif_mgmt_udp_echo_packets_total counter\nxvif_mgmt_udp_echo_packets_total 3\n"));
        assert!(s.contains("xvif_uptime_seconds 2\n"));
        let r = response(200, "OK", &s);
        assert!(r.starts_with("HTTP/1.0 200 OK\r\n"));
        assert!(r.contains(&format!("Content-Length: {}\r\n", s.len())));
    }
}
