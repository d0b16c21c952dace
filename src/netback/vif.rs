//! One virtual interface: the TX and RX rings of one netfront queue, the
//! features the frontend negotiated, its MAC and multicast filter, counters,
//! and the disabled state.
//!
//! A fatal protocol violation (see `tx` and `ring`) records its reason and
//! disables only this vif: every later call returns at once without
//! touching the rings (XSA-90: the fatal path is a field write, it never
//! blocks or waits). There are no locks here: the owner calls with
//! `&mut self`, and every drop path (full RX queue, bad packet, disabled
//! vif) just counts and returns, so no lock can be held across it (XSA-424).
//!
//! Event channels are the caller's: poll after an event (or when `more`
//! says so) and notify the frontend when the outcome's `notify` is set.
//! Nothing here assumes a split or a shared event channel.
//!
//! A vif may also have a control ring (`attach_ctrl`); what its frontend
//! configures there (`HashConfig`) decides the RX queue of each frame.
#![forbid(unsafe_code)]

use super::buf::PacketBuf;
use super::credit::{Credit, Rate};
use super::ctrl::{CTRL_SCRATCH, CtrlEnv, CtrlRing, CtrlStats};
use super::direct::WholeFrames;
use super::error::{NetbackError, RxDrop, TxDrop};
use super::hash::{HashConfig, RxHash};
use super::mcast::McastFilter;
use super::meta::{FrameMeta, GsoKind};
use super::pool::SharedRxPool;
use super::ring::BackRing;
use super::rx::RxPath;
use super::rxqueue::RxSource;
pub use super::staging::TxStaging;
use super::tx::TxPath;
pub use super::vifconfig::{Features, MAX_QUEUES, VifConfig, VifError};
use crate::drivers::port::{DirStats, PortStats};
use crate::hal::{GrantOps, SharedMem};
use crate::netif::rx::RX_ENTRY_SIZE;
use crate::netif::tx::TX_ENTRY_SIZE;
use crate::switch::headers::flow_hash;
use alloc::boxed::Box;
use alloc::vec::Vec;

/// Counters of one vif. "from guest" is the TX ring, "to guest" the RX ring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VifStats {
    /// Frames the guest sent: delivered packets and bytes; `errors` counts
    /// packets dropped as bad (answered NETIF_RSP_ERROR).
    pub from_guest: DirStats,
    /// Frames for the guest: copied packets and bytes; `drops` counts frames
    /// refused by `enqueue_rx` (all reasons); `errors` frames whose copy failed.
    pub to_guest: DirStats,
    /// Frames for the guest refused because the RX queue's bytes were used up.
    pub rx_queue_full: u64,
    /// Frames for the guest refused because their source held its fair
    /// share of the RX queue.
    pub rx_over_share: u64,
    /// Frames for the guest refused because the shared buffer pool had
    /// none to give.
    pub rx_no_buffer: u64,
    /// The last TX drop reason.
    pub last_tx_drop: Option<TxDrop>,
    /// The last RX drop reason.
    pub last_rx_drop: Option<RxDrop>,
    /// Multicast filter updates applied.
    pub mcast_updates: u64,
    /// Multicast control requests refused (not negotiated, not a group address, full).
    pub mcast_rejected: u64,
    /// `poll_tx` calls.
    pub tx_polls: u64,
    /// `poll_tx` calls that found nothing to do.
    pub tx_idle_polls: u64,
    /// `poll_rx` stopped because the guest had not posted enough buffers.
    pub rx_stalls: u64,
    /// GNTTABOP_copy hypercalls issued (both directions).
    pub copy_hypercalls: u64,
    /// Times a packet from the guest was left on the ring to wait for
    /// transmit credit (`rate`).
    pub tx_rate_deferred: u64,
    /// Bytes xvif itself copied into the RX queues (a memcpy per queued
    /// frame; Xen's grant copies are not counted here).
    pub rx_copy_bytes: u64,
    /// Frames for the guest lost because the sender's grant failed during
    /// the one copy (their slots were answered NETIF_RSP_ERROR; not this
    /// guest's error).
    pub rx_peer_drops: u64,
    /// Header bytes xvif read out of the turn's arena to offer frames from
    /// the guest for one copy.
    pub tx_hdr_bytes: u64,
}

