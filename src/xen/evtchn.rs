//! 2-level event channels: scanning the pending/mask bitmaps of
//! `shared_info` (xen/include/public/xen.h), a per-port rate limit so a
//! peer that storms one port cannot starve the others (XSA-332), and the
//! notifications one loop turn owes, sent together at its end.
#![forbid(unsafe_code)]

use super::EvtchnPort;
use super::abi::EVTCHN_2L_PORTS;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// Scans pending ports. `sel` is the (already swapped-out) selector word;
/// `pending(i)`/`mask(i)` read bitmap word `i`. Each pending, unmasked port is
/// passed to `fire` once, lowest first. Ports beyond the 2-level limit are
/// impossible and ignored.
pub fn scan(sel: u64, pending: impl Fn(usize) -> u64, mask: impl Fn(usize) -> u64, mut fire: impl FnMut(EvtchnPort)) {
    let mut s = sel;
    while s != 0 {
        let word = s.trailing_zeros() as usize;
        s &= s - 1;
        let mut bits = pending(word) & !mask(word);
        while bits != 0 {
            let bit = bits.trailing_zeros();
            bits &= bits - 1;
            let port = word as u32 * 64 + bit;
            if port < EVTCHN_2L_PORTS {
                fire(EvtchnPort(port));
            }
        }
    }
}

/// Per-port limits.
#[derive(Debug, Clone, Copy)]
pub struct LimitConfig {
    /// Events a port may deliver in a burst.
    pub burst: u32,
    /// Sustained events per second.
    pub per_second: u32,
    /// How long a throttled port stays masked.
    pub penalty_ns: u64,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self { burst: 2048, per_second: 200_000, penalty_ns: 1_000_000 }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    last: u64,
    masked_until: Option<u64>,
    throttled: u64,
}

/// Token buckets per port.
#[derive(Debug, Default)]
pub struct RateLimiter {
    cfg: LimitConfig,
    ports: BTreeMap<u32, Bucket>,
}

impl RateLimiter {
    /// A limiter with the given limits.
    pub fn new(cfg: LimitConfig) -> Self {
        Self { cfg, ports: BTreeMap::new() }
    }

    /// Accounts one event on `port` at `now`; false means throttle: keep it
    /// pending, mask the port and unmask it when `due_unmask` says so.
    pub fn allow(&mut self, port: EvtchnPort, now: u64) -> bool {
        let cfg = self.cfg;
        let b = self.ports.entry(port.0).or_insert(Bucket {
            tokens: cfg.burst,
            last: now,
            masked_until: None,
            throttled: 0,
        });
        if b.masked_until.is_some() {
            return false;
        }
        let elapsed = now.saturating_sub(b.last);
        let refill = (u128::from(elapsed) * u128::from(cfg.per_second) / 1_000_000_000) as u64;
        if refill > 0 {
            b.tokens = (u64::from(b.tokens) + refill).min(u64::from(cfg.burst)) as u32;
            b.last = now;
        }
        if b.tokens == 0 {
            b.masked_until = Some(now.saturating_add(cfg.penalty_ns));
            b.throttled += 1;
            return false;
        }
        b.tokens -= 1;
        true
    }

    /// Ports whose penalty is over; they are forgotten as throttled.
    pub fn due_unmask(&mut self, now: u64, mut unmask: impl FnMut(EvtchnPort)) {
        for (port, b) in self.ports.iter_mut() {
            if b.masked_until.is_some_and(|t| t <= now) {
                b.masked_until = None;
                b.tokens = self.cfg.burst / 2;
                b.last = now;
                unmask(EvtchnPort(*port));
            }
        }
    }

    /// The earliest end of a penalty (when `due_unmask` will next unmask).
    pub fn next_unmask(&self) -> Option<u64> {
        self.ports.values().filter_map(|b| b.masked_until).min()
    }

    /// Times `port` was throttled.
    pub fn throttled(&self, port: EvtchnPort) -> u64 {
        self.ports.get(&port.0).map_or(0, |b| b.throttled)
    }

    /// Forgets a closed port.
    pub fn forget(&mut self, port: EvtchnPort) {
        self.ports.remove(&port.0);
    }
}

/// Ports to notify, each once, gathered during a loop turn and sent
/// together at its end (one multicall: one hypercall, so one VM exit, for
/// every guest the turn served). A port added twice (a frontend with one
/// channel for TX and RX) is notified once.
#[derive(Debug, Default)]
pub struct NotifyBatch {
    ports: Vec<EvtchnPort>,
}

