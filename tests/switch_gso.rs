//! Software GSO: 64 KiB TCPv4/TCPv6 frames cut at MSS 1448, every segment
//! checked field by field and the payload reassembled.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod switch_common;

use switch_common::*;
use xvif::switch::gso::{MAX_SEGMENTS, segment};
use xvif::switch::meta::{Csum, FrameMeta, Gso, GsoKind, PortCaps};
use xvif::switch::offload::{Adapted, OffloadError, SCRATCH_LEN, adapt};

const FIN: u8 = 0x01;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;
const CWR: u8 = 0x80;

fn big(v6: bool, vlan: Option<u16>, rng: &mut Rng) -> (Spec, Vec<u8>, Layout) {
    let hdrs = 14 + vlan.map_or(0, |_| 4) + if v6 { 40 } else { 20 } + 32;
    let mut s = Spec::new(v6, L4::Tcp, Vec::new());
    s.tcp_opts = 12; // timestamps-sized
    s.vlan = vlan;
    // As large as the IP length fields allow.
    let max_payload = if v6 { 65535 - 32 } else { 65535 - 20 - 32 };
    s.payload = rng.bytes(max_payload);
    s.seq = 0xffff_f000; // wraps during the run
    s.tcp_flags = CWR | ACK | PSH | FIN;
    s.ip_id = 0xfffe; // wraps too
    let (f, lay) = build(&s, 0x1111);
    assert_eq!(lay.l4 + lay.l4_hdr, hdrs);
    (s, f, lay)
}

fn check_segments(v6: bool, vlan: Option<u16>, partial: bool) {
    let mut rng = Rng(0x6503 + u64::from(v6));
    let (s, f, lay) = big(v6, vlan, &mut rng);
    let kind = if v6 { GsoKind::TcpV6 } else { GsoKind::TcpV4 };
    let mss = 1448usize;
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let mut segs: Vec<Vec<u8>> = Vec::new();
    let hdr = lay.l4 + lay.l4_hdr;
    // Exactly as long as the egress allows (IPv6 segments are 20 bytes over 1500).
    let max = hdr + mss;
    let n = segment(&f, Gso { kind, mss: mss as u16 }, partial, max, &mut scratch, |b| segs.push(b.to_vec()))
        .expect("segments");
    // One byte less room: the MSS drops by one so that every segment fits.
    let mut longest = 0;
    let short = segment(&f, Gso { kind, mss: mss as u16 }, partial, max - 1, &mut scratch, |b| {
        longest = longest.max(b.len());
    });
    assert_eq!(short, Ok(s.payload.len().div_ceil(mss - 1)));
    assert_eq!(longest, max - 1);
    let want = s.payload.len().div_ceil(mss);
    assert_eq!(n, want);
    assert_eq!(segs.len(), want);
    let mut payload = Vec::new();
    for (i, g) in segs.iter().enumerate() {
        let len = if i + 1 == n { s.payload.len() - i * mss } else { mss };
        assert_eq!(g.len(), hdr + len, "segment {i} length");
        // Ethernet and VLAN unchanged.
        assert_eq!(&g[..lay.l3], &f[..lay.l3]);
        if v6 {
            assert_eq!(u16::from_be_bytes([g[lay.l3 + 4], g[lay.l3 + 5]]) as usize, lay.l4_hdr + len);
        } else {
            assert_eq!(u16::from_be_bytes([g[lay.l3 + 2], g[lay.l3 + 3]]) as usize, 20 + lay.l4_hdr + len);
            assert_eq!(u16::from_be_bytes([g[lay.l3 + 4], g[lay.l3 + 5]]), s.ip_id.wrapping_add(i as u16));
            assert_eq!(ref_checksum(&g[lay.l3..lay.l4]), 0, "IPv4 header checksum of segment {i}");
        }
        let seq = u32::from_be_bytes(g[lay.l4 + 4..lay.l4 + 8].try_into().unwrap());
        assert_eq!(seq, s.seq.wrapping_add((i * mss) as u32));
        let flags = g[lay.l4 + 13];
        assert_eq!(flags & ACK, ACK);
        assert_eq!(flags & CWR != 0, i == 0, "CWR only on the first");
        assert_eq!(flags & (FIN | PSH) != 0, i + 1 == n, "FIN/PSH only on the last");
        if i + 1 == n {
            assert_eq!(flags & (FIN | PSH), FIN | PSH);
        }
        // TCP options copied.
        assert_eq!(&g[lay.l4 + 20..hdr], &f[lay.l4 + 20..hdr]);
        let field = u16::from_be_bytes([g[lay.l4 + 16], g[lay.l4 + 17]]);
        if partial {
            // The folded pseudo-header sum, as Linux leaves CHECKSUM_PARTIAL.
            let p = pseudo_bytes(v6, 6, g.len() - lay.l4);
            assert_eq!(field, !ref_checksum(&p), "partial checksum of segment {i}");
        } else {
            assert!(l4_verifies(g, v6, L4::Tcp, lay.l4, g.len()), "TCP checksum of segment {i}");
        }
        payload.extend_from_slice(&g[hdr..]);
    }
    assert_eq!(payload, s.payload, "reassembled payload");
}

