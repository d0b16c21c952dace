//! The backend tree: listing our root and the frontend domains' directories
//! to find devices that came and went, probing new devices, forgetting gone
//! ones, and removing emptied frontend directories. Each listing or probe is
//! a batch sent on one turn of the main loop and acted on in a later one.
#![forbid(unsafe_code)]

use super::backend::{Backend, Listing, MAX_DEVICES};
use super::batch::Batch;
use super::device::{Ctx, Device, has_room};
use super::params;
use super::vif::{FEATURES, VifHost, VifId, parse_mac, parse_u32};
use crate::xen::DomId;
use crate::xen::xenstore::{Client, XsError, XsIo};
use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use log::{info, warn};

/// Devices waiting to be probed, at most.
const MAX_CANDIDATES: usize = 2 * MAX_DEVICES;

/// How a listing stands after a poll.
enum Polled {
    /// Not started or replies out: keep it.
    Keep(Listing),
    /// Replies in: here they are.
    Done(Batch),
}

/// Starts or polls one listing of `path`; `may_start` allows a step (a
/// start, or acting on the replies); `started` is set when it sent.
fn poll_listing(xs: &mut Client, now: u64, path: &str, l: Listing, may_start: bool, started: &mut bool) -> Polled {
    match l {
        Listing::Wanted if may_start => match Batch::start(xs, now, |b, xs| b.directory(xs, path)) {
            Ok(b) => {
                *started = true;
                Polled::Keep(Listing::Running(b))
            }
            Err(_) => Polled::Keep(Listing::Wanted),
        },
        Listing::Wanted => Polled::Keep(Listing::Wanted),
        Listing::Running(mut b) => {
            let done = b.poll(xs);
            if done && may_start {
                Polled::Done(b)
            } else if !done && b.expired(now) {
                warn!("vif backend: listing {path} overdue; retrying");
                b.cancel(xs);
                Polled::Keep(Listing::Wanted)
            } else {
                Polled::Keep(Listing::Running(b))
            }
        }
    }
}

/// Frontend domain ids among directory names (junk names are skipped).
fn domids(names: &[String]) -> BTreeSet<u16> {
    names.iter().filter_map(|n| parse_u32(n.as_bytes()).and_then(|v| u16::try_from(v).ok())).collect()
}

impl Backend {
    pub(super) fn be_path(&self, id: VifId) -> String {
        format!("{}/{}/{}", self.root, id.frontend.0, id.devid)
    }

    /// Queues a probe of `id` unless it is known, under way or failed.
    pub(super) fn want_probe(&mut self, id: VifId) {
        if self.devices.contains_key(&id) || self.probes.contains_key(&id) || self.failed.contains(&id) {
            return;
        }
        if self.candidates.len() < MAX_CANDIDATES {
            self.candidates.insert(id);
        } else {
            self.stats.refused += 1;
        }
    }

    /// Listings, probes and prunes, within the turn's budget.
    pub(super) fn poll_tree(
        &mut self,
        xs: &mut Client,
        io: &dyn XsIo,
        host: &mut dyn VifHost,
        now: u64,
        steps: &mut usize,
        budget: &dyn Fn(&Client, usize) -> bool,
    ) -> bool {
        let before = *steps;
        if let Some(l) = self.root_scan.take() {
            let root = self.root.clone();
            let mut started = false;
            match poll_listing(xs, now, &root, l, budget(xs, *steps), &mut started) {
                Polled::Keep(l) => self.root_scan = Some(l),
                Polled::Done(b) => {
                    *steps += 1;
                    self.root_listed(xs, io, host, &b);
                }
            }
            *steps += usize::from(started);
        }
        let fes: Vec<u16> = self.fe_scans.keys().copied().collect();
        for fe in fes {
            let Some(l) = self.fe_scans.remove(&fe) else { continue };
            let path = format!("{}/{fe}", self.root);
            let mut started = false;
            match poll_listing(xs, now, &path, l, budget(xs, *steps), &mut started) {
                Polled::Keep(l) => {
                    self.fe_scans.insert(fe, l);
                }
                Polled::Done(b) => {
                    *steps += 1;
                    self.fe_listed(xs, io, host, fe, &b);
                }
            }
            *steps += usize::from(started);
        }
        self.poll_probes(xs, io, now, steps, budget);
        let fes: Vec<u16> = self.prunes.keys().copied().collect();
        for fe in fes {
            let Some(l) = self.prunes.remove(&fe) else { continue };
            let path = format!("{}/{fe}", self.root);
            let mut started = false;
            match poll_listing(xs, now, &path, l, budget(xs, *steps), &mut started) {
                Polled::Keep(l) => {
                    self.prunes.insert(fe, l);
                }
                Polled::Done(b) => {
                    *steps += 1;
                    // Remove the per-frontend directory when it became empty.
                    if b.children(&path, 1).ok().flatten().is_some_and(|c| c.is_empty()) {
                        let _ = xs.rm_nowait(io, &path);
                    }
                }
            }
            *steps += usize::from(started);
        }
        *steps > before
    }

