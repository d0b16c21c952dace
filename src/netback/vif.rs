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
#![forbid(unsafe_code)]

use super::buf::{BufPool, PacketBuf};
use super::error::{NetbackError, RxDrop, TxDrop};
use super::mcast::McastFilter;
use super::meta::{FrameMeta, GsoKind};
use super::ring::BackRing;
use super::rx::RxPath;
use super::rxqueue::{MIN_RX_BUFFERS_PER_QUEUE, RX_BUFFERS_PER_VIF, RX_QUEUE_BYTES, RxSource};
use super::tx::{TxEnv, TxPath};
use crate::drivers::port::{DirStats, PortStats};
use crate::hal::{GrantOps, SharedMem};
use crate::netif::rx::RX_ENTRY_SIZE;
use crate::netif::tx::TX_ENTRY_SIZE;
use crate::switch::headers::flow_hash;
use crate::xen::DomId;
use alloc::boxed::Box;
use alloc::vec::Vec;

/// Features the frontend negotiated (its `request-*`/`feature-*` keys in
/// xenstore, read by the xenbus code). Copy-only receive is implied: the
/// lead's handshake must refuse a frontend without `request-rx-copy=1`
/// (we advertise `feature-rx-flip=0`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    /// `feature-sg`: frames may span several RX slots.
    pub sg: bool,
    /// `feature-gso-tcpv4`.
    pub gso_tcpv4: bool,
    /// `feature-gso-tcpv6`.
    pub gso_tcpv6: bool,
    /// IPv4 checksum offload: true unless the frontend wrote `feature-no-csum-offload=1`.
    pub ipv4_csum_offload: bool,
    /// `feature-ipv6-csum-offload`.
    pub ipv6_csum_offload: bool,
    /// `request-multicast-control` (or the dynamic variant): filter multicast.
    pub multicast_control: bool,
}

/// How to build a vif.
#[derive(Debug, Clone, Copy)]
pub struct VifConfig {
    /// The frontend's domain (owner of the grants on the rings).
    pub frontend: DomId,
    /// The guest's MAC (the `mac` key).
    pub mac: [u8; 6],
    /// Negotiated features.
    pub features: Features,
    /// TX packets gathered per grant-copy flush (at most the staging
    /// buffers lent to `poll_tx`).
    pub tx_batch: usize,
    /// TX packets per `poll_tx`, so one vif cannot starve the others.
    pub tx_budget: usize,
    /// Packet buffers per queue that hold the frames queued for the guest
    /// (packed: a buffer holds many frames).
    pub rx_buffers: usize,
    /// Bytes queued for the guest per queue at most (Linux netback's
    /// `rx_queue_max`; XSA-392), within what `rx_buffers` hold. Each
    /// source gets a fair share of it (see `rxqueue`).
    pub rx_queue_bytes: usize,
    /// RX frames per `poll_rx`.
    pub rx_budget: usize,
}

impl VifConfig {
    /// Defaults: batch 32, budgets 64, 8 RX buffers and a 512 KiB RX queue.
    pub fn new(frontend: DomId, mac: [u8; 6], features: Features) -> Self {
        Self {
            frontend,
            mac,
            features,
            tx_batch: 32,
            tx_budget: 64,
            rx_buffers: MIN_RX_BUFFERS_PER_QUEUE,
            rx_queue_bytes: RX_QUEUE_BYTES,
            rx_budget: 64,
        }
    }

    /// Sizes the RX queues of a vif with `queues` queues and buffers of
    /// `buf_capacity` bytes: [`RX_BUFFERS_PER_VIF`] spread over the
    /// queues (at least [`MIN_RX_BUFFERS_PER_QUEUE`] each), every byte of
    /// them usable by the queue.
    pub fn size_rx(&mut self, queues: usize, buf_capacity: usize) {
        self.rx_buffers = (RX_BUFFERS_PER_VIF / queues.max(1)).max(MIN_RX_BUFFERS_PER_QUEUE);
        self.rx_queue_bytes = self.rx_buffers.saturating_mul(buf_capacity);
    }

    /// Buffers `Vif::new` takes from the pool, per queue (the RX queue's;
    /// TX staging buffers are lent to `poll_tx` and shared by all vifs).
    pub fn buffers_needed(&self) -> usize {
        self.rx_buffers
    }
}

