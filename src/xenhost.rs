//! Running as a Xen domain: identity from xenstore, `control/shutdown`
//! handling, the PV console, and a xenstore round-trip service used by tests
//! (`data/xvif-ping` is echoed to `data/xvif-pong`).
//!
//! Start-up waits for xenstored; the main loop never does: watch events
//! only record work, reads are submitted and their replies taken on a later
//! turn, writes are sent without waiting, and the xenbus backend does a
//! bounded share of its work per turn.
#![forbid(unsafe_code)]

use crate::config::Config;
use crate::dataplane::DataPlane;
use crate::net::NicDev;
use crate::platform::{self, exit, xen};
use crate::publisher::{Publisher, Sent};
use crate::ratelimit::TokenBucket;
use crate::timer::{Nanos, Progress, Task};
use crate::xen::xenstore::client::{DEFAULT_TIMEOUT_NS, MAX_WATCH_EVENTS};
use crate::xen::xenstore::{Client, XsError, XsIo};
use crate::xenbus::Backend;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write as _;
use log::{info, warn};

const TOKEN_SHUTDOWN: &str = "shutdown";
const TOKEN_PING: &str = "ping";
const SHUTDOWN_PATH: &str = "control/shutdown";
const PING_PATH: &str = "data/xvif-ping";

/// The Xen side of the kernel, polled by the main loop.
pub struct XenHost {
    io: xen::StoreIo,
    /// The xenstore client.
    pub xs: Client,
    /// Our domain id.
    pub domid: u16,
    /// Our name.
    pub name: String,
    backend: Option<Backend>,
    net: DataPlane,
    next_publish: Nanos,
    /// Counters to write under `data/`, paced by xenstored's replies.
    publisher: Publisher,
    /// Counter writes allowed per second.
    publish_budget: TokenBucket,
    shutdown: Lookup,
    ping: Lookup,
    /// `xs.stats.events_dropped` when we last looked.
    seen_dropped: u64,
}

/// A read of one node that a watch asked for, submitted without waiting.
#[derive(Default)]
struct Lookup {
    /// The request out and when to give up on it.
    out: Option<(u32, Nanos)>,
    /// Asked again while a read was out: read once more after it.
    again: bool,
}

impl Lookup {
    /// Reads `path` now, or once more after the read that is out.
    fn want(&mut self, xs: &mut Client, path: &str, now: Nanos) {
        if self.out.is_some() {
            self.again = true;
            return;
        }
        match xs.submit_read(path) {
            Ok(id) => self.out = Some((id, now.saturating_add(DEFAULT_TIMEOUT_NS))),
            Err(e) => warn!("xenstore: reading {path}: {e}"),
        }
    }

    /// The reply once it came; `Ok(None)` for a missing node.
    fn take(&mut self, xs: &mut Client, path: &str, now: Nanos) -> Option<Result<Option<Vec<u8>>, XsError>> {
        let (id, deadline) = self.out?;
        let r = match xs.poll_reply(id) {
            Some(r) => r,
            None if now > deadline => {
                xs.cancel(id);
                Err(XsError::Timeout { ty: crate::xen::xenstore::MsgType::Read })
            }
            None => return None,
        };
        self.out = None;
        if core::mem::take(&mut self.again) {
            self.want(xs, path, now);
        }
        Some(match r {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_enoent() => Ok(None),
            Err(e) => Err(e),
        })
    }
}

/// How often counters and resources are published under `data/xvif`.
const PUBLISH_NS: Nanos = 2_000_000_000;

/// Counter writes of ours that may wait for xenstored's reply at once.
const PUBLISH_IN_FLIGHT: usize = 4;

/// Counter writes per second at most (and at once): xenstored is shared by
/// every domain and slow under load, and with 32 vifs a period has some 70
/// entries; each still goes out within a few periods.
const PUBLISH_PER_S: u32 = 8;
const PUBLISH_BURST: u32 = 16;

