//! ACPI table discovery: RSDP → RSDT/XSDT → MADT (interrupt routing), FADT
//! (power-off port), MCFG (PCI ECAM). Firmware tables are read through the
//! `PhysRead` seam and validated (signature, length bound, checksum) before use.
#![forbid(unsafe_code)]

use alloc::vec;
use alloc::vec::Vec;

/// Largest table we accept; anything longer is treated as corrupt.
const MAX_TABLE_LEN: u32 = 256 * 1024;
/// Largest number of RSDT/XSDT entries we walk.
const MAX_TABLES: usize = 64;

/// Reads physical memory (the platform's identity map, or a fake in tests).
pub trait PhysRead {
    /// Fills `buf` from physical address `paddr`; false when the range is not readable.
    fn read(&self, paddr: u64, buf: &mut [u8]) -> bool;
}

/// Why ACPI discovery failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcpiError {
    /// No RSDP found.
    NoRsdp,
    /// A table failed validation.
    BadTable {
        /// Signature we looked for or found.
        sig: [u8; 4],
        /// Its physical address.
        paddr: u64,
    },
    /// Memory could not be read.
    Unreadable {
        /// Physical address.
        paddr: u64,
    },
}

/// Interrupt polarity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polarity {
    /// Active high.
    High,
    /// Active low.
    Low,
}

/// Interrupt trigger mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Edge triggered.
    Edge,
    /// Level triggered.
    Level,
}

/// An I/O APIC from the MADT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoApic {
    /// APIC id.
    pub id: u8,
    /// MMIO base address.
    pub addr: u64,
    /// First GSI it serves.
    pub gsi_base: u32,
}

/// An interrupt source override from the MADT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceOverride {
    /// ISA IRQ.
    pub irq: u8,
    /// GSI it is wired to.
    pub gsi: u32,
    /// Polarity.
    pub polarity: Polarity,
    /// Trigger.
    pub trigger: Trigger,
}

/// What the MADT tells us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Madt {
    /// Local APIC MMIO base.
    pub lapic_addr: u64,
    /// I/O APICs.
    pub ioapics: Vec<IoApic>,
    /// ISA IRQ overrides.
    pub overrides: Vec<SourceOverride>,
    /// Enabled processors.
    pub cpus: u32,
}

impl Madt {
    /// Routes an ISA IRQ to (GSI, polarity, trigger), honouring overrides.
    pub fn route_isa_irq(&self, irq: u8) -> (u32, Polarity, Trigger) {
        match self.overrides.iter().find(|o| o.irq == irq) {
            Some(o) => (o.gsi, o.polarity, o.trigger),
            None => (u32::from(irq), Polarity::High, Trigger::Edge),
        }
    }

    /// The I/O APIC serving a GSI: (apic, pin).
    pub fn ioapic_for(&self, gsi: u32, pins_of: impl Fn(&IoApic) -> u32) -> Option<(IoApic, u32)> {
        self.ioapics.iter().find(|a| gsi >= a.gsi_base && gsi - a.gsi_base < pins_of(a)).map(|a| (*a, gsi - a.gsi_base))
    }
}

/// One PCI ECAM window from MCFG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcamWindow {
    /// Physical base.
    pub base: u64,
    /// PCI segment.
    pub segment: u16,
    /// First bus.
    pub bus_start: u8,
    /// Last bus.
    pub bus_end: u8,
}

/// Everything we take from ACPI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AcpiInfo {
    /// RSDP address.
    pub rsdp: u64,
    /// MADT contents, when present.
    pub madt: Option<Madt>,
    /// PM1a control port and SLP_TYPa for S5, when FADT and DSDT give them.
    pub pm1a_cnt: Option<(u16, u16)>,
    /// ECAM windows.
    pub ecam: Vec<EcamWindow>,
}

fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b)) == 0
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2).map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4).map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 8).map_or(0, |s| {
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        u64::from_le_bytes(a)
    })
}

