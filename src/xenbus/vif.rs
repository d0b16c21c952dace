//! What the xenbus backend and the data plane agree on for one vif: its
//! identity, what its frontend published, the `VifHost` the backend drives,
//! and the parsers for the values read from xenstore.
#![forbid(unsafe_code)]

pub use super::params::VifParams;
use crate::netback::credit::Rate;
use crate::xen::{DomId, EvtchnPort, GrantRef};
use alloc::string::String;
use alloc::vec::Vec;

/// Features we advertise, with their values.
pub const FEATURES: &[(&str, &str)] = &[
    ("feature-sg", "1"),
    ("feature-gso-tcpv4", "1"),
    ("feature-gso-tcpv6", "1"),
    ("feature-ipv6-csum-offload", "1"),
    ("feature-rx-copy", "1"),
    ("feature-rx-flip", "0"),
    ("feature-multicast-control", "1"),
    ("feature-dynamic-multicast-control", "1"),
    ("feature-split-event-channels", "1"),
    ("feature-ctrl-ring", "1"),
];

/// Queues offered per vif by default (`multi-queue-max-queues`).
pub const DEFAULT_MAX_QUEUES: u32 = 4;

/// A vif: frontend domain and device id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VifId {
    /// Frontend domain.
    pub frontend: DomId,
    /// Device id (the `devid` path component).
    pub devid: u32,
}

/// Event channels offered by the frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventChannels {
    /// One port for both directions.
    Single(EvtchnPort),
    /// `feature-split-event-channels`.
    Split {
        /// TX port.
        tx: EvtchnPort,
        /// RX port.
        rx: EvtchnPort,
    },
}

/// The rings and event channels of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueInfo {
    /// TX ring grant.
    pub tx_ring_ref: GrantRef,
    /// RX ring grant.
    pub rx_ring_ref: GrantRef,
    /// Event channels.
    pub evtchn: EventChannels,
}

/// The control ring a frontend offers (`ctrl-ring-ref`,
/// `event-channel-ctrl`; netif.h "Control ring").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtrlInfo {
    /// The ring page's grant.
    pub ring_ref: GrantRef,
    /// Its event channel.
    pub evtchn: EvtchnPort,
}

/// What the frontend published for connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendInfo {
    /// One entry per queue (`multi-queue-num-queues`, 1 when absent): the
    /// top-level keys for one queue, `queue-N/...` for several.
    pub queues: Vec<QueueInfo>,
    /// `feature-sg`.
    pub sg: bool,
    /// `feature-gso-tcpv4`.
    pub gso_tcpv4: bool,
    /// `feature-gso-tcpv6`.
    pub gso_tcpv6: bool,
    /// `feature-ipv6-csum-offload`.
    pub ipv6_csum_offload: bool,
    /// `feature-no-csum-offload`.
    pub no_csum_offload: bool,
    /// `feature-rx-notify`.
    pub rx_notify: bool,
    /// `feature-multicast-control` or `feature-dynamic-multicast-control`.
    pub multicast_control: bool,
    /// The control ring, when the frontend offers one.
    pub ctrl: Option<CtrlInfo>,
}

/// The side that owns data paths: maps rings, binds ports, plugs the vif
/// into the switch.
pub trait VifHost {
    /// Connects a vif configured with `params` by the toolstack; an error
    /// fails that device.
    fn connect(&mut self, id: VifId, mac: [u8; 6], fe: &FrontendInfo, params: &VifParams) -> Result<(), String>;
    /// Disconnects it (idempotent): unmap, unbind, free, unplug.
    fn disconnect(&mut self, id: VifId);
    /// The toolstack changed a connected vif's `rate` (None: unlimited).
    fn set_rate(&mut self, id: VifId, rate: Option<Rate>) {
        let _ = (id, rate);
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.trim_end_matches('\0').split(':');
    for b in mac.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Parses a decimal `u32` as xenstore values are written: digits only, at
/// most 10, a trailing NUL tolerated.
pub fn parse_u32(v: &[u8]) -> Option<u32> {
    let s = core::str::from_utf8(v).ok()?.trim_end_matches('\0');
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parsing() {
        assert_eq!(parse_mac("00:16:3e:00:00:01"), Some([0, 0x16, 0x3e, 0, 0, 1]));
        for bad in ["", "00:16:3e:00:00", "00:16:3e:00:00:01:02", "0:16:3e:00:00:01", "zz:16:3e:00:00:01"] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
        assert_eq!(parse_u32(b"42"), Some(42));
        assert_eq!(parse_u32(b"42\0"), Some(42));
        for bad in [&b""[..], b"-1", b"4294967296", b"1 ", b"0x10"] {
            assert_eq!(parse_u32(bad), None);
        }
    }
}