impl NotifyBatch {
    /// Ports notified in one hypercall at most; a turn that owes more sends
    /// several batches.
    pub const MAX: usize = 32;

    /// An empty batch with room for `MAX` ports, so that adding does not
    /// allocate on the packet path.
    pub fn new() -> Self {
        Self { ports: Vec::with_capacity(Self::MAX) }
    }

    /// Adds `port` unless it is already in.
    pub fn add(&mut self, port: EvtchnPort) {
        if !self.ports.contains(&port) {
            self.ports.push(port);
        }
    }

    /// Ports to notify.
    pub fn len(&self) -> usize {
        self.ports.len()
    }

    /// True when no port is owed a notification.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty()
    }

    /// Hands the ports to `send` in groups of at most `MAX` and empties the
    /// batch; `send` returns how many of its group failed. Returns the total
    /// of failures.
    pub fn send(&mut self, mut send: impl FnMut(&[EvtchnPort]) -> usize) -> usize {
        let failed = self.ports.chunks(Self::MAX).map(&mut send).sum();
        self.ports.clear();
        failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_finds_pending_unmasked_ports() {
        let pending = [0b1011u64, 0, 1 << 63];
        let mask = [0b0010u64, 0, 0];
        let mut seen = Vec::new();
        scan(
            0b101,
            |i| pending.get(i).copied().unwrap_or(0),
            |i| mask.get(i).copied().unwrap_or(0),
            |p| seen.push(p.0),
        );
        assert_eq!(seen, vec![0, 3, 191]);
        // A selector bit without pending bits fires nothing; words past the
        // array read as zero.
        let mut none = Vec::new();
        scan(1 << 40, |_| 0, |_| 0, |p| none.push(p));
        assert!(none.is_empty());
        let mut all = 0;
        scan(u64::MAX, |_| u64::MAX, |_| 0, |_| all += 1);
        assert_eq!(all, 4096);
    }

    #[test]
    fn storming_port_is_throttled_others_are_not() {
        let cfg = LimitConfig { burst: 10, per_second: 1000, penalty_ns: 5_000_000 };
        let mut rl = RateLimiter::new(cfg);
        let storm = EvtchnPort(5);
        let quiet = EvtchnPort(6);
        let delivered = (0..100).filter(|_| rl.allow(storm, 0)).count();
        assert_eq!(delivered, 10);
        assert_eq!(rl.throttled(storm), 1);
        assert!(rl.allow(quiet, 0));
        let mut unmasked = Vec::new();
        rl.due_unmask(1_000_000, |p| unmasked.push(p));
        assert!(unmasked.is_empty(), "penalty not over yet");
        assert!(!rl.allow(storm, 2_000_000));
        rl.due_unmask(5_000_000, |p| unmasked.push(p));
        assert_eq!(unmasked, vec![storm]);
        assert!(rl.allow(storm, 5_000_000));
        // Sustained rate: 1000/s refills one token per millisecond.
        let mut rl = RateLimiter::new(cfg);
        for _ in 0..10 {
            assert!(rl.allow(storm, 0));
        }
        assert!(rl.allow(storm, 1_000_000));
    }

    #[test]
    fn a_turns_notifications_go_once_each_in_groups() {
        let mut b = NotifyBatch::new();
        for p in [5, 7, 5, 9, 7] {
            b.add(EvtchnPort(p));
        }
        assert_eq!(b.len(), 3, "each port once");
        let mut groups = Vec::new();
        let failed = b.send(|g| {
            groups.push(g.to_vec());
            usize::from(g.contains(&EvtchnPort(9)))
        });
        assert_eq!(groups, vec![vec![EvtchnPort(5), EvtchnPort(7), EvtchnPort(9)]]);
        assert_eq!(failed, 1);
        assert!(b.is_empty(), "sending empties the batch");
        assert_eq!(b.send(|_| panic!("nothing to send")), 0);
        // More ports than one hypercall takes: full groups, then the rest.
        for p in 0..(NotifyBatch::MAX as u32 * 2 + 3) {
            b.add(EvtchnPort(p));
        }
        let mut sizes = Vec::new();
        b.send(|g| {
            sizes.push(g.len());
            0
        });
        assert_eq!(sizes, vec![NotifyBatch::MAX, NotifyBatch::MAX, 3]);
    }
}