/// What a poll did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollOutcome {
    /// Responses were published and the frontend asked for an event: send one.
    pub notify: bool,
    /// At least one request was consumed.
    pub progress: bool,
    /// Work is left (budget used up or requests arrived meanwhile): poll again.
    pub more: bool,
    /// A packet waits on the ring for transmit credit: poll again at this
    /// time, not before (the ring is not re-armed meanwhile).
    pub wait_until: Option<u64>,
}

/// One queue: a TX and an RX ring with their paths.
pub(super) struct Queue<B: PacketBuf> {
    pub(super) tx_mem: Box<dyn SharedMem>,
    pub(super) rx_mem: Box<dyn SharedMem>,
    pub(super) tx: TxPath,
    pub(super) rx: RxPath<B>,
}

/// The rings of one queue, as mapped by the caller: (TX, RX).
pub type QueueRings = (Box<dyn SharedMem>, Box<dyn SharedMem>);

/// One netfront device served by netback: one or more queues
/// (`multi-queue-num-queues`), one MAC, one multicast filter, one set of
/// counters. A fatal error on any queue disables the whole vif, as Linux
/// netback does.
pub struct Vif<B: PacketBuf> {
    pub(super) cfg: VifConfig,
    pub(super) queues: Vec<Queue<B>>,
    pub(super) mcast: McastFilter,
    pub(super) stats: VifStats,
    pub(super) disabled: Option<NetbackError>,
    /// Transmit credit, shared by the queues.
    pub(super) credit: Credit,
    /// The latest time a poll was given (for `poll_tx` without one).
    pub(super) clock: u64,
    /// The control ring, when the frontend offered one.
    ctrl: Option<CtrlRing>,
    /// RX hashing as the frontend configured it (none without a control ring).
    pub(super) hash: HashConfig,
}

impl<B: PacketBuf> core::fmt::Debug for Vif<B> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Vif")
            .field("frontend", &self.cfg.frontend)
            .field("queues", &self.queues.len())
            .field("disabled", &self.disabled)
            .finish()
    }
}

impl<B: PacketBuf> Vif<B> {
    /// A single-queue vif: attaches to the mapped rings; its RX queue
    /// takes buffers from `pool` while frames wait in them.
    pub fn new(
        cfg: VifConfig,
        tx_ring: Box<dyn SharedMem>,
        rx_ring: Box<dyn SharedMem>,
        pool: &SharedRxPool<B>,
    ) -> Result<Self, VifError> {
        Self::with_queues(cfg, alloc::vec![(tx_ring, rx_ring)], pool)
    }

