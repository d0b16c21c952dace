//! The backend side of a Xen shared ring of one page, as laid out by
//! xen/include/public/io/ring.h (`DEFINE_RING_TYPES`): a 64-byte header
//! `req_prod@0, req_event@4, rsp_prod@8, rsp_event@12` then the entries
//! (the union of request and response) from byte 64. The entry count is
//! the largest power of two that fits the page (`__CONST_RING_SIZE`): both
//! netif data rings hold 256 entries ((4096 - 64) / 12 and (4096 - 64) / 8
//! rounded down), the control ring 128 ((4096 - 64) / 16).
//!
//! The frontend owns `req_prod` and `rsp_event` and may write anything into
//! them at any time; we never hold a reference into the page (every access is
//! a `SharedMem` copy), copy each request out exactly once (XSA-155) and
//! treat an impossible `req_prod` as a typed fatal error (XSA-39).
#![forbid(unsafe_code)]

use crate::hal::SharedMem;

/// Entries in either netif data ring (`__CONST_RING_SIZE` for a 4 KiB page
/// and 12- or 8-byte entries).
pub const RING_SIZE: u32 = 256;
/// Bytes of a ring page.
const RING_PAGE: usize = 4096;

/// Entries a one-page ring of `entry`-byte entries holds: the largest power
/// of two that fits after the header (at least 1).
pub const fn ring_size(entry: usize) -> u32 {
    let fit = (RING_PAGE - RING_HEADER) / if entry == 0 { 1 } else { entry };
    if fit == 0 { 1 } else { 1 << fit.ilog2() }
}
/// Offset of the first entry.
pub const RING_HEADER: usize = 64;
/// `sring->req_prod`.
pub const REQ_PROD: usize = 0;
/// `sring->req_event`.
pub const REQ_EVENT: usize = 4;
/// `sring->rsp_prod`.
pub const RSP_PROD: usize = 8;
/// `sring->rsp_event`.
pub const RSP_EVENT: usize = 12;

/// The frontend published more requests than the ring can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingOverflow {
    /// `req_prod` as read.
    pub req_prod: u32,
    /// Our consumer index.
    pub req_cons: u32,
}

/// Backend ring state: our private indices plus the entry size.
#[derive(Debug, Clone)]
pub struct BackRing {
    entry: usize,
    /// Entries in the ring (a power of two).
    size: u32,
    req_cons: u32,
    rsp_prod_pvt: u32,
    /// `rsp_prod` as we last published it (never re-read from the page:
    /// only we write it, so a changed value could only be the peer lying).
    rsp_pushed: u32,
}

impl BackRing {
    /// Attaches to a ring (`BACK_RING_ATTACH`): starts at the published
    /// `rsp_prod`, so a reconnecting frontend's old requests are not replayed.
    pub fn attach(mem: &dyn SharedMem, entry: usize) -> Self {
        let start = mem.read_u32(RSP_PROD);
        Self { entry, size: ring_size(entry), req_cons: start, rsp_prod_pvt: start, rsp_pushed: start }
    }

    /// Entries in the ring.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Our consumer index.
    pub fn req_cons(&self) -> u32 {
        self.req_cons
    }

    /// Responses produced (published or not).
    pub fn rsp_prod_pvt(&self) -> u32 {
        self.rsp_prod_pvt
    }

    fn entry_off(&self, idx: u32) -> usize {
        RING_HEADER + (idx & (self.size - 1)) as usize * self.entry
    }

    /// Requests published and not yet consumed.
    ///
    /// Ordering: `req_prod` is read before any entry it covers. The frontend
    /// writes entries, then a write barrier, then `req_prod`; our fence after
    /// reading the index pairs with it, so entries read afterwards are at
    /// least as new as the index (the read side of RING_HAS_UNCONSUMED_REQUESTS).
    pub fn unconsumed(&self, mem: &dyn SharedMem) -> Result<u32, RingOverflow> {
        let req_prod = mem.read_u32(REQ_PROD);
        mem.fence();
        let n = req_prod.wrapping_sub(self.req_cons);
        if n > self.size {
            return Err(RingOverflow { req_prod, req_cons: self.req_cons });
        }
        // Never count requests whose slots still await our responses
        // (RING_REQUEST_CONS_OVERFLOW); with in-order answering this is 0.
        let owed = self.req_cons.wrapping_sub(self.rsp_prod_pvt);
        Ok(n.min(self.size.saturating_sub(owed)))
    }