/// The vif could not be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VifError {
    /// The pool ran out of buffers.
    NoBuffers {
        /// Buffers needed.
        needed: usize,
        /// Buffers obtained (returned to the pool).
        got: usize,
    },
    /// A zero-sized configuration value.
    BadConfig,
    /// Buffers smaller than the largest Ethernet frame plus a VLAN tag.
    BufferTooSmall(usize),
    /// More RX buffers than a u16 index covers.
    TooManyBuffers(usize),
    /// No queue, or more than `MAX_QUEUES`.
    BadQueueCount(usize),
}

/// Queues one vif can have (Linux netfront asks for at most 8 by default).
pub const MAX_QUEUES: usize = 8;

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
}

/// Takes `n` buffers from `pool`, all big enough for the largest Ethernet
/// frame plus a VLAN tag; on failure nothing is kept.
fn take_buffers<B: PacketBuf, P: BufPool<Buf = B>>(pool: &mut P, n: usize) -> Result<Vec<B>, VifError> {
    let mut got: Vec<B> = Vec::with_capacity(n);
    while got.len() < n {
        match pool.alloc() {
            Some(b) => got.push(b),
            None => {
                let have = got.len();
                got.into_iter().for_each(|b| pool.free(b));
                return Err(VifError::NoBuffers { needed: n, got: have });
            }
        }
    }
    let cap = got.first().map_or(0, |b| b.capacity());
    if got.iter().any(|b| b.capacity() < crate::drivers::port::MAX_FRAME + 4) {
        got.into_iter().for_each(|b| pool.free(b));
        return Err(VifError::BufferTooSmall(cap));
    }
    Ok(got)
}

/// TX staging buffers, lent to `Vif::poll_tx`: a poll copies the guest's
/// packets into them and delivers every one before it returns, so one set
/// serves every vif and queue of a single-threaded data plane (instead of a
/// set per vif: 1 MiB each with 64 KiB buffers).
#[derive(Debug)]
pub struct TxStaging<B: PacketBuf> {
    bufs: Vec<B>,
}

impl<B: PacketBuf> TxStaging<B> {
    /// `n` buffers from `pool` (checked as the vif's own).
    pub fn new<P: BufPool<Buf = B>>(pool: &mut P, n: usize) -> Result<Self, VifError> {
        if n == 0 || n > usize::from(u16::MAX) {
            return Err(VifError::BadConfig);
        }
        Ok(Self { bufs: take_buffers(pool, n)? })
    }

    /// Gives the buffers back.
    pub fn release<P: BufPool<Buf = B>>(self, pool: &mut P) {
        self.bufs.into_iter().for_each(|b| pool.free(b));
    }

    /// Buffers held.
    pub fn len(&self) -> usize {
        self.bufs.len()
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }
}

/// One queue: a TX and an RX ring with their paths.
struct Queue<B: PacketBuf> {
    tx_mem: Box<dyn SharedMem>,
    rx_mem: Box<dyn SharedMem>,
    tx: TxPath,
    rx: RxPath<B>,
}

/// The rings of one queue, as mapped by the caller: (TX, RX).
pub type QueueRings = (Box<dyn SharedMem>, Box<dyn SharedMem>);

/// One netfront device served by netback: one or more queues
/// (`multi-queue-num-queues`), one MAC, one multicast filter, one set of
/// counters. A fatal error on any queue disables the whole vif, as Linux
/// netback does.
pub struct Vif<B: PacketBuf> {
    cfg: VifConfig,
    queues: Vec<Queue<B>>,
    mcast: McastFilter,
    stats: VifStats,
    disabled: Option<NetbackError>,
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
    /// A single-queue vif: attaches to the mapped rings and takes
    /// `cfg.buffers_needed()` buffers from `pool` (the only allocations
    /// this vif makes).
    pub fn new<P: BufPool<Buf = B>>(
        cfg: VifConfig,
        tx_ring: Box<dyn SharedMem>,
        rx_ring: Box<dyn SharedMem>,
        pool: &mut P,
    ) -> Result<Self, VifError> {
        Self::with_queues(cfg, alloc::vec![(tx_ring, rx_ring)], pool)
    }