/// Where a domain without a command line (an HVM container: the domain
/// builder passes none) finds one, relative to its own xenstore home. The
/// toolstack writes it between `xl create -p` and `xl unpause`.
pub const CMDLINE_KEY: &str = "xvif/cmdline";

/// The command line stored under `CMDLINE_KEY`; None when there is none.
pub fn boot_cmdline(info: &xen::XenInfo) -> Result<Option<alloc::vec::Vec<u8>>, XsError> {
    let io = xen::StoreIo::new(info).ok_or(XsError::BadRequest("xenstore page outside the identity map"))?;
    match Client::new().read(&io, 0, CMDLINE_KEY) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_enoent() => Ok(None),
        Err(e) => Err(e),
    }
}

impl XenHost {
    /// Connects to xenstore and registers our watches. Takes the NIC out of
    /// `nic` (for the switch) only when it succeeds.
    pub fn start(info: &xen::XenInfo, cfg: &Config, nic: &mut Option<NicDev>) -> Result<Self, XsError> {
        let io = xen::StoreIo::new(info).ok_or(XsError::BadRequest("xenstore page outside the identity map"))?;
        let mut xs = Client::new();
        let domid = xs.read_u64(&io, 0, "domid")?;
        let domid = u16::try_from(domid).map_err(|_| XsError::BadReply("domid out of range"))?;
        let name = xs.read_str(&io, 0, "name").unwrap_or_else(|_| String::from("?"));
        for key in ["control/feature-poweroff", "control/feature-reboot"] {
            if let Err(e) = xs.write(&io, 0, key, b"1") {
                warn!("xenstore: cannot write {key}: {e}");
            }
        }
        xs.write(&io, 0, "data/xvif-status", b"ready")?;
        let back = xs.read(&io, 0, "data/xvif-status")?;
        if back != b"ready" {
            return Err(XsError::BadReply("data/xvif-status did not read back"));
        }
        xs.watch(&io, SHUTDOWN_PATH, TOKEN_SHUTDOWN)?;
        xs.watch(&io, PING_PATH, TOKEN_PING)?;
        let home = alloc::format!("/local/domain/{domid}");
        let backend = match Backend::start_with_queues(&mut xs, &io, &home, cfg.queues) {
            Ok(b) => Some(b),
            Err(e) => {
                warn!("netback: cannot watch {home}/backend/vif: {e}; not serving vifs");
                None
            }
        };
        let net = DataPlane::new(cfg, domid, nic.take(), platform::time::now_ns());
        let seen_dropped = xs.stats.events_dropped;
        Ok(Self {
            io,
            xs,
            domid,
            name,
            backend,
            net,
            next_publish: 0,
            publisher: Publisher::new(),
            publish_budget: TokenBucket::new(PUBLISH_BURST, PUBLISH_PER_S),
            shutdown: Lookup::default(),
            ping: Lookup::default(),
            seen_dropped,
        })
    }

    fn on_shutdown(&mut self, req: &[u8]) -> Result<(), XsError> {
        let req = core::str::from_utf8(req).unwrap_or("?").trim_end_matches('\0');
        if req.is_empty() {
            return Ok(());
        }
        // Acknowledge, as the toolstack expects, then act.
        self.xs.write_nowait(&self.io, "control/shutdown", b"")?;
        let _ = self.xs.flush(&self.io);
        if !matches!(req, "poweroff" | "halt" | "reboot") {
            warn!("xen: unsupported shutdown request '{req}' ignored");
            return Ok(());
        }
        // A NIC left mastering the bus would keep reading rings in memory
        // that is about to be freed, or in its next owner's memory.
        let stopped = platform::pci_cfg::stop_bus_masters();
        let what = if req == "reboot" { "rebooting" } else { "powering off" };
        info!("xen: shutdown requested ({req}): {what}; DMA stopped on {stopped} PCI function(s)");
        match req {
            "reboot" => {
                xen::shutdown(crate::xen::abi::sched::SHUTDOWN_REBOOT);
                exit::poweroff(exit::Status::Success);
            }
            _ => exit::poweroff(exit::Status::Success),
        }
    }

