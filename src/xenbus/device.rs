//! One probed vif's xenbus state machine. Watch events only mark it dirty
//! (frontend changed, toolstack changed); a dirty, idle device starts one
//! job, a batch of xenstore reads, and acts when the replies are in, on a
//! later turn of the main loop. Its own writes are sent without waiting:
//! xenstored applies requests in order, so nothing needs their replies.
//!
//! The handshake follows Linux xen-netback/xenbus.c: InitWait after the
//! probe, Connected once the frontend's rings are mapped, Closing/Closed
//! after the frontend, and removal when the toolstack takes us offline.
#![forbid(unsafe_code)]

use super::backend::BackendStats;
use super::batch::Batch;
use super::frontend;
use super::params::{self, VifParams};
use super::state::XenbusState;
use super::vif::{VifHost, VifId};
use crate::xen::xenstore::client::{MAX_TRACKED, MAX_UNACKED};
use crate::xen::xenstore::{Client, XsError, XsIo};
use alloc::format;
use alloc::string::{String, ToString};
use log::{info, warn};

/// How long our Closed state stays visible before we delete the directory.
///
/// libxl waits for state 6 by a watch, and reads `state` when the event
/// reaches it: a read that finds the node gone fails the detach ("unable
/// to remove device"). Only then does it wait, at most
/// `LIBXL_DESTROY_TIMEOUT` (10 s), for the directory to go. So the
/// directory must outlive the toolstack's slowest read of our state and go
/// well within 10 s of it: 2 s covers a loaded dom0 (its `xl` was seen
/// reading more than 300 ms late) and leaves 8 s of the toolstack's wait.
pub const REMOVE_GRACE_NS: u64 = 2_000_000_000;
/// Requests one step of a device may send, at most: the largest is reading
/// every key of eight queues, and a step may end with a few writes (its
/// `state`, the frontend watch).
pub const MAX_JOB_REQUESTS: usize = super::frontend::MAX_QUEUE_READS + 4;
/// Own `state` writes whose watch event is awaited, at most.
const MAX_OWN_EVENTS: u32 = 16;

/// What a device is asked to look at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dirty {
    /// The frontend's `state` changed.
    pub frontend: bool,
    /// The toolstack wrote our `state` or `online`, or removed our directory.
    pub toolstack: bool,
    /// The toolstack wrote our `rate`.
    pub rate: bool,
}

/// What the backend passes to a device step.
pub struct Ctx<'a> {
    /// The xenstore client.
    pub xs: &'a mut Client,
    /// Its ring.
    pub io: &'a dyn XsIo,
    /// The data plane.
    pub host: &'a mut dyn VifHost,
    /// Counters.
    pub stats: &'a mut BackendStats,
    /// `multi-queue-max-queues` we advertise.
    pub max_queues: u32,
    /// Now, in ns.
    pub now: u64,
}

/// Whether another job's requests fit in the client's bounds.
pub fn has_room(xs: &Client) -> bool {
    xs.tracked() + MAX_JOB_REQUESTS <= MAX_TRACKED && xs.unacked() + MAX_JOB_REQUESTS <= MAX_UNACKED
}

#[derive(Debug, Clone)]
enum Job {
    Idle,
    /// Registering the watch on the frontend's `state`.
    Watch(Batch),
    /// Reading the frontend's `state` and our `online`.
    Frontend(Batch),
    /// Reading the frontend's top-level keys to connect.
    ConnectTop(Batch),
    /// Reading the keys of its `n` queues.
    ConnectQueues {
        top: Batch,
        queues: Batch,
        n: u32,
    },
    /// Reading our `state` and `online`.
    Toolstack(Batch),
    /// Reading our `rate`.
    Rate(Batch),
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing to do, or replies still out.
    Waiting,
    /// One step done.
    Done,
    /// Our backend directory is gone: forget the device.
    Gone,
}