    fn root_listed(&mut self, xs: &mut Client, io: &dyn XsIo, host: &mut dyn VifHost, b: &Batch) {
        let names = match b.children(&self.root, 2 * MAX_DEVICES) {
            Ok(n) => n.unwrap_or_default(),
            Err(e) => return warn!("vif backend: listing {}: {e}", self.root),
        };
        let fes = domids(&names);
        let gone: Vec<VifId> = self.devices.keys().filter(|id| !fes.contains(&id.frontend.0)).copied().collect();
        for id in gone {
            info!("vif {}/{}: backend directory removed", id.frontend.0, id.devid);
            self.forget(xs, io, host, id, false);
        }
        self.drop_unlisted(xs, |id| fes.contains(&id.frontend.0));
        for fe in fes {
            self.fe_scans.entry(fe).or_insert(Listing::Wanted);
        }
    }

    fn fe_listed(&mut self, xs: &mut Client, io: &dyn XsIo, host: &mut dyn VifHost, fe: u16, b: &Batch) {
        let path = format!("{}/{fe}", self.root);
        let names = match b.children(&path, MAX_DEVICES) {
            Ok(n) => n.unwrap_or_default(),
            Err(e) => return warn!("vif backend: listing {path}: {e}"),
        };
        let devs: BTreeSet<u32> = names.iter().filter_map(|n| parse_u32(n.as_bytes())).collect();
        let listed = |id: &VifId| id.frontend.0 != fe || devs.contains(&id.devid);
        let gone: Vec<VifId> = self.devices.keys().filter(|id| !listed(id)).copied().collect();
        for id in gone {
            info!("vif {}/{}: backend directory removed", id.frontend.0, id.devid);
            self.forget(xs, io, host, id, false);
        }
        self.drop_unlisted(xs, listed);
        for devid in devs {
            self.want_probe(VifId { frontend: DomId(fe), devid });
        }
    }

    /// Forgets probes, candidates and failures of devices a listing no
    /// longer shows.
    fn drop_unlisted(&mut self, xs: &mut Client, listed: impl Fn(&VifId) -> bool) {
        self.candidates.retain(|id| listed(id));
        self.failed.retain(|id| listed(id));
        self.probes.retain(|id, b| {
            let keep = listed(id);
            if !keep {
                b.cancel(xs);
            }
            keep
        });
    }

    fn poll_probes(
        &mut self,
        xs: &mut Client,
        io: &dyn XsIo,
        now: u64,
        steps: &mut usize,
        budget: &dyn Fn(&Client, usize) -> bool,
    ) {
        let ids: Vec<VifId> = self.probes.keys().copied().collect();
        for id in ids {
            let Some(mut b) = self.probes.remove(&id) else { continue };
            let done = b.poll(xs);
            if done && !(budget(xs, *steps) && has_room(xs)) {
                // Acting sends a job's worth of writes: on a later turn.
                self.probes.insert(id, b);
                continue;
            }
            if !done {
                if b.expired(now) {
                    b.cancel(xs);
                    self.candidates.insert(id);
                } else {
                    self.probes.insert(id, b);
                }
                continue;
            }
            *steps += 1;
            if let Err(e) = self.probed(xs, io, id, &b, now) {
                // Usually transient (the toolstack is still writing the
                // directory or its permissions): retried on the next watch
                // event for this device.
                warn!("vif {}/{}: probe: {e}; will retry", id.frontend.0, id.devid);
            }
        }
        while budget(xs, *steps) && has_room(xs) {
            let Some(id) = self.candidates.pop_first() else { break };
            if self.devices.len() + self.probes.len() >= MAX_DEVICES {
                self.stats.refused += 1;
                warn!("vif {}/{}: refused, already serving {MAX_DEVICES} vifs", id.frontend.0, id.devid);
                continue;
            }
            let be = self.be_path(id);
            let started = Batch::start(xs, now, |b, xs| {
                for k in ["state", "frontend-id", "frontend", "mac"] {
                    b.read(xs, &format!("{be}/{k}"))?;
                }
                params::request(b, xs, &be)
            });
            match started {
                Ok(b) => {
                    self.probes.insert(id, b);
                    *steps += 1;
                }
                Err(_) => {
                    // The client is full: try again on a later turn.
                    self.candidates.insert(id);
                    break;
                }
            }
        }
    }

