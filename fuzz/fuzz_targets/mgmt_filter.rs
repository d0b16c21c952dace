//! The management stack's ingress filter (`mgmt::filter::screen`) on
//! arbitrary frames from the NIC, then the whole management stack (smoltcp
//! with its services, told that checksums were verified) on the same
//! frames. The input is a mode byte and a list of frames; in "fix" mode the
//! harness may aim a frame at the stack's MAC and address and then sets
//! every checksum right (with its own plain implementation), so that the
//! fuzzer reaches the services rather than the checksum drop.
//!
//! Checked beyond "no panic":
//! * each verdict counts exactly one counter (echo requests only when
//!   accepted), and the stack's own counters equal the sum of the verdicts;
//! * an accepted IPv4 frame has a right header checksum, an accepted
//!   TCP/UDP/ICMP datagram a right checksum over exactly the bytes the IP
//!   length fields give (independent checksum code);
//! * with checksums set right and lengths consistent, TCP and UDP are
//!   accepted;
//! * the stack only transmits frames between 14 and 1514 bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::VecDeque;
use xvif::config::{IpConfig, Ipv4Cidr};
use xvif::drivers::port::{Port, PortStats};
use xvif::mgmt::filter::{FilterStats, Verdict, screen};
use xvif::mgmt::{Mgmt, MgmtConfig};
use xvif_fuzz::Input;

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const IP: [u8; 4] = [10, 0, 2, 15];

/// A NIC that delivers the input's frames and checks what is sent.
struct FakeNic {
    rx: VecDeque<Vec<u8>>,
    sent: usize,
}

impl Port for FakeNic {
    fn name(&self) -> &'static str {
        "fuzz"
    }
    fn mac(&self) -> [u8; 6] {
        MAC
    }
    fn link_up(&self) -> bool {
        true
    }
    fn service(&mut self, _now_ns: u64) -> bool {
        false
    }
    fn receive<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let frame = self.rx.pop_front()?;
        Some(f(&frame))
    }
    fn transmit<R, F: FnOnce(&mut [u8]) -> R>(&mut self, len: usize, f: F) -> Result<R, F> {
        assert!((14..=1514).contains(&len), "the stack sent a {len}-byte frame");
        self.sent += 1;
        let mut buf = vec![0; len];
        Ok(f(&mut buf))
    }
    fn can_transmit(&self) -> bool {
        self.sent < 1024
    }
    fn stats(&self) -> PortStats {
        PortStats::default()
    }
}

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