    /// A vif with one queue per ring pair; every queue has
    /// `cfg.rx_buffers` buffer slots filled from `pool` on demand (budgets
    /// and queue lengths are per queue). On error the rings are dropped
    /// (the caller still holds their mappings).
    pub fn with_queues(cfg: VifConfig, rings: Vec<QueueRings>, pool: &SharedRxPool<B>) -> Result<Self, VifError> {
        if [cfg.tx_batch, cfg.tx_budget, cfg.rx_buffers, cfg.rx_queue_bytes, cfg.rx_budget].contains(&0) {
            return Err(VifError::BadConfig);
        }
        if rings.is_empty() || rings.len() > MAX_QUEUES {
            return Err(VifError::BadQueueCount(rings.len()));
        }
        if cfg.rx_buffers > usize::from(u16::MAX) || cfg.tx_batch > usize::from(u16::MAX) {
            return Err(VifError::TooManyBuffers(cfg.rx_buffers.max(cfg.tx_batch)));
        }
        let cap = pool.borrow().buf_capacity();
        if cap < crate::drivers::port::MAX_FRAME + 4 {
            return Err(VifError::BufferTooSmall(cap));
        }
        let mut queues = Vec::with_capacity(rings.len());
        for (tx_mem, rx_mem) in rings {
            let tx = TxPath::new(BackRing::attach(&*tx_mem, TX_ENTRY_SIZE));
            let rx = RxPath::new(BackRing::attach(&*rx_mem, RX_ENTRY_SIZE), pool, cfg.rx_buffers, cfg.rx_queue_bytes);
            queues.push(Queue { tx_mem, rx_mem, tx, rx });
        }
        Ok(Self {
            cfg,
            queues,
            mcast: McastFilter::new(),
            stats: VifStats::default(),
            disabled: None,
            credit: Credit::new(None, 0),
            clock: 0,
            ctrl: None,
            hash: HashConfig::new(),
        })
    }

    /// Gives the rings, per queue, back to the caller (for unmapping); the
    /// RX buffers it held go back to the pool.
    pub fn release(self) -> Vec<QueueRings> {
        self.queues.into_iter().map(|q| (q.tx_mem, q.rx_mem)).collect()
    }

    /// Pool buffers its RX queues hold now.
    pub fn rx_buffers_held(&self) -> usize {
        self.queues.iter().map(|q| q.rx.buffers_held()).sum()
    }

    /// Queues.
    pub fn queues(&self) -> usize {
        self.queues.len()
    }

    /// The configuration.
    pub fn config(&self) -> &VifConfig {
        &self.cfg
    }

    /// Why the vif was disabled, if it was.
    pub fn disabled(&self) -> Option<&NetbackError> {
        self.disabled.as_ref()
    }

    /// Counters.
    pub fn stats(&self) -> VifStats {
        let mut s = self.stats;
        s.copy_hypercalls = self.queues.iter().map(|q| q.tx.copier.hypercalls() + q.rx.hypercalls).sum();
        s.copy_hypercalls += self.ctrl.as_ref().map_or(0, CtrlRing::hypercalls);
        s
    }

    /// Counters as a switch port sees them: frames from the guest are what
    /// the port receives, frames to the guest what it transmits.
    pub fn port_stats(&self) -> PortStats {
        PortStats { rx: self.stats.from_guest, tx: self.stats.to_guest, ..PortStats::default() }
    }

    /// Sets the transmit rate (None: unlimited) from `now` on.
    pub fn set_rate(&mut self, rate: Option<Rate>, now: u64) {
        self.clock = self.clock.max(now);
        self.credit.set_rate(rate, now);
    }

    /// The transmit rate in force.
    pub fn rate(&self) -> Option<Rate> {
        self.credit.rate()
    }

    /// Waits for transmit credit that ended, the total time their polls
    /// came after the refill (ns): the poller's lateness, and the credit
    /// (bytes) lost to the burst cap meanwhile.
    pub fn rate_waits(&self) -> (u64, u64, u64) {
        self.credit.waits()
    }

    /// When a packet waiting for transmit credit can go: the queues that
    /// reported `wait_until` must be polled again then.
    pub fn tx_wait_until(&self) -> Option<u64> {
        if self.disabled.is_some() { None } else { self.credit.waiting_until() }
    }

    /// As `poll_tx_at`, at the time of the latest poll or `set_rate`.
    pub fn poll_tx(
        &mut self,
        q: usize,
        gnt: &dyn GrantOps,
        staging: &TxStaging<B>,
        deliver: &mut dyn FnMut(&[u8], FrameMeta),
    ) -> PollOutcome {
        let now = self.clock;
        self.poll_tx_at(q, gnt, staging, now, deliver)
    }

