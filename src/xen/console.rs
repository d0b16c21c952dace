//! PV console rings (xen/include/public/io/console.h): `struct
//! xencons_interface { char in[1024]; char out[2048]; in_cons, in_prod,
//! out_cons, out_prod }`.
#![forbid(unsafe_code)]

use super::ring::{ByteRing, RingCorrupt};
use crate::hal::SharedMem;

/// Output ring (we produce, xenconsoled consumes).
pub const OUT: ByteRing = ByteRing { data: 1024, size: 2048, cons: 3080, prod: 3084 };
/// Input ring (xenconsoled produces, we consume).
pub const IN: ByteRing = ByteRing { data: 0, size: 1024, cons: 3072, prod: 3076 };

/// Writes one log line (given without its line end) and "\r\n" into the
/// output ring when all of it fits, and nothing otherwise: log output never
/// waits for xenconsoled, and a full ring costs a whole line, not a torn
/// one. Returns whether the line was written.
pub fn put_line(mem: &dyn SharedMem, line: &[u8]) -> Result<bool, RingCorrupt> {
    let free = (OUT.size - OUT.pending(mem)?) as usize;
    if line.len().saturating_add(2) > free {
        return Ok(false);
    }
    OUT.write(mem, line)?;
    OUT.write(mem, b"\r\n")?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::HeapPage;

    #[test]
    fn a_full_ring_drops_whole_lines_without_waiting() {
        let page = HeapPage::new(4096);
        let line = [b'x'; 100];
        // Nobody drains the ring: 2048 / 102 = 20 lines fit.
        let written = (0..50).filter(|_| put_line(&page, &line).unwrap()).count();
        assert_eq!(written, 20);
        assert_eq!(OUT.pending(&page).unwrap(), 20 * 102, "no partial line in the ring");
        // The consumer drains two lines' worth: the next line goes in whole.
        page.write_u32(OUT.cons, page.read_u32(OUT.cons) + 204);
        assert!(put_line(&page, b"after").unwrap());
        let mut all = vec![0u8; 2048];
        let n = OUT.read(&page, &mut all).unwrap();
        assert!(all[..n].ends_with(b"xx\r\nafter\r\n"));
        // A line longer than the ring never fits and never loops.
        assert!(!put_line(&page, &[b'y'; 4000]).unwrap());
        // Corrupt indices from the peer are an error, not a write.
        page.write_u32(OUT.prod, page.read_u32(OUT.cons) + 5000);
        assert!(put_line(&page, b"z").is_err());
    }

    #[test]
    fn rings_do_not_overlap_and_carry_text() {
        assert!(IN.data + IN.size as usize <= OUT.data);
        assert!(OUT.data + OUT.size as usize <= IN.cons);
        let page = HeapPage::new(4096);
        assert_eq!(OUT.write(&page, b"hello\n").unwrap(), 6);
        assert_eq!(page.read_u32(OUT.prod), 6);
        let mut b = [0u8; 6];
        page.read_bytes(OUT.data, &mut b);
        assert_eq!(&b, b"hello\n");
    }
}
