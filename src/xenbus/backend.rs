//! The vif backend side of the xenbus handshake, as xvif serves it from a
//! driver domain (docs/misc/xenstore.txt, Linux xen-netback/xenbus.c for the
//! reference behaviour, ../shared/notes/netback-protocol.md).
//!
//! For each `backend/vif/<frontend-domid>/<devid>` the toolstack creates
//! under our home: advertise features, write `hotplug-status=connected`
//! (no hotplug script runs in a driver domain), go InitWait, follow the
//! frontend's `state`, and when it is Initialised/Connected read its ring
//! references and event channels and ask the `VifHost` to connect. Every
//! teardown path (frontend closing, frontend vanished, toolstack closing us
//! with `online=0`, backend directory removed) disconnects, and when the
//! toolstack is removing the device we delete our own backend directory.
//!
//! The backend shares the main loop with the packet path, so it never waits
//! for xenstored. `handle_event` only records what a watch event asks for:
//! per device (dirty flags, coalescing any number of events), per frontend
//! domain (a scan of its directory) or for the whole tree (a rescan, also
//! forced when the client dropped events). `poll` then does a bounded amount
//! of that work per turn: requests go out in batches and their replies are
//! acted on in later turns. Events for our own `state` writes are
//! recognised and cost nothing, and events for nodes other than the exact
//! ones we watch are ignored, so one guest's activity costs a constant
//! number of requests however many vifs exist.
//!
//! Everything read from xenstore is validated; a bad value fails that one
//! device (error node, state Closing), never the backend.
#![forbid(unsafe_code)]

use super::batch::Batch;
use super::device::{Ctx, Device, Step};
pub use super::device::{MAX_JOB_REQUESTS, REMOVE_GRACE_NS};
pub use super::vif::{
    CtrlInfo, DEFAULT_MAX_QUEUES, EventChannels, FEATURES, FrontendInfo, QueueInfo, VifHost, VifId, VifParams,
    parse_mac, parse_u32,
};
use crate::xen::DomId;
use crate::xen::xenstore::{Client, WatchEvent, XsError, XsIo};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Bound;

/// Devices served at most (more are refused and logged).
pub const MAX_DEVICES: usize = 64;
/// Token of the watch on our `backend/vif` directory.
pub const BACKEND_TOKEN: &str = "vif-be";
/// Prefix of the per-device frontend-state watch tokens.
pub const FRONTEND_TOKEN_PREFIX: &str = "vif-fe:";
/// Steps (a job started, or a job's replies acted on) per `poll`, at most.
pub const STEPS_PER_POLL: usize = 8;
/// Once a `poll` has sent this many requests it starts no further step; a
/// step sends at most `device::MAX_JOB_REQUESTS` more.
pub const REQUESTS_PER_POLL: u64 = 32;

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendStats {
    /// Devices probed.
    pub probed: u64,
    /// Successful connects.
    pub connects: u64,
    /// Disconnects.
    pub disconnects: u64,
    /// Devices removed.
    pub removed: u64,
    /// Devices failed on bad xenstore data or a failed connect.
    pub failed: u64,
    /// Devices refused because of `MAX_DEVICES`.
    pub refused: u64,
    /// Watch events that asked for nothing (other nodes, unknown devices).
    pub ignored_events: u64,
    /// Events of our own `state` writes, recognised and skipped.
    pub own_events: u64,
    /// Full rescans forced because the client dropped watch events.
    pub forced_rescans: u64,
}

/// A directory listing that is wanted or under way.
#[derive(Debug, Clone)]
pub(super) enum Listing {
    Wanted,
    Running(Batch),
}

/// The vif backend. A clone is an independent copy of its whole state,
/// requests in flight included; it goes on with a clone of the client that
/// sent them.
#[derive(Debug, Clone)]
pub struct Backend {
    pub(super) root: String,
    /// `multi-queue-max-queues` we advertise.
    pub(super) max_queues: u32,
    pub(super) devices: BTreeMap<VifId, Device>,
    /// Devices seen in the tree and not probed yet.
    pub(super) candidates: BTreeSet<VifId>,
    /// Probes whose reads are out.
    pub(super) probes: BTreeMap<VifId, Batch>,
    /// Devices whose probe failed: not retried until their directory goes.
    pub(super) failed: BTreeSet<VifId>,
    /// The listing of our root (the frontend domains).
    pub(super) root_scan: Option<Listing>,
    /// Listings of one frontend domain's directory (its devices).
    pub(super) fe_scans: BTreeMap<u16, Listing>,
    /// Frontend directories to remove when they became empty.
    pub(super) prunes: BTreeMap<u16, Listing>,
    /// `Client::stats.events_dropped` when we last looked.
    seen_dropped: u64,
    /// Where the next turn starts among the devices, for fairness.
    cursor: Option<VifId>,
    /// Whether this turn serves the tree before the devices.
    tree_first: bool,
    /// Counters.
    pub stats: BackendStats,
}

