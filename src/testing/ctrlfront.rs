//! A mock frontend for the control ring (netif.h "Control ring"): writes
//! requests into a shared page, grants keys and mapping tables from its own
//! pages, reads the responses, and misbehaves on request (raw entries,
//! any `req_prod`, requests rewritten after the backend read them through
//! the page's `SpyPage`).
#![forbid(unsafe_code)]

use super::fake_hv::FakeHv;
use super::netfront::{SharedPage, SpyPage};
use crate::hal::SharedMem;
use crate::netback::ring::{REQ_EVENT, REQ_PROD, RING_HEADER, RSP_EVENT, RSP_PROD, ring_size};
use crate::netif::ctrl::{CTRL_ENTRY_SIZE, CtrlRequest, CtrlResponse, CtrlType};
use crate::xen::DomId;
use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::vec::Vec;

/// Entries in the control ring.
pub const CTRL_RING_SIZE: u32 = ring_size(CTRL_ENTRY_SIZE);

/// The frontend's half of a control ring.
pub struct CtrlFrontend {
    /// Our domain.
    pub dom: DomId,
    /// The hypervisor.
    pub hv: FakeHv,
    /// The ring page.
    pub page: Rc<SpyPage>,
    /// Next request index to write.
    pub prod: u32,
    rsp_cons: u32,
    next_id: u16,
}

impl CtrlFrontend {
    /// A frontend in domain `dom` with a freshly initialised ring.
    pub fn new(hv: &FakeHv, dom: DomId) -> Self {
        let page = Rc::new(SpyPage::new(CTRL_ENTRY_SIZE));
        // SHARED_RING_INIT.
        page.raw().write_u32(REQ_EVENT, 1);
        page.raw().write_u32(RSP_EVENT, 1);
        Self { dom, hv: hv.clone(), page, prod: 0, rsp_cons: 0, next_id: 0x100 }
    }

    /// The ring as the backend maps it.
    pub fn ring(&self) -> Box<dyn SharedMem> {
        Box::new(SharedPage(self.page.clone()))
    }

    fn slot(i: u32) -> usize {
        RING_HEADER + (i % CTRL_RING_SIZE) as usize * CTRL_ENTRY_SIZE
    }

    /// Writes raw entry bytes at the next index (not published).
    pub fn push_raw(&mut self, entry: [u8; CTRL_ENTRY_SIZE]) {
        self.page.raw().write_bytes(Self::slot(self.prod), &entry);
        self.prod = self.prod.wrapping_add(1);
    }

    /// Writes a request (not published); returns its id.
    pub fn push(&mut self, ty: CtrlType, data: [u32; 3]) -> u16 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.push_raw(CtrlRequest { id, ty, data }.emit());
        id
    }

    /// Publishes the requests written (RING_PUSH_REQUESTS).
    pub fn publish(&self) {
        self.page.raw().fence();
        self.page.raw().write_u32(REQ_PROD, self.prod);
    }

    /// Writes and publishes one request; returns its id.
    pub fn request(&mut self, ty: CtrlType, data: [u32; 3]) -> u16 {
        let id = self.push(ty, data);
        self.publish();
        id
    }

    /// Writes any value into `req_prod`.
    pub fn set_req_prod(&self, v: u32) {
        self.page.raw().write_u32(REQ_PROD, v);
    }

    /// The byte offset of the entry at request index `i` (for rewrites).
    pub fn entry_offset(i: u32) -> usize {
        Self::slot(i)
    }

    /// Responses published since the last call; re-arms `rsp_event`.
    pub fn responses(&mut self) -> Vec<CtrlResponse> {
        let prod = self.page.raw().read_u32(RSP_PROD);
        let mut v = Vec::new();
        while self.rsp_cons != prod {
            let mut e = [0u8; CTRL_ENTRY_SIZE];
            self.page.raw().read_bytes(Self::slot(self.rsp_cons), &mut e);
            v.push(CtrlResponse::parse(&e));
            self.rsp_cons = self.rsp_cons.wrapping_add(1);
        }
        self.page.raw().write_u32(RSP_EVENT, self.rsp_cons.wrapping_add(1));
        v
    }

    /// A new page with `data` at its start, granted read-only to the
    /// backend (netif.h allows read-only key and table grants).
    pub fn grant_bytes(&self, data: &[u8]) -> u32 {
        let gfn = self.hv.alloc_page(self.dom);
        self.hv.write_page(self.dom, gfn, 0, data);
        self.hv.grant(self.dom, gfn, self.hv.backend, true)
    }

    /// A page holding `entries` as little-endian u32 queue numbers.
    pub fn grant_mapping(&self, entries: &[u32]) -> u32 {
        let bytes: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
        self.grant_bytes(&bytes)
    }

    /// A page granted to a domain other than the backend.
    pub fn grant_elsewhere(&self, data: &[u8]) -> u32 {
        let gfn = self.hv.alloc_page(self.dom);
        self.hv.write_page(self.dom, gfn, 0, data);
        self.hv.grant(self.dom, gfn, DomId(self.hv.backend.0.wrapping_add(100)), true)
    }
}
