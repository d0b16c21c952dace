//! Byte rings with free-running 32-bit indices, as used by xenstore
//! (xen/include/public/io/xs_wire.h) and the PV console
//! (xen/include/public/io/console.h).
//!
//! The peer owns one index of each ring and can write anything into it, so
//! every index read is checked: a distance larger than the ring is a typed
//! error, never a loop or an out-of-range access.
#![forbid(unsafe_code)]

use crate::hal::SharedMem;

/// Where one ring lives in its page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRing {
    /// Offset of the data area.
    pub data: usize,
    /// Size of the data area (a power of two).
    pub size: u32,
    /// Offset of the consumer index.
    pub cons: usize,
    /// Offset of the producer index.
    pub prod: usize,
}

/// The peer left an impossible index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingCorrupt {
    /// Consumer index read.
    pub cons: u32,
    /// Producer index read.
    pub prod: u32,
    /// Ring size.
    pub size: u32,
}

impl ByteRing {
    fn indices(&self, mem: &dyn SharedMem) -> Result<(u32, u32), RingCorrupt> {
        let cons = mem.read_u32(self.cons);
        let prod = mem.read_u32(self.prod);
        if prod.wrapping_sub(cons) > self.size {
            return Err(RingCorrupt { cons, prod, size: self.size });
        }
        Ok((cons, prod))
    }

    /// Producer side: copies as much of `data` as fits; returns bytes written.
    pub fn write(&self, mem: &dyn SharedMem, data: &[u8]) -> Result<usize, RingCorrupt> {
        let (cons, prod) = self.indices(mem)?;
        let free = (self.size - prod.wrapping_sub(cons)) as usize;
        let n = free.min(data.len());
        let mut done = 0;
        while done < n {
            let pos = (prod.wrapping_add(done as u32) & (self.size - 1)) as usize;
            let chunk = (self.size as usize - pos).min(n - done);
            mem.write_bytes(self.data + pos, data.get(done..done + chunk).unwrap_or(&[]));
            done += chunk;
        }
        if n > 0 {
            // Data before index: the peer must never see the index first.
            mem.fence();
            mem.write_u32(self.prod, prod.wrapping_add(n as u32));
        }
        Ok(n)
    }

    /// Consumer side: copies up to `buf.len()` available bytes; returns bytes read.
    pub fn read(&self, mem: &dyn SharedMem, buf: &mut [u8]) -> Result<usize, RingCorrupt> {
        let (cons, prod) = self.indices(mem)?;
        // Index before data.
        mem.fence();
        let n = (prod.wrapping_sub(cons) as usize).min(buf.len());
        let mut done = 0;
        while done < n {
            let pos = (cons.wrapping_add(done as u32) & (self.size - 1)) as usize;
            let chunk = (self.size as usize - pos).min(n - done);
            if let Some(dst) = buf.get_mut(done..done + chunk) {
                mem.read_bytes(self.data + pos, dst);
            }
            done += chunk;
        }
        if n > 0 {
            // Finish reading before releasing the space.
            mem.fence();
            mem.write_u32(self.cons, cons.wrapping_add(n as u32));
        }
        Ok(n)
    }

    /// Bytes waiting to be consumed.
    pub fn pending(&self, mem: &dyn SharedMem) -> Result<u32, RingCorrupt> {
        self.indices(mem).map(|(c, p)| p.wrapping_sub(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::HeapPage;

    const R: ByteRing = ByteRing { data: 0, size: 16, cons: 16, prod: 20 };

    #[test]
    fn wraps_and_respects_capacity() {
        let page = HeapPage::new(64);
        let mut out = [0u8; 32];
        for round in 0..10u8 {
            let data: Vec<u8> = (0..11).map(|i| i + round).collect();
            assert_eq!(R.write(&page, &data).unwrap(), 11);
            assert_eq!(R.pending(&page).unwrap(), 11);
            assert_eq!(R.read(&page, &mut out).unwrap(), 11);
            assert_eq!(&out[..11], &data[..]);
        }
        assert_eq!(R.write(&page, &[7u8; 40]).unwrap(), 16, "only the ring size fits");
        assert_eq!(R.write(&page, &[7u8; 1]).unwrap(), 0);
    }

    #[test]
    fn index_wraparound_at_u32_max() {
        let page = HeapPage::new(64);
        page.write_u32(16, u32::MAX - 3);
        page.write_u32(20, u32::MAX - 3);
        assert_eq!(R.write(&page, b"abcdefgh").unwrap(), 8);
        assert_eq!(page.read_u32(20), 4);
        let mut out = [0u8; 8];
        assert_eq!(R.read(&page, &mut out).unwrap(), 8);
        assert_eq!(&out, b"abcdefgh");
    }

    #[test]
    fn hostile_indices_are_errors() {
        let page = HeapPage::new(64);
        page.write_u32(16, 0);
        page.write_u32(20, 17);
        assert_eq!(R.read(&page, &mut [0u8; 4]), Err(RingCorrupt { cons: 0, prod: 17, size: 16 }));
        page.write_u32(16, 100);
        page.write_u32(20, 0);
        assert!(R.write(&page, b"x").is_err());
    }
}
