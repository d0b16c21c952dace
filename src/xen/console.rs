//! PV console rings (xen/include/public/io/console.h): `struct
//! xencons_interface { char in[1024]; char out[2048]; in_cons, in_prod,
//! out_cons, out_prod }`.
#![forbid(unsafe_code)]

use super::ring::ByteRing;

/// Output ring (we produce, xenconsoled consumes).
pub const OUT: ByteRing = ByteRing { data: 1024, size: 2048, cons: 3080, prod: 3084 };
/// Input ring (xenconsoled produces, we consume).
pub const IN: ByteRing = ByteRing { data: 0, size: 1024, cons: 3072, prod: 3076 };

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::{HeapPage, SharedMem};

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