/// Finds the RSDP: at `hint` when non-zero, else by scanning the EBDA and
/// the BIOS area 0xE0000–0xFFFFF.
pub fn find_rsdp(mem: &dyn PhysRead, hint: u64) -> Result<u64, AcpiError> {
    let valid = |addr: u64| {
        let mut b = [0u8; 20];
        mem.read(addr, &mut b) && b.starts_with(b"RSD PTR ") && checksum_ok(&b)
    };
    if hint != 0 {
        return if valid(hint) { Ok(hint) } else { Err(AcpiError::BadTable { sig: *b"RSD ", paddr: hint }) };
    }
    let mut ebda = [0u8; 2];
    let mut areas = Vec::with_capacity(2);
    if mem.read(0x40e, &mut ebda) {
        let base = u64::from(u16::from_le_bytes(ebda)) << 4;
        if (0x8_0000..0xa_0000).contains(&base) {
            areas.push(base..base + 1024);
        }
    }
    areas.push(0xe_0000..0x10_0000);
    for area in areas {
        let mut addr = area.start;
        while addr < area.end {
            if valid(addr) {
                return Ok(addr);
            }
            addr += 16;
        }
    }
    Err(AcpiError::NoRsdp)
}

/// Reads and validates a whole table at `paddr`.
fn read_table(mem: &dyn PhysRead, paddr: u64) -> Result<Vec<u8>, AcpiError> {
    let mut hdr = [0u8; 36];
    if !mem.read(paddr, &mut hdr) {
        return Err(AcpiError::Unreadable { paddr });
    }
    let mut sig = [0u8; 4];
    sig.copy_from_slice(&hdr[..4]);
    let len = u32_at(&hdr, 4);
    if !(36..=MAX_TABLE_LEN).contains(&len) {
        return Err(AcpiError::BadTable { sig, paddr });
    }
    let mut t = vec![0u8; len as usize];
    if !mem.read(paddr, &mut t) {
        return Err(AcpiError::Unreadable { paddr });
    }
    if !checksum_ok(&t) {
        return Err(AcpiError::BadTable { sig, paddr });
    }
    Ok(t)
}

/// Parses a MADT body.
pub fn parse_madt(t: &[u8]) -> Madt {
    let mut m = Madt { lapic_addr: u64::from(u32_at(t, 36)), ..Madt::default() };
    let mut off = 44;
    while off + 2 <= t.len() {
        let kind = t[off];
        let len = usize::from(t[off + 1]);
        if len < 2 || off + len > t.len() {
            break; // corrupt entry: stop, keep what we have
        }
        let e = &t[off..off + len];
        match (kind, len) {
            (0, 8..) if u32_at(e, 4) & 1 != 0 => m.cpus += 1,
            (1, 12..) => m.ioapics.push(IoApic { id: e[2], addr: u64::from(u32_at(e, 4)), gsi_base: u32_at(e, 8) }),
            (2, 10..) => {
                let flags = u16_at(e, 8);
                let polarity = if flags & 3 == 3 { Polarity::Low } else { Polarity::High };
                let trigger = if (flags >> 2) & 3 == 3 { Trigger::Level } else { Trigger::Edge };
                m.overrides.push(SourceOverride { irq: e[3], gsi: u32_at(e, 4), polarity, trigger });
            }
            (5, 12..) => m.lapic_addr = u64_at(e, 4),
            _ => {}
        }
        off += len;
    }
    m
}

/// Finds SLP_TYPa of `\_S5` in DSDT AML by pattern (NameOp `_S5_` PackageOp).
fn s5_sleep_type(dsdt: &[u8]) -> Option<u16> {
    let pos = dsdt.windows(4).position(|w| w == b"_S5_")?;
    let rest = dsdt.get(pos + 4..)?;
    if *rest.first()? != 0x12 {
        return None;
    }
    // PkgLength: top two bits of the lead byte give extra length bytes.
    let extra = usize::from(rest.get(1)? >> 6);
    let elems = rest.get(2 + extra + 1..)?;
    match *elems.first()? {
        0x0a => elems.get(1).map(|&v| u16::from(v)),
        0x00 => Some(0),
        0x01 => Some(1),
        _ => None,
    }
}

