//! NIC bring-up on the machine: find a supported NIC on PCI, choose its
//! interrupt (MSI-X, MSI, INTx through the I/O APIC, or polling), start the
//! driver and the management stack, and register them as one task.
//! Target-only wiring.
#![forbid(unsafe_code)]

use crate::acpi::AcpiInfo;
use crate::config::{Config, NicMode};
use crate::dataplane::DataPlane;
use crate::drivers::e1000::{self, E1000};
use crate::drivers::pci::{self, Command, PciDevice};
use crate::drivers::pci_place::{Windows, place_bars};
use crate::drivers::port::{Port, PortStats};
use crate::drivers::virtio_net::{self, VirtioNet};
use crate::hal::Hal;
use crate::platform::devhal::Hw;
use crate::platform::irq::IrqFlag;
use crate::platform::pci_cfg;
use crate::timer::{Nanos, Progress, Task};
use crate::xen::hvm_info;
use log::{info, warn};

/// Polling interval in `nic=poll` mode (and the housekeeping interval otherwise).
/// How often a NIC without an interrupt is polled.
pub const NIC_POLL_NS: u64 = 100_000;
/// How often a NIC with an interrupt is looked at anyway (link, hangs).
pub const NIC_HOUSEKEEPING_NS: u64 = 500_000_000;

/// The NIC this kernel drives.
// One instance per machine, inside a boxed task: the size difference is moot.
#[allow(clippy::large_enum_variant)]
pub enum Nic {
    /// Intel 8254x.
    E1000(E1000<Hw>),
    /// virtio-net.
    Virtio(VirtioNet<Hw>),
}

macro_rules! each {
    ($self:ident, $d:ident => $e:expr) => {
        match $self {
            Nic::E1000($d) => $e,
            Nic::Virtio($d) => $e,
        }
    };
}

impl Port for Nic {
    fn name(&self) -> &'static str {
        each!(self, d => d.name())
    }
    fn mac(&self) -> [u8; 6] {
        each!(self, d => d.mac())
    }
    fn link_up(&self) -> bool {
        each!(self, d => d.link_up())
    }
    fn note_interrupt(&mut self) {
        each!(self, d => d.note_interrupt())
    }
    fn service(&mut self, now_ns: u64) -> bool {
        each!(self, d => d.service(now_ns))
    }
    fn receive<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        each!(self, d => d.receive(f))
    }
    fn transmit<R, F: FnOnce(&mut [u8]) -> R>(&mut self, len: usize, f: F) -> Result<R, F> {
        each!(self, d => d.transmit(len, f))
    }
    fn can_transmit(&self) -> bool {
        each!(self, d => d.can_transmit())
    }
    fn stats(&self) -> PortStats {
        each!(self, d => d.stats())
    }
}

/// The NIC plus the management stack, polled by the main loop.
/// A NIC found on the PCI bus, with its interrupt (None: polled).
pub struct NicDev {
    /// The driver.
    pub nic: Nic,
    /// Its interrupt.
    pub irq: Option<IrqFlag>,
}

/// The data plane as a task of its own when there is no Xen (bare QEMU):
/// the NIC and the management stack on the switch.
pub struct NetTask {
    net: DataPlane,
    name: &'static str,
}

impl NetTask {
    /// The NIC, the switch and the management stack.
    pub fn new(dev: NicDev, cfg: &Config, now: u64) -> Self {
        let name = dev.nic.name();
        Self { net: DataPlane::new(cfg, 0, Some(dev), now), name }
    }
}

impl Task for NetTask {
    fn name(&self) -> &str {
        self.name
    }

    fn poll(&mut self, now: Nanos) -> Progress {
        if self.net.poll(now) { Progress::Busy } else { Progress::Idle }
    }

    fn next_deadline(&self, now: Nanos) -> Option<Nanos> {
        self.net.next_deadline(now)
    }
}

/// A MAC address as `00:16:3e:00:00:01`.
pub(crate) fn mac_str(m: [u8; 6]) -> alloc::string::String {
    alloc::format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}

/// The GSI `dev`'s INTx line asserts: in an HVM container Xen's fixed
/// wiring (nobody wrote the interrupt-line register), elsewhere the ISA IRQ
/// the firmware wrote there.
fn intx_gsi(dev: &PciDevice, hvm: bool) -> Option<u32> {
    if hvm {
        return hvm_info::pci_intx_gsi(dev.bdf.bus, dev.bdf.dev, dev.irq_pin);
    }
    (dev.irq_pin != 0 && dev.irq_line != 0 && dev.irq_line != 0xff).then_some(u32::from(dev.irq_line))
}