    /// Gathers up to `tx_budget` packets from queue `q`'s TX ring into the
    /// `staging` buffers (at most `tx_batch` of them per grant-copy batch;
    /// see `TxStaging`) and calls `deliver(frame, meta)` for each good one
    /// (the slice is valid only during the call). Answers every request
    /// consumed. A queue that does not exist, or no staging buffer, does
    /// nothing. With a rate set, packets are charged at `now` (ns); one
    /// that finds too little credit stays on the ring and the outcome's
    /// `wait_until` says when to poll again. Every frame goes whole: the
    /// data plane's turn uses `stage_tx` and `deliver_tx` for one copy.
    pub fn poll_tx_at(
        &mut self,
        q: usize,
        gnt: &dyn GrantOps,
        staging: &TxStaging<B>,
        now: u64,
        deliver: &mut dyn FnMut(&[u8], FrameMeta),
    ) -> PollOutcome {
        let out = self.stage_tx(q, now, None, 0, staging);
        let notify = self.deliver_tx(q, gnt, staging, &mut WholeFrames(deliver));
        PollOutcome { notify, ..out }
    }

    /// Queues a frame of unknown source for the guest (see `enqueue_rx_from`).
    pub fn enqueue_rx(&mut self, frame: &[u8], meta: FrameMeta) -> bool {
        self.try_enqueue_rx_from(RxSource::UNKNOWN, frame, meta).is_ok()
    }

    /// As `enqueue_rx`, with the reason for a refusal.
    pub fn try_enqueue_rx(&mut self, frame: &[u8], meta: FrameMeta) -> Result<(), RxDrop> {
        self.try_enqueue_rx_from(RxSource::UNKNOWN, frame, meta)
    }

    /// Queues a frame from `source` (its switch ingress port) for the
    /// guest on the queue its flow hashes to; false (and counted) when
    /// refused.
    pub fn enqueue_rx_from(&mut self, source: RxSource, frame: &[u8], meta: FrameMeta) -> bool {
        self.try_enqueue_rx_from(source, frame, meta).is_ok()
    }

    /// As `enqueue_rx_from`, with the reason for a refusal.
    pub fn try_enqueue_rx_from(&mut self, source: RxSource, frame: &[u8], meta: FrameMeta) -> Result<(), RxDrop> {
        let (q, hash) = self.steer(frame);
        let r = match (&self.disabled, self.queues.get_mut(q)) {
            (None, Some(queue)) => queue.rx.enqueue(source, frame, meta, hash, &self.cfg.features),
            _ => Err(RxDrop::Disabled),
        };
        if r.is_ok() {
            self.stats.rx_copy_bytes += frame.len() as u64;
        }
        if let Err(d) = r {
            self.stats.to_guest.drops += 1;
            self.stats.last_rx_drop = Some(d);
            match d {
                RxDrop::QueueFull => self.stats.rx_queue_full += 1,
                RxDrop::OverShare { .. } => self.stats.rx_over_share += 1,
                RxDrop::NoBuffer => self.stats.rx_no_buffer += 1,
                _ => {}
            }
        }
        r
    }

    /// The RX queue a frame goes to: where the frontend's hash
    /// configuration sends it (see `hash`), else its flow hash modulo the
    /// queue count; either way one flow stays in order on one queue.
    pub fn rx_queue_for(&self, frame: &[u8]) -> usize {
        self.steer(frame).0
    }

    /// The RX queue of a frame and the hash the frontend asked for.
    fn steer(&self, frame: &[u8]) -> (usize, Option<RxHash>) {
        let n = self.queues.len();
        if let Some(chosen) = self.hash.queue_for(frame, n) {
            return chosen;
        }
        match n {
            0 | 1 => (0, None),
            n => (flow_hash(frame) as usize % n, None),
        }
    }

    /// Attaches the frontend's control ring (mapped by the caller; the vif
    /// owns the mapping from now on and drops it with itself).
    pub fn attach_ctrl(&mut self, mem: Box<dyn SharedMem>) {
        self.ctrl = Some(CtrlRing::attach(mem));
    }