/// A probed vif.
#[derive(Debug, Clone)]
pub struct Device {
    id: VifId,
    /// Our backend directory.
    pub be: String,
    /// The frontend directory.
    pub fe: String,
    mac: [u8; 6],
    /// What the toolstack configured (read at probe; `rate` kept current).
    pub params: VifParams,
    /// The state we last wrote.
    pub state: XenbusState,
    /// Whether the data plane holds it.
    pub connected: bool,
    /// When set, remove our directory at this time: the toolstack must see
    /// state 6 before the directory disappears.
    pub remove_at: Option<u64>,
    /// Our `state` writes whose watch event has not come back: those
    /// events are ours and need no look.
    pub own_state_events: u32,
    /// Work asked for by watch events.
    pub dirty: Dirty,
    job: Job,
}

impl Device {
    /// A device that was just advertised (we wrote state 2) and whose
    /// frontend watch `watch` is being registered.
    pub fn new(id: VifId, be: String, fe: String, mac: [u8; 6], params: VifParams, watch: Batch) -> Self {
        Self {
            id,
            be,
            fe,
            mac,
            params,
            state: XenbusState::InitWait,
            connected: false,
            remove_at: None,
            own_state_events: 1,
            dirty: Dirty::default(),
            job: Job::Watch(watch),
        }
    }

    /// True while a job waits for replies.
    pub fn busy(&self) -> bool {
        !matches!(self.job, Job::Idle)
    }

    /// Drops the job in flight.
    pub fn cancel(&mut self, xs: &mut Client) {
        match &mut self.job {
            Job::Idle => {}
            Job::Watch(b) | Job::Frontend(b) | Job::ConnectTop(b) | Job::Toolstack(b) | Job::Rate(b) => b.cancel(xs),
            Job::ConnectQueues { top, queues, .. } => {
                top.cancel(xs);
                queues.cancel(xs);
            }
        }
        self.job = Job::Idle;
    }

    /// Advances by at most one step: collects the replies of the job in
    /// flight and acts on them, or starts the job a dirty flag asks for.
    pub fn step(&mut self, cx: &mut Ctx) -> Step {
        let done = match &mut self.job {
            Job::Idle => return self.start(cx),
            Job::Watch(b) | Job::Frontend(b) | Job::ConnectTop(b) | Job::Toolstack(b) | Job::Rate(b) => b.poll(cx.xs),
            Job::ConnectQueues { queues, .. } => queues.poll(cx.xs),
        };
        let expired = match &self.job {
            Job::Watch(b) | Job::Frontend(b) | Job::ConnectTop(b) | Job::Toolstack(b) | Job::Rate(b) => {
                b.expired(cx.now)
            }
            Job::ConnectQueues { queues, .. } => queues.expired(cx.now),
            Job::Idle => false,
        };
        if !done {
            if !expired {
                return Step::Waiting;
            }
            // xenstored did not answer in time: look again from the start.
            warn!("vif {}/{}: xenstore replies overdue; retrying", self.id.frontend.0, self.id.devid);
            let (retry_toolstack, retry_rate) =
                (matches!(self.job, Job::Toolstack(_)), matches!(self.job, Job::Rate(_)));
            self.cancel(cx.xs);
            self.dirty.frontend |= !(retry_toolstack || retry_rate);
            self.dirty.toolstack |= retry_toolstack;
            self.dirty.rate |= retry_rate;
            return Step::Done;
        }
        if !has_room(cx.xs) {
            // Acting may send up to a job's worth: wait for replies to drain.
            return Step::Waiting;
        }
        let job = core::mem::replace(&mut self.job, Job::Idle);
        let r = match job {
            Job::Idle => Ok(Step::Waiting),
            Job::Watch(b) => self.watched(cx, &b),
            Job::Frontend(b) => self.frontend_changed(cx, &b),
            Job::ConnectTop(b) => self.connect_top(cx, b),
            Job::ConnectQueues { top, queues, n } => self.connect(cx, &top, Some(&queues), n),
            Job::Toolstack(b) => self.toolstack_changed(cx, &b),
            Job::Rate(b) => self.rate_changed(cx, &b),
        };
        r.unwrap_or_else(|e| {
            warn!("vif {}/{}: {e}", self.id.frontend.0, self.id.devid);
            Step::Done
        })
    }