    fn on_ping(&mut self, v: &[u8]) -> Result<(), XsError> {
        if v.is_empty() {
            return Ok(());
        }
        let shown = String::from_utf8_lossy(v.get(..200).unwrap_or(v));
        info!(
            "xenstore watch: data/xvif-ping = '{}'{} ({} bytes; irqs {}, upcalls {})",
            shown,
            if v.len() > 200 { "..." } else { "" },
            v.len(),
            platform::idt::irq_count(),
            xen::upcalls()
        );
        self.xs.write_nowait(&self.io, "data/xvif-pong", v)
    }

    /// Acts on the replies to the reads the watches asked for.
    fn take_lookups(&mut self, now: Nanos) {
        if let Some(r) = self.shutdown.take(&mut self.xs, SHUTDOWN_PATH, now) {
            match r.and_then(|v| v.map_or(Ok(()), |v| self.on_shutdown(&v))) {
                Ok(()) => {}
                Err(e) => warn!("xenstore {SHUTDOWN_PATH}: {e}"),
            }
        }
        if let Some(r) = self.ping.take(&mut self.xs, PING_PATH, now) {
            match r.and_then(|v| v.map_or(Ok(()), |v| self.on_ping(&v))) {
                Ok(()) => {}
                Err(e) => warn!("xenstore {PING_PATH}: {e}"),
            }
        }
    }
}

impl Task for XenHost {
    fn name(&self) -> &str {
        "xen"
    }

    fn poll(&mut self, now: Nanos) -> Progress {
        let fired = xen::poll_events(now);
        let store_kick = xen::take_fired(self.io.port());
        let moved = match self.xs.pump(self.io.mem()) {
            Ok(m) => {
                if m {
                    // Requests queued earlier may have just entered the ring.
                    self.io.notify();
                }
                m
            }
            Err(e) => {
                warn!("xenstore: {e}");
                false
            }
        };
        let mut busy = fired || store_kick || moved;
        // Events only record work, so the whole (bounded) queue is taken.
        for _ in 0..MAX_WATCH_EVENTS {
            let Some(ev) = self.xs.next_event() else { break };
            busy = true;
            if Backend::owns_token(&ev.token) {
                if let Some(b) = self.backend.as_mut() {
                    b.handle_event(&ev);
                }
                continue;
            }
            match ev.token.as_str() {
                TOKEN_SHUTDOWN if ev.path.ends_with(SHUTDOWN_PATH) => {
                    self.shutdown.want(&mut self.xs, SHUTDOWN_PATH, now)
                }
                TOKEN_PING if ev.path.ends_with(PING_PATH) => self.ping.want(&mut self.xs, PING_PATH, now),
                _ => {}
            }
        }
        // Dropped events may have been ours: look again.
        if self.xs.stats.events_dropped != self.seen_dropped {
            self.seen_dropped = self.xs.stats.events_dropped;
            self.shutdown.want(&mut self.xs, SHUTDOWN_PATH, now);
            self.ping.want(&mut self.xs, PING_PATH, now);
        }
        self.take_lookups(now);
        if let Some(b) = self.backend.as_mut() {
            busy |= b.poll(&mut self.xs, &self.io, &mut self.net);
        }
        let _ = self.xs.flush(&self.io);
        busy |= self.net.poll(now);
        if now >= self.next_publish {
            self.next_publish = now + PUBLISH_NS;
            self.publish();
        }
        self.pump_publisher(now);
        if busy { Progress::Busy } else { Progress::Idle }
    }

