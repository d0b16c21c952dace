//! A xenbus world: the in-memory xenstore playing toolstack and frontends,
//! the real client and `Backend`, a `VifHost` that checks the connect and
//! disconnect calls it gets, and one turn of the main loop shaped like
//! `XenHost::poll` (the backend must never wait for xenstored there).

use std::cell::Cell;
use std::collections::BTreeSet;
use xvif::hal::SharedMem;
use xvif::netback::Rate;
use xvif::testing::xenstore::FakeXenstore;
use xvif::xen::xenstore::{Client, XsIo};
use xvif::xenbus::VifParams;
use xvif::xenbus::backend::{Backend, FrontendInfo, VifHost, VifId};

/// Our domain.
pub const ME: u16 = 1;
/// Our backend directory.
pub const BE_ROOT: &str = "/local/domain/1/backend/vif";
/// Watch events handed on per loop turn (as `XenHost::poll`).
pub const EVENTS_PER_POLL: usize = 32;

/// The data plane as the backend sees it; asserts the calls make sense.
#[derive(Debug, Default)]
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

/// xenstore as the main loop sees it: `notify` does not answer at once
/// (xenstored runs elsewhere); `wait` is counted.
pub struct Deferred<'a> {
    /// The store.
    pub xs: &'a FakeXenstore,
    /// Times waited.
    pub waits: &'a Cell<usize>,
}

impl XsIo for Deferred<'_> {
    fn mem(&self) -> &dyn SharedMem {
        self.xs.mem()
    }
    fn notify(&self) {}
    fn wait(&self) {
        self.waits.set(self.waits.get() + 1);
        self.xs.wait();
    }
    fn now_ns(&self) -> u64 {
        self.xs.now_ns()
    }
}

/// Store, client, backend and host.
pub struct World {
    /// The store.
    pub xs: FakeXenstore,
    /// Our client.
    pub c: Client,
    /// The backend under test.
    pub be: Backend,
    /// The data plane.
    pub host: Host,
    /// Times the loop waited for xenstore.
    pub waits: Cell<usize>,
    /// Most requests the backend sent in one turn.
    pub max_requests: u64,
}

impl World {
    /// A started backend offering `queues` queues, settled.
    pub fn new(queues: u32) -> Self {
        let xs = FakeXenstore::new(ME);
        let mut c = Client::new();
        let be = Backend::start_with_queues(&mut c, &xs, "/local/domain/1", queues)
            .unwrap_or_else(|e| panic!("backend start: {e:?}"));
        let host = Host { max_queues: queues.clamp(1, xvif::netback::MAX_QUEUES as u32), ..Host::default() };
        let mut w = World { xs, c, be, host, waits: Cell::new(0), max_requests: 0 };
        assert!(w.settle(10_000), "a fresh backend did not settle");
        w
    }

    /// One turn of the main loop; returns (anything happened, requests sent).
    pub fn poll(&mut self) -> (bool, u64) {
        self.xs.serve();
        let io = Deferred { xs: &self.xs, waits: &self.waits };
        let moved = self.c.pump(io.mem()).unwrap_or(false);
        let mut any = moved;
        for _ in 0..EVENTS_PER_POLL {
            let Some(ev) = self.c.next_event() else { break };
            any = true;
            if Backend::owns_token(&ev.token) {
                self.be.handle_event(&ev);
            }
        }
        let before = self.c.stats.requests;
        any |= self.be.poll(&mut self.c, &io, &mut self.host);
        let sent = self.c.stats.requests - before;
        self.max_requests = self.max_requests.max(sent);
        (any, sent)
    }

    /// Polls until quiet (three idle turns) or `max` turns; true if quiet.
    pub fn settle(&mut self, max: usize) -> bool {
        let mut quiet = 0;
        for _ in 0..max {
            if self.poll().0 || self.be.busy() {
                quiet = 0;
            } else {
                quiet += 1;
                if quiet >= 3 {
                    return true;
                }
            }
        }
        false
    }

    /// A node's value as text.
    pub fn get(&self, path: &str) -> Option<String> {
        self.xs.get(path).map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// Our `state` for a device.
    pub fn be_state(&self, fe: u16, devid: u32) -> Option<String> {
        self.get(&format!("{BE_ROOT}/{fe}/{devid}/state"))
    }

    /// What the toolstack writes for a new vif.
    pub fn toolstack_write(&self, fe: u16, devid: u32, mac: &str) {
        let be = format!("{BE_ROOT}/{fe}/{devid}");
        let fep = format!("/local/domain/{fe}/device/vif/{devid}");
        for (k, v) in [
            ("frontend", fep.as_str()),
            ("frontend-id", &fe.to_string()),
            ("online", "1"),
            ("mac", mac),
            ("handle", &devid.to_string()),
            ("type", "vif"),
            ("hotplug-status", ""),
            ("state", "1"),
        ] {
            self.xs.set(&format!("{be}/{k}"), v.as_bytes(), 0);
        }
        for (k, v) in [("backend", be.as_str()), ("backend-id", "1"), ("state", "1"), ("mac", mac)] {
            self.xs.set(&format!("{fep}/{k}"), v.as_bytes(), fe);
        }
    }

    /// What Linux netfront writes to connect.
    pub fn frontend_write(&self, fe: u16, devid: u32, split: bool) {
        let fep = format!("/local/domain/{fe}/device/vif/{devid}");
        let mut keys = vec![
            ("tx-ring-ref", "8"),
            ("rx-ring-ref", "9"),
            ("request-rx-copy", "1"),
            ("feature-rx-notify", "1"),
            ("feature-sg", "1"),
            ("feature-gso-tcpv4", "1"),
            ("multi-queue-num-queues", "1"),
        ];
        if split {
            keys.push(("event-channel-tx", "7"));
            keys.push(("event-channel-rx", "6"));
        } else {
            keys.push(("event-channel", "5"));
        }
        for (k, v) in keys {
            self.xs.set(&format!("{fep}/{k}"), v.as_bytes(), fe);
        }
        self.xs.set(&format!("{fep}/state"), b"4", fe);
    }
}

/// A MAC for guest `n`.
pub fn mac(n: u16) -> String {
    format!("00:16:3e:00:{:02x}:{:02x}", n >> 8, n & 0xff)
}