    fn start(&mut self, cx: &mut Ctx) -> Step {
        if !(self.dirty.toolstack || self.dirty.frontend || self.dirty.rate) || !has_room(cx.xs) {
            return Step::Waiting;
        }
        let (be, fe) = (&self.be, &self.fe);
        let r = if self.dirty.rate && !self.dirty.toolstack {
            Batch::start(cx.xs, cx.now, |b, xs| b.read(xs, &format!("{be}/rate"))).map(Job::Rate)
        } else if self.dirty.toolstack {
            Batch::start(cx.xs, cx.now, |b, xs| {
                b.read(xs, &format!("{be}/state"))?;
                b.read(xs, &format!("{be}/online"))
            })
            .map(Job::Toolstack)
        } else {
            Batch::start(cx.xs, cx.now, |b, xs| {
                b.read(xs, &format!("{fe}/state"))?;
                b.read(xs, &format!("{be}/online"))
            })
            .map(Job::Frontend)
        };
        match r {
            Ok(job) => {
                match job {
                    Job::Toolstack(_) => self.dirty.toolstack = false,
                    Job::Rate(_) => self.dirty.rate = false,
                    _ => self.dirty.frontend = false,
                }
                self.job = job;
                Step::Done
            }
            // The client is full or dead: the flags stay for a later turn.
            Err(_) => Step::Waiting,
        }
    }

    fn watched(&mut self, cx: &mut Ctx, b: &Batch) -> Result<Step, XsError> {
        if let Err(e) = b.status(&format!("{}/state", self.fe)) {
            self.fail(cx, &format!("cannot watch the frontend's state: {e}"));
        } else {
            self.dirty.frontend = true;
        }
        Ok(Step::Done)
    }

    fn frontend_changed(&mut self, cx: &mut Ctx, b: &Batch) -> Result<Step, XsError> {
        let fe_state = b.value(&format!("{}/state", self.fe))?.map(XenbusState::parse);
        let online = b.flag(&format!("{}/online", self.be))?;
        let ours = self.state;
        match fe_state {
            Some(XenbusState::Initialised | XenbusState::Connected) if ours == XenbusState::InitWait => {
                let fe = &self.fe;
                match Batch::start(cx.xs, cx.now, |b, xs| frontend::request_top(b, xs, fe)) {
                    Ok(b) => self.job = Job::ConnectTop(b),
                    Err(e) => {
                        self.dirty.frontend = true;
                        return Err(e);
                    }
                }
            }
            Some(XenbusState::Closing) => {
                self.disconnect(cx);
                if ours != XenbusState::Closing && ours != XenbusState::Closed {
                    self.set_state(cx, XenbusState::Closing);
                }
            }
            Some(XenbusState::Closed) | None | Some(XenbusState::Unknown) => {
                self.disconnect(cx);
                if ours != XenbusState::Closed {
                    self.set_state(cx, XenbusState::Closed);
                }
                // Frontend gone and toolstack done with us: clean up.
                if !online {
                    self.close_for_removal(cx);
                }
            }
            Some(XenbusState::Initialising) if matches!(ours, XenbusState::Closed | XenbusState::Closing) => {
                // The guest rebooted or reconnects: offer ourselves again.
                self.set_state(cx, XenbusState::InitWait);
            }
            _ => {}
        }
        Ok(Step::Done)
    }

    fn connect_top(&mut self, cx: &mut Ctx, top: Batch) -> Result<Step, XsError> {
        let n = match frontend::queue_count(&top, &self.fe, cx.max_queues)? {
            Ok(n) => n,
            Err(why) => {
                self.fail(cx, &why);
                return Ok(Step::Done);
            }
        };
        if n == 1 {
            return self.connect(cx, &top, None, 1);
        }
        let fe = &self.fe;
        match Batch::start(cx.xs, cx.now, |b, xs| frontend::request_queues(b, xs, fe, n)) {
            Ok(queues) => self.job = Job::ConnectQueues { top, queues, n },
            Err(e) => {
                // Start over from the frontend's state on a later turn.
                self.dirty.frontend = true;
                return Err(e);
            }
        }
        Ok(Step::Done)
    }