/// One's-complement sum of 16-bit words (RFC 1071), unfolded.
fn sum(mut acc: u64, data: &[u8]) -> u64 {
    let mut it = data.chunks(2);
    for w in &mut it {
        acc += u64::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Where the checksummed parts of a frame are, by the IP length fields.
#[derive(Debug, Clone, Copy)]
enum Layout {
    /// IPv4: header range, L4 range, protocol, fragment.
    V4 {
        l3: usize,
        l4: usize,
        end: usize,
        proto: u8,
        frag: bool,
    },
    /// IPv6: L4 range and next header.
    V6 {
        l4: usize,
        end: usize,
        proto: u8,
    },
    Other,
}

fn layout(f: &[u8]) -> Layout {
    if f.len() < 14 {
        return Layout::Other;
    }
    match be16(f, 12) {
        0x0800 if f.len() >= 34 => {
            let ihl = usize::from(f[14] & 0xf) * 4;
            let total = be16(f, 16);
            if ihl < 20 || total < ihl || 14 + total > f.len() {
                return Layout::Other;
            }
            let frag = be16(f, 20) & 0x3fff != 0;
            Layout::V4 { l3: 14, l4: 14 + ihl, end: 14 + total, proto: f[23], frag }
        }
        0x86dd if f.len() >= 54 => {
            let plen = be16(f, 18);
            if 54 + plen > f.len() {
                return Layout::Other;
            }
            Layout::V6 { l4: 54, end: 54 + plen, proto: f[20] }
        }
        _ => Layout::Other,
    }
}

fn pseudo(f: &[u8], lay: Layout, len: usize) -> u64 {
    match lay {
        Layout::V4 { l3, proto, .. } => sum(sum(0, &f[l3 + 12..l3 + 20]), &[0, proto]) + len as u64,
        Layout::V6 { proto, .. } => sum(sum(0, &f[22..54]), &[0, proto]) + len as u64,
        Layout::Other => 0,
    }
}

/// The L4 bytes and checksum field offset the filter must check, if the
/// datagram's own length fields are consistent.
fn l4_span(f: &[u8], lay: Layout) -> Option<(usize, usize, usize, bool)> {
    let (l4, end, proto) = match lay {
        Layout::V4 { l4, end, proto, frag: false, .. } => (l4, end, proto),
        Layout::V6 { l4, end, proto } => (l4, end, proto),
        _ => return None,
    };
    let seg = &f[l4..end];
    match proto {
        17 if seg.len() >= 8 => {
            let ulen = be16(seg, 4);
            (8..=seg.len()).contains(&ulen).then_some((l4, l4 + ulen, l4 + 6, true))
        }
        6 if seg.len() >= 20 => {
            let doff = usize::from(seg[12] >> 4) * 4;
            (20..=seg.len()).contains(&doff).then_some((l4, end, l4 + 16, true))
        }
        1 if matches!(lay, Layout::V4 { .. }) && seg.len() >= 8 => Some((l4, end, l4 + 2, false)),
        58 if matches!(lay, Layout::V6 { .. }) && seg.len() >= 8 => Some((l4, end, l4 + 2, true)),
        _ => None,
    }
}

/// Aims the frame at the stack and sets every checksum right.
fn fix(f: &mut [u8], aim: bool) {
    if aim && f.len() >= 14 {
        f[..6].copy_from_slice(&MAC);
    }
    let lay = layout(f);
    if let Layout::V4 { l3, l4, .. } = lay {
        if aim {
            f[l3 + 16..l3 + 20].copy_from_slice(&IP);
        }
        f[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
        let c = !fold(sum(0, &f[l3..l4]));
        f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
    }
    if let Some((a, b, field, with_pseudo)) = l4_span(f, lay) {
        f[field..field + 2].copy_from_slice(&[0, 0]);
        let ps = if with_pseudo { pseudo(f, lay, b - a) } else { 0 };
        let mut c = !fold(sum(ps, &f[a..b]));
        if c == 0 {
            c = 0xffff;
        }
        f[field..field + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// Checks the verdict against the frame, independently of smoltcp.
fn check(f: &[u8], v: Verdict) {
    let lay = layout(f);
    if v == Verdict::Accept {
        if let Layout::V4 { l3, l4, .. } = lay {
            assert_eq!(fold(sum(0, &f[l3..l4])), 0xffff, "accepted an IPv4 header with a bad checksum");
        }
        if let Some((a, b, field, with_pseudo)) = l4_span(f, lay) {
            let udp_none = field == a + 6 && f[field..field + 2] == [0, 0];
            let ps = if with_pseudo { pseudo(f, lay, b - a) } else { 0 };
            assert!(udp_none || fold(sum(ps, &f[a..b])) == 0xffff, "accepted a datagram with a bad checksum");
        }
    }
}

fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let mode = inp.u8();
    let mut frames = Vec::new();
    while !inp.is_empty() && frames.len() < 32 {
        let len = usize::from(inp.u16()) % 1600;
        let flags = inp.u8();
        let mut f = inp.bytes(len).to_vec();
        if mode & 1 != 0 && flags & 1 != 0 {
            fix(&mut f, flags & 2 != 0);
        }
        frames.push(f);
    }
    let mut want = FilterStats::default();
    for f in &frames {
        let before = want;
        let v = screen(f, &mut want);
        let d = |a: u64, b: u64| a - b;
        let counted = [
            d(want.malformed, before.malformed),
            d(want.bad_checksum, before.bad_checksum),
            d(want.unknown_ethertype, before.unknown_ethertype),
        ];
        let expect = match v {
            Verdict::Accept => [0, 0, 0],
            Verdict::Malformed => [1, 0, 0],
            Verdict::BadChecksum => [0, 1, 0],
            Verdict::UnknownEtherType(t) => {
                assert_eq!(Some(usize::from(t)), (f.len() >= 14).then(|| be16(f, 12)));
                [0, 0, 1]
            }
        };
        assert_eq!(counted, expect, "{v:?} counted as {counted:?}");
        assert!(want.echo_requests == before.echo_requests || v == Verdict::Accept, "echo counted on a drop");
        check(f, v);
        if mode & 1 != 0 && matches!(l4_span(f, layout(f)), Some((_, _, _, true))) {
            let lay = layout(f);
            let tcp_udp = matches!(lay, Layout::V4 { proto: 6 | 17, .. } | Layout::V6 { proto: 6 | 17, .. });
            let ok = {
                let mut g = f.clone();
                fix(&mut g, false);
                g == *f
            };
            if tcp_udp && ok && f.len() >= 14 {
                assert_eq!(v, Verdict::Accept, "a well-formed datagram with right checksums was dropped");
            }
        }
    }
    if mode & 2 == 0 {
        return;
    }
    // The same frames through the whole stack.
    let mut nic = FakeNic { rx: frames.into_iter().collect(), sent: 0 };
    let cfg = MgmtConfig { ip: Some(IpConfig::Static(Ipv4Cidr { addr: IP, prefix: 24 })), gw: Some([10, 0, 2, 2]) };
    let mut m = Mgmt::new(&mut nic, cfg, 1_000_000);
    let mut now = 1_000_000u64;
    for _ in 0..8 {
        now += 1_000_000;
        m.poll(&mut nic, now);
        if nic.rx.is_empty() {
            break;
        }
    }
    assert!(nic.rx.is_empty(), "the stack left frames unread");
    assert_eq!(m.stats().filter, want, "the stack's filter counters");
}

fuzz_target!(|data: &[u8]| run(data));
