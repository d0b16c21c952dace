//! Checksum completion, and fitting a frame to what an egress port takes:
//! pass it as it is, complete its partial checksum in a scratch copy, or cut
//! a GSO frame into segments (`gso`). Nothing here allocates.
#![forbid(unsafe_code)]

use super::checksum::{add, fold};
use super::gso;
use super::headers::{self, HeaderError, Headers, PROTO_UDP};
use super::meta::{Csum, FrameMeta, PortCaps};

/// Largest frame the offload code looks at: the largest IPv6 datagram
/// without jumbograms (64 KiB payload and its 40-byte header), an Ethernet
/// header and one VLAN tag.
pub const MAX_FRAME: usize = 65535 + 40 + headers::ETH_HDR + headers::VLAN_TAG;
/// Scratch space that fits every frame [`adapt`] can produce.
pub const SCRATCH_LEN: usize = MAX_FRAME;

/// Why a frame could not be fitted to an egress port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffloadError {
    /// The headers do not parse.
    Header(HeaderError),
    /// Frame longer than [`MAX_FRAME`].
    TooLarge(usize),
    /// GSO segment size 0.
    MssZero,
    /// GSO would produce more than [`gso::MAX_SEGMENTS`] segments.
    TooManySegments(usize),
    /// GSO type disagrees with the frame (not TCP, or the other IP version).
    GsoMismatch,
    /// The caller's scratch buffer is shorter than needed.
    ScratchTooSmall {
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        have: usize,
    },
    /// The frame (or a segment) is longer than the port's MTU allows.
    Oversize {
        /// Frame length.
        len: usize,
        /// Largest frame the port takes.
        max: usize,
    },
}

impl From<HeaderError> for OffloadError {
    fn from(e: HeaderError) -> Self {
        Self::Header(e)
    }
}

/// Writes the complete TCP/UDP checksum of the datagram described by `h`
/// into `frame`, ignoring whatever the checksum field held.
pub fn fill_checksum(frame: &mut [u8], h: &Headers) {
    let field = h.csum_field();
    if let Some(f) = frame.get_mut(field..field + 2) {
        f.copy_from_slice(&[0, 0]);
    }
    let sum = frame.get(h.l4..h.end()).map_or(0, |l4| add(h.pseudo(h.l4_len), l4));
    let mut c = !fold(sum);
    if c == 0 && h.proto == PROTO_UDP {
        c = 0xffff;
    }
    if let Some(f) = frame.get_mut(field..field + 2) {
        f.copy_from_slice(&c.to_be_bytes());
    }
}

/// Writes the partial checksum Linux expects with CHECKSUM_PARTIAL (the
/// folded pseudo-header sum, not complemented) into `frame`.
pub fn fill_partial(frame: &mut [u8], h: &Headers) {
    let field = h.csum_field();
    if let Some(f) = frame.get_mut(field..field + 2) {
        f.copy_from_slice(&fold(h.pseudo(h.l4_len)).to_be_bytes());
    }
}

/// Completes the TCP/UDP checksum of a partial frame in place.
pub fn complete_checksum(frame: &mut [u8]) -> Result<Headers, OffloadError> {
    if frame.len() > MAX_FRAME {
        return Err(OffloadError::TooLarge(frame.len()));
    }
    let h = headers::parse(frame)?;
    fill_checksum(frame, &h);
    Ok(h)
}

/// Checks an ingress frame's offload metadata against its headers, as
/// Linux netback's `checksum_setup` does for what a guest transmits, and
/// returns the metadata the switch forwards it with. A GSO frame must pass
/// [`gso::validate`] and is always partial (a frontend that sends GSO
/// without `csum_blank` is fixed up as Linux does; segmentation rewrites
/// the checksum field either way). A partial frame must be TCP or UDP over
/// IPv4/IPv6 whose checksum field lies inside the datagram. Other frames
/// are not looked at.
pub fn validate(frame: &[u8], meta: &FrameMeta) -> Result<FrameMeta, OffloadError> {
    if let Some(g) = meta.gso {
        gso::validate(frame, g)?;
        return Ok(FrameMeta { csum: Csum::Partial, gso: Some(g) });
    }
    if meta.csum == Csum::Partial {
        if frame.len() > MAX_FRAME {
            return Err(OffloadError::TooLarge(frame.len()));
        }
        let h = headers::parse(frame)?;
        // The parser bounds the L4 header by the datagram; a checksum
        // field outside it would make the receiver write past the data.
        if h.csum_field() + 2 > h.end() {
            return Err(OffloadError::Header(HeaderError::BadL4Length(h.l4_len)));
        }
    }
    Ok(*meta)
}

/// Largest frame a port with IP MTU `mtu` takes for `frame`: header, one
/// VLAN tag when the frame has one.
pub fn max_frame(mtu: u16, frame: &[u8]) -> usize {
    let tagged = matches!(frame.get(12..14), Some([0x81, 0x00]) | Some([0x88, 0xa8]));
    usize::from(mtu) + headers::ETH_HDR + if tagged { headers::VLAN_TAG } else { 0 }
}

/// What [`adapt`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapted {
    /// Passed as it was.
    AsIs,
    /// Copied and its checksum completed.
    Completed,
    /// Cut into this many segments.
    Segmented(usize),
}

/// Hands `frame` to `out` in a form the port with `caps` takes: as it is
/// (zero-copy) when it can, else completed or segmented in `scratch`
/// (at least [`SCRATCH_LEN`] bytes to fit every case). `out` sees each
/// resulting frame with its metadata. On error nothing was handed out.
pub fn adapt(
    frame: &[u8],
    meta: &FrameMeta,
    caps: &PortCaps,
    scratch: &mut [u8],
    mut out: impl FnMut(&[u8], &FrameMeta),
) -> Result<Adapted, OffloadError> {
    if let Some(g) = meta.gso {
        let max = max_frame(caps.mtu, frame);
        if caps.accepts_gso(g.kind) {
            // Whole, but its segments must fit this port's MTU: a frame no
            // longer than that needs no look at its headers.
            let mss = if frame.len() <= max { g.mss } else { gso::fit_mss(frame, g, max)? };
            if mss == g.mss {
                out(frame, meta);
            } else {
                out(frame, &FrameMeta { gso: Some(super::meta::Gso { mss, ..g }), ..*meta });
            }
            return Ok(Adapted::AsIs);
        }
        let partial = caps.accepts_partial_csum;
        let seg_meta = FrameMeta { csum: if partial { Csum::Partial } else { Csum::Validated }, gso: None };
        let n = gso::segment(frame, g, partial, max, scratch, |s| out(s, &seg_meta))?;
        return Ok(Adapted::Segmented(n));
    }
    let max = max_frame(caps.mtu, frame);
    if frame.len() > max {
        return Err(OffloadError::Oversize { len: frame.len(), max });
    }
    if meta.csum != Csum::Partial || caps.accepts_partial_csum {
        out(frame, meta);
        return Ok(Adapted::AsIs);
    }
    let have = scratch.len();
    let copy = scratch.get_mut(..frame.len()).ok_or(OffloadError::ScratchTooSmall { need: frame.len(), have })?;
    copy.copy_from_slice(frame);
    complete_checksum(copy)?;
    out(copy, &FrameMeta { csum: Csum::Validated, gso: None });
    Ok(Adapted::Completed)
}
