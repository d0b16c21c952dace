//! e1000 legacy descriptor rings, free of registers: the device module moves
//! head/tail values between these rings and the hardware.
//!
//! Each descriptor owns one fixed 2 KiB slot of a buffer pool allocated at
//! start, so packets are never allocated; frames are lent to closures in
//! place. The descriptor's done bit (DD) is the hand-over: the device sets it
//! after writing the buffer and the length, and the DMA region's lenders
//! order the buffer access after that read (acquire) and before the tail
//! write that gives a buffer back (release).
#![forbid(unsafe_code)]

use crate::drivers::port::{PortStats, check_rx_len};
use crate::hal::DmaRegion;

/// Descriptor size (both directions).
pub const DESC_SIZE: usize = 16;
/// Buffer size per descriptor (RCTL.BSIZE = 2048).
pub const BUF_SIZE: usize = 2048;

/// Byte offsets of a legacy descriptor's fields (RX and TX share the layout
/// up to the status byte): buffer address, then a word of length, command
/// or checksum, status and errors.
mod field {
    /// Buffer address (u64).
    pub const ADDR: usize = 0;
    /// Second quadword: length (bits 15:0), TX command (bits 31:24).
    pub const UPPER: usize = 8;
    /// Length written back by the device (u16, RX).
    pub const LENGTH: usize = 8;
    /// Status (u8).
    pub const STATUS: usize = 12;
    /// RX errors (u8).
    pub const ERRORS: usize = 13;
    /// Bit position of the TX command byte in the second quadword.
    pub const CMD_SHIFT: u32 = 24;
}

bitflags::bitflags! {
    /// RX descriptor status.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct RxStatus: u8 {
        /// Descriptor done.
        const DD = 1 << 0;
        /// End of packet.
        const EOP = 1 << 1;
        const _ = !0;
    }

    /// RX descriptor errors.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct RxErrors: u8 {
        /// CRC or alignment error.
        const CE = 1 << 0;
        /// Symbol error.
        const SE = 1 << 1;
        /// Sequence error.
        const SEQ = 1 << 2;
        /// Carrier extension error.
        const CXE = 1 << 4;
        /// RX data error.
        const RXE = 1 << 7;
        const _ = !0;
    }

    /// TX descriptor command.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct TxCmd: u8 {
        /// End of packet.
        const EOP = 1 << 0;
        /// Insert FCS.
        const IFCS = 1 << 1;
        /// Report status (set DD when done).
        const RS = 1 << 3;
    }

    /// TX descriptor status.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct TxStatus: u8 {
        /// Descriptor done.
        const DD = 1 << 0;
        const _ = !0;
    }
}

/// The RX errors that make a frame bad (checksum errors, TCPE and IPE, do not).
pub const RX_FRAME_ERRORS: RxErrors =
    RxErrors::CE.union(RxErrors::SE).union(RxErrors::SEQ).union(RxErrors::CXE).union(RxErrors::RXE);

/// Ring construction errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// Size not a multiple of 8 in 8..=4096 (RDLEN/TDLEN must be 128-byte multiples).
    BadSize(usize),
    /// A region is smaller than the ring needs.
    RegionTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes given.
        got: usize,
    },
}

fn check(size: usize, desc: usize, bufs: usize) -> Result<(), RingError> {
    if !(8..=4096).contains(&size) || !size.is_multiple_of(8) {
        return Err(RingError::BadSize(size));
    }
    for (needed, got) in [(size * DESC_SIZE, desc), (size * BUF_SIZE, bufs)] {
        if got < needed {
            return Err(RingError::RegionTooSmall { needed, got });
        }
    }
    Ok(())
}

/// What one look at the RX ring found.
#[derive(Debug, PartialEq, Eq)]
pub enum RxPoll<R> {
    /// The next descriptor still belongs to the device.
    Empty,
    /// A frame was lent to the closure; write `tail` to RDT.
    Frame {
        /// The closure's result.
        result: R,
        /// New RDT.
        tail: u32,
    },
    /// A bad frame or fragment was counted and dropped; write `tail` to RDT.
    Dropped {
        /// New RDT.
        tail: u32,
    },
}

/// The receive ring.
pub struct RxRing<D> {
    desc: D,
    bufs: D,
    size: usize,
    next: usize,
    /// Inside a multi-descriptor frame being discarded (until EOP).
    discarding: bool,
}

impl<D: DmaRegion> RxRing<D> {
    /// A ring of `size` descriptors over `desc` and a buffer pool `bufs`.
    pub fn new(desc: D, bufs: D, size: usize) -> Result<Self, RingError> {
        check(size, desc.len(), bufs.len())?;
        let mut r = Self { desc, bufs, size, next: 0, discarding: false };
        r.reset();
        Ok(r)
    }

    /// Re-arms every descriptor with its buffer; the device owns all but one.
    pub fn reset(&mut self) {
        for i in 0..self.size {
            let d = i * DESC_SIZE;
            self.desc.write64(d + field::ADDR, self.bufs.paddr() + (i * BUF_SIZE) as u64);
            self.desc.write64(d + field::UPPER, 0);
        }
        self.next = 0;
        self.discarding = false;
    }

    /// Physical address of the descriptor ring (RDBAL/RDBAH).
    pub fn paddr(&self) -> u64 {
        self.desc.paddr()
    }

    /// Descriptors in the ring.
    pub fn size(&self) -> usize {
        self.size
    }