    /// Copies the request `ahead` entries past the consumer index into `out`
    /// (`out.len()` bytes, at most one entry). The caller checked `ahead`
    /// against `unconsumed`; the copy is the only read of that entry.
    pub fn copy_request(&self, mem: &dyn SharedMem, ahead: u32, out: &mut [u8]) {
        let n = out.len().min(self.entry);
        if let Some(dst) = out.get_mut(..n) {
            mem.read_bytes(self.entry_off(self.req_cons.wrapping_add(ahead)), dst);
        }
    }

    /// Marks `n` requests consumed.
    pub fn consume(&mut self, n: u32) {
        self.req_cons = self.req_cons.wrapping_add(n);
    }

    /// Writes the next response into the slot of the oldest unanswered
    /// request (responses overwrite the requests they answer). Returns false,
    /// writing nothing, when every consumed request already has a response.
    pub fn write_response(&mut self, mem: &dyn SharedMem, bytes: &[u8]) -> bool {
        if self.rsp_prod_pvt == self.req_cons {
            return false;
        }
        let n = bytes.len().min(self.entry);
        mem.write_bytes(self.entry_off(self.rsp_prod_pvt), bytes.get(..n).unwrap_or(&[]));
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        true
    }

    /// Publishes the responses written so far and says whether the frontend
    /// asked to be notified (RING_PUSH_RESPONSES_AND_CHECK_NOTIFY).
    ///
    /// Ordering: a fence between the response bodies and `rsp_prod` so the
    /// frontend never sees the index before the entries; a full fence between
    /// writing `rsp_prod` and reading `rsp_event`, so that either we see the
    /// frontend's new `rsp_event` or it sees our new `rsp_prod` when it
    /// re-checks after setting `rsp_event` (no lost wake-up).
    pub fn push_responses(&mut self, mem: &dyn SharedMem) -> bool {
        let old = self.rsp_pushed;
        let new = self.rsp_prod_pvt;
        if old == new {
            return false;
        }
        mem.fence();
        mem.write_u32(RSP_PROD, new);
        self.rsp_pushed = new;
        mem.fence();
        let event = mem.read_u32(RSP_EVENT);
        // Notify when rsp_event lies in (old, new]: unsigned distances handle
        // wrap-around; any value the frontend writes gives a plain bool.
        new.wrapping_sub(event) < new.wrapping_sub(old)
    }

    /// RING_FINAL_CHECK_FOR_REQUESTS: when nothing is pending, asks for an
    /// event on the next request (`req_event = req_cons + 1`), then re-checks.
    ///
    /// Ordering: the full fence between writing `req_event` and re-reading
    /// `req_prod` closes the race with a frontend that published a request
    /// just before seeing our `req_event`: either it sees the new `req_event`
    /// and notifies, or we see its `req_prod` here.
    pub fn final_check(&mut self, mem: &dyn SharedMem) -> Result<bool, RingOverflow> {
        if self.unconsumed(mem)? > 0 {
            return Ok(true);
        }
        mem.write_u32(REQ_EVENT, self.req_cons.wrapping_add(1));
        mem.fence();
        Ok(self.unconsumed(mem)? > 0)
    }

