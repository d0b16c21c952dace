//! Checksum completion against an independent checksum on generated frames,
//! and typed errors (never a panic) on truncated or hostile frames.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod switch_common;

use switch_common::*;
use xvif::switch::headers::HeaderError;
use xvif::switch::meta::{Csum, FrameMeta, PortCaps};
use xvif::switch::offload::{Adapted, OffloadError, SCRATCH_LEN, adapt, complete_checksum};

fn random_spec(rng: &mut Rng) -> Spec {
    let v6 = rng.below(2) == 1;
    let l4 = if rng.below(2) == 1 { L4::Tcp } else { L4::Udp };
    let len = match rng.below(4) {
        0 => rng.below(8) as usize,
        1 => 1 + 2 * rng.below(700) as usize,
        _ => rng.below(1400) as usize,
    };
    let mut s = Spec::new(v6, l4, rng.bytes(len));
    if rng.below(2) == 1 {
        s.vlan = Some(rng.below(4096) as u16);
    }
    s.ip_opts = if v6 { rng.below(4) as usize } else { 4 * rng.below(4) as usize };
    if l4 == L4::Tcp {
        s.tcp_opts = 4 * rng.below(6) as usize;
    }
    if rng.below(4) == 0 {
        s.pad = rng.below(20) as usize;
    }
    s
}

#[test]
fn completes_tcp_and_udp_over_ipv4_and_ipv6_with_and_without_vlan() {
    let mut rng = Rng(0x5eed_0001);
    let mut seen = [[[false; 2]; 2]; 2];
    for _ in 0..4000 {
        let s = random_spec(&mut rng);
        // Whatever the field holds, the result must be the same.
        let (mut f, lay) = build(&s, rng.next() as u16);
        let want = ref_l4_checksum(&f, s.v6, s.l4, lay.l4, lay.end);
        let h = complete_checksum(&mut f).expect("well-formed frame");
        assert_eq!(h.l4, lay.l4);
        assert_eq!(h.end(), lay.end);
        let at = lay.l4 + s.l4.csum_off();
        assert_eq!(u16::from_be_bytes([f[at], f[at + 1]]), want, "{s:?}");
        assert!(l4_verifies(&f, s.v6, s.l4, lay.l4, lay.end));
        seen[usize::from(s.v6)][usize::from(s.l4 == L4::Tcp)][usize::from(s.vlan.is_some())] = true;
    }
    assert!(seen.iter().flatten().flatten().all(|&b| b), "every combination generated");
}

#[test]
fn udp_zero_checksum_is_sent_as_ffff() {
    // Search payloads until the computed UDP checksum is zero.
    let mut found = false;
    for x in 0..=0xffffu32 {
        let s = Spec::new(false, L4::Udp, vec![(x >> 8) as u8, x as u8]);
        let (mut f, lay) = build(&s, 0);
        let raw = {
            let mut all = pseudo_bytes(false, 17, lay.end - lay.l4);
            all.extend_from_slice(&f[lay.l4..lay.end]);
            ref_checksum(&all)
        };
        if raw != 0 {
            continue;
        }
        complete_checksum(&mut f).expect("parses");
        assert_eq!(&f[lay.l4 + 6..lay.l4 + 8], &[0xff, 0xff]);
        found = true;
        break;
    }
    assert!(found);
}

fn err(mut f: Vec<u8>) -> OffloadError {
    complete_checksum(&mut f).expect_err("must be refused")
}

