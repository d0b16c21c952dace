//! Packet capture on one switch port, in pcap format (the classic libpcap
//! file: a 24-byte global header, then per frame a 16-byte record header
//! and the frame), readable by `tcpdump -r` and Wireshark.
//!
//! The switch records every frame the port sends into the switch and every
//! frame the switch hands to the port, up to a frame count. Records go into
//! a buffer whose size is fixed when the capture starts: nothing on the
//! packet path allocates, a frame that does not fit while the reader lags
//! is counted as dropped rather than waited for, and a port that is not
//! captured pays one comparison per frame.
#![forbid(unsafe_code)]

use super::PortId;
use alloc::collections::VecDeque;

/// Bytes of each frame kept (the largest frame the switch carries).
pub const SNAPLEN: u32 = 65_535;
/// `LINKTYPE_ETHERNET`.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Bytes of records a capture buffers for its reader.
pub const BUFFER: usize = 256 * 1024;
/// Frames one capture records at most.
pub const MAX_COUNT: u32 = 100_000;

/// The pcap global header: microsecond timestamps, version 2.4, Ethernet.
pub fn global_header() -> [u8; 24] {
    let mut h = [0u8; 24];
    h[0..4].copy_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    h[4..6].copy_from_slice(&2u16.to_le_bytes());
    h[6..8].copy_from_slice(&4u16.to_le_bytes());
    h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
    h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
    h
}

/// One port's capture.
#[derive(Debug)]
pub struct Capture {
    port: PortId,
    buf: VecDeque<u8>,
    cap: usize,
    /// Frames still to record.
    left: u32,
    /// Frames recorded.
    pub recorded: u64,
    /// Frames not recorded because the buffer was full.
    pub dropped: u64,
    /// A TCP connection left out (its two ports): the one the capture
    /// itself is streamed over, which would otherwise record itself.
    exclude: Option<(u16, u16)>,
}

/// The TCP ports of an IPv4 or IPv6 TCP frame (untagged or one VLAN tag;
/// IPv6 without extension headers).
fn tcp_ports(frame: &[u8]) -> Option<(u16, u16)> {
    let be16 = |at: usize| frame.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let (mut ty, mut l3) = (be16(12)?, 14);
    if ty == 0x8100 || ty == 0x88a8 {
        ty = be16(16)?;
        l3 = 18;
    }
    let l4 = match ty {
        0x0800 if *frame.get(l3 + 9)? == 6 => l3 + usize::from(frame.get(l3)? & 0x0f) * 4,
        0x86dd if *frame.get(l3 + 6)? == 6 => l3 + 40,
        _ => return None,
    };
    Some((be16(l4)?, be16(l4 + 2)?))
}

impl Capture {
    /// A capture of `count` frames (at most [`MAX_COUNT`]) on `port`, with
    /// a buffer of `cap` bytes.
    pub fn new(port: PortId, count: u32, cap: usize) -> Self {
        Self {
            port,
            buf: VecDeque::with_capacity(cap),
            cap,
            left: count.min(MAX_COUNT),
            recorded: 0,
            dropped: 0,
            exclude: None,
        }
    }

    /// Leaves out TCP frames between ports `a` and `b` (either way).
    pub fn exclude_tcp(&mut self, a: u16, b: u16) {
        self.exclude = Some((a, b));
    }

    /// The captured port.
    pub fn port(&self) -> PortId {
        self.port
    }

    /// True once `count` frames were recorded.
    pub fn full(&self) -> bool {
        self.left == 0
    }

    /// Bytes waiting for the reader.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Records `frame`, seen at `now_ns`, if the count is not reached and
    /// it fits.
    pub fn record(&mut self, now_ns: u64, frame: &[u8]) {
        if self.left == 0 {
            return;
        }
        if let (Some((a, b)), Some((s, d))) = (self.exclude, tcp_ports(frame))
            && ((s, d) == (a, b) || (s, d) == (b, a))
        {
            return;
        }
        let kept = frame.len().min(SNAPLEN as usize);
        if self.buf.len() + 16 + kept > self.cap {
            self.dropped += 1;
            return;
        }
        let (secs, usecs) = ((now_ns / 1_000_000_000) as u32, ((now_ns / 1000) % 1_000_000) as u32);
        for v in [secs, usecs, kept as u32, frame.len() as u32] {
            self.buf.extend(v.to_le_bytes());
        }
        self.buf.extend(frame.get(..kept).unwrap_or(frame));
        self.left -= 1;
        self.recorded += 1;
    }

