//! Shared pieces of the fuzz targets: a reader that turns the fuzzer's bytes
//! into choices, a netback environment (fake hypervisor, buffers, a hostile
//! guest's grants and a well-behaved bystander vif) built once per process,
//! and a xenbus world (fake xenstore, real client and backend).
//!
//! Every target resets what it uses at the start of each input, so an input
//! replays the same way alone (`fuzz/fuzz.sh repro`) as in a long run.
#![forbid(unsafe_code)]

pub mod netback;
pub mod xenbus;

/// Reads choices from the fuzzer's input; reads past the end give zeros,
/// so every input is valid and short inputs are plain programs.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// True when every byte was read.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Bytes left.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// The next byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    /// A little-endian u16.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    /// A little-endian u32.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    /// A flag.
    pub fn bool(&mut self) -> bool {
        self.u8() & 1 != 0
    }

    /// Up to `n` bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    /// One of `items`.
    pub fn pick<'b, T>(&mut self, items: &'b [T]) -> &'b T {
        &items[usize::from(self.u8()) % items.len()]
    }

    /// A byte string of at most `max` bytes, its length read first.
    pub fn string(&mut self, max: usize) -> &'a [u8] {
        let n = usize::from(self.u8()) % (max + 1);
        self.bytes(n)
    }
}
