//! A world for the xenbus backend tests: the shared `world::World` (an
//! in-memory xenstore playing the toolstack and the frontends, the real
//! client and backend, a polling loop shaped like `XenHost::poll`) with a
//! data plane that records every call.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)] // test helpers may panic

mod world;

pub use world::*;
use xvif::netback::Rate;
use xvif::xenbus::backend::{FrontendInfo, VifHost, VifId, VifParams};

#[derive(Default)]
pub struct Host {
    pub connected: Vec<(VifId, [u8; 6], FrontendInfo)>,
    /// What the toolstack configured, per connect.
    pub params: Vec<(VifId, VifParams)>,
    /// `set_rate` calls.
    pub rates: Vec<(VifId, Option<Rate>)>,
    pub disconnected: Vec<VifId>,
    pub fail_connect: bool,
}

impl VifHost for Host {
    fn connect(&mut self, id: VifId, mac: [u8; 6], fe: &FrontendInfo, params: &VifParams) -> Result<(), String> {
        if self.fail_connect {
            return Err("no grant mapping space".into());
        }
        self.connected.push((id, mac, fe.clone()));
        self.params.push((id, params.clone()));
        Ok(())
    }
    fn set_rate(&mut self, id: VifId, rate: Option<Rate>) {
        self.rates.push((id, rate));
    }
    fn disconnect(&mut self, id: VifId) {
        self.disconnected.push(id);
    }
}

pub type World = world::World<Host>;

impl World {
    pub fn new() -> Self {
        Self::with_queues(xvif::xenbus::backend::DEFAULT_MAX_QUEUES)
    }

    pub fn with_queues(queues: u32) -> Self {
        let mut w = World::start(queues, Host::default());
        w.settle();
        w
    }

    /// Polls until nothing moves and the backend has nothing left to do
    /// (bounded).
    pub fn settle(&mut self) {
        assert!(self.settle_within(10_000), "xenbus did not settle");
    }

    /// Lets the removal grace period pass.
    pub fn after_grace(&mut self) {
        self.xs.advance(xvif::xenbus::backend::REMOVE_GRACE_NS + 1);
        self.settle();
    }

    /// `xl network-detach` as libxl starts it: `online=0` and `state=5` in
    /// the backend directory, which it returns.
    pub fn toolstack_detach(&mut self, fe: u16, devid: u32) -> String {
        let be = format!("{BE_ROOT}/{fe}/{devid}");
        self.xs.set(&format!("{be}/online"), b"0", 0);
        self.xs.set(&format!("{be}/state"), b"5", 0);
        self.settle();
        be
    }

    /// Lets time pass in `tick_ns` steps, settling after each, until
    /// `*clock_ns` (advanced by every step) reaches `until_ns` or `stop` holds.
    pub fn tick(&mut self, clock_ns: &mut u64, until_ns: u64, tick_ns: u64, stop: impl Fn(&Self) -> bool) {
        while *clock_ns < until_ns && !stop(self) {
            self.xs.advance(tick_ns);
            *clock_ns += tick_ns;
            self.settle();
        }
    }

    /// Requests the backend sent so far.
    pub fn requests(&self) -> usize {
        self.xs.log.borrow().len()
    }

    pub fn toolstack_add(&mut self, fe: u16, devid: u32, mac: &str) {
        self.toolstack_write(fe, devid, mac);
        self.settle();
    }

    pub fn frontend_connect(&mut self, fe: u16, devid: u32, split: bool) {
        self.frontend_write(fe, devid, split);
        self.settle();
    }
}

pub fn id(fe: u16, devid: u32) -> VifId {
    VifId { frontend: xvif::xen::DomId(fe), devid }
}