/// Chooses and programs the interrupt for `dev`: MSI-X, then MSI, then INTx.
fn setup_irq(
    cfgs: &pci_cfg::Config,
    dev: &PciDevice,
    mode: NicMode,
    madt: bool,
    hvm: bool,
) -> (Option<IrqFlag>, &'static str) {
    if mode == NicMode::Poll {
        return (None, "polling (nic=poll)");
    }
    let Some(flag) = IrqFlag::alloc() else { return (None, "polling (no interrupt vector left)") };
    let msg = flag.msi_message();
    if dev.cap(pci::cap_id::MSIX).is_some() {
        match pci::enable_msix(cfgs, &Hw, dev, &[msg]) {
            Ok(_) => return (Some(flag), "MSI-X"),
            Err(e) => warn!("nic: MSI-X setup failed: {e:?}"),
        }
    }
    if dev.cap(pci::cap_id::MSI).is_some() && pci::enable_msi(cfgs, dev, msg.0, msg.1).is_ok() {
        return (Some(flag), "MSI");
    }
    if madt && intx_gsi(dev, hvm).is_some_and(|gsi| flag.route_intx(gsi)) {
        pci::enable(cfgs, dev.bdf, Command::empty(), Command::INTX_DISABLE);
        return (Some(flag), "INTx");
    }
    (None, "polling (no usable interrupt)")
}

/// Finds and brings up the first supported NIC; None when there is none.
/// `hvm`: in an HVM container, where no firmware placed BARs or wrote
/// interrupt lines.
pub fn probe(acpi: Option<&AcpiInfo>, cfg: &Config, hvm: bool) -> Option<NicDev> {
    let ecam = acpi.map_or(&[][..], |a| &a.ecam[..]);
    let cfgs = pci_cfg::Config::new(ecam);
    let access = if matches!(cfgs, pci_cfg::Config::Ecam(_)) { "ECAM" } else { "port I/O" };
    let devs = pci::enumerate(&cfgs);
    info!("pci: {} function(s) via {access}", devs.len());
    for d in &devs {
        log::debug!(
            "pci: {} {:04x}:{:04x} class {:02x}.{:02x} bars {:x?}",
            d.bdf,
            d.vendor,
            d.device,
            d.class.0,
            d.class.1,
            d.bars
        );
    }
    let madt = acpi.is_some_and(|a| a.madt.is_some());
    for found in &devs {
        let is_e1000 = found.vendor == e1000::VENDOR && e1000::DEVICES.contains(&found.device);
        let is_virtio = virtio_net::matches(found.vendor, found.device);
        if !is_e1000 && !is_virtio {
            continue;
        }
        let mut placed = found.clone();
        let dev = &mut placed;
        if hvm {
            let w = Windows { mem: hvm_info::PCI_MEM_WINDOW, io: hvm_info::PCI_IO_WINDOW };
            match place_bars(&cfgs, &devs, dev, &w) {
                Ok(0) => {}
                Ok(n) => info!("pci: {} placed {n} BAR(s): {:x?}", dev.bdf, dev.bars),
                Err(e) => {
                    warn!("nic: {} cannot place its BARs: {e:?}", dev.bdf);
                    continue;
                }
            }
        }
        let dev = &*dev;
        pci::enable(&cfgs, dev.bdf, Command::MEM | Command::MASTER, Command::IO);
        if !pci_cfg::note_bus_master(dev.bdf) {
            warn!("nic: {}: no slot left to stop its DMA at power-off", dev.bdf);
        }
        // Interrupts first: virtio binds its queues to the MSI-X vector at bring-up.
        let (irq, how) = setup_irq(&cfgs, dev, cfg.nic, madt, hvm);
        let nic = if is_e1000 {
            let Some((bar, size)) = dev.mem_bar(0) else { continue };
            match Hw.map_regs(bar, size).map_err(e1000::E1000Error::Hal).and_then(|r| E1000::new(Hw, r)) {
                Ok(d) => Nic::E1000(d),
                Err(e) => {
                    warn!("nic: e1000 at {}: {e:?}", dev.bdf);
                    continue;
                }
            }
        } else {
            match VirtioNet::new(Hw, &cfgs, dev, how == "MSI-X") {
                Ok(d) => Nic::Virtio(d),
                Err(e) => {
                    warn!("nic: virtio-net at {}: {e:?}", dev.bdf);
                    continue;
                }
            }
        };
        let stop = match &nic {
            Nic::E1000(d) => {
                let (regs, w) = d.stop_writes();
                regs.stop_writes32(&w)
            }
            Nic::Virtio(d) => {
                let (regs, w) = d.stop_writes();
                regs.stop_writes8(&w)
            }
        };
        if !pci_cfg::note_stop_writes(dev.bdf, stop) {
            warn!("nic: {}: the writes that stop it are not kept for power-off", dev.bdf);
        }
        info!(
            "nic: {} at {} mac {} link {}, interrupts: {how}{}",
            nic.name(),
            dev.bdf,
            mac_str(nic.mac()),
            if nic.link_up() { "up" } else { "down" },
            irq.as_ref().map_or(alloc::string::String::new(), |f| alloc::format!(" (vector {:#x})", f.vector()))
        );
        return Some(NicDev { nic, irq });
    }
    info!("nic: no supported NIC found (e1000 82540EM, virtio-net)");
    None
}
