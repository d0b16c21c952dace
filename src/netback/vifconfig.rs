//! How a vif is built: the features its frontend negotiated, the sizes of
//! its batches, budgets and RX queues, and why building it can fail.
#![forbid(unsafe_code)]

use super::rxqueue::{MIN_RX_BUFFERS_PER_QUEUE, RX_BUFFERS_PER_VIF, RX_QUEUE_BYTES};
use crate::xen::DomId;

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

    /// RX buffer slots per queue: the most buffers one queue may hold from
    /// the shared pool at once (TX staging buffers are lent to `poll_tx`
    /// and shared by all vifs).
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
