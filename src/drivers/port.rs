//! The one small abstraction every packet endpoint implements: a NIC, later a
//! vif and the management stack. A port lends its own buffers to closures, so
//! no packet is copied or allocated on the way through.
#![forbid(unsafe_code)]

/// Counters for one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirStats {
    /// Frames passed.
    pub packets: u64,
    /// Bytes passed (Ethernet header included, FCS excluded).
    pub bytes: u64,
    /// Frames dropped for lack of room (ring full, no buffer).
    pub drops: u64,
    /// Frames dropped as bad (device error bits, runts, oversized, bad metadata).
    pub errors: u64,
}

/// A port's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PortStats {
    /// Received.
    pub rx: DirStats,
    /// Transmitted.
    pub tx: DirStats,
    /// Received frames shorter than an Ethernet header (counted in rx.errors too).
    pub rx_runts: u64,
    /// Received frames longer than the port's maximum (counted in rx.errors too).
    pub rx_oversize: u64,
    /// Device resets after a hang or an impossible descriptor state.
    pub resets: u64,
    /// Link state changes seen.
    pub link_changes: u64,
    /// Interrupts handled.
    pub irqs: u64,
}

/// Smallest frame accepted: an Ethernet header.
pub const MIN_FRAME: usize = 14;
/// Without an interrupt, a driver reads its cause registers (and the
/// e1000 its ring heads) at most this often. Every register access is a VM
/// exit under Xen, and for a NIC that a device model emulates (qemu-xen in
/// an HVM container) a round trip to dom0: reading them on every pass of
/// the loop starved the device model. Received frames are found in memory,
/// so nothing waits for these reads but link changes and the hang checks.
pub const REG_CHECK_NS: u64 = 100_000_000;

/// Largest frame accepted: 1500-byte payload, header and one VLAN tag.
pub const MAX_FRAME: usize = 1518;

/// Classifies a received length; counts runts and oversized frames.
pub fn check_rx_len(stats: &mut PortStats, len: usize) -> bool {
    if len < MIN_FRAME {
        stats.rx_runts += 1;
        stats.rx.errors += 1;
        false
    } else if len > MAX_FRAME {
        stats.rx_oversize += 1;
        stats.rx.errors += 1;
        false
    } else {
        true
    }
}

/// A packet endpoint.
pub trait Port {
    /// Short name for logs and metrics ("e1000", "virtio-net").
    fn name(&self) -> &'static str;
    /// MAC address.
    fn mac(&self) -> [u8; 6];
    /// Link state.
    fn link_up(&self) -> bool;
    /// Says the device's interrupt fired: the next `service` reads its
    /// causes (drivers that read nothing to acknowledge it ignore this).
    fn note_interrupt(&mut self) {}
    /// Housekeeping: interrupt causes, link changes, TX reclaim, RX refill,
    /// hang detection and reset. Returns true when it did anything.
    fn service(&mut self, now_ns: u64) -> bool;
    /// Lends the next received frame to `f`; None when nothing is pending.
    fn receive<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Option<R>;
    /// Lends a `len`-byte transmit buffer to `f` and sends it. When the ring
    /// is full or `len` is out of range the drop is counted and `f` is
    /// handed back unused.
    fn transmit<R, F: FnOnce(&mut [u8]) -> R>(&mut self, len: usize, f: F) -> Result<R, F>;
    /// True when a transmit would find room.
    fn can_transmit(&self) -> bool;
    /// Counters.
    fn stats(&self) -> PortStats;
}
