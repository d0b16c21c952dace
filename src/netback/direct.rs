//! One copy between guests: what the TX path offers its caller for each
//! good frame before the frame's payload is copied anywhere.
//!
//! The TX path copies only a frame's first `HDR_COPY` bytes into xvif (the
//! turn's arena, in one batch for every vif: enough for validation, the
//! switch's decision, the anti-spoofing filters and flow hashing), then
//! offers the frame to its `TxSink` with those bytes and the grant slots
//! that hold the whole frame. A sink that can deliver the frame to another
//! guest's RX ring at once takes it: the receiver's RX path queues one
//! grant copy of the headers from the arena and grant-to-grant copies
//! (sender's TX grant to receiver's RX grant) for the rest, all in the data
//! plane's per-turn batch (`turn`). The frame's TX responses then wait for
//! that batch; `TxTicket` names the frame so that the batch's outcome finds
//! it. A sink that declines gets the whole frame, copied from the grants
//! into a staging buffer as before, through `deliver`.
//!
//! The header bytes the receiver gets are the ones xvif inspected, never a
//! second read of the sender's page, so a sender cannot change its headers
//! after the switch checked them.
#![forbid(unsafe_code)]

use super::meta::FrameMeta;
use crate::xen::DomId;

/// Bytes of a frame copied into xvif before the decision: Ethernet, a VLAN
/// tag, an IPv4 header with options or an IPv6 header, and a TCP header
/// with options all fit.
pub const HDR_COPY: usize = 128;

/// Most data slots of a frame offered (`tx::FATAL_SLOTS` less one).
pub const MAX_SEGS: usize = 19;

/// One data slot of a frame in the sender's granted pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seg {
    /// The sender's grant.
    pub gref: u32,
    /// Offset of the slot's bytes in the granted page.
    pub offset: u16,
    /// Bytes in the slot (`offset + len` never passes the page: checked
    /// when the request was parsed).
    pub len: u16,
}

/// Names a frame whose TX responses wait for the turn's grant copies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxTicket {
    /// The sender's switch port (set by the sink).
    pub port: u8,
    /// The sender's queue.
    pub queue: u8,
    /// The frame among its TX path's deferred frames.
    pub idx: u16,
}

/// A good frame from a guest, its payload still in the guest's grants.
#[derive(Debug, Clone, Copy)]
pub struct DirectFrame<'a> {
    /// The sender's domain.
    pub dom: DomId,
    /// Frame length.
    pub len: usize,
    /// Offload metadata from the sender's flags and extras.
    pub meta: FrameMeta,
    /// The frame's data slots in order; their lengths add up to `len`.
    pub segs: &'a [Seg],
    /// Names the frame for the turn (the sink sets `port`).
    pub ticket: TxTicket,
    /// Where the turn's arena holds the frame's first `min(len, HDR_COPY)` bytes.
    pub hdr_at: usize,
}

impl DirectFrame<'_> {
    /// Calls `f(seg, offset_in_seg, n)` for each run of the frame's bytes
    /// `[from, to)` that lies in one slot. Bytes past the slots are skipped.
    pub fn runs(&self, from: usize, to: usize, mut f: impl FnMut(&Seg, u16, u16)) {
        let mut at = 0usize;
        for s in self.segs {
            let end = at + usize::from(s.len);
            let (a, b) = (from.max(at), to.min(end));
            if a < b {
                f(s, (a - at) as u16, (b - a) as u16);
            }
            if end >= to {
                return;
            }
            at = end;
        }
    }
}

/// Where the TX path hands each good frame.
pub trait TxSink {
    /// Copies the headers the turn's arena holds at `at` into `out`; false
    /// when the sink has no turn (nothing is offered then).
    fn read_header(&self, at: usize, out: &mut [u8]) -> bool;

    /// Offered before the payload is copied: `hdr` is the frame's first
    /// `min(len, HDR_COPY)` bytes. True when the sink took the frame for
    /// one copy (it queued the copies under `frame.ticket` with its own
    /// `port`); false to get the whole frame through `deliver`.
    fn offer(&mut self, hdr: &[u8], frame: &DirectFrame<'_>) -> bool;

    /// A whole frame (the slice lives only during the call).
    fn deliver(&mut self, frame: &[u8], meta: FrameMeta);
}

/// A sink that takes every frame whole (the closure receives them).
pub struct WholeFrames<'a>(pub &'a mut dyn FnMut(&[u8], FrameMeta));

impl TxSink for WholeFrames<'_> {
    fn read_header(&self, _at: usize, _out: &mut [u8]) -> bool {
        false
    }

    fn offer(&mut self, _hdr: &[u8], _frame: &DirectFrame<'_>) -> bool {
        false
    }

    fn deliver(&mut self, frame: &[u8], meta: FrameMeta) {
        (self.0)(frame, meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn runs_split_at_slot_boundaries() {
        let segs = [
            Seg { gref: 1, offset: 4000, len: 10 },
            Seg { gref: 2, offset: 0, len: 100 },
            Seg { gref: 3, offset: 7, len: 50 },
        ];
        let f = DirectFrame {
            dom: DomId(3),
            len: 160,
            meta: FrameMeta::default(),
            segs: &segs,
            ticket: TxTicket::default(),
            hdr_at: 0,
        };
        let mut got = Vec::new();
        f.runs(5, 160, |s, o, n| got.push((s.gref, o, n)));
        assert_eq!(got, [(1, 5, 5), (2, 0, 100), (3, 0, 50)]);
        got.clear();
        f.runs(20, 115, |s, o, n| got.push((s.gref, o, n)));
        assert_eq!(got, [(2, 10, 90), (3, 0, 5)]);
        got.clear();
        f.runs(160, 160, |s, o, n| got.push((s.gref, o, n)));
        assert!(got.is_empty());
        f.runs(150, 400, |s, o, n| got.push((s.gref, o, n)));
        assert_eq!(got, [(3, 40, 10)], "bytes past the slots are skipped");
    }
}