#[test]
fn bad_headers_are_typed_errors() {
    let s = Spec::new(false, L4::Tcp, vec![7; 100]);
    let (f, lay) = build(&s, 0);
    // Truncated at every length.
    for n in 0..lay.end {
        let e = err(f[..n].to_vec());
        assert!(matches!(e, OffloadError::Header(_)), "len {n}: {e:?}");
    }
    let mut g = f.clone();
    g[lay.l3] = 0x44; // IHL 4
    assert_eq!(err(g), OffloadError::Header(HeaderError::BadIhl(4)));
    let mut g = f.clone();
    g[lay.l3] = 0x65;
    assert_eq!(err(g), OffloadError::Header(HeaderError::BadVersion(6)));
    let mut g = f.clone();
    g[lay.l3 + 6] = 0x20; // MF
    assert_eq!(err(g), OffloadError::Header(HeaderError::Fragment));
    let mut g = f.clone();
    g[lay.l3 + 7] = 0x08; // offset
    assert_eq!(err(g), OffloadError::Header(HeaderError::Fragment));
    let mut g = f.clone();
    g[lay.l3 + 2..lay.l3 + 4].copy_from_slice(&2000u16.to_be_bytes());
    assert_eq!(err(g), OffloadError::Header(HeaderError::BadIpLength(2000)));
    let mut g = f.clone();
    g[lay.l3 + 9] = 1; // ICMP
    assert_eq!(err(g), OffloadError::Header(HeaderError::UnsupportedProto(1)));
    let mut g = f.clone();
    g[lay.l4 + 12] = 0x40; // data offset 4
    assert_eq!(err(g), OffloadError::Header(HeaderError::BadTcpHeader(4)));
    let mut g = f.clone();
    g[lay.l4 + 12] = 0xf0; // 60-byte TCP header in a 120-byte segment is fine ...
    assert!(complete_checksum(&mut g).is_ok());
    let s2 = Spec::new(false, L4::Tcp, vec![7; 10]);
    let (mut g, l2) = build(&s2, 0);
    g[l2.l4 + 12] = 0xf0; // ... but not in a 30-byte one
    assert_eq!(err(g), OffloadError::Header(HeaderError::BadTcpHeader(15)));
    let mut g = f.clone();
    g[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(err(g), OffloadError::Header(HeaderError::NotIp(0x0806)));
}

#[test]
fn ipv6_extension_headers_are_bounded_and_fragments_refused() {
    let mut s = Spec::new(true, L4::Udp, vec![1; 40]);
    s.ip_opts = 8;
    let (mut f, _) = build(&s, 0);
    assert!(complete_checksum(&mut f).is_ok());
    s.ip_opts = 9;
    let (f, _) = build(&s, 0);
    assert_eq!(err(f), OffloadError::Header(HeaderError::TooManyExtHeaders));
    // A fragment header with M set.
    let s = Spec::new(true, L4::Udp, vec![1; 40]);
    let (f, lay) = build(&s, 0);
    let mut g = f[..lay.l3 + 40].to_vec();
    g[lay.l3 + 6] = 44;
    g.extend_from_slice(&[17, 0, 0, 1, 0, 0, 0, 9]);
    g.extend_from_slice(&f[lay.l3 + 40..]);
    let plen = u16::from_be_bytes([g[lay.l3 + 4], g[lay.l3 + 5]]) + 8;
    g[lay.l3 + 4..lay.l3 + 6].copy_from_slice(&plen.to_be_bytes());
    assert_eq!(err(g.clone()), OffloadError::Header(HeaderError::Fragment));
    // An atomic fragment (offset 0, no M) is whole.
    g[lay.l3 + 40 + 3] = 0;
    assert!(complete_checksum(&mut g).is_ok());
    // Payload length zero (jumbogram) refused.
    let (mut g, lay) = build(&s, 0);
    g[lay.l3 + 4] = 0;
    g[lay.l3 + 5] = 0;
    assert_eq!(err(g), OffloadError::Header(HeaderError::BadIpLength(0)));
}

#[test]
fn adapt_passes_completes_or_refuses() {
    let s = Spec::new(false, L4::Tcp, vec![3; 1000]);
    let (f, lay) = build(&s, 0xdead);
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let partial = FrameMeta { csum: Csum::Partial, gso: None };
    // A port taking partial checksums gets the very same bytes.
    let caps = PortCaps { accepts_partial_csum: true, ..PortCaps::default() };
    let mut got = Vec::new();
    let r = adapt(&f, &partial, &caps, &mut scratch, |b, m| got.push((b.to_vec(), *m)));
    assert_eq!(r, Ok(Adapted::AsIs));
    assert_eq!(got, vec![(f.clone(), partial)]);
    // A plain port gets it completed and marked validated.
    got.clear();
    let r = adapt(&f, &partial, &PortCaps::default(), &mut scratch, |b, m| got.push((b.to_vec(), *m)));
    assert_eq!(r, Ok(Adapted::Completed));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1.csum, Csum::Validated);
    assert!(l4_verifies(&got[0].0, false, L4::Tcp, lay.l4, lay.end));
    // A non-partial frame is never touched.
    got.clear();
    let r = adapt(&f, &FrameMeta::PLAIN, &PortCaps::default(), &mut scratch, |b, m| got.push((b.to_vec(), *m)));
    assert_eq!(r, Ok(Adapted::AsIs));
    assert_eq!(got[0].0, f);
    // Too long for the port: refused, nothing handed out.
    let small = PortCaps::plain(576);
    let r = adapt(&f, &FrameMeta::PLAIN, &small, &mut scratch, |_, _| panic!("must not deliver"));
    assert_eq!(r, Err(OffloadError::Oversize { len: f.len(), max: 590 }));
    // Garbage partial frame: typed error, nothing handed out.
    let r = adapt(&f[..30], &partial, &PortCaps::default(), &mut scratch, |_, _| panic!("must not deliver"));
    assert!(matches!(r, Err(OffloadError::Header(HeaderError::Truncated { .. }))));
    // Scratch too small.
    let r = adapt(&f, &partial, &PortCaps::default(), &mut scratch[..100], |_, _| panic!("must not deliver"));
    assert_eq!(r, Err(OffloadError::ScratchTooSmall { need: f.len(), have: 100 }));
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = Rng(0xbad_5eed);
    let mut scratch = vec![0u8; SCRATCH_LEN];
    let caps = [PortCaps::default(), PortCaps { accepts_partial_csum: true, ..PortCaps::default() }];
    for i in 0..20000 {
        // Half: valid frames with random bytes flipped; half: pure noise.
        let mut f = if i % 2 == 0 {
            let s = random_spec(&mut rng);
            build(&s, 0).0
        } else {
            let n = rng.below(200) as usize;
            rng.bytes(n)
        };
        for _ in 0..rng.below(6) {
            if !f.is_empty() {
                let at = rng.below(f.len() as u64) as usize;
                f[at] = rng.next() as u8;
            }
        }
        if i % 3 == 0 && f.len() > 13 {
            f[12..14].copy_from_slice(if i % 2 == 0 { &[0x08, 0x00] } else { &[0x86, 0xdd] });
        }
        let mut g = f.clone();
        let _ = complete_checksum(&mut g);
        let gso = if rng.below(2) == 0 {
            let kind =
                if rng.below(2) == 0 { xvif::switch::meta::GsoKind::TcpV4 } else { xvif::switch::meta::GsoKind::TcpV6 };
            Some(xvif::switch::meta::Gso { kind, mss: rng.below(2000) as u16 })
        } else {
            None
        };
        let meta = FrameMeta { csum: Csum::Partial, gso };
        let mut n = 0usize;
        let _ = adapt(&f, &meta, &caps[i % 2], &mut scratch, |b, _| n += b.len());
    }
}
