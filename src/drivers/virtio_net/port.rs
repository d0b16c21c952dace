//! The virtio-net device as a switch port: receiving in place from the RX
//! queue (checksums completed, lengths checked), transmitting through the TX
//! queue, and the port's counters.

#![forbid(unsafe_code)]

use super::{BUF, Features, HDR, HdrFlags, LINK_POLL_NS, QSIZE, VirtioNet, complete_csum};
use crate::drivers::port::{Port, PortStats, check_rx_len};
use crate::hal::{DmaRegion, Hal, Regs};
use log::info;

impl<H: Hal> Port for VirtioNet<H> {
    fn name(&self) -> &'static str {
        "virtio-net"
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn link_up(&self) -> bool {
        self.link
    }

    fn note_interrupt(&mut self) {
        self.interrupted = true;
    }

    fn service(&mut self, now_ns: u64) -> bool {
        let mut busy = false;
        if !self.msix && (self.interrupted || now_ns >= self.isr_due_ns) {
            // Reading ISR acknowledges a legacy interrupt; without one it is
            // read only now and then (a VM exit each under Xen).
            self.interrupted = false;
            self.isr_due_ns = now_ns.saturating_add(crate::drivers::port::REG_CHECK_NS);
            let isr = self.isr.read8(0);
            busy |= isr != 0;
            if isr != 0 {
                self.stats.irqs += 1;
            }
        }
        if self.rx_unnotified > 0 {
            self.kick(self.rx.notify, self.rx.index);
            self.rx_unnotified = 0;
        }
        for _ in 0..QSIZE {
            match self.tx.vq.pop_used() {
                Ok(Some((id, _))) => {
                    self.tx_free.push(id);
                    busy = true;
                }
                Ok(None) => break,
                Err(e) => {
                    self.recover(e);
                    return true;
                }
            }
        }
        if self.features.contains(Features::STATUS) && now_ns.saturating_sub(self.link_checked_ns) > LINK_POLL_NS {
            self.link_checked_ns = now_ns;
            let up = self.link();
            if up != self.link {
                self.link = up;
                self.stats.link_changes += 1;
                info!("virtio-net: link {}", if up { "up" } else { "down" });
            }
        }
        busy
    }

    fn receive<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        let mut f = Some(f);
        for _ in 0..QSIZE {
            let (id, len) = match self.rx.vq.pop_used() {
                Ok(Some(u)) => u,
                Ok(None) => return None,
                Err(e) => {
                    self.recover(e);
                    return None;
                }
            };
            let len = len as usize;
            let off = usize::from(id) * BUF;
            if self.rx_skip > 0 {
                // Continuation buffers of a frame already counted as oversized.
                self.rx_skip -= 1;
                self.repost_rx(id);
                continue;
            }
            if !(HDR..=BUF).contains(&len) {
                self.stats.rx.errors += 1;
                self.repost_rx(id);
                continue;
            }
            let mut hdr = [0u8; HDR];
            let _ = self.rx.bufs.with_slice(off, HDR, |h| hdr.copy_from_slice(h));
            let nbufs = u16::from_le_bytes([hdr[10], hdr[11]]);
            if self.features.contains(Features::MRG_RXBUF) && nbufs != 1 {
                self.stats.rx_oversize += 1;
                self.stats.rx.errors += 1;
                self.rx_skip = nbufs.saturating_sub(1).min(QSIZE);
                self.repost_rx(id);
                continue;
            }
            let frame_len = len - HDR;
            if !check_rx_len(&mut self.stats, frame_len) {
                self.repost_rx(id);
                continue;
            }
            let needs_csum = HdrFlags::from_bits_retain(hdr[0]).contains(HdrFlags::NEEDS_CSUM);
            let (start, coff) =
                (usize::from(u16::from_le_bytes([hdr[6], hdr[7]])), usize::from(u16::from_le_bytes([hdr[8], hdr[9]])));
            let user = f.take()?;
            let r = self.rx.bufs.with_slice_mut(off + HDR, frame_len, |b| {
                if needs_csum && !complete_csum(b, start, coff) {
                    return None;
                }
                Some(user(b))
            });
            let out = match r {
                Ok(Some(v)) => {
                    self.stats.rx.packets += 1;
                    self.stats.rx.bytes += frame_len as u64;
                    Some(v)
                }
                _ => {
                    self.stats.rx.errors += 1;
                    None
                }
            };
            self.repost_rx(id);
            return out;
        }
        None
    }

    fn transmit<R, F: FnOnce(&mut [u8]) -> R>(&mut self, len: usize, f: F) -> Result<R, F> {
        if len == 0 || len + HDR > BUF {
            self.stats.tx.errors += 1;
            return Err(f);
        }
        if self.tx_free.is_empty() {
            let _ = self.service(0);
        }
        let Some(id) = self.tx_free.pop() else {
            self.stats.tx.drops += 1;
            return Err(f);
        };
        let off = usize::from(id) * BUF;
        let _ = self.tx.bufs.with_slice_mut(off, HDR, |h| h.fill(0));
        let r = match self.tx.bufs.with_slice_mut(off + HDR, len, f) {
            Ok(r) => r,
            Err(f) => {
                self.tx_free.push(id);
                self.stats.tx.errors += 1;
                return Err(f);
            }
        };
        let addr = self.tx.bufs.paddr() + off as u64;
        if let Err(e) = self.tx.vq.post_one(id, addr, (HDR + len) as u32, false) {
            self.recover(e);
            self.stats.tx.drops += 1;
            return Ok(r);
        }
        self.kick(self.tx.notify, self.tx.index);
        self.stats.tx.packets += 1;
        self.stats.tx.bytes += len as u64;
        Ok(r)
    }

    fn can_transmit(&self) -> bool {
        !self.tx_free.is_empty() || self.tx.vq.in_flight() > 0
    }

    fn stats(&self) -> PortStats {
        self.stats
    }
}
