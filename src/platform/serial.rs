//! Early console: a 16550 UART at COM1 when present, and/or the QEMU/Xen
//! debug port 0xe9.

use super::cpu::{inb, outb};
use core::sync::atomic::{AtomicBool, Ordering};

const COM1: u16 = 0x3f8;
const DEBUG_PORT: u16 = 0xe9;

static COM1_PRESENT: AtomicBool = AtomicBool::new(false);
static E9_ENABLED: AtomicBool = AtomicBool::new(false);

/// Probes COM1 (scratch-register and loopback test) and programs it for
/// 115200 8n1. Without a UART (Xen PVH) output goes to port 0xe9.
pub fn init() {
    outb(COM1 + 7, 0x5a);
    let present = inb(COM1 + 7) == 0x5a && {
        outb(COM1 + 1, 0x00); // no interrupts yet
        outb(COM1 + 3, 0x80); // DLAB
        outb(COM1, 0x01); // divisor 1 = 115200
        outb(COM1 + 1, 0x00);
        outb(COM1 + 3, 0x03); // 8n1
        outb(COM1 + 2, 0xc7); // FIFO on, cleared, 14-byte threshold
        outb(COM1 + 4, 0x1e); // loopback test
        outb(COM1, 0xae);
        let ok = inb(COM1) == 0xae;
        outb(COM1 + 4, 0x0b); // normal: DTR, RTS, OUT2 (IRQ enable line)
        ok
    };
    COM1_PRESENT.store(present, Ordering::Relaxed);
    // Port 0xe9 reads back 0xe9 under QEMU's debugcon and Bochs; under Xen HVM
    // the hypervisor consumes writes. Use it whenever there is no UART.
    E9_ENABLED.store(!present || inb(DEBUG_PORT) == 0xe9, Ordering::Relaxed);
}

/// True when a 16550 answered at COM1.
pub fn com1_present() -> bool {
    COM1_PRESENT.load(Ordering::Relaxed)
}

/// Enables the COM1 "received data available" interrupt.
pub fn enable_rx_interrupt() {
    if com1_present() {
        outb(COM1 + 1, 0x01);
    }
}

/// Reads one received byte from COM1, if any.
pub fn try_read() -> Option<u8> {
    if com1_present() && inb(COM1 + 5) & 1 != 0 { Some(inb(COM1)) } else { None }
}

fn com1_put(byte: u8) {
    // Bounded wait for the transmit holding register: a stuck UART must not
    // hang the kernel.
    for _ in 0..100_000 {
        if inb(COM1 + 5) & 0x20 != 0 {
            break;
        }
    }
    outb(COM1, byte);
}

/// Writes bytes to every enabled early console.
pub fn write_bytes(bytes: &[u8]) {
    let com1 = com1_present();
    let e9 = E9_ENABLED.load(Ordering::Relaxed);
    for &b in bytes {
        if com1 {
            if b == b'\n' {
                com1_put(b'\r');
            }
            com1_put(b);
        }
        if e9 {
            outb(DEBUG_PORT, b);
        }
    }
}