impl Backend {
    /// A backend for the domain whose home is `home` (`/local/domain/N`);
    /// registers the watch on `home/backend/vif` (waiting for the reply:
    /// this runs once, before the main loop). Offers `DEFAULT_MAX_QUEUES`
    /// queues per vif.
    pub fn start(xs: &mut Client, io: &dyn XsIo, home: &str) -> Result<Self, XsError> {
        Self::start_with_queues(xs, io, home, DEFAULT_MAX_QUEUES)
    }

    /// As `start`, offering `max_queues` queues per vif (clamped to
    /// 1..=`netback::MAX_QUEUES`).
    pub fn start_with_queues(xs: &mut Client, io: &dyn XsIo, home: &str, max_queues: u32) -> Result<Self, XsError> {
        let root = format!("{home}/backend/vif");
        xs.watch(io, &root, BACKEND_TOKEN)?;
        Ok(Self {
            max_queues: max_queues.clamp(1, crate::netback::MAX_QUEUES as u32),
            root,
            devices: BTreeMap::new(),
            candidates: BTreeSet::new(),
            probes: BTreeMap::new(),
            failed: BTreeSet::new(),
            root_scan: Some(Listing::Wanted),
            fe_scans: BTreeMap::new(),
            prunes: BTreeMap::new(),
            seen_dropped: xs.stats.events_dropped,
            cursor: None,
            tree_first: false,
            stats: BackendStats::default(),
        })
    }

