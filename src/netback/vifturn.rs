//! A vif on a data-plane turn (`turn`): its TX queues hand frames to a
//! sink that may take them for one copy (`direct`), its RX queues place
//! frames with their copies on the turn, and once the turn's copies are
//! done the failures are applied and every held response written.
//!
//! Order of a turn, as the data plane drives it: `stage_tx` for every
//! queue that needs it, `Turn::flush_headers` and `header_failed` for each
//! of its faults, `deliver_tx` for every queue staged (the sink calls
//! `place_direct` on receivers), then `place_rx` for every queue, then
//! `Turn::flush`, `apply_fault` for each fault on every vif it names,
//! `finish_turn` for every queue, `Turn::end`.
#![forbid(unsafe_code)]

use super::buf::PacketBuf;
use super::direct::{DirectFrame, TxSink, TxTicket};
use super::hash::HashAlgorithm;
use super::rx::RxId;
use super::turn::{Fault, Turn};
use super::tx::TxEnv;
use super::vif::{PollOutcome, Queue, TxStaging, Vif};
use crate::hal::GrantOps;
use crate::switch::headers::{HeaderError, flow_hash_len, parse_len};

impl<B: PacketBuf> Vif<B> {
    /// Reads up to `tx_budget` packets from queue `q`'s TX ring and queues
    /// their header copies on `turn` (`me` is this vif's switch port); with
    /// no turn they will go whole. `deliver_tx` hands them on after the
    /// turn's `flush_headers`. A queue that does not exist, or no staging
    /// buffer, does nothing. With a rate set, packets are charged at `now`
    /// (ns); one that finds too little credit stays on the ring and the
    /// outcome's `wait_until` says when to poll again.
    pub fn stage_tx(
        &mut self,
        q: usize,
        now: u64,
        turn: Option<&mut Turn<B>>,
        me: u8,
        staging: &TxStaging<B>,
    ) -> PollOutcome {
        self.clock = self.clock.max(now);
        let cap = staging.bufs.first().map_or(0, |b| b.capacity());
        if self.disabled.is_some() || staging.bufs.is_empty() || self.cfg.tx_batch == 0 {
            return PollOutcome::default();
        }
        let budget = self.cfg.tx_budget;
        let Some((queue, mut env)) = self.tx_parts(q, me) else { return PollOutcome::default() };
        env.stats.tx_polls += 1;
        let (out, fatal) = queue.tx.stage(&*queue.tx_mem, &mut env, budget, cap, turn);
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

    /// Hands on the packets `stage_tx` read from queue `q` (even once the
    /// vif is disabled: they came before): each is offered to `sink` for
    /// one copy, and a frame it takes keeps its responses (and every later
    /// one of this queue) until `finish_turn`; the others are copied whole
    /// into the `staging` buffers (at most `tx_batch` per grant-copy batch;
    /// see `TxStaging`) and delivered. True when responses were published
    /// and the frontend asked for an event.
    pub fn deliver_tx(&mut self, q: usize, gnt: &dyn GrantOps, staging: &TxStaging<B>, sink: &mut dyn TxSink) -> bool {
        let bufs = staging.bufs.get(..self.cfg.tx_batch.min(staging.bufs.len())).unwrap_or(&[]);
        let Some((queue, mut env)) = self.tx_parts(q, 0) else { return false };
        queue.tx.deliver(&*queue.tx_mem, gnt, &mut env, bufs, sink)
    }

    /// Queue `q` and what its TX path needs from the vif (`me`: the
    /// vif's switch port).
    fn tx_parts(&mut self, q: usize, me: u8) -> Option<(&mut Queue<B>, TxEnv<'_>)> {
        let queue = self.queues.get_mut(q)?;
        let env = TxEnv {
            frontend: self.cfg.frontend,
            port: me,
            queue: q as u8,
            mcast_control: self.cfg.features.multicast_control,
            mcast: &mut self.mcast,
            stats: &mut self.stats,
            credit: &mut self.credit,
            now: self.clock,
        };
        Some((queue, env))
    }

    /// The header copy of a frame staged on queue `ticket.queue` failed.
    pub fn header_failed(&mut self, ticket: &TxTicket) {
        if let Some(queue) = self.queues.get_mut(usize::from(ticket.queue)) {
            queue.tx.header_failed(ticket.idx);
        }
    }

    /// Takes a frame from another guest for one copy, when it can go
    /// straight into this guest's posted buffers: the vif is up, the
    /// frontend configured no hash of its own, the queue the frame's flow
    /// goes to is empty, has enough buffers posted and takes the frame as
    /// it is. `me` is this vif's switch port. False, with nothing done,
    /// otherwise (the caller then delivers the frame whole).
    pub fn place_direct(&mut self, me: u8, hdr: &[u8], frame: &DirectFrame<'_>, turn: &mut Turn<B>) -> bool {
        if self.disabled.is_some() || self.hash.algorithm() != HashAlgorithm::None {
            return false;
        }
        let q = match self.queues.len() {
            0 | 1 => 0,
            n => {
                // The flow hash must be the one the whole frame would get.
                if hdr.len() < frame.len && matches!(parse_len(hdr, frame.len), Err(HeaderError::Truncated { .. })) {
                    return false;
                }
                flow_hash_len(hdr, frame.len) as usize % n
            }
        };
        let Some(queue) = self.queues.get_mut(q) else { return false };
        let id = RxId { port: me, queue: q as u8 };
        let f = &self.cfg.features;
        queue.rx.place_direct(&*queue.rx_mem, self.cfg.frontend, f, id, hdr, frame, turn)
    }

    /// Places frames queued on queue `q` in the guest's posted RX buffers,
    /// their copies on `turn`; `me` is this vif's switch port.
    pub fn place_rx(&mut self, q: usize, me: u8, turn: &mut Turn<B>) -> PollOutcome {
        if self.disabled.is_some() {
            return PollOutcome::default();
        }
        let Some(queue) = self.queues.get_mut(q) else { return PollOutcome::default() };
        let id = RxId { port: me, queue: q as u8 };
        let (out, fatal) =
            queue.rx.place_queued(&*queue.rx_mem, self.cfg.frontend, self.cfg.rx_budget, &mut self.stats, id, turn);
        if let Some(e) = fatal {
            self.disabled = Some(e);
            return PollOutcome { more: false, ..out };
        }
        out
    }

    /// Applies the parts of a fault of the turn that concern this vif
    /// (switch port `me`): its RX slot, or its one-copy TX frame when its
    /// own grant was bad.
    pub fn apply_fault(&mut self, me: u8, fault: &Fault) {
        let tag = fault.tag();
        let sender = matches!(fault, Fault::Sender(_));
        if tag.rx_port == me
            && let Some(queue) = self.queues.get_mut(usize::from(tag.rx_queue))
        {
            queue.rx.fault(tag.rx_slot, sender);
        }
        if let Some(t) = tag.tx
            && t.port == me
            && sender
            && let Some(queue) = self.queues.get_mut(usize::from(t.queue))
        {
            queue.tx.fault(t.idx);
        }
    }

    /// True when queue `q` holds responses for `finish_turn`.
    pub fn holding(&self, q: usize) -> bool {
        self.queues.get(q).is_some_and(|queue| queue.tx.holding() || queue.rx.holding())
    }

    /// After the turn's copies and faults: writes and publishes queue
    /// `q`'s held TX and RX responses; says whether the frontend asked for
    /// an event on each ring (TX, RX). Done even on a disabled vif, whose
    /// frames were taken before it was.
    pub fn finish_turn(&mut self, q: usize) -> (bool, bool) {
        let Some(queue) = self.queues.get_mut(q) else { return (false, false) };
        let tx = queue.tx.finish(&*queue.tx_mem, &mut self.stats);
        let rx = if queue.rx.holding() { queue.rx.finish(&*queue.rx_mem, &mut self.stats) } else { false };
        (tx, rx)
    }
}