#[test]
fn tcpv4_64k_at_mss_1448() {
    check_segments(false, None, false);
    check_segments(false, Some(42), false);
    check_segments(false, None, true);
}

#[test]
fn tcpv6_64k_at_mss_1448() {
    check_segments(true, None, false);
    check_segments(true, Some(7), false);
    check_segments(true, None, true);
}

#[test]
fn bad_gso_requests_are_refused_before_any_output() {
    let mut rng = Rng(9);
    let (_, f, _) = big(false, None, &mut rng);
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let no = |_: &[u8]| panic!("no segment may be emitted");
    let v4 = |mss| Gso { kind: GsoKind::TcpV4, mss };
    assert_eq!(segment(&f, v4(0), false, 1518, &mut scratch, no), Err(OffloadError::MssZero));
    assert_eq!(segment(&f, v4(1), false, 1518, &mut scratch, no), Err(OffloadError::TooManySegments(65535 - 52)));
    const { assert!(65535 / 63 > MAX_SEGMENTS) };
    assert!(matches!(segment(&f, v4(63), false, 1518, &mut scratch, no), Err(OffloadError::TooManySegments(_))));
    // Headers alone that would not fit the egress MTU.
    assert_eq!(
        segment(&f, v4(9000), false, 14 + 20 + 32, &mut scratch, no),
        Err(OffloadError::Oversize { len: 14 + 20 + 32 + 1, max: 14 + 20 + 32 })
    );
    // Scratch too small.
    assert_eq!(
        segment(&f, v4(1448), false, 1518, &mut scratch[..1000], no),
        Err(OffloadError::ScratchTooSmall { need: 14 + 20 + 32 + 1448, have: 1000 })
    );
    // Type disagrees with the frame.
    let v6 = Gso { kind: GsoKind::TcpV6, mss: 1448 };
    assert_eq!(segment(&f, v6, false, 1518, &mut scratch, no), Err(OffloadError::GsoMismatch));
    let udp = build(&Spec::new(false, L4::Udp, vec![0; 3000]), 0).0;
    assert_eq!(segment(&udp, v4(1448), false, 1518, &mut scratch, no), Err(OffloadError::GsoMismatch));
    // Larger than 64 KiB.
    let mut huge = f.clone();
    huge.resize(70_000, 0);
    assert_eq!(segment(&huge, v4(1448), false, 1518, &mut scratch, no), Err(OffloadError::TooLarge(70_000)));
}

