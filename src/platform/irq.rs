//! Device interrupt flags: a handler only records that work is pending; the
//! driver's task takes the flag in the main loop.
//!
//! Level-triggered lines (PCI INTx through the I/O APIC) are masked by the
//! handler until the driver has serviced the device and calls `unmask`;
//! otherwise a still-asserted line would re-interrupt forever before the main
//! loop could run. MSI and MSI-X are edge-like and need no masking.

use super::{apic, idt};
use crate::acpi::{Polarity, Trigger};
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};

const SLOTS: usize = 8;
const NO_GSI: u32 = u32::MAX;

static PENDING: [AtomicBool; SLOTS] = [const { AtomicBool::new(false) }; SLOTS];
static COUNT: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
static LEVEL_GSI: [AtomicU32; SLOTS] = [const { AtomicU32::new(NO_GSI) }; SLOTS];
static NEXT: AtomicUsize = AtomicUsize::new(0);

fn handler<const N: usize>() {
    PENDING[N].store(true, Ordering::Release);
    COUNT[N].fetch_add(1, Ordering::Relaxed);
    let gsi = LEVEL_GSI[N].load(Ordering::Relaxed);
    if gsi != NO_GSI {
        apic::mask_gsi_from_irq(gsi);
    }
}

static HANDLERS: [fn(); SLOTS] =
    [handler::<0>, handler::<1>, handler::<2>, handler::<3>, handler::<4>, handler::<5>, handler::<6>, handler::<7>];

/// One interrupt source's pending flag and vector.
#[derive(Debug)]
pub struct IrqFlag {
    slot: usize,
    vector: u8,
}

impl IrqFlag {
    /// Allocates a slot and an IDT vector; None when either ran out.
    pub fn alloc() -> Option<Self> {
        let slot = NEXT.fetch_add(1, Ordering::Relaxed);
        let h = *HANDLERS.get(slot)?;
        let vector = idt::alloc_vector(h)?;
        Some(Self { slot, vector })
    }

    /// The IDT vector (for MSI data).
    pub fn vector(&self) -> u8 {
        self.vector
    }

    /// MSI/MSI-X message (address, data) targeting this CPU.
    pub fn msi_message(&self) -> (u64, u32) {
        (0xfee0_0000 | (u64::from(apic::id()) << 12), u32::from(self.vector))
    }

    /// Routes a level-triggered PCI INTx line (`gsi`) to this flag.
    pub fn route_intx(&self, gsi: u32) -> bool {
        if let Some(g) = LEVEL_GSI.get(self.slot) {
            g.store(gsi, Ordering::Relaxed);
        }
        // QEMU's I/O APIC ignores polarity; active-high matches the ISA-routed
        // PIRQ lines the firmware wrote into the interrupt-line register.
        apic::route_gsi(gsi, self.vector, Polarity::High, Trigger::Level)
    }

    /// True when an interrupt arrived since the last call.
    pub fn take(&self) -> bool {
        PENDING.get(self.slot).is_some_and(|p| p.swap(false, Ordering::Acquire))
    }

    /// Re-enables a level-triggered line after the device was serviced.
    pub fn unmask(&self) {
        let gsi = LEVEL_GSI.get(self.slot).map_or(NO_GSI, |g| g.load(Ordering::Relaxed));
        if gsi != NO_GSI {
            apic::unmask_gsi(gsi);
        }
    }

    /// Interrupts taken on this flag.
    pub fn count(&self) -> u64 {
        COUNT.get(self.slot).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}
