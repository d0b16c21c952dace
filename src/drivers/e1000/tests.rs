//! Host tests: the real driver against a simulated 82540EM that walks the
//! descriptor rings in simulated DMA memory the way the hardware does.
#![forbid(unsafe_code)]

use super::*;
use crate::drivers::sim::{Arena, SimHal};
use ring::RxStatus;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

#[derive(Default)]
struct Dev {
    regs: HashMap<usize, u32>,
    eeprom_mac: [u8; 6],
    mac_in_ral: bool,
    link: bool,
    tx_stalled: bool,
    sent: Vec<Vec<u8>>,
    resets: u32,
    /// Register reads (each a VM exit on a real machine under Xen).
    reads: u32,
    /// RDT writes.
    rdt_writes: u32,
    /// CTRL.RST is stored and resets nothing (as QEMU's model does).
    rst_ignored: bool,
}

#[derive(Clone)]
struct SimE1000 {
    dev: Rc<RefCell<Dev>>,
    arena: Arena,
}

impl SimE1000 {
    fn new(arena: Arena, mac_in_ral: bool) -> Self {
        let d = Dev { eeprom_mac: [0x52, 0x54, 0, 0x12, 0x34, 0x56], mac_in_ral, link: true, ..Default::default() };
        let s = Self { dev: Rc::new(RefCell::new(d)), arena };
        s.hw_reset();
        s
    }

    fn get(&self, r: usize) -> u32 {
        self.dev.borrow().regs.get(&r).copied().unwrap_or(0)
    }

    fn set(&self, r: usize, v: u32) {
        self.dev.borrow_mut().regs.insert(r, v);
    }