    fn connect(&mut self, cx: &mut Ctx, top: &Batch, queues: Option<&Batch>, n: u32) -> Result<Step, XsError> {
        let id = self.id;
        let info = match frontend::info(top, queues, &self.fe, n)? {
            Ok(i) => i,
            Err(why) => {
                self.fail(cx, &why);
                return Ok(Step::Done);
            }
        };
        if let Err(why) = cx.host.connect(id, self.mac, &info, &self.params) {
            self.fail(cx, &format!("connect failed: {why}"));
            return Ok(Step::Done);
        }
        self.connected = true;
        cx.stats.connects += 1;
        let _ = cx.xs.rm_nowait(cx.io, &format!("{}/error", self.be));
        self.set_state(cx, XenbusState::Connected);
        info!(
            "vif {}/{}: connected ({} queue(s), {:?}, sg {}, gso4 {}), {}",
            id.frontend.0,
            id.devid,
            info.queues.len(),
            info.queues.first().map(|q| q.evtchn),
            info.sg,
            info.gso_tcpv4,
            params::describe(&self.params)
        );
        Ok(Step::Done)
    }

    /// The toolstack rewrote `rate`: the new limit applies at once to a
    /// connected vif, and from the connect on to one that is not yet.
    fn rate_changed(&mut self, cx: &mut Ctx, b: &Batch) -> Result<Step, XsError> {
        let rate = params::rate(b, &self.be)?;
        if rate != self.params.rate {
            self.params.rate = rate;
            info!("vif {}/{}: {}", self.id.frontend.0, self.id.devid, params::describe(&self.params));
            if self.connected {
                cx.host.set_rate(self.id, rate);
            }
        }
        Ok(Step::Done)
    }

    /// The toolstack closes a device by writing `online=0` and `state=5`
    /// into our backend directory, then waits for state 6 and for the
    /// directory to disappear; it removes the directory itself when it
    /// gives up.
    fn toolstack_changed(&mut self, cx: &mut Ctx, b: &Batch) -> Result<Step, XsError> {
        let Some(written) = b.value(&format!("{}/state", self.be))?.map(XenbusState::parse) else {
            info!("vif {}/{}: backend directory removed", self.id.frontend.0, self.id.devid);
            return Ok(Step::Gone);
        };
        let online = b.flag(&format!("{}/online", self.be))?;
        // Offline and either the toolstack wrote our state (to Closing) or we
        // already closed: finish and remove the directory as it expects.
        if !online && (written != self.state || self.state == XenbusState::Closed) {
            self.close_for_removal(cx);
        }
        Ok(Step::Done)
    }

    /// State 6 now, directory removal after `REMOVE_GRACE_NS`.
    fn close_for_removal(&mut self, cx: &mut Ctx) {
        self.disconnect(cx);
        if self.state != XenbusState::Closed {
            self.set_state(cx, XenbusState::Closed);
        }
        self.remove_at.get_or_insert(cx.now.saturating_add(REMOVE_GRACE_NS));
    }

    fn set_state(&mut self, cx: &mut Ctx, s: XenbusState) {
        self.state = s;
        match cx.xs.write_nowait(cx.io, &format!("{}/state", self.be), s.value().to_string().as_bytes()) {
            Ok(()) => self.own_state_events = (self.own_state_events + 1).min(MAX_OWN_EVENTS),
            Err(e) => warn!("vif {}/{}: writing state {}: {e}", self.id.frontend.0, self.id.devid, s.value()),
        }
    }

    /// Hands the vif back to the data plane (idempotent).
    pub fn disconnect(&mut self, cx: &mut Ctx) {
        if self.connected {
            self.connected = false;
            cx.host.disconnect(self.id);
            cx.stats.disconnects += 1;
            info!("vif {}/{}: disconnected", self.id.frontend.0, self.id.devid);
        }
    }

    /// Fails the vif on bad frontend data or a failed connect: error node,
    /// state Closing.
    fn fail(&mut self, cx: &mut Ctx, why: &str) {
        cx.stats.failed += 1;
        warn!("vif {}/{}: {why}", self.id.frontend.0, self.id.devid);
        self.disconnect(cx);
        let _ = cx.xs.write_nowait(cx.io, &format!("{}/error", self.be), why.as_bytes());
        self.set_state(cx, XenbusState::Closing);
    }
}