    fn next_deadline(&self, now: Nanos) -> Option<Nanos> {
        // A closed device's directory is removed after a short grace period.
        let removal = self.backend.as_ref().is_some_and(Backend::removal_pending);
        let soon = if removal { now + crate::xenbus::backend::REMOVE_GRACE_NS / 4 } else { Nanos::MAX };
        let net = self.net.next_deadline(now).unwrap_or(Nanos::MAX);
        // A port the storm limiter masked is unmasked only by a poll.
        let unmask = xen::next_unmask().map_or(Nanos::MAX, |t| t.max(now));
        // Counters waiting for the write budget: look again when a token is due.
        let publish =
            if self.publisher.pending() > 0 { now + 1_000_000_000 / u64::from(PUBLISH_PER_S) } else { Nanos::MAX };
        Some(self.next_publish.max(now).min(soon).min(net).min(unmask).min(publish))
    }
}

impl XenHost {
    /// Takes this period's resource counts and per-port and per-vif
    /// counters for `data/xvif` (what changed is sent, the entries of ports
    /// that are gone are removed). Nothing here waits for xenstored: a round
    /// trip to dom0 can take milliseconds, and the vifs' traffic must not
    /// wait that long.
    fn publish(&mut self) {
        const RESOURCES: &str = "data/xvif-resources";
        let res = self.net.resources();
        if self.publisher.published(RESOURCES) != Some(res.as_str()) {
            log::debug!("resources: {res}");
        }
        let mut entries: BTreeMap<String, String> = self.net.switch().xenstore_entries().collect();
        entries.extend(self.net.vif_stats());
        entries.insert(String::from(RESOURCES), res);
        entries.insert(String::from("data/xvif-exits"), self.exits_text());
        let (x, p) = (&self.xs.stats, self.publisher.stats());
        entries.insert(
            String::from("data/xvif-xenstore"),
            alloc::format!(
                "requests={} unacked={} tracked={} events={} events_dropped={} stray_replies={} nowait_errors={} \
                 published={} publish_pending={} publish_coalesced={}",
                x.requests,
                self.xs.unacked(),
                self.xs.tracked(),
                x.events,
                x.events_dropped,
                x.stray_replies,
                x.nowait_errors,
                p.sent,
                self.publisher.pending(),
                p.coalesced
            ),
        );
        self.publisher.update(entries);
    }

    /// The VM exits counted so far by kind, and the frames the switch has
    /// taken in from its current ports: a benchmark divides the growth of
    /// one by the other.
    fn exits_text(&self) -> String {
        let e = platform::exits::snapshot();
        let frames: u64 = self.net.switch().ports().map(|(_, _, c)| c.rx_packets).sum();
        let mut text = alloc::format!(
            "total={} hypercalls={} eois={} lapic_writes={} lapic_reads={} port_io={} hlts={} msrs={} frames={frames}",
            e.total(),
            e.hypercalls,
            e.eois,
            e.lapic_writes,
            e.lapic_reads,
            e.port_io,
            e.hlts,
            e.msrs
        );
        // The hypercalls by kind: `hc_<name>=N`, or `hc<nr>=N` for one unnamed.
        for (nr, n) in platform::exits::hypercalls_by_number() {
            let _ = match crate::xen::abi::hcall::name(nr) {
                Some(name) => write!(text, " hc_{name}={n}"),
                None => write!(text, " hc{nr}={n}"),
            };
        }
        text
    }

    /// Sends pending counters while few of our requests wait for a reply,
    /// so they never queue ahead of the backend's own in the ring.
    fn pump_publisher(&mut self, now: Nanos) {
        if self.publisher.pending() == 0 {
            return;
        }
        let (xs, io, budget) = (&mut self.xs, &self.io, &mut self.publish_budget);
        let unacked = core::cell::Cell::new(xs.unacked());
        self.publisher.pump(
            || unacked.get() < PUBLISH_IN_FLIGHT && budget.take(now).is_some(),
            |path, value| {
                let r = match value {
                    Some(text) => xs.write_nowait(io, path, text.as_bytes()),
                    None => xs.rm_nowait(io, path),
                };
                unacked.set(xs.unacked());
                if r.is_ok() { Sent::Yes } else { Sent::Later }
            },
        );
    }
}