    /// RDT after `reset`: the device owns descriptors 0..size-1.
    pub fn initial_tail(&self) -> u32 {
        (self.size - 1) as u32
    }

    /// Index software looks at next.
    pub fn next(&self) -> usize {
        self.next
    }

    /// Takes the next completed descriptor, if any; lends a good frame to `f`.
    pub fn poll<R>(&mut self, stats: &mut PortStats, f: impl FnOnce(&[u8]) -> R) -> RxPoll<R> {
        let i = self.next;
        let d = i * DESC_SIZE;
        let status = RxStatus::from_bits_retain(self.desc.read8(d + field::STATUS));
        if !status.contains(RxStatus::DD) {
            return RxPoll::Empty;
        }
        let len = usize::from(self.desc.read16(d + field::LENGTH));
        let errors = RxErrors::from_bits_retain(self.desc.read8(d + field::ERRORS));
        let eop = status.contains(RxStatus::EOP);
        let mut result = None;
        if self.discarding {
            // Tail of a frame larger than one buffer: already counted.
            self.discarding = !eop;
        } else if !eop {
            // First buffer of a frame larger than 2 KiB: count once, drop all.
            stats.rx_oversize += 1;
            stats.rx.errors += 1;
            self.discarding = true;
        } else if errors.intersects(RX_FRAME_ERRORS) {
            stats.rx.errors += 1;
        } else if len > BUF_SIZE {
            // Impossible for a 2 KiB buffer: a misbehaving device.
            stats.rx_oversize += 1;
            stats.rx.errors += 1;
        } else if check_rx_len(stats, len) {
            result = self.bufs.with_slice(i * BUF_SIZE, len, f);
            if result.is_some() {
                stats.rx.packets += 1;
                stats.rx.bytes += len as u64;
            }
        }
        // Give the descriptor back: same buffer, status cleared.
        self.desc.write64(d + field::ADDR, self.bufs.paddr() + (i * BUF_SIZE) as u64);
        self.desc.write64(d + field::UPPER, 0);
        self.next = (i + 1) % self.size;
        let tail = i as u32;
        match result {
            Some(result) => RxPoll::Frame { result, tail },
            None => RxPoll::Dropped { tail },
        }
    }
}

/// Why a transmit was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxError {
    /// Every descriptor is in flight.
    Full,
    /// Length outside 1..=BUF_SIZE.
    BadLength(usize),
}

/// The transmit ring.
pub struct TxRing<D> {
    desc: D,
    bufs: D,
    size: usize,
    tail: usize,
    clean: usize,
    in_flight: usize,
}

impl<D: DmaRegion> TxRing<D> {
    /// A ring of `size` descriptors over `desc` and a buffer pool `bufs`.
    pub fn new(desc: D, bufs: D, size: usize) -> Result<Self, RingError> {
        check(size, desc.len(), bufs.len())?;
        let mut r = Self { desc, bufs, size, tail: 0, clean: 0, in_flight: 0 };
        r.reset();
        Ok(r)
    }

    /// Forgets everything in flight (after a device reset).
    pub fn reset(&mut self) {
        for i in 0..self.size {
            self.desc.write64(i * DESC_SIZE + field::ADDR, 0);
            self.desc.write64(i * DESC_SIZE + field::UPPER, 0);
        }
        self.tail = 0;
        self.clean = 0;
        self.in_flight = 0;
    }

    /// Physical address of the descriptor ring.
    pub fn paddr(&self) -> u64 {
        self.desc.paddr()
    }

    /// Descriptors in the ring.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Descriptors handed to the device and not yet reclaimed.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// True when a push would succeed.
    pub fn has_room(&self) -> bool {
        self.in_flight < self.size - 1
    }

    /// Fills the next buffer through `f` and posts it; returns the closure's
    /// result and the new TDT.
    /// On refusal the closure is handed back unused.
    pub fn push<R, F: FnOnce(&mut [u8]) -> R>(&mut self, len: usize, f: F) -> Result<(R, u32), (TxError, F)> {
        if len == 0 || len > BUF_SIZE {
            return Err((TxError::BadLength(len), f));
        }
        if !self.has_room() {
            return Err((TxError::Full, f));
        }
        let i = self.tail;
        let r = self.bufs.with_slice_mut(i * BUF_SIZE, len, f).map_err(|f| (TxError::BadLength(len), f))?;
        let d = i * DESC_SIZE;
        self.desc.write64(d + field::ADDR, self.bufs.paddr() + (i * BUF_SIZE) as u64);
        // length | cso=0 | cmd | status=0 | css=0 | special=0
        let cmd = TxCmd::EOP | TxCmd::IFCS | TxCmd::RS;
        self.desc.write64(d + field::UPPER, len as u64 | (u64::from(cmd.bits()) << field::CMD_SHIFT));
        self.tail = (i + 1) % self.size;
        self.in_flight += 1;
        Ok((r, self.tail as u32))
    }

    /// Reclaims descriptors the device finished; returns how many.
    pub fn reclaim(&mut self) -> usize {
        let mut n = 0;
        while self.in_flight > 0 {
            let d = self.clean * DESC_SIZE;
            if !TxStatus::from_bits_retain(self.desc.read8(d + field::STATUS)).contains(TxStatus::DD) {
                break;
            }
            self.desc.write64(d + field::UPPER, 0);
            self.clean = (self.clean + 1) % self.size;
            self.in_flight -= 1;
            n += 1;
        }
        n
    }
}