    /// Devices currently known.
    pub fn devices(&self) -> impl Iterator<Item = (VifId, bool)> + '_ {
        self.devices.iter().map(|(id, d)| (*id, d.connected))
    }

    /// True for the tokens this backend registered.
    pub fn owns_token(token: &str) -> bool {
        token == BACKEND_TOKEN || token.starts_with(FRONTEND_TOKEN_PREFIX)
    }

    /// True while a closed device waits for its directory to be removed.
    pub fn removal_pending(&self) -> bool {
        self.devices.values().any(|d| d.remove_at.is_some())
    }

    /// True while any work is wanted or under way.
    pub fn busy(&self) -> bool {
        self.root_scan.is_some()
            || !self.fe_scans.is_empty()
            || !self.prunes.is_empty()
            || !self.candidates.is_empty()
            || !self.probes.is_empty()
            || self.devices.values().any(|d| d.busy() || d.dirty.frontend || d.dirty.toolstack || d.dirty.rate)
    }

    pub(super) fn fe_token(id: VifId) -> String {
        format!("{FRONTEND_TOKEN_PREFIX}{}:{}", id.frontend.0, id.devid)
    }

    fn token_id(token: &str) -> Option<VifId> {
        let rest = token.strip_prefix(FRONTEND_TOKEN_PREFIX)?;
        let (fe, devid) = rest.split_once(':')?;
        Some(VifId { frontend: DomId(fe.parse().ok()?), devid: devid.parse().ok()? })
    }

    /// Records what one watch event asks for; sends nothing.
    pub fn handle_event(&mut self, ev: &WatchEvent) {
        if ev.token == BACKEND_TOKEN {
            self.backend_event(&ev.path);
            return;
        }
        if let Some(id) = Self::token_id(&ev.token)
            && let Some(d) = self.devices.get_mut(&id)
            && ev.path.strip_suffix("/state") == Some(d.fe.as_str())
        {
            d.dirty.frontend = true;
            return;
        }
        self.stats.ignored_events += 1;
    }

    /// A change under our root. The toolstack creates a device by writing
    /// its nodes (`state` among them), closes it through `online` and
    /// `state`, and removes its directory or the frontend domain's.
    fn backend_event(&mut self, path: &str) {
        let Some(rest) = path.strip_prefix(self.root.as_str()) else { return self.ignore() };
        if !(rest.is_empty() || rest.starts_with('/')) {
            return self.ignore();
        }
        let mut parts = rest.split('/').filter(|p| !p.is_empty());
        let (fe, dev, leaf) = (parts.next(), parts.next(), parts.next());
        if parts.next().is_some() {
            return self.ignore();
        }
        let Some(fe) = fe else {
            self.root_scan.get_or_insert(Listing::Wanted);
            return;
        };
        let Some(fe) = parse_u32(fe.as_bytes()).and_then(|n| u16::try_from(n).ok()) else { return self.ignore() };
        let Some(dev) = dev else {
            if self.fe_scans.len() < 2 * MAX_DEVICES || self.fe_scans.contains_key(&fe) {
                self.fe_scans.entry(fe).or_insert(Listing::Wanted);
            } else {
                // Too many at once: one listing of the root covers them all.
                self.root_scan.get_or_insert(Listing::Wanted);
            }
            return;
        };
        let Some(devid) = parse_u32(dev.as_bytes()) else { return self.ignore() };
        let id = VifId { frontend: DomId(fe), devid };
        match (self.devices.get_mut(&id), leaf) {
            (Some(d), Some("state")) if d.own_state_events > 0 => {
                d.own_state_events -= 1;
                self.stats.own_events += 1;
            }
            (Some(d), None | Some("state" | "online")) => d.dirty.toolstack = true,
            // The toolstack changed the rate limit (Linux netback watches it too).
            (Some(d), Some("rate")) => d.dirty.rate = true,
            (None, None) => {
                // The directory itself came or went: a failed device may be
                // a new one now.
                self.failed.remove(&id);
                self.want_probe(id);
            }
            (None, Some("state" | "online")) => self.want_probe(id),
            _ => self.ignore(),
        }
    }

    fn ignore(&mut self) {
        self.stats.ignored_events += 1;
    }

    /// Does a bounded share of the pending work: at most `STEPS_PER_POLL`
    /// steps, and none started once `REQUESTS_PER_POLL` requests went out.
    /// Never waits for xenstored. Returns true when it did anything, so
    /// the loop comes back soon when work was left for the next turn.
    pub fn poll(&mut self, xs: &mut Client, io: &dyn XsIo, host: &mut dyn VifHost) -> bool {
        if xs.dead().is_some() {
            return false;
        }
        let _ = xs.pump(io.mem());
        if xs.stats.events_dropped != self.seen_dropped {
            self.seen_dropped = xs.stats.events_dropped;
            self.force_rescan();
        }
        let now = io.now_ns();
        let first = xs.stats.requests;
        let mut steps = 0;
        let budget_left = |xs: &Client, steps: usize| {
            steps < STEPS_PER_POLL && xs.stats.requests.saturating_sub(first) < REQUESTS_PER_POLL
        };
        let budget = |xs: &Client, s| budget_left(xs, s);
        // The tree (new and removed devices) and the known devices take
        // turns going first, so that neither starves the other.
        self.tree_first = !self.tree_first;
        let mut more = false;
        if self.tree_first {
            more |= self.poll_tree(xs, io, host, now, &mut steps, &budget);
        }
        let mut cx = Ctx { xs, io, host, stats: &mut self.stats, max_queues: self.max_queues, now };
        // Devices in order, starting after the last one served.
        let order: Vec<VifId> = match self.cursor {
            Some(c) => self
                .devices
                .range((Bound::Excluded(c), Bound::Unbounded))
                .chain(self.devices.range(..=c))
                .map(|(id, _)| *id)
                .collect(),
            None => self.devices.keys().copied().collect(),
        };
        let mut gone = Vec::new();
        for id in order {
            if !budget_left(cx.xs, steps) {
                break;
            }
            let Some(d) = self.devices.get_mut(&id) else { continue };
            match d.step(&mut cx) {
                Step::Waiting => continue,
                Step::Done => {}
                Step::Gone => gone.push(id),
            }
            steps += 1;
            more = true;
            self.cursor = Some(id);
        }
        for id in gone {
            self.forget(xs, io, host, id, false);
        }
        if !self.tree_first {
            more |= self.poll_tree(xs, io, host, now, &mut steps, &budget);
        }
        // A closed device's directory goes after the grace period.
        let due: Vec<VifId> =
            self.devices.iter().filter(|(_, d)| d.remove_at.is_some_and(|t| t <= now)).map(|(id, _)| *id).collect();
        for id in due {
            if !budget_left(xs, steps) {
                break;
            }
            self.forget(xs, io, host, id, true);
            steps += 1;
            more = true;
        }
        let _ = xs.flush(io);
        more
    }

    /// After dropped watch events nothing recorded can be trusted: list
    /// the whole tree again and look at every device.
    fn force_rescan(&mut self) {
        self.stats.forced_rescans += 1;
        log::warn!("vif backend: xenstore watch events were dropped; rescanning");
        self.root_scan.get_or_insert(Listing::Wanted);
        for d in self.devices.values_mut() {
            d.own_state_events = 0;
            d.dirty.frontend = true;
            d.dirty.toolstack = true;
            d.dirty.rate = true;
        }
    }
}