/// Walks the tables from the RSDP.
pub fn discover(mem: &dyn PhysRead, rsdp_hint: u64) -> Result<AcpiInfo, AcpiError> {
    let rsdp = find_rsdp(mem, rsdp_hint)?;
    let mut r = [0u8; 36];
    if !mem.read(rsdp, &mut r) {
        return Err(AcpiError::Unreadable { paddr: rsdp });
    }
    let revision = r[15];
    let (root, entry_size) =
        if revision >= 2 && u64_at(&r, 24) != 0 { (u64_at(&r, 24), 8) } else { (u64::from(u32_at(&r, 16)), 4) };
    let sdt = read_table(mem, root)?;
    let mut info = AcpiInfo { rsdp, ..AcpiInfo::default() };
    let entries = sdt.get(36..).unwrap_or(&[]);
    for e in entries.chunks_exact(entry_size).take(MAX_TABLES) {
        let paddr = if entry_size == 8 { u64_at(e, 0) } else { u64::from(u32_at(e, 0)) };
        let Ok(t) = read_table(mem, paddr) else { continue };
        match &t[..4] {
            b"APIC" => info.madt = Some(parse_madt(&t)),
            b"FACP" => {
                let pm1a = u32_at(&t, 64);
                let dsdt_addr = match u64_at(&t, 140) {
                    0 => u64::from(u32_at(&t, 40)),
                    x => x,
                };
                let slp = read_table(mem, dsdt_addr).ok().and_then(|d| s5_sleep_type(&d));
                if let (Ok(port), Some(slp)) = (u16::try_from(pm1a), slp)
                    && port != 0
                {
                    info.pm1a_cnt = Some((port, slp));
                }
            }
            b"MCFG" => {
                for w in t.get(44..).unwrap_or(&[]).chunks_exact(16) {
                    info.ecam.push(EcamWindow {
                        base: u64_at(w, 0),
                        segment: u16_at(w, 8),
                        bus_start: w[10],
                        bus_end: w[11],
                    });
                }
            }
            _ => {}
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    struct Mem(BTreeMap<u64, Vec<u8>>);
    impl PhysRead for Mem {
        fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
            for (&base, bytes) in &self.0 {
                if paddr >= base && paddr + buf.len() as u64 <= base + bytes.len() as u64 {
                    let off = (paddr - base) as usize;
                    buf.copy_from_slice(&bytes[off..off + buf.len()]);
                    return true;
                }
            }
            false
        }
    }

    fn fix_checksum(t: &mut [u8], at: usize) {
        t[at] = 0;
        let s = t.iter().fold(0u8, |a, &b| a.wrapping_add(b));
        t[at] = 0u8.wrapping_sub(s);
    }

    fn table(sig: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut t = vec![0u8; 36];
        t[..4].copy_from_slice(sig);
        t.extend_from_slice(body);
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        fix_checksum(&mut t, 9);
        t
    }

    fn madt_body() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]); // LAPIC enabled
        b.extend_from_slice(&[0, 8, 1, 1, 0, 0, 0, 0]); // LAPIC disabled
        let mut io = vec![1, 12, 7, 0];
        io.extend_from_slice(&0xfec0_0000u32.to_le_bytes());
        io.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&io);
        let mut iso = vec![2, 10, 0, 0];
        iso.extend_from_slice(&2u32.to_le_bytes());
        iso.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&iso);
        let mut iso9 = vec![2, 10, 0, 9];
        iso9.extend_from_slice(&9u32.to_le_bytes());
        iso9.extend_from_slice(&0x000fu16.to_le_bytes()); // active low, level
        b.extend_from_slice(&iso9);
        b
    }

    fn firmware() -> Mem {
        let madt = table(b"APIC", &madt_body());
        let mut dsdt_body = b"junk\x08_S5_\x12\x06\x04\x0a\x05\x00\x00\x00".to_vec();
        dsdt_body.extend_from_slice(b"tail");
        let dsdt = table(b"DSDT", &dsdt_body);
        let mut facp_body = vec![0u8; 244 - 36];
        facp_body[40 - 36..44 - 36].copy_from_slice(&0x3000u32.to_le_bytes());
        facp_body[64 - 36..68 - 36].copy_from_slice(&0x604u32.to_le_bytes());
        let facp = table(b"FACP", &facp_body);
        let mut mcfg_body = vec![0u8; 8];
        mcfg_body.extend_from_slice(&0xb000_0000u64.to_le_bytes());
        mcfg_body.extend_from_slice(&[0, 0, 0, 255, 0, 0, 0, 0]);
        let mcfg = table(b"MCFG", &mcfg_body);
        let mut rsdt_body = Vec::new();
        for a in [0x1000u32, 0x2000, 0x4000, 0x5000] {
            rsdt_body.extend_from_slice(&a.to_le_bytes());
        }
        let rsdt = table(b"RSDT", &rsdt_body);
        let mut rsdp = b"RSD PTR ".to_vec();
        rsdp.extend_from_slice(&[0, b'X', b'V', b'I', b'F', b' ', b' ', 0]);
        rsdp.extend_from_slice(&0x6000u32.to_le_bytes());
        fix_checksum(&mut rsdp, 8);
        let mut m = BTreeMap::new();
        m.insert(0x1000, madt);
        m.insert(0x2000, facp);
        m.insert(0x3000, dsdt);
        m.insert(0x4000, mcfg);
        m.insert(0x5000, b"garbage that is not a table at all.....".to_vec());
        m.insert(0x6000, rsdt);
        let mut bios = vec![0u8; 0x2_0000];
        bios[0x40..0x54].copy_from_slice(&rsdp);
        m.insert(0xe_0000, bios);
        Mem(m)
    }

    #[test]
    fn discovers_madt_fadt_mcfg_by_scanning() {
        let mem = firmware();
        let info = discover(&mem, 0).unwrap();
        assert_eq!(info.rsdp, 0xe_0040);
        let madt = info.madt.unwrap();
        assert_eq!(madt.lapic_addr, 0xfee0_0000);
        assert_eq!(madt.cpus, 1);
        assert_eq!(madt.ioapics, vec![IoApic { id: 7, addr: 0xfec0_0000, gsi_base: 0 }]);
        assert_eq!(madt.route_isa_irq(0), (2, Polarity::High, Trigger::Edge));
        assert_eq!(madt.route_isa_irq(9), (9, Polarity::Low, Trigger::Level));
        assert_eq!(madt.route_isa_irq(4), (4, Polarity::High, Trigger::Edge));
        assert_eq!(madt.ioapic_for(23, |_| 24).map(|(_, p)| p), Some(23));
        assert_eq!(madt.ioapic_for(24, |_| 24), None);
        assert_eq!(info.pm1a_cnt, Some((0x604, 5)));
        assert_eq!(info.ecam, vec![EcamWindow { base: 0xb000_0000, segment: 0, bus_start: 0, bus_end: 255 }]);
    }

    #[test]
    fn bad_hint_and_missing_rsdp_are_errors() {
        let mem = firmware();
        assert!(matches!(discover(&mem, 0x1000), Err(AcpiError::BadTable { .. })));
        assert_eq!(discover(&Mem(BTreeMap::new()), 0), Err(AcpiError::NoRsdp));
    }

    #[test]
    fn corrupt_madt_entries_do_not_panic() {
        let mut body = madt_body();
        body.extend_from_slice(&[1, 0, 9, 9]); // zero-length entry
        let m = parse_madt(&table(b"APIC", &body));
        assert_eq!(m.ioapics.len(), 1);
        let mut body = madt_body();
        body.extend_from_slice(&[1, 200, 9, 9]); // runs past the end
        assert_eq!(parse_madt(&table(b"APIC", &body)).ioapics.len(), 1);
        for n in 0..60 {
            let _ = parse_madt(&vec![0xffu8; n]);
        }
    }

    #[test]
    fn corrupt_table_checksum_is_skipped() {
        let mut mem = firmware();
        if let Some(t) = mem.0.get_mut(&0x1000) {
            t[40] ^= 0xff;
        }
        let info = discover(&mem, 0).unwrap();
        assert_eq!(info.madt, None);
        assert!(info.pm1a_cnt.is_some());
    }
}
