//! The console's switch commands (`vifs`, `ports`, `fdb`, `stats <port>`),
//! answered from the data plane's own state.
#![forbid(unsafe_code)]

use super::DataPlane;
use crate::shell::{self, ShellHost};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

impl ShellHost for DataPlane {
    fn vifs(&self, out: &mut Vec<String>) {
        for (key, text) in self.vif_stats() {
            let name = key.rsplit('/').next().unwrap_or(&key);
            out.push(format!("{name}: {text}"));
        }
    }

    fn ports(&self, out: &mut Vec<String>) {
        for (id, name, c) in self.switch.ports() {
            let mtu = self.switch.port_config(id).map_or(0, |p| p.caps.mtu);
            out.push(format!(
                "port {} {name}: segment {} mtu {mtu} rx {} pkts tx {} pkts, drops rx {} tx {}",
                id.0,
                self.switch.port_segment(id).unwrap_or("?"),
                c.rx_packets,
                c.tx_packets,
                c.rx_drops,
                c.tx_drops + c.tx_errors,
            ));
        }
    }

    fn fdb(&self, out: &mut Vec<String>, max: usize) {
        let fdb = self.switch.fdb();
        let names: Vec<(crate::switch::PortId, &str)> = self.switch.ports().map(|(id, n, _)| (id, n)).collect();
        let mut total = 0usize;
        for (seg, mac, port, fixed) in fdb.entries() {
            total += 1;
            if out.len() < max {
                let pname = names.iter().find(|(id, _)| *id == port).map_or("?", |(_, n)| n);
                out.push(format!(
                    "{} segment {} -> {pname}{}",
                    crate::net::mac_str(mac),
                    self.switch.segments().name(seg).unwrap_or("?"),
                    if fixed { " (fixed)" } else { "" }
                ));
            }
        }
        if total > out.len() {
            out.push(format!("... {} more of {total}", total - out.len()));
        }
    }

    fn stats(&self, name: &str) -> Option<Vec<String>> {
        let (id, _, c) = self.switch.ports().find(|(_, n, _)| *n == name)?;
        let mut lines = alloc::vec![format!(
            "{name} switch: {} segment={}",
            c.xenstore_text(),
            self.switch.port_segment(id).unwrap_or("")
        )];
        if let Some(slot) = self.by_port.get(&id).and_then(|vif| self.slots.get(vif)) {
            lines.push(format!("{name} netback: {}", self.vif_text(slot)));
        }
        Some(lines)
    }
}

impl DataPlane {
    /// Answers the switch commands the console posted.
    pub(super) fn serve_console(&self) {
        while let Some(cmd) = shell::take() {
            shell::reply(shell::answer(&cmd, self));
        }
    }
}
