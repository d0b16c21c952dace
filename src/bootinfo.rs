//! What the loader told us at boot, copied out of `struct hvm_start_info`
//! (`xen/include/public/arch-x86/hvm/start_info.h`) into fixed storage
//! before any memory is handed out.
#![forbid(unsafe_code)]

use core::fmt;

/// `hvm_start_info.magic`.
pub const START_INFO_MAGIC: u32 = 0x336e_c578;
/// Memory-map entries we keep; more are reported and ignored.
pub const MAX_MEMMAP: usize = 64;
/// Command-line bytes we keep; a longer line is truncated with a warning.
pub const MAX_CMDLINE: usize = 1024;

/// E820-style memory type (`XEN_HVM_MEMMAP_TYPE_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemType {
    /// Usable RAM.
    Ram,
    /// Reserved by firmware.
    Reserved,
    /// ACPI tables, reclaimable after reading them.
    AcpiReclaim,
    /// ACPI non-volatile storage.
    AcpiNvs,
    /// Bad memory.
    Unusable,
    /// Any other value.
    Unknown(u32),
}

impl MemType {
    /// Decodes the wire value; unknown types are kept, never rejected.
    pub fn from_raw(v: u32) -> Self {
        match v {
            1 => Self::Ram,
            2 => Self::Reserved,
            3 => Self::AcpiReclaim,
            4 => Self::AcpiNvs,
            5 => Self::Unusable,
            n => Self::Unknown(n),
        }
    }
}

/// One memory-map entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemRegion {
    /// Physical start address.
    pub base: u64,
    /// Length in bytes.
    pub len: u64,
    /// Kind of memory.
    pub kind: MemType,
}

impl MemRegion {
    /// End address (exclusive), saturating on overflow.
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.len)
    }
}

/// Boot information in fixed-size storage.
#[derive(Clone)]
pub struct BootInfo {
    /// `hvm_start_info.version`.
    pub version: u32,
    /// `hvm_start_info.flags`.
    pub flags: u32,
    memmap: [MemRegion; MAX_MEMMAP],
    memmap_len: usize,
    /// Entries the loader gave beyond `MAX_MEMMAP`.
    pub memmap_dropped: usize,
    cmdline: [u8; MAX_CMDLINE],
    cmdline_len: usize,
    /// True when the command line was longer than `MAX_CMDLINE`.
    pub cmdline_truncated: bool,
    /// Physical address of the ACPI RSDP, 0 when not given.
    pub rsdp_paddr: u64,
    /// Physical range of start_info and what it points at (reserved until read).
    pub start_info_paddr: u64,
}

impl fmt::Debug for BootInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootInfo")
            .field("version", &self.version)
            .field("memmap", &self.memmap())
            .field("cmdline", &self.cmdline())
            .field("rsdp_paddr", &self.rsdp_paddr)
            .finish()
    }
}

impl Default for BootInfo {
    fn default() -> Self {
        Self::new()
    }
}

impl BootInfo {
    /// Empty boot information.
    pub const fn new() -> Self {
        Self {
            version: 0,
            flags: 0,
            memmap: [MemRegion { base: 0, len: 0, kind: MemType::Reserved }; MAX_MEMMAP],
            memmap_len: 0,
            memmap_dropped: 0,
            cmdline: [0; MAX_CMDLINE],
            cmdline_len: 0,
            cmdline_truncated: false,
            rsdp_paddr: 0,
            start_info_paddr: 0,
        }
    }

    /// Adds a memory-map entry (entries past `MAX_MEMMAP` are counted, not kept).
    pub fn push_region(&mut self, region: MemRegion) {
        match self.memmap.get_mut(self.memmap_len) {
            Some(slot) => {
                *slot = region;
                self.memmap_len += 1;
            }
            None => self.memmap_dropped += 1,
        }
    }

    /// The memory map.
    pub fn memmap(&self) -> &[MemRegion] {
        self.memmap.get(..self.memmap_len).unwrap_or(&[])
    }

    /// Stores the command line: bytes up to the first NUL, truncated to
    /// `MAX_CMDLINE`, with non-ASCII bytes replaced by '?'.
    pub fn set_cmdline(&mut self, bytes: &[u8]) {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        let src = bytes.get(..end).unwrap_or(&[]);
        self.cmdline_truncated = src.len() > MAX_CMDLINE;
        let n = src.len().min(MAX_CMDLINE);
        for (dst, &b) in self.cmdline.iter_mut().zip(src.iter().take(n)) {
            *dst = if b.is_ascii_graphic() || b == b' ' {
                b
            } else if b.is_ascii_whitespace() {
                b' '
            } else {
                b'?'
            };
        }
        self.cmdline_len = n;
    }

    /// The command line (always valid ASCII).
    pub fn cmdline(&self) -> &str {
        core::str::from_utf8(self.cmdline.get(..self.cmdline_len).unwrap_or(&[])).unwrap_or("")
    }

    /// Total bytes of RAM in the memory map.
    pub fn ram_bytes(&self) -> u64 {
        self.memmap().iter().filter(|r| r.kind == MemType::Ram).map(|r| r.len).sum()
    }

    /// Highest RAM end address.
    pub fn ram_end(&self) -> u64 {
        self.memmap().iter().filter(|r| r.kind == MemType::Ram).map(MemRegion::end).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_stops_at_nul_and_sanitises() {
        let mut b = BootInfo::new();
        b.set_cmdline(b"log=debug\tx=\xff\x01y\0garbage");
        assert_eq!(b.cmdline(), "log=debug x=??y");
        assert!(!b.cmdline_truncated);
    }

    #[test]
    fn cmdline_truncates() {
        let mut b = BootInfo::new();
        let long = [b'a'; MAX_CMDLINE + 10];
        b.set_cmdline(&long);
        assert_eq!(b.cmdline().len(), MAX_CMDLINE);
        assert!(b.cmdline_truncated);
    }

    #[test]
    fn memmap_overflow_is_counted() {
        let mut b = BootInfo::new();
        for i in 0..(MAX_MEMMAP as u64 + 3) {
            b.push_region(MemRegion { base: i << 20, len: 1 << 20, kind: MemType::Ram });
        }
        assert_eq!(b.memmap().len(), MAX_MEMMAP);
        assert_eq!(b.memmap_dropped, 3);
        assert_eq!(b.ram_bytes(), (MAX_MEMMAP as u64) << 20);
        assert_eq!(MemType::from_raw(7), MemType::Unknown(7));
    }
}