    fn hw_reset(&self) {
        let mut d = self.dev.borrow_mut();
        d.regs.clear();
        d.resets += 1;
        if d.mac_in_ral {
            let m = d.eeprom_mac;
            d.regs.insert(reg::RAL0, u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
            d.regs.insert(reg::RAH0, u32::from(m[4]) | (u32::from(m[5]) << 8) | (1 << 31));
        }
    }

    fn ring_len(&self, len_reg: usize) -> u32 {
        (self.get(len_reg) / 16).max(1)
    }

    fn process_tx(&self) {
        if self.dev.borrow().tx_stalled || !Tctl::from_bits_retain(self.get(reg::TCTL)).contains(Tctl::EN) {
            return;
        }
        let n = self.ring_len(reg::TDLEN);
        let base = u64::from(self.get(reg::TDBAL)) | (u64::from(self.get(reg::TDBAH)) << 32);
        for _ in 0..n {
            let (h, t) = (self.get(reg::TDH), self.get(reg::TDT));
            if h == t {
                break;
            }
            let d = base + u64::from(h) * 16;
            let addr = self.arena.read_u64(d);
            let len = self.arena.read_u16(d + 8) as usize;
            let mut buf = vec![0; len];
            assert!(self.arena.read(addr, &mut buf), "TX descriptor points outside DMA memory");
            self.dev.borrow_mut().sent.push(buf);
            self.arena.write(d + 12, &[ring::TxStatus::DD.bits()]);
            self.set(reg::TDH, (h + 1) % n);
        }
    }

    /// Delivers a frame the way the hardware does; false when no descriptor is free.
    fn inject_raw(&self, data: &[u8], len: u16, status: RxStatus, errors: u8) -> bool {
        let n = self.ring_len(reg::RDLEN);
        let (h, t) = (self.get(reg::RDH), self.get(reg::RDT));
        if h == t || !Rctl::from_bits_retain(self.get(reg::RCTL)).contains(Rctl::EN) {
            return false;
        }
        let base = u64::from(self.get(reg::RDBAL)) | (u64::from(self.get(reg::RDBAH)) << 32);
        let d = base + u64::from(h) * 16;
        let addr = self.arena.read_u64(d);
        assert!(self.arena.write(addr, data), "RX descriptor points outside DMA memory");
        self.arena.write(d + 8, &len.to_le_bytes());
        self.arena.write(d + 12, &[status.bits(), errors]);
        self.set(reg::RDH, (h + 1) % n);
        self.set(reg::ICR, self.get(reg::ICR) | Int::RXT0.bits());
        true
    }

    fn inject(&self, data: &[u8]) -> bool {
        self.inject_raw(data, data.len() as u16, RxStatus::DD | RxStatus::EOP, 0)
    }
}

impl Regs for SimE1000 {
    fn len(&self) -> usize {
        0x20000
    }
    fn read32(&self, off: usize) -> u32 {
        self.dev.borrow_mut().reads += 1;
        match off {
            reg::ICR => {
                let v = self.get(reg::ICR);
                self.set(reg::ICR, 0);
                v
            }
            reg::STATUS => {
                if self.dev.borrow().link {
                    2
                } else {
                    0
                }
            }
            _ => self.get(off),
        }
    }
    fn write32(&self, off: usize, v: u32) {
        match off {
            reg::CTRL if Ctrl::from_bits_retain(v).contains(Ctrl::RST) && !self.dev.borrow().rst_ignored => {
                self.hw_reset();
                self.set(reg::CTRL, v & !Ctrl::RST.bits());
            }
            reg::EERD if v & 1 != 0 => {
                let a = ((v >> 8) & 0xff) as usize;
                let m = self.dev.borrow().eeprom_mac;
                let w = if a < 3 { u16::from_le_bytes([m[2 * a], m[2 * a + 1]]) } else { 0 };
                self.set(reg::EERD, (u32::from(w) << 16) | (1 << 4));
            }
            reg::IMC => self.set(reg::IMS, self.get(reg::IMS) & !v),
            reg::RDT => {
                self.dev.borrow_mut().rdt_writes += 1;
                self.set(reg::RDT, v);
            }
            reg::TDT => {
                self.set(reg::TDT, v);
                self.process_tx();
            }
            _ => self.set(off, v),
        }
    }
    fn read16(&self, off: usize) -> u16 {
        self.read32(off) as u16
    }
    fn write16(&self, off: usize, v: u16) {
        self.write32(off, u32::from(v))
    }
    fn read8(&self, off: usize) -> u8 {
        self.read32(off) as u8
    }
    fn write8(&self, off: usize, v: u8) {
        self.write32(off, u32::from(v))
    }
}

fn setup(mac_in_ral: bool) -> (E1000<SimHal<SimE1000>>, SimE1000, SimHal<SimE1000>) {
    let hal = SimHal::<SimE1000>::default();
    let sim = SimE1000::new(hal.arena.clone(), mac_in_ral);
    let d = E1000::new(hal.clone(), sim.clone()).unwrap();
    (d, sim, hal)
}

fn frame(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 7 + j) as u8).collect()
}