    /// A vif with one queue per ring pair; every queue takes
    /// `cfg.buffers_needed()` buffers (budgets and queue lengths are per
    /// queue). On error nothing is kept: buffers go back to the pool and
    /// the rings are dropped (the caller still holds their mappings).
    pub fn with_queues<P: BufPool<Buf = B>>(
        cfg: VifConfig,
        rings: Vec<QueueRings>,
        pool: &mut P,
    ) -> Result<Self, VifError> {
        if [cfg.tx_batch, cfg.tx_budget, cfg.rx_buffers, cfg.rx_queue_bytes, cfg.rx_budget].contains(&0) {
            return Err(VifError::BadConfig);
        }
        if rings.is_empty() || rings.len() > MAX_QUEUES {
            return Err(VifError::BadQueueCount(rings.len()));
        }
        if cfg.rx_buffers > usize::from(u16::MAX) || cfg.tx_batch > usize::from(u16::MAX) {
            return Err(VifError::TooManyBuffers(cfg.rx_buffers.max(cfg.tx_batch)));
        }
        let per_queue = cfg.buffers_needed();
        let mut got = take_buffers(pool, per_queue * rings.len())?;
        let mut queues = Vec::with_capacity(rings.len());
        for (tx_mem, rx_mem) in rings {
            let rest = got.split_off(per_queue);
            let rx_bufs = core::mem::replace(&mut got, rest);
            let tx = TxPath::new(BackRing::attach(&*tx_mem, TX_ENTRY_SIZE));
            let rx = RxPath::new(BackRing::attach(&*rx_mem, RX_ENTRY_SIZE), rx_bufs, cfg.rx_queue_bytes);
            queues.push(Queue { tx_mem, rx_mem, tx, rx });
        }
        Ok(Self { cfg, queues, mcast: McastFilter::new(), stats: VifStats::default(), disabled: None })
    }

    /// Gives the buffers back to `pool` and the rings, per queue, back to
    /// the caller (for unmapping).
    pub fn release<P: BufPool<Buf = B>>(self, pool: &mut P) -> Vec<QueueRings> {
        self.queues
            .into_iter()
            .map(|q| {
                q.rx.into_bufs().into_iter().for_each(|b| pool.free(b));
                (q.tx_mem, q.rx_mem)
            })
            .collect()
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
        s.copy_hypercalls = self.queues.iter().map(|q| q.tx.copier.hypercalls() + q.rx.copier.hypercalls()).sum();
        s
    }

    /// Counters as a switch port sees them: frames from the guest are what
    /// the port receives, frames to the guest what it transmits.
    pub fn port_stats(&self) -> PortStats {
        PortStats { rx: self.stats.from_guest, tx: self.stats.to_guest, ..PortStats::default() }
    }

    /// Gathers up to `tx_budget` packets from queue `q`'s TX ring into the
    /// `staging` buffers (at most `tx_batch` of them per grant-copy batch;
    /// see `TxStaging`) and calls `deliver(frame, meta)` for each good one
    /// (the slice is valid only during the call). Answers every request
    /// consumed. A queue that does not exist, or no staging buffer, does
    /// nothing.
    pub fn poll_tx(
        &mut self,
        q: usize,
        gnt: &dyn GrantOps,
        staging: &TxStaging<B>,
        deliver: &mut dyn FnMut(&[u8], FrameMeta),
    ) -> PollOutcome {
        let bufs = staging.bufs.get(..self.cfg.tx_batch.min(staging.bufs.len())).unwrap_or(&[]);
        if self.disabled.is_some() || bufs.is_empty() {
            return PollOutcome::default();
        }
        let Some(queue) = self.queues.get_mut(q) else { return PollOutcome::default() };
        self.stats.tx_polls += 1;
        let mut env = TxEnv {
            frontend: self.cfg.frontend,
            mcast_control: self.cfg.features.multicast_control,
            mcast: &mut self.mcast,
            stats: &mut self.stats,
        };
        let (out, fatal) = queue.tx.poll(&*queue.tx_mem, gnt, &mut env, self.cfg.tx_budget, bufs, deliver);
        if !out.progress {
            self.stats.tx_idle_polls += 1;
        }
        if let Some(e) = fatal {
            self.disabled = Some(e);
            // Nothing more will be done: do not ask the caller to poll again.
            return PollOutcome { more: false, ..out };
        }
        out
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
        let q = self.rx_queue_for(frame);
        let r = match (&self.disabled, self.queues.get_mut(q)) {
            (None, Some(queue)) => queue.rx.enqueue(source, frame, meta, &self.cfg.features),
            _ => Err(RxDrop::Disabled),
        };
        if let Err(d) = r {
            self.stats.to_guest.drops += 1;
            self.stats.last_rx_drop = Some(d);
            match d {
                RxDrop::QueueFull => self.stats.rx_queue_full += 1,
                RxDrop::OverShare { .. } => self.stats.rx_over_share += 1,
                _ => {}
            }
        }
        r
    }

    /// The RX queue a frame goes to: its flow hash modulo the queue count,
    /// so one flow stays in order on one queue.
    pub fn rx_queue_for(&self, frame: &[u8]) -> usize {
        match self.queues.len() {
            0 | 1 => 0,
            n => flow_hash(frame) as usize % n,
        }
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