    /// Moves buffered bytes into `out` (records may be split between
    /// calls; the stream stays in order); returns the count.
    pub fn take(&mut self, out: &mut [u8]) -> usize {
        let n = out.len().min(self.buf.len());
        let (a, b) = self.buf.as_slices();
        let na = n.min(a.len());
        if let (Some(d), Some(s)) = (out.get_mut(..na), a.get(..na)) {
            d.copy_from_slice(s);
        }
        if let (Some(d), Some(s)) = (out.get_mut(na..n), b.get(..n - na)) {
            d.copy_from_slice(s);
        }
        self.buf.drain(..n);
        n
    }
}

/// Why a capture did not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureError {
    /// No port has that name.
    UnknownPort,
    /// Another capture is running.
    Busy,
}

impl super::Switch {
    /// Starts capturing `count` frames on the port named `name`.
    pub fn start_capture(&mut self, name: &str, count: u32) -> Result<PortId, CaptureError> {
        if self.capture.is_some() {
            return Err(CaptureError::Busy);
        }
        let (id, _, _) = self.ports().find(|(_, n, _)| *n == name).ok_or(CaptureError::UnknownPort)?;
        self.capture = Some(Capture::new(id, count, BUFFER));
        Ok(id)
    }

    /// The running capture.
    pub fn capture_ref(&self) -> Option<&Capture> {
        self.capture.as_ref()
    }

    /// The running capture, to take its bytes.
    pub fn capture_mut(&mut self) -> Option<&mut Capture> {
        self.capture.as_mut()
    }

    /// Ends the running capture; returns it (with its counts).
    pub fn stop_capture(&mut self) -> Option<Capture> {
        self.capture.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }

    #[test]
    fn records_are_pcap_and_bounded() {
        let h = global_header();
        assert_eq!(u32_at(&h, 0), 0xa1b2_c3d4);
        assert_eq!((u32_at(&h, 16), u32_at(&h, 20)), (SNAPLEN, 1));
        let mut c = Capture::new(PortId(3), 2, 200);
        c.record(1_500_000_123_456, &[7u8; 60]);
        c.record(2_000_000_000, &[8u8; 100]);
        assert!(c.full());
        c.record(3, &[9u8; 10]);
        assert_eq!((c.recorded, c.dropped), (2, 0), "nothing after the count");
        let mut out = vec![0u8; 1000];
        let n = c.take(&mut out[..10]) + c.take(&mut out[10..]);
        assert_eq!(n, 16 + 60 + 16 + 100);
        assert_eq!((u32_at(&out, 0), u32_at(&out, 4), u32_at(&out, 8), u32_at(&out, 12)), (1500, 123, 60, 60));
        assert!(out[16..76].iter().all(|&b| b == 7));
        assert_eq!((u32_at(&out, 76), u32_at(&out, 84)), (2, 100));
        // A reader that lags: what does not fit is dropped and counted.
        let mut c = Capture::new(PortId(1), 10, 100);
        for _ in 0..3 {
            c.record(0, &[1u8; 40]);
        }
        assert_eq!((c.recorded, c.dropped, c.pending()), (1, 2, 56));
        let mut sink: Vec<u8> = vec![0; 56];
        assert_eq!(c.take(&mut sink), 56);
        c.record(0, &[1u8; 40]);
        assert_eq!(c.recorded, 2);
    }

    #[test]
    fn its_own_connection_is_left_out() {
        let mut tcp4 = vec![0u8; 54];
        tcp4[12..14].copy_from_slice(&[0x08, 0x00]);
        tcp4[14] = 0x45;
        tcp4[23] = 6;
        tcp4[34..36].copy_from_slice(&9100u16.to_be_bytes());
        tcp4[36..38].copy_from_slice(&40000u16.to_be_bytes());
        let mut tcp6 = vec![0u8; 74];
        tcp6[12..14].copy_from_slice(&[0x86, 0xdd]);
        tcp6[20] = 6;
        tcp6[54..56].copy_from_slice(&40000u16.to_be_bytes());
        tcp6[56..58].copy_from_slice(&9100u16.to_be_bytes());
        let mut other = tcp4.clone();
        other[36..38].copy_from_slice(&40001u16.to_be_bytes());
        let mut c = Capture::new(PortId(0), 10, 1000);
        c.exclude_tcp(9100, 40000);
        for f in [&tcp4, &tcp6, &other] {
            c.record(0, f);
        }
        assert_eq!(c.recorded, 1, "only the other connection");
        assert_eq!(tcp_ports(&tcp6), Some((40000, 9100)));
        assert_eq!(tcp_ports(&[0u8; 20]), None);
    }
}
