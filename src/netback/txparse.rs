//! Reading one packet off the TX ring: every request copied out exactly
//! once, then the copies validated (the verdicts are listed in `tx`).
#![forbid(unsafe_code)]

use super::error::{NetbackError, TxDrop};
use super::meta::{FrameMeta, Gso, GsoKind};
use super::ring::BackRing;
use crate::hal::SharedMem;
use crate::netif::extra::XEN_NETIF_EXTRA_TYPE_MAX;
use crate::netif::tx::{NETTXF_CSUM_BLANK, NETTXF_DATA_VALIDATED, TX_ENTRY_SIZE};
use crate::netif::{ExtraInfo, ExtraKind, GsoType, NR_SLOTS_MIN, PAGE_SIZE, TxRequest, le16};

/// Most data slots a packet may use and still be accepted.
pub const MAX_SLOTS: u32 = NR_SLOTS_MIN as u32;
/// A packet with this many data slots disables the vif.
pub const FATAL_SLOTS: u32 = 20;
/// Extra-info slots per packet: one of each type at most.
pub const MAX_EXTRAS: usize = (XEN_NETIF_EXTRA_TYPE_MAX - 1) as usize;
/// Shortest packet accepted (an Ethernet header).
pub const ETH_HLEN: u16 = 14;
/// Following data slots we ever read for one packet.
const MAX_FRAGS: usize = (FATAL_SLOTS - 2) as usize;

/// One packet's requests, copied out of the ring.
#[derive(Debug, Clone, Copy)]
pub(super) struct Packet {
    /// Ring entries it spans.
    pub(super) slots: u32,
    pub(super) first: TxRequest,
    /// Bytes in the first slot (packet length minus the following slots).
    pub(super) first_len: u16,
    pub(super) frags: [TxRequest; MAX_FRAGS],
    pub(super) nfrags: usize,
    /// Extras by `type - 1`.
    pub(super) extras: [Option<ExtraInfo>; MAX_EXTRAS],
    /// Response ids of the extra slots, in ring order.
    pub(super) extra_ids: [u16; MAX_EXTRAS],
    pub(super) nextras: usize,
    pub(super) drop: Option<TxDrop>,
}

impl Packet {
    pub(super) fn frags(&self) -> &[TxRequest] {
        self.frags.get(..self.nfrags).unwrap_or(&[])
    }

    pub(super) fn is_mcast(&self) -> bool {
        self.extras.iter().flatten().any(|e| matches!(e.kind, ExtraKind::McastAdd(_) | ExtraKind::McastDel(_)))
    }

    pub(super) fn meta(&self) -> FrameMeta {
        let gso = self.extras.iter().flatten().find_map(|e| match e.kind {
            ExtraKind::Gso { size, kind: GsoType::TcpV4, .. } => Some(Gso { kind: GsoKind::TcpV4, size }),
            ExtraKind::Gso { size, kind: GsoType::TcpV6, .. } => Some(Gso { kind: GsoKind::TcpV6, size }),
            _ => None,
        });
        FrameMeta {
            csum_blank: self.first.flags & NETTXF_CSUM_BLANK != 0,
            data_validated: self.first.flags & NETTXF_DATA_VALIDATED != 0,
            gso,
        }
    }
}

/// Reads one packet's requests (each entry copied exactly once) and
/// validates the copies. Consumes nothing.
pub(super) fn parse(ring: &BackRing, mem: &dyn SharedMem, avail: u32, capacity: usize) -> Result<Packet, NetbackError> {
    let read = |ahead: u32| {
        let mut e = [0u8; TX_ENTRY_SIZE];
        ring.copy_request(mem, ahead, &mut e);
        e
    };
    let first = TxRequest::parse(&read(0));
    let mut p = Packet {
        slots: 1,
        first,
        first_len: 0,
        frags: [TxRequest::default(); MAX_FRAGS],
        nfrags: 0,
        extras: [None; MAX_EXTRAS],
        extra_ids: [0; MAX_EXTRAS],
        nextras: 0,
        drop: None,
    };
    let mut n = 1u32;
    let mut more_extra = first.extra_info();
    while more_extra {
        if p.nextras >= MAX_EXTRAS {
            return Err(NetbackError::TooManyExtras { count: p.nextras as u32 + 1 });
        }
        if n >= avail {
            return Err(NetbackError::MissingSlots { needed: n + 1, available: avail });
        }
        let raw = read(n);
        n += 1;
        let e = ExtraInfo::parse(&raw);
        let ty = e.type_raw();
        if ty == 0 || ty >= XEN_NETIF_EXTRA_TYPE_MAX {
            return Err(NetbackError::BadExtraType { ty });
        }
        if let ExtraKind::Gso { size, kind, .. } = e.kind {
            if size == 0 {
                return Err(NetbackError::GsoSizeZero);
            }
            if !matches!(kind, GsoType::TcpV4 | GsoType::TcpV6) {
                return Err(NetbackError::BadGsoType { ty: kind.to_raw() });
            }
        }
        if let Some(slot) = p.extras.get_mut(usize::from(ty) - 1) {
            *slot = Some(e);
        }
        if let Some(id) = p.extra_ids.get_mut(p.nextras) {
            *id = le16(&raw, 0);
        }
        p.nextras += 1;
        more_extra = e.more();
    }
    let mut remaining = first.size;
    let mut more = first.more_data();
    while more {
        let slots = p.nfrags as u32 + 2;
        if n >= avail {
            return Err(NetbackError::MissingSlots { needed: n + 1, available: avail });
        }
        if slots >= FATAL_SLOTS {
            return Err(NetbackError::TooManySlots { slots });
        }
        let req = TxRequest::parse(&read(n));
        n += 1;
        if slots > MAX_SLOTS && p.drop.is_none() {
            p.drop = Some(TxDrop::TooManySlots { slots });
        }
        if req.size > remaining && p.drop.is_none() {
            p.drop = Some(TxDrop::SizeMismatch { slot: req.size, remaining });
        }
        remaining = remaining.saturating_sub(req.size);
        if req.end() > PAGE_SIZE {
            return Err(NetbackError::CrossesPage { offset: req.offset, size: req.size });
        }
        if let Some(f) = p.frags.get_mut(p.nfrags) {
            *f = req;
        }
        p.nfrags += 1;
        more = req.more_data();
    }
    p.slots = n;
    p.first_len = remaining;
    if p.is_mcast() {
        // A control request: its data slots carry nothing we use.
        return Ok(p);
    }
    if first.size < ETH_HLEN && p.drop.is_none() {
        p.drop = Some(TxDrop::Runt { len: first.size });
    }
    if usize::from(first.offset) + usize::from(remaining) > PAGE_SIZE {
        return Err(NetbackError::CrossesPage { offset: first.offset, size: remaining });
    }
    if usize::from(first.size) > capacity && p.drop.is_none() {
        p.drop = Some(TxDrop::Oversize { len: first.size, capacity });
    }
    Ok(p)
}