#[test]
fn small_gso_frame_is_one_segment_and_adapt_chooses_by_caps() {
    let mut s = Spec::new(false, L4::Tcp, vec![5; 1000]);
    s.tcp_flags = CWR | ACK | FIN;
    let (f, lay) = build(&s, 0);
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let meta = FrameMeta { csum: Csum::Partial, gso: Some(Gso { kind: GsoKind::TcpV4, mss: 1448 }) };
    let mut out = Vec::new();
    let r = adapt(&f, &meta, &PortCaps::default(), &mut scratch, |b, m| out.push((b.to_vec(), *m)));
    assert_eq!(r, Ok(Adapted::Segmented(1)));
    assert_eq!(out[0].1, FrameMeta { csum: Csum::Validated, gso: None });
    assert_eq!(out[0].0[lay.l4 + 13], CWR | ACK | FIN, "the only segment is first and last");
    assert!(l4_verifies(&out[0].0, false, L4::Tcp, lay.l4, lay.end));
    // A GSO-capable port gets the frame whole, metadata unchanged.
    out.clear();
    let caps = PortCaps { accepts_partial_csum: true, gso_tcpv4: true, gso_tcpv6: false, mtu: 1500 };
    let r = adapt(&f, &meta, &caps, &mut scratch, |b, m| out.push((b.to_vec(), *m)));
    assert_eq!(r, Ok(Adapted::AsIs));
    assert_eq!(out, vec![(f.clone(), meta)]);
    // Partial-capable but not GSO-capable: segments left partial.
    out.clear();
    let caps = PortCaps { gso_tcpv4: false, ..caps };
    let mut s2 = Spec::new(false, L4::Tcp, vec![6; 4000]);
    s2.tcp_flags = ACK;
    let (f2, _) = build(&s2, 0);
    let r = adapt(&f2, &meta, &caps, &mut scratch, |b, m| out.push((b.to_vec(), *m)));
    assert_eq!(r, Ok(Adapted::Segmented(3)));
    assert!(out.iter().all(|(_, m)| m.csum == Csum::Partial && m.gso.is_none()));
}

/// A jumbo sender (MTU 9000, MSS 8948) to ports with a 1500 MTU: a port
/// without GSO gets 1500-byte segments, a GSO port gets the frame whole
/// with its GSO size lowered to what fits, a 9000 port gets it unchanged.
#[test]
fn jumbo_gso_frames_fit_the_egress_mtu() {
    let mut s = Spec::new(false, L4::Tcp, vec![7; 30_000]);
    s.tcp_flags = ACK;
    let (f, lay) = build(&s, 0);
    let hdr = lay.l4 + lay.l4_hdr;
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let meta = FrameMeta { csum: Csum::Partial, gso: Some(Gso { kind: GsoKind::TcpV4, mss: 8948 }) };
    let mut out = Vec::new();
    let plain = PortCaps::plain(1500);
    let r = adapt(&f, &meta, &plain, &mut scratch, |b, m| out.push((b.len(), *m)));
    let mss = 1514 - hdr;
    assert_eq!(r, Ok(Adapted::Segmented(30_000usize.div_ceil(mss))));
    assert!(out.iter().all(|&(len, m)| len <= 1514 && m.gso.is_none()), "{out:?}");
    assert_eq!(out[0].0, 1514);
    out.clear();
    let gso = PortCaps { accepts_partial_csum: true, gso_tcpv4: true, gso_tcpv6: false, mtu: 1500 };
    assert_eq!(adapt(&f, &meta, &gso, &mut scratch, |b, m| out.push((b.len(), *m))), Ok(Adapted::AsIs));
    let lowered = FrameMeta { gso: Some(Gso { kind: GsoKind::TcpV4, mss: mss as u16 }), ..meta };
    assert_eq!(out, vec![(f.len(), lowered)]);
    out.clear();
    let jumbo = PortCaps { mtu: 9000, ..gso };
    assert_eq!(adapt(&f, &meta, &jumbo, &mut scratch, |b, m| out.push((b.len(), *m))), Ok(Adapted::AsIs));
    assert_eq!(out, vec![(f.len(), meta)]);
}
