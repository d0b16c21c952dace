//! The xenbus world of the backend tests (`tests/xenbus_common/world.rs`:
//! in-memory xenstore, real client and `Backend`, one main-loop turn shaped
//! like `XenHost::poll`) with a `VifHost` that checks the connect and
//! disconnect calls it gets, and settled starting worlds built once per
//! process and cloned for each input.

#[path = "../../tests/xenbus_common/world.rs"]
mod world;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use xvif::netback::Rate;
use xvif::xenbus::VifParams;
use xvif::xenbus::backend::{FrontendInfo, VifHost, VifId};

pub use world::{BE_ROOT, Deferred, EVENTS_PER_POLL, ME, mac};

/// The data plane as the backend sees it; asserts the calls make sense.
#[derive(Debug, Default, Clone)]
pub struct Host {
    /// Vifs connected now.
    pub connected: BTreeSet<VifId>,
    /// Connect calls so far.
    pub connects: u64,
    /// When set, connecting fails (no grant mapping space).
    pub fail_connect: bool,
    /// Most queues the backend offers.
    pub max_queues: u32,
}

impl VifHost for Host {
    fn connect(&mut self, id: VifId, _mac: [u8; 6], fe: &FrontendInfo, _params: &VifParams) -> Result<(), String> {
        assert!(!self.connected.contains(&id), "{id:?} connected twice");
        let n = fe.queues.len() as u32;
        assert!(n >= 1 && n <= self.max_queues, "{n} queues, {} offered", self.max_queues);
        if self.fail_connect {
            return Err("no grant mapping space".into());
        }
        self.connects += 1;
        self.connected.insert(id);
        Ok(())
    }

    fn disconnect(&mut self, id: VifId) {
        assert!(self.connected.remove(&id), "{id:?} disconnected while not connected");
    }

    fn set_rate(&mut self, id: VifId, _rate: Option<Rate>) {
        assert!(self.connected.contains(&id), "rate set on {id:?}, which is not connected");
    }
}

/// Store, client, backend and the checking host.
pub type World = world::World<Host>;

/// The well-behaved guest connected in every starting world.
pub const GUEST: u16 = 77;

impl World {
    /// A backend offering `queues` queues, settled, with guest `GUEST`'s
    /// vif 0 connected. The first call for a queue count builds that world;
    /// later calls clone it, which gives the same world as building it
    /// again (everything in it is deterministic).
    pub fn with_guest(queues: u32) -> Self {
        thread_local! {
            static READY: RefCell<BTreeMap<u32, World>> = const { RefCell::new(BTreeMap::new()) };
        }
        READY.with_borrow_mut(|ready| ready.entry(queues).or_insert_with(|| Self::build(queues)).clone())
    }

    fn build(queues: u32) -> Self {
        let host = Host { max_queues: queues.clamp(1, xvif::netback::MAX_QUEUES as u32), ..Host::default() };
        let mut w = World::start(queues, host);
        assert!(w.settle_within(10_000), "a fresh backend did not settle");
        w.connect(GUEST, "the starting guest");
        // The request log is for the tests; an empty one is cheaper to clone.
        w.xs.log.borrow_mut().clear();
        w
    }

    /// Attaches and connects vif 0 of guest `fe` (the toolstack, then Linux
    /// netfront with split event channels when `fe` is even, each followed
    /// by a settle); `what` names it in failures.
    pub fn connect(&mut self, fe: u16, what: &str) {
        self.toolstack_write(fe, 0, &mac(fe));
        assert!(self.settle_within(5_000), "{what}: did not settle after the toolstack");
        assert_eq!(self.be_state(fe, 0).as_deref(), Some("2"), "{what}: not InitWait");
        self.frontend_write(fe, 0, fe.is_multiple_of(2));
        assert!(self.settle_within(5_000), "{what}: did not settle after the frontend");
        assert_eq!(self.be_state(fe, 0).as_deref(), Some("4"), "{what}: not Connected");
    }
}
