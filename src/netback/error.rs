//! Why a vif was disabled (fatal, like Linux netback's `fatal_tx_err`) or a
//! packet dropped (answered `NETIF_RSP_ERROR`, vif stays up). Each variant
//! carries the offending values.
#![forbid(unsafe_code)]

use super::ring::RingOverflow;
use crate::xen::XenError;

/// A fatal protocol violation: the vif is disabled, other vifs are untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetbackError {
    /// TX `req_prod` is more than a ring ahead of our consumer (XSA-39).
    TxRingOverflow(RingOverflow),
    /// RX `req_prod` is more than a ring ahead of our consumer.
    RxRingOverflow(RingOverflow),
    /// Control ring `req_prod` is more than a ring ahead of our consumer.
    CtrlRingOverflow(RingOverflow),
    /// A packet chains this many data slots (>= `FATAL_SLOTS`).
    TooManySlots {
        /// Data slots seen so far.
        slots: u32,
    },
    /// A slot's data runs past the end of its page.
    CrossesPage {
        /// Offset in the page.
        offset: u16,
        /// Bytes in the slot.
        size: u16,
    },
    /// `more_data` or an extra flag points past the published requests.
    MissingSlots {
        /// Slots the packet needs at least.
        needed: u32,
        /// Requests published.
        available: u32,
    },
    /// An extra-info slot of type 0 or >= `XEN_NETIF_EXTRA_TYPE_MAX`.
    BadExtraType {
        /// The type byte.
        ty: u8,
    },
    /// More chained extra-info slots than there are types.
    TooManyExtras {
        /// Extras seen.
        count: u32,
    },
    /// A GSO extra with size 0.
    GsoSizeZero,
    /// A GSO extra with a type other than TCPv4/TCPv6.
    BadGsoType {
        /// The type byte.
        ty: u8,
    },
}

impl NetbackError {
    /// The kind of violation, one word (for a counter line).
    pub fn name(&self) -> &'static str {
        match self {
            Self::TxRingOverflow(_) => "tx_ring_overflow",
            Self::RxRingOverflow(_) => "rx_ring_overflow",
            Self::CtrlRingOverflow(_) => "ctrl_ring_overflow",
            Self::TooManySlots { .. } => "too_many_slots",
            Self::CrossesPage { .. } => "crosses_page",
            Self::MissingSlots { .. } => "missing_slots",
            Self::BadExtraType { .. } => "bad_extra_type",
            Self::TooManyExtras { .. } => "too_many_extras",
            Self::GsoSizeZero => "gso_size_zero",
            Self::BadGsoType { .. } => "bad_gso_type",
        }
    }
}

/// Why one guest-to-backend packet was dropped (its slots answered ERROR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxDrop {
    /// More data slots than we accept (`MAX_SLOTS`) but fewer than fatal.
    TooManySlots {
        /// Data slots.
        slots: u32,
    },
    /// Shorter than an Ethernet header.
    Runt {
        /// Packet length.
        len: u16,
    },
    /// A following slot is larger than what is left of the packet length.
    SizeMismatch {
        /// The slot's size.
        slot: u16,
        /// Bytes of the packet not yet accounted for.
        remaining: u16,
    },
    /// Larger than our packet buffers.
    Oversize {
        /// Packet length.
        len: u16,
        /// Buffer capacity.
        capacity: usize,
    },
    /// A grant copy failed (bad grant reference, XSA-361/362/367, etc.).
    CopyFailed(XenError),
}

/// Why a frame for the guest was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RxDrop {
    /// The queue's byte budget or buffers are used up (XSA-392).
    QueueFull,
    /// The frame's source already holds its fair share of the queue.
    OverShare {
        /// The source (switch port).
        source: u8,
        /// Bytes it holds.
        held: usize,
    },
    /// Empty or longer than a packet buffer / the protocol allows.
    BadLength(usize),
    /// Longer than a page and the frontend has no `feature-sg`.
    NoSg(usize),
    /// GSO metadata of a type the frontend did not negotiate.
    GsoNotNegotiated,
    /// Checksum offload (csum_blank) the frontend did not negotiate.
    CsumNotNegotiated,
    /// The vif is disabled.
    Disabled,
    /// The shared receive-buffer pool had no buffer for it.
    NoBuffer,
}
