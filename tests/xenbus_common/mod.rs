//! A world for the xenbus backend tests: an in-memory xenstore playing the
//! toolstack and the frontends, the real client and backend, and a polling
//! loop shaped like `XenHost::poll`.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)] // test helpers may panic

use std::cell::Cell;
use xvif::hal::SharedMem;
use xvif::netback::Rate;
use xvif::testing::xenstore::FakeXenstore;
use xvif::xen::xenstore::{Client, XsIo};
use xvif::xenbus::backend::{Backend, FrontendInfo, VifHost, VifId, VifParams};

pub const ME: u16 = 1;
pub const BE_ROOT: &str = "/local/domain/1/backend/vif";
/// Watch events `XenHost::poll` hands on per call.
pub const EVENTS_PER_POLL: usize = 32;

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

/// The main loop's view of xenstore: `notify` does not answer at once (the
/// real xenstored runs on another CPU) but marks the ring kicked, and only a
/// kicked ring's requests are read on the next turn, as xenstored reads a
/// domain's ring when its event channel fires; `wait` is counted, and the
/// backend must never call it from the loop.
pub struct Deferred<'a> {
    pub xs: &'a FakeXenstore,
    pub waits: &'a Cell<usize>,
    pub kicked: &'a Cell<bool>,
}

impl XsIo for Deferred<'_> {
    fn mem(&self) -> &dyn SharedMem {
        self.xs.mem()
    }
    fn notify(&self) {
        self.kicked.set(true);
    }
    fn wait(&self) {
        self.waits.set(self.waits.get() + 1);
        self.xs.wait();
    }
    fn now_ns(&self) -> u64 {
        self.xs.now_ns()
    }
}

pub struct World {
    pub xs: FakeXenstore,
    pub c: Client,
    pub be: Backend,
    pub host: Host,
    /// Times the loop waited for xenstore.
    pub waits: Cell<usize>,
    /// The client kicked xenstored since its last turn.
    pub kicked: Cell<bool>,
}

impl World {
    pub fn new() -> Self {
        Self::with_queues(xvif::xenbus::backend::DEFAULT_MAX_QUEUES)
    }

    pub fn with_queues(queues: u32) -> Self {
        let xs = FakeXenstore::new(ME);
        let mut c = Client::new();
        let be = Backend::start_with_queues(&mut c, &xs, "/local/domain/1", queues).unwrap();
        let mut w = World { xs, c, be, host: Host::default(), waits: Cell::new(0), kicked: Cell::new(false) };
        w.settle();
        w
    }

    /// One turn of the main loop: move bytes, hand on at most
    /// `EVENTS_PER_POLL` watch events, let the backend work. True when
    /// anything happened.
    pub fn poll(&mut self) -> bool {
        if self.kicked.replace(false) {
            self.xs.serve();
        } else {
            self.xs.deliver();
        }
        let io = Deferred { xs: &self.xs, waits: &self.waits, kicked: &self.kicked };
        let moved = self.c.pump(io.mem()).unwrap_or(false);
        if moved {
            // As XenHost::poll does.
            io.notify();
        }
        let mut any = moved;
        for _ in 0..EVENTS_PER_POLL {
            let Some(ev) = self.c.next_event() else { break };
            any = true;
            if Backend::owns_token(&ev.token) {
                self.be.handle_event(&ev);
            }
        }
        any |= self.be.poll(&mut self.c, &io, &mut self.host);
        any
    }

    /// Polls until nothing moves and the backend has nothing left to do
    /// (bounded).
    pub fn settle(&mut self) {
        let mut quiet = 0;
        for _ in 0..10_000 {
            if self.poll() || self.be.busy() {
                quiet = 0;
            } else {
                quiet += 1;
                if quiet >= 3 {
                    return;
                }
            }
        }
        panic!("xenbus did not settle");
    }

    /// Lets the removal grace period pass.
    pub fn after_grace(&mut self) {
        self.xs.advance(xvif::xenbus::backend::REMOVE_GRACE_NS + 1);
        self.settle();
    }

    pub fn get(&self, path: &str) -> Option<String> {
        self.xs.get(path).map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// Requests the backend sent so far.
    pub fn requests(&self) -> usize {
        self.xs.log.borrow().len()
    }

    /// What the toolstack writes for `vif=['backend=xvif,mac=...']`,
    /// without letting the backend run.
    pub fn toolstack_write(&mut self, fe: u16, devid: u32, mac: &str) {
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

    pub fn toolstack_add(&mut self, fe: u16, devid: u32, mac: &str) {
        self.toolstack_write(fe, devid, mac);
        self.settle();
    }

    /// What Linux netfront writes to connect, without letting the backend run.
    pub fn frontend_write(&mut self, fe: u16, devid: u32, split: bool) {
        let fep = format!("/local/domain/{fe}/device/vif/{devid}");
        let mut keys = vec![
            ("tx-ring-ref", "8"),
            ("rx-ring-ref", "9"),
            ("request-rx-copy", "1"),
            ("feature-rx-notify", "1"),
            ("feature-sg", "1"),
            ("feature-gso-tcpv4", "1"),
            ("feature-gso-tcpv6", "1"),
            ("feature-ipv6-csum-offload", "1"),
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

    pub fn frontend_connect(&mut self, fe: u16, devid: u32, split: bool) {
        self.frontend_write(fe, devid, split);
        self.settle();
    }

    pub fn be_state(&self, fe: u16, devid: u32) -> Option<String> {
        self.get(&format!("{BE_ROOT}/{fe}/{devid}/state"))
    }
}

pub fn id(fe: u16, devid: u32) -> xvif::xenbus::backend::VifId {
    VifId { frontend: xvif::xen::DomId(fe), devid }
}

pub fn mac(n: u16) -> String {
    format!("00:16:3e:00:{:02x}:{:02x}", n >> 8, n & 0xff)
}