    /// The control ring's counters, when there is one.
    pub fn ctrl_stats(&self) -> Option<CtrlStats> {
        self.ctrl.as_ref().map(CtrlRing::stats)
    }

    /// The hash configuration in force.
    pub fn hash_config(&self) -> &HashConfig {
        &self.hash
    }

    /// Serves the control ring's requests (a bounded number per call);
    /// the first `staging` buffer takes the keys and tables copied from the
    /// frontend. Nothing happens without a control ring, a staging buffer,
    /// or once the vif is disabled; a ring overflow disables it.
    pub fn poll_ctrl(&mut self, gnt: &dyn GrantOps, staging: &TxStaging<B>) -> PollOutcome {
        let queues = self.queues.len();
        let (Some(ctrl), Some(scratch), None) = (self.ctrl.as_mut(), staging.bufs.first(), &self.disabled) else {
            return PollOutcome::default();
        };
        if scratch.capacity() < CTRL_SCRATCH {
            return PollOutcome::default();
        }
        let mut env = CtrlEnv { frontend: self.cfg.frontend, gnt, scratch, hash: &mut self.hash, queues };
        let (out, fatal) = ctrl.poll(&mut env);
        if let Some(e) = fatal {
            self.disabled = Some(e);
            return PollOutcome { more: false, ..out };
        }
        out
    }

    /// Frames queued for the guest, all queues.
    pub fn rx_queued(&self) -> usize {
        self.queues.iter().map(|q| q.rx.queued()).sum()
    }

    /// Bytes charged for the frames queued for the guest, all queues.
    pub fn rx_queued_bytes(&self) -> usize {
        self.queues.iter().map(|q| q.rx.queued_bytes()).sum()
    }

    /// Bytes each RX queue may hold.
    pub fn rx_queue_budget(&self) -> usize {
        self.queues.first().map_or(0, |q| q.rx.budget())
    }

    /// Copies frames queued on queue `q` into the guest's posted RX buffers.
    pub fn poll_rx(&mut self, q: usize, gnt: &dyn GrantOps) -> PollOutcome {
        if self.disabled.is_some() {
            return PollOutcome::default();
        }
        let Some(queue) = self.queues.get_mut(q) else { return PollOutcome::default() };
        let (out, fatal) = queue.rx.poll(&*queue.rx_mem, gnt, self.cfg.frontend, self.cfg.rx_budget, &mut self.stats);
        if let Some(e) = fatal {
            self.disabled = Some(e);
            return PollOutcome { more: false, ..out };
        }
        out
    }

    /// Whether a frame for `dst` should go to this guest: broadcast always,
    /// multicast when subscribed (or always without multicast control), and
    /// unicast to the guest's own MAC. False once disabled.
    pub fn wants(&self, dst: [u8; 6]) -> bool {
        if self.disabled.is_some() {
            return false;
        }
        if dst == [0xff; 6] {
            return true;
        }
        if dst[0] & 1 != 0 {
            return !self.cfg.features.multicast_control || self.mcast.contains(&dst);
        }
        dst == self.cfg.mac
    }

    /// Whether the guest takes GSO frames of this kind (else the switch
    /// segments them first).
    pub fn accepts_gso(&self, kind: GsoKind) -> bool {
        match kind {
            GsoKind::TcpV4 => self.cfg.features.gso_tcpv4,
            GsoKind::TcpV6 => self.cfg.features.gso_tcpv6,
        }
    }

    /// Largest frame `enqueue_rx` accepts.
    pub fn max_rx_frame(&self) -> usize {
        self.queues.first().map_or(0, |q| q.rx.max_frame(&self.cfg.features))
    }

    /// Multicast addresses subscribed.
    pub fn mcast_filter(&self) -> &McastFilter {
        &self.mcast
    }
}