    /// Asks for an event once at least `want` requests are pending (used by
    /// RX when a packet needs more slots than posted), then re-checks;
    /// returns the requests now pending.
    pub fn wait_for(&mut self, mem: &dyn SharedMem, want: u32) -> Result<u32, RingOverflow> {
        let have = self.unconsumed(mem)?;
        if have >= want {
            return Ok(have);
        }
        // Event when req_prod passes what we saw: each newly posted buffer
        // wakes us to re-evaluate.
        mem.write_u32(REQ_EVENT, self.req_cons.wrapping_add(have).wrapping_add(1));
        mem.fence();
        self.unconsumed(mem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hal::HeapPage;

    fn page() -> HeapPage {
        let p = HeapPage::new(4096);
        // SHARED_RING_INIT: events at 1.
        p.write_u32(REQ_EVENT, 1);
        p.write_u32(RSP_EVENT, 1);
        p
    }

    #[test]
    fn ring_geometry_fits_a_page() {
        assert!(RING_HEADER + RING_SIZE as usize * 12 <= 4096);
        assert!(RING_HEADER + RING_SIZE as usize * 2 * 8 > 4096, "256 is the largest power of two for 8-byte entries");
        assert_eq!((ring_size(12), ring_size(8), ring_size(16)), (RING_SIZE, RING_SIZE, 128));
        assert_eq!((ring_size(0), ring_size(4032), ring_size(5000)), (2048, 1, 1));
    }

    #[test]
    fn a_ring_of_16_byte_entries_holds_128() {
        let p = page();
        let mut r = BackRing::attach(&p, 16);
        assert_eq!(r.size(), 128);
        p.write_u32(REQ_PROD, 129);
        assert_eq!(r.unconsumed(&p), Err(RingOverflow { req_prod: 129, req_cons: 0 }));
        p.write_u32(REQ_PROD, 128);
        assert_eq!(r.unconsumed(&p), Ok(128));
        // Entry 128 shares entry 0's slot: the index wraps at the ring's size.
        r.consume(128);
        for _ in 0..128 {
            assert!(r.write_response(&p, &[0; 16]));
        }
        p.write_bytes(RING_HEADER, &[5; 16]);
        p.write_u32(REQ_PROD, 129);
        let mut e = [0u8; 16];
        r.copy_request(&p, 0, &mut e);
        assert_eq!(e, [5; 16]);
    }

    #[test]
    fn consume_respond_notify() {
        let p = page();
        let mut r = BackRing::attach(&p, 12);
        assert_eq!(r.unconsumed(&p), Ok(0));
        p.write_bytes(RING_HEADER, &[7; 12]);
        p.write_u32(REQ_PROD, 1);
        assert_eq!(r.unconsumed(&p), Ok(1));
        let mut e = [0u8; 12];
        r.copy_request(&p, 0, &mut e);
        assert_eq!(e, [7; 12]);
        assert!(!r.write_response(&p, &[1; 12]), "nothing consumed yet");
        r.consume(1);
        assert!(r.write_response(&p, &[1, 0, 0, 0]));
        assert!(!r.write_response(&p, &[1; 12]));
        // rsp_event = 1 lies in (0, 1]: notify.
        assert!(r.push_responses(&p));
        assert_eq!(p.read_u32(RSP_PROD), 1);
        assert!(!r.push_responses(&p), "nothing new");
    }

    #[test]
    fn notify_only_when_rsp_event_crossed() {
        let p = page();
        let mut r = BackRing::attach(&p, 8);
        p.write_u32(REQ_PROD, 3);
        r.consume(3);
        // The frontend wants an event at response 3 only.
        p.write_u32(RSP_EVENT, 3);
        r.write_response(&p, &[0; 8]);
        assert!(!r.push_responses(&p));
        r.write_response(&p, &[0; 8]);
        r.write_response(&p, &[0; 8]);
        assert!(r.push_responses(&p));
        // Hostile rsp_event values only change the answer, never panic.
        for ev in [0, u32::MAX, 0x8000_0000] {
            p.write_u32(RSP_EVENT, ev);
            p.write_u32(REQ_PROD, r.req_cons() + 1);
            r.consume(1);
            r.write_response(&p, &[0; 8]);
            let _ = r.push_responses(&p);
        }
    }

    #[test]
    fn impossible_req_prod_is_an_error() {
        let p = page();
        let r = BackRing::attach(&p, 12);
        p.write_u32(REQ_PROD, RING_SIZE);
        assert_eq!(r.unconsumed(&p), Ok(RING_SIZE));
        p.write_u32(REQ_PROD, RING_SIZE + 1);
        assert_eq!(r.unconsumed(&p), Err(RingOverflow { req_prod: 257, req_cons: 0 }));
        p.write_u32(REQ_PROD, u32::MAX);
        assert!(r.unconsumed(&p).is_err());
    }

    #[test]
    fn indices_wrap_at_u32_max() {
        let p = page();
        p.write_u32(RSP_PROD, u32::MAX - 1);
        let mut r = BackRing::attach(&p, 12);
        p.write_u32(REQ_PROD, 2);
        assert_eq!(r.unconsumed(&p), Ok(4));
        r.consume(4);
        for _ in 0..4 {
            assert!(r.write_response(&p, &[0; 12]));
        }
        p.write_u32(RSP_EVENT, 0);
        assert!(r.push_responses(&p));
        assert_eq!(p.read_u32(RSP_PROD), 2);
    }

    #[test]
    fn final_check_sets_req_event() {
        let p = page();
        let mut r = BackRing::attach(&p, 12);
        assert_eq!(r.final_check(&p), Ok(false));
        assert_eq!(p.read_u32(REQ_EVENT), 1);
        p.write_u32(REQ_PROD, 2);
        assert_eq!(r.final_check(&p), Ok(true));
        r.consume(2);
        assert_eq!(r.wait_for(&p, 1), Ok(0));
        assert_eq!(p.read_u32(REQ_EVENT), 3);
        p.write_u32(REQ_PROD, 4);
        assert_eq!(r.wait_for(&p, 3), Ok(2));
        assert_eq!(p.read_u32(REQ_EVENT), 5);
    }
}
