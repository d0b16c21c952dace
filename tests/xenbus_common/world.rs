//! A xenbus world: an in-memory xenstore playing the toolstack and the
//! frontends, the real client and backend, a data plane `H`, and one turn of
//! the main loop shaped like `XenHost::poll`. The backend tests
//! (`tests/xenbus_common`) and the xenbus fuzz target (`fuzz/src/xenbus.rs`)
//! both include this file, each with its own `VifHost`.

use std::cell::Cell;
use xvif::hal::SharedMem;
use xvif::testing::xenstore::FakeXenstore;
use xvif::xen::xenstore::{Client, XsIo};
use xvif::xenbus::backend::{Backend, VifHost};

/// Our domain.
pub const ME: u16 = 1;
/// Our backend directory.
pub const BE_ROOT: &str = "/local/domain/1/backend/vif";
/// Watch events `XenHost::poll` hands on per call.
pub const EVENTS_PER_POLL: usize = 32;

/// The main loop's view of xenstore: `notify` does not answer at once (the
/// real xenstored runs on another CPU) but marks the ring kicked, and only a
/// kicked ring's requests are read on the next turn, as xenstored reads a
/// domain's ring when its event channel fires; `wait` is counted, and the
/// backend must never call it from the loop.
pub struct Deferred<'a> {
    /// The store.
    pub xs: &'a FakeXenstore,
    /// Times waited.
    pub waits: &'a Cell<usize>,
    /// Set by `notify`.
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

/// Store, client, backend and data plane. A clone is an independent world
/// in the same state.
#[derive(Clone)]
pub struct World<H> {
    /// The store.
    pub xs: FakeXenstore,
    /// Our client.
    pub c: Client,
    /// The backend under test.
    pub be: Backend,
    /// The data plane.
    pub host: H,
    /// Times the loop waited for xenstore.
    pub waits: Cell<usize>,
    /// The client kicked xenstored since its last turn.
    pub kicked: Cell<bool>,
    /// Most requests the backend sent in one turn.
    pub max_requests: u64,
}

impl<H: VifHost> World<H> {
    /// A started backend offering `queues` queues, before any loop turn.
    pub fn start(queues: u32, host: H) -> Self {
        let xs = FakeXenstore::new(ME);
        let mut c = Client::new();
        let be = Backend::start_with_queues(&mut c, &xs, "/local/domain/1", queues)
            .unwrap_or_else(|e| panic!("backend start: {e:?}"));
        World { xs, c, be, host, waits: Cell::new(0), kicked: Cell::new(false), max_requests: 0 }
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
        let before = self.c.stats.requests;
        any |= self.be.poll(&mut self.c, &io, &mut self.host);
        self.max_requests = self.max_requests.max(self.c.stats.requests - before);
        any
    }

    /// Polls until nothing moves and the backend has nothing left to do
    /// (three such turns in a row), at most `max` turns; true if it got
    /// there.
    pub fn settle_within(&mut self, max: usize) -> bool {
        self.three_quiet_turns(max, true)
    }

    /// Polls until three turns in a row did nothing, at most `max` turns;
    /// true if it got there. The backend may still be busy then, waiting
    /// for replies that only time will end.
    pub fn idle_within(&mut self, max: usize) -> bool {
        self.three_quiet_turns(max, false)
    }

    /// Polls until three quiet turns in a row, at most `max` turns; a busy
    /// backend makes a turn not quiet when `busy_counts`.
    fn three_quiet_turns(&mut self, max: usize, busy_counts: bool) -> bool {
        let mut quiet = 0;
        for _ in 0..max {
            if self.poll() || (busy_counts && self.be.busy()) {
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

    /// What the toolstack writes for `vif=['backend=xvif,mac=...']`,
    /// without letting the backend run.
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

    /// What Linux netfront writes to connect, without letting the backend
    /// run.
    pub fn frontend_write(&self, fe: u16, devid: u32, split: bool) {
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
}

/// A MAC for guest `n`.
pub fn mac(n: u16) -> String {
    format!("00:16:3e:00:{:02x}:{:02x}", n >> 8, n & 0xff)
}
