//! Software GSO: cutting a TCPv4/TCPv6 frame of up to 64 KiB into MSS-sized
//! segments, as Linux `tcp_gso_segment`/`inet_gso_segment` do, for a port
//! that did not negotiate GSO. Each segment is built in a caller-provided
//! scratch buffer and lent to a closure; nothing is allocated.
#![forbid(unsafe_code)]

use super::checksum::checksum;
use super::headers::{self, Headers, Ip, PROTO_TCP};
use super::meta::{Gso, GsoKind};
use super::offload::{MAX_FRAME, OffloadError, fill_checksum, fill_partial};

/// Most segments one GSO frame may become (a 64 KiB payload at a 64-byte
/// MSS); beyond that the frame is refused rather than amplified.
pub const MAX_SEGMENTS: usize = 1024;

const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// The plan for one GSO frame, checked in full before any segment is made.
#[derive(Debug, Clone, Copy)]
struct Plan {
    h: Headers,
    hdr_len: usize,
    payload: usize,
    mss: usize,
    count: usize,
}

/// Checks what does not depend on the egress port: the frame is at most
/// [`MAX_FRAME`], a TCP segment of the IP version `gso.kind` names, and
/// cuts into 1 to [`MAX_SEGMENTS`] segments of a non-zero MSS.
fn check(frame: &[u8], gso: Gso) -> Result<Plan, OffloadError> {
    if frame.len() > MAX_FRAME {
        return Err(OffloadError::TooLarge(frame.len()));
    }
    if gso.mss == 0 {
        return Err(OffloadError::MssZero);
    }
    let h = headers::parse(frame)?;
    let kind_ok = matches!((gso.kind, &h.ip), (GsoKind::TcpV4, Ip::V4 { .. }) | (GsoKind::TcpV6, Ip::V6 { .. }));
    if h.proto != PROTO_TCP || !kind_ok {
        return Err(OffloadError::GsoMismatch);
    }
    let hdr_len = h.l4 + h.l4_hdr;
    let payload = h.end() - hdr_len;
    let mss = usize::from(gso.mss);
    let count = payload.div_ceil(mss).max(1);
    if count > MAX_SEGMENTS {
        return Err(OffloadError::TooManySegments(count));
    }
    Ok(Plan { h, hdr_len, payload, mss, count })
}

/// Checks a GSO frame as it enters the switch (Linux netback's
/// `checksum_setup` plus the GSO type and size checks): its headers must
/// parse as the TCP segment its metadata names, cut into a bounded number
/// of segments. Returns the number of segments.
pub fn validate(frame: &[u8], gso: Gso) -> Result<usize, OffloadError> {
    check(frame, gso).map(|p| p.count)
}

/// The MSS that makes every segment of `p` fit in `max_len` bytes: the
/// sender's, or less when its MTU is larger than the egress port's.
fn clamp(p: Plan, max_len: usize) -> Result<Plan, OffloadError> {
    let room = max_len.saturating_sub(p.hdr_len);
    if room == 0 {
        return Err(OffloadError::Oversize { len: p.hdr_len + 1, max: max_len });
    }
    let mss = p.mss.min(room);
    let count = p.payload.div_ceil(mss).max(1);
    if count > MAX_SEGMENTS {
        return Err(OffloadError::TooManySegments(count));
    }
    Ok(Plan { mss, count, ..p })
}

/// The GSO size a port taking GSO frames of at most `max_len`-byte
/// segments should be given for `frame`: `gso.mss`, or less when the
/// sender's segments would not fit.
pub fn fit_mss(frame: &[u8], gso: Gso, max_len: usize) -> Result<u16, OffloadError> {
    let p = clamp(check(frame, gso)?, max_len)?;
    Ok(u16::try_from(p.mss).unwrap_or(gso.mss))
}

fn plan(frame: &[u8], gso: Gso, max_len: usize, scratch: usize) -> Result<Plan, OffloadError> {
    let p = clamp(check(frame, gso)?, max_len)?;
    let biggest = p.hdr_len + p.payload.min(p.mss);
    if biggest > scratch {
        return Err(OffloadError::ScratchTooSmall { need: biggest, have: scratch });
    }
    Ok(p)
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(s) = b.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

fn get16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2).map_or(0, |s| u16::from_be_bytes([s[0], s[1]]))
}

fn get32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map_or(0, |s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Cuts the GSO frame `frame` into segments of at most `gso.mss` payload
/// bytes and lends each to `out` (built in `scratch`). Every segment gets
/// the headers of the original with IP lengths, the IPv4 id (incremented
/// per segment) and header checksum, the TCP sequence number and flags
/// (CWR on the first only, FIN and PSH on the last only) rewritten, and a
/// complete TCP checksum, or the partial one when `partial`. The MSS is
/// lowered where needed so that no segment is longer than `max_len` (a
/// sender with a larger MTU than the egress port's); headers alone longer
/// than that are refused. The whole frame is checked before
/// the first segment is made: on error `out` was never called. Returns
/// the number of segments.
pub fn segment(
    frame: &[u8],
    gso: Gso,
    partial: bool,
    max_len: usize,
    scratch: &mut [u8],
    mut out: impl FnMut(&[u8]),
) -> Result<usize, OffloadError> {
    let p = plan(frame, gso, max_len, scratch.len())?;
    let h = p.h;
    let (l3, l4) = (h.l3, h.l4);
    let seq0 = get32(frame, l4 + 4);
    let flags0 = frame.get(l4 + 13).copied().unwrap_or(0);
    let id0 = get16(frame, l3 + 4);
    let headers = frame.get(..p.hdr_len).ok_or(OffloadError::GsoMismatch)?;
    for i in 0..p.count {
        let start = i * p.mss;
        let len = p.mss.min(p.payload - start);
        let body = frame.get(p.hdr_len + start..p.hdr_len + start + len).ok_or(OffloadError::GsoMismatch)?;
        let total = p.hdr_len + len;
        let seg = scratch.get_mut(..total).ok_or(OffloadError::ScratchTooSmall { need: total, have: 0 })?;
        let (hdr, data) = seg.split_at_mut(p.hdr_len);
        hdr.copy_from_slice(headers);
        data.copy_from_slice(body);
        let l4_len = h.l4_hdr + len;
        match h.ip {
            Ip::V4 { .. } => {
                put16(seg, l3 + 2, (l4 - l3 + l4_len) as u16);
                put16(seg, l3 + 4, id0.wrapping_add(i as u16));
                put16(seg, l3 + 10, 0);
                let c = seg.get(l3..l4).map_or(0, checksum);
                put16(seg, l3 + 10, c);
            }
            Ip::V6 { .. } => put16(seg, l3 + 4, (l4 - (l3 + 40) + l4_len) as u16),
        }
        let seq = seq0.wrapping_add(start as u32);
        if let Some(s) = seg.get_mut(l4 + 4..l4 + 8) {
            s.copy_from_slice(&seq.to_be_bytes());
        }
        let mut flags = flags0;
        if i > 0 {
            flags &= !TCP_CWR;
        }
        if i + 1 < p.count {
            flags &= !(TCP_FIN | TCP_PSH);
        }
        if let Some(f) = seg.get_mut(l4 + 13) {
            *f = flags;
        }
        let sh = Headers { l4_len, ..h };
        if partial {
            fill_partial(seg, &sh);
        } else {
            fill_checksum(seg, &sh);
        }
        out(seg);
    }
    Ok(p.count)
}