#[test]
fn init_programs_rings_and_promiscuous_mode() {
    let (d, sim, _) = setup(true);
    assert_eq!(d.mac(), [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    assert_eq!(sim.get(reg::RDLEN), 256 * 16);
    assert_eq!(sim.get(reg::TDLEN), 256 * 16);
    assert_eq!(sim.get(reg::RDT), 255);
    let rctl = Rctl::from_bits_retain(sim.get(reg::RCTL));
    assert!(rctl.contains(Rctl::UPE | Rctl::MPE | Rctl::BAM | Rctl::EN));
    assert_eq!(sim.get(reg::ITR), ITR_VALUE);
    assert!(d.link_up());
}

#[test]
fn mac_comes_from_eeprom_when_ral_is_empty() {
    let (d, sim, _) = setup(false);
    assert_eq!(d.mac(), [0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    // And is written back to RAL0/RAH0 with the address-valid bit.
    assert_eq!(sim.get(reg::RAH0) >> 31, 1);
}

#[test]
fn receives_more_frames_than_the_ring_holds_in_order() {
    let (mut d, sim, _) = setup(true);
    let mut got = 0;
    for i in 0..1000 {
        let f = frame(i, 60 + i % 1400);
        if !sim.inject(&f) {
            // Ring full: the driver drains and the device retries.
            while d.receive(|b| b.to_vec()).is_some() {
                got += 1;
            }
            assert!(sim.inject(&f));
        }
        if i % 3 == 0 {
            let b = d.receive(|b| b.to_vec()).unwrap();
            assert_eq!(b, frame(got, 60 + got % 1400));
            got += 1;
        }
    }
    while let Some(b) = d.receive(|b| b.to_vec()) {
        assert_eq!(b, frame(got, 60 + got % 1400));
        got += 1;
    }
    assert_eq!(got, 1000);
    let s = d.stats();
    assert_eq!(s.rx.packets, 1000);
    assert_eq!(s.rx.bytes, (0..1000).map(|i| 60 + (i % 1400) as u64).sum::<u64>());
    assert_eq!(s.rx.errors, 0);
}

#[test]
fn transmits_and_reclaims_and_counts_full_ring_as_drop() {
    let (mut d, sim, _) = setup(true);
    for i in 0..600 {
        let f = frame(i, 64 + i);
        assert!(d.transmit(f.len(), |b| b.copy_from_slice(&f)).is_ok());
    }
    let sent = sim.dev.borrow().sent.clone();
    assert_eq!(sent.len(), 600);
    for (i, s) in sent.iter().enumerate() {
        assert_eq!(*s, frame(i, 64 + i));
    }
    sim.dev.borrow_mut().tx_stalled = true;
    let mut ok = 0;
    for _ in 0..300 {
        if d.transmit(100, |b| b.fill(1)).is_ok() {
            ok += 1;
        }
    }
    assert_eq!(ok, 255);
    assert_eq!(d.stats().tx.drops, 45);
    assert!(d.transmit(0, |_| ()).is_err());
    assert!(d.transmit(4000, |_| ()).is_err());
    assert_eq!(d.stats().tx.errors, 2);
}

#[test]
fn bad_frames_are_counted_and_dropped() {
    let (mut d, sim, _) = setup(true);
    const DD: RxStatus = RxStatus::DD;
    const EOP: RxStatus = RxStatus::EOP;
    assert!(sim.inject_raw(&[0; 10], 10, DD | EOP, 0)); // runt
    assert!(sim.inject_raw(&[0; 1600], 1600, DD | EOP, 0)); // oversized
    assert!(sim.inject_raw(&[0; 60], 60, DD | EOP, 0x01)); // CRC error
    assert!(sim.inject_raw(&[0; 2048], 2048, DD, 0)); // first part of a jumbo
    assert!(sim.inject_raw(&[0; 2048], 2048, DD, 0)); // middle
    assert!(sim.inject_raw(&[0; 100], 100, DD | EOP, 0)); // last
    assert!(sim.inject_raw(&[0; 60], 60000, DD | EOP, 0)); // impossible length
    assert!(sim.inject(&frame(1, 64)));
    assert_eq!(d.receive(|b| b.to_vec()), Some(frame(1, 64)));
    let s = d.stats();
    assert_eq!((s.rx_runts, s.rx_oversize, s.rx.errors, s.rx.packets), (1, 3, 5, 1));
    // Every descriptor went back to the device once the ring was found empty.
    assert_eq!(d.receive(|b| b.len()), None);
    assert_eq!(sim.get(reg::RDT), 7);
}

#[test]
fn hung_transmit_ring_resets_the_device() {
    let (mut d, sim, hal) = setup(true);
    sim.dev.borrow_mut().tx_stalled = true;
    assert!(d.transmit(60, |b| b.fill(0)).is_ok());
    assert!(!d.service(hal.now_ns() + 1_000_000_000));
    assert_eq!(d.stats().resets, 0);
    let resets_before = sim.dev.borrow().resets;
    assert!(d.service(hal.now_ns() + 3_000_000_000));
    assert_eq!(d.stats().resets, 1);
    assert_eq!(sim.dev.borrow().resets, resets_before + 1);
    assert_eq!(d.tx_in_flight(), 0);
    sim.dev.borrow_mut().tx_stalled = false;
    assert!(d.transmit(60, |b| b.fill(7)).is_ok());
    assert_eq!(sim.dev.borrow().sent.last().unwrap(), &vec![7; 60]);
    // Receive works after the reset too.
    assert!(sim.inject(&frame(3, 80)));
    assert_eq!(d.receive(|b| b.len()), Some(80));
}

#[test]
fn impossible_head_and_dead_device_reset() {
    let (mut d, sim, hal) = setup(true);
    sim.set(reg::RDH, 9999);
    assert!(d.service(hal.now_ns()));
    assert_eq!(d.stats().resets, 1);
    assert_eq!(sim.get(reg::RDT), 255);
    sim.set(reg::ICR, u32::MAX);
    d.note_interrupt();
    assert!(d.service(hal.now_ns()));
    assert_eq!(d.stats().resets, 2);
}

#[test]
fn link_changes_are_counted() {
    let (mut d, sim, hal) = setup(true);
    sim.dev.borrow_mut().link = false;
    sim.set(reg::ICR, Int::LSC.bits());
    d.note_interrupt();
    d.service(hal.now_ns());
    assert!(!d.link_up());
    sim.dev.borrow_mut().link = true;
    sim.set(reg::ICR, Int::LSC.bits());
    d.note_interrupt();
    d.service(hal.now_ns());
    assert!(d.link_up());
    assert_eq!(d.stats().link_changes, 2);
}

#[test]
fn registers_are_read_after_an_interrupt_or_once_per_check_interval() {
    let (mut d, sim, hal) = setup(true);
    let t0 = hal.now_ns();
    d.service(t0);
    let reads = sim.dev.borrow().reads;
    // A busy loop polling the NIC: no register read, frames still found.
    for i in 1..1000 {
        d.service(t0 + i * 1000);
    }
    assert!(sim.inject(&frame(1, 64)));
    assert_eq!(d.receive(|b| b.len()), Some(64));
    assert_eq!(sim.dev.borrow().reads, reads, "registers read between checks without an interrupt");
    // An interrupt: the causes are read (lowering the line) on the next call.
    sim.dev.borrow_mut().link = false;
    sim.set(reg::ICR, Int::LSC.bits());
    d.note_interrupt();
    d.service(t0 + 2_000_000);
    assert_eq!(sim.get(reg::ICR), 0, "ICR not read after the interrupt");
    assert!(!d.link_up());
    // Without an interrupt a link change is still seen within the interval.
    sim.dev.borrow_mut().link = true;
    sim.set(reg::ICR, Int::LSC.bits());
    d.service(t0 + 3_000_000);
    assert!(!d.link_up(), "read before the interval elapsed");
    d.service(t0 + 3_000_000 + REG_CHECK_NS);
    assert!(d.link_up());
}

#[test]
fn received_descriptors_go_back_in_batches() {
    let (mut d, sim, _) = setup(true);
    let writes = sim.dev.borrow().rdt_writes;
    for i in 0..40 {
        assert!(sim.inject(&frame(i, 60)));
    }
    let mut got = 0;
    while let Some(len) = d.receive(|b| b.len()) {
        assert_eq!(len, 60);
        got += 1;
    }
    assert_eq!(got, 40);
    // 40 descriptors: two full batches of RDT_BATCH and the rest when empty.
    assert_eq!(sim.dev.borrow().rdt_writes - writes, 3);
    assert_eq!(sim.get(reg::RDT), (255 + 40) % 256);
    // The device can fill every descriptor handed back.
    for i in 0..255 {
        assert!(sim.inject(&frame(i, 60)), "descriptor {i} not handed back");
    }
}

#[test]
fn the_writes_kept_for_power_off_stop_receive_and_transmit_without_a_reset() {
    let (d, sim, _) = setup(true);
    assert!(Rctl::from_bits_retain(sim.get(reg::RCTL)).contains(Rctl::EN));
    assert!(Tctl::from_bits_retain(sim.get(reg::TCTL)).contains(Tctl::EN));
    // QEMU's 82540EM takes CTRL.RST as a plain store and resets nothing.
    sim.dev.borrow_mut().rst_ignored = true;
    let (regs, writes) = d.stop_writes();
    for (off, v) in writes {
        regs.write32(off, v);
    }
    assert!(!Rctl::from_bits_retain(sim.get(reg::RCTL)).contains(Rctl::EN));
    assert!(!Tctl::from_bits_retain(sim.get(reg::TCTL)).contains(Tctl::EN));
    assert_eq!(sim.get(reg::IMS), 0, "interrupts masked");
}