    /// Checks what the toolstack wrote for `id`; advertises and registers
    /// the frontend watch when it is sound, fails the device otherwise.
    fn probed(&mut self, xs: &mut Client, io: &dyn XsIo, id: VifId, b: &Batch, now: u64) -> Result<(), XsError> {
        let be = self.be_path(id);
        // The toolstack writes `state` last-ish; until then it is not ready.
        if b.value(&format!("{be}/state"))?.is_none() {
            return Ok(());
        }
        if b.number(&format!("{be}/frontend-id"))? != Some(u32::from(id.frontend.0)) {
            return self.fail_probe(xs, io, id, &be, "frontend-id does not match the backend path");
        }
        let Some(fe) = b.value(&format!("{be}/frontend"))? else {
            return self.fail_probe(xs, io, id, &be, "no frontend path");
        };
        let fe = String::from_utf8_lossy(fe).trim_end_matches('\0').to_string();
        if !fe.starts_with(&format!("/local/domain/{}/", id.frontend.0))
            || fe.len() > 256
            || fe.contains("..")
            || fe.contains("//")
            || fe.ends_with('/')
        {
            return self.fail_probe(xs, io, id, &be, "frontend path outside the frontend's domain");
        }
        let mac = match b.value(&format!("{be}/mac"))?.and_then(|v| parse_mac(&String::from_utf8_lossy(v))) {
            Some(m) => m,
            None => return self.fail_probe(xs, io, id, &be, "missing or malformed mac"),
        };
        let params = match params::read(b, &be, mac)? {
            Ok(p) => p,
            Err(why) => return self.fail_probe(xs, io, id, &be, &why),
        };
        for (k, v) in FEATURES {
            xs.write_nowait(io, &format!("{be}/{k}"), v.as_bytes())?;
        }
        xs.write_nowait(io, &format!("{be}/multi-queue-max-queues"), self.max_queues.to_string().as_bytes())?;
        if let Some(mtu) = params.mtu {
            // What the vif-bridge hotplug script does: the frontend's `mtu`
            // node is the backend's to write.
            xs.write_nowait(io, &format!("{fe}/mtu"), mtu.to_string().as_bytes())?;
        }
        // No hotplug script runs for a driver-domain backend: say it ourselves.
        xs.write_nowait(io, &format!("{be}/hotplug-status"), b"connected")?;
        xs.write_nowait(io, &format!("{be}/state"), b"2")?;
        let token = Self::fe_token(id);
        let fe_state = format!("{fe}/state");
        xs.filter_exact(&token, &fe_state)?;
        let watch = Batch::start(xs, now, |b, xs| b.watch(xs, &fe_state, &token))?;
        self.stats.probed += 1;
        info!(
            "vif {}/{}: probed, mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, frontend {fe}",
            id.frontend.0, id.devid, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
        );
        info!("vif {}/{}: {}", id.frontend.0, id.devid, params::describe(&params));
        self.devices.insert(id, Device::new(id, be, fe, mac, params, watch));
        Ok(())
    }

    fn fail_probe(&mut self, xs: &mut Client, io: &dyn XsIo, id: VifId, be: &str, why: &str) -> Result<(), XsError> {
        self.stats.failed += 1;
        self.failed.insert(id);
        warn!("vif backend {be}: {why}");
        xs.write_nowait(io, &format!("{be}/error"), why.as_bytes())
    }

    /// Drops a device; `remove_dir` deletes our backend directory too.
    pub(super) fn forget(
        &mut self,
        xs: &mut Client,
        io: &dyn XsIo,
        host: &mut dyn VifHost,
        id: VifId,
        remove_dir: bool,
    ) {
        let Some(mut d) = self.devices.remove(&id) else { return };
        let now = io.now_ns();
        let mut cx = Ctx { xs, io, host, stats: &mut self.stats, max_queues: self.max_queues, now };
        d.disconnect(&mut cx);
        d.cancel(xs);
        let token = Self::fe_token(id);
        let _ = xs.unwatch_nowait(io, &format!("{}/state", d.fe), &token);
        xs.unfilter(&token);
        if remove_dir {
            if let Err(e) = xs.rm_nowait(io, &d.be) {
                warn!("vif {}/{}: cannot remove {}: {e}", id.frontend.0, id.devid, d.be);
            }
            self.prunes.entry(id.frontend.0).or_insert(Listing::Wanted);
        }
        self.stats.removed += 1;
        info!("vif {}/{}: removed", id.frontend.0, id.devid);
    }
}