/// Grant-table self test against the real hypervisor: grant our own page to
/// ourselves, grant-copy from it, map it, and check that bad references give
/// typed errors. Returns a one-line summary or the first failure.
pub fn grant_selftest(domid: u16) -> Result<String, String> {
    use crate::hal::{GrantOps, SharedMem};
    use crate::xen::abi::{GNTMAP_HOST_MAP, GNTMAP_READONLY, GnttabMapGrantRef, GnttabUnmapGrantRef};
    use crate::xen::grant::{CopyBatch, GrantTable};
    use crate::xen::{DomId, GrantRef};
    let frames = xen::grant_frames().ok_or("no grant frames")?;
    let mut gt = GrantTable::new((frames.size() / 8) as u32);
    let src = platform::frames::alloc_zeroed(1).map_err(|e| alloc::format!("{e:?}"))?;
    let dst = platform::frames::alloc_zeroed(1).map_err(|e| alloc::format!("{e:?}"))?;
    xen::fill_own_page(src, 0xa5);
    let me = DomId(domid);
    let gref = gt.grant(&frames, me, (src >> 12) as u32, true).map_err(|e| alloc::format!("grant: {e:?}"))?;
    let ops = xen::XenGrantOps;
    let mut batch = CopyBatch::new();
    batch.from_grant((me, gref, 16), dst >> 12, 32, 1000);
    batch.from_grant((me, GrantRef(gt_bad_ref()), 0), dst >> 12, 0, 8);
    let r = batch.flush(&ops);
    if r.first() != Some(&Ok(())) {
        return Err(alloc::format!("grant copy failed: {r:?}"));
    }
    let bad_copy = r.get(1).copied();
    let mut page = [0u8; 1100];
    xen::read_own_page(dst, &mut page);
    if page[32..1032].iter().any(|&b| b != 0xa5) || page[1032] != 0 || page[31] != 0 {
        return Err("grant copy: destination bytes wrong".into());
    }
    let window = platform::paging::foreign_window();
    let mut map = [GnttabMapGrantRef {
        host_addr: window.start,
        flags: GNTMAP_HOST_MAP | GNTMAP_READONLY,
        gref: gref.0,
        dom: domid,
        ..Default::default()
    }];
    ops.map(&mut map).map_err(|e| alloc::format!("map hypercall: {e}"))?;
    crate::xen::error::GrantStatus::check(map[0].status).map_err(|e| alloc::format!("map: {e}"))?;
    let mut seen = [0u8; 64];
    xen::read_own_page(window.start, &mut seen);
    let mapped_ok = seen.iter().all(|&b| b == 0xa5);
    let mut unmap = [GnttabUnmapGrantRef { host_addr: window.start, handle: map[0].handle, ..Default::default() }];
    ops.unmap(&mut unmap).map_err(|e| alloc::format!("unmap hypercall: {e}"))?;
    crate::xen::error::GrantStatus::check(unmap[0].status).map_err(|e| alloc::format!("unmap: {e}"))?;
    let mut bad_map = [GnttabMapGrantRef {
        host_addr: window.start,
        flags: GNTMAP_HOST_MAP,
        gref: gt_bad_ref(),
        dom: domid,
        ..Default::default()
    }];
    let bad_map = match ops.map(&mut bad_map) {
        Ok(()) => crate::xen::error::GrantStatus::check(bad_map[0].status),
        Err(e) => Err(e),
    };
    gt.end(&frames, gref).map_err(|e| alloc::format!("end grant: {e:?}"))?;
    platform::frames::free(src, 1).ok();
    platform::frames::free(dst, 1).ok();
    if !mapped_ok {
        return Err("mapped grant does not show the granted bytes".into());
    }
    Ok(alloc::format!(
        "grant copy ok, grant map/unmap ok, bad ref copy -> {:?}, bad ref map -> {:?}",
        bad_copy.unwrap_or(Ok(())),
        bad_map
    ))
}

fn gt_bad_ref() -> u32 {
    0x00ff_fff0
}
