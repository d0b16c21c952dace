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
//! Everything read from xenstore is validated; a bad value fails that one
//! device (error node, state Closing), never the backend.
#![forbid(unsafe_code)]

use super::state::XenbusState;
use crate::xen::xenstore::{Client, WatchEvent, XsError, XsIo};
use crate::xen::{DomId, EvtchnPort, GrantRef};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use log::{info, warn};

/// Devices served at most (more are refused and logged).
pub const MAX_DEVICES: usize = 64;
/// Token of the watch on our `backend/vif` directory.
pub const BACKEND_TOKEN: &str = "vif-be";
/// Prefix of the per-device frontend-state watch tokens.
pub const FRONTEND_TOKEN_PREFIX: &str = "vif-fe:";

/// Features we advertise, with their values.
pub const FEATURES: &[(&str, &str)] = &[
    ("feature-sg", "1"),
    ("feature-gso-tcpv4", "1"),
    ("feature-gso-tcpv6", "1"),
    ("feature-ipv6-csum-offload", "1"),
    ("feature-rx-copy", "1"),
    ("feature-rx-flip", "0"),
    ("feature-multicast-control", "1"),
    ("feature-dynamic-multicast-control", "1"),
    ("feature-split-event-channels", "1"),
];

/// Queues offered per vif by default (`multi-queue-max-queues`).
pub const DEFAULT_MAX_QUEUES: u32 = 4;

/// A vif: frontend domain and device id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VifId {
    /// Frontend domain.
    pub frontend: DomId,
    /// Device id (the `devid` path component).
    pub devid: u32,
}

/// Event channels offered by the frontend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventChannels {
    /// One port for both directions.
    Single(EvtchnPort),
    /// `feature-split-event-channels`.
    Split {
        /// TX port.
        tx: EvtchnPort,
        /// RX port.
        rx: EvtchnPort,
    },
}

/// The rings and event channels of one queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueInfo {
    /// TX ring grant.
    pub tx_ring_ref: GrantRef,
    /// RX ring grant.
    pub rx_ring_ref: GrantRef,
    /// Event channels.
    pub evtchn: EventChannels,
}

/// What the frontend published for connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrontendInfo {
    /// One entry per queue (`multi-queue-num-queues`, 1 when absent): the
    /// top-level keys for one queue, `queue-N/...` for several.
    pub queues: Vec<QueueInfo>,
    /// `feature-sg`.
    pub sg: bool,
    /// `feature-gso-tcpv4`.
    pub gso_tcpv4: bool,
    /// `feature-gso-tcpv6`.
    pub gso_tcpv6: bool,
    /// `feature-ipv6-csum-offload`.
    pub ipv6_csum_offload: bool,
    /// `feature-no-csum-offload`.
    pub no_csum_offload: bool,
    /// `feature-rx-notify`.
    pub rx_notify: bool,
    /// `feature-multicast-control` or `feature-dynamic-multicast-control`.
    pub multicast_control: bool,
}

/// The side that owns data paths: maps rings, binds ports, plugs the vif
/// into the switch.
pub trait VifHost {
    /// Connects a vif; an error fails that device.
    fn connect(&mut self, id: VifId, mac: [u8; 6], fe: &FrontendInfo) -> Result<(), String>;
    /// Disconnects it (idempotent): unmap, unbind, free, unplug.
    fn disconnect(&mut self, id: VifId);
}

#[derive(Debug)]
struct Device {
    be: String,
    fe: String,
    mac: [u8; 6],
    /// The state we last wrote.
    state: XenbusState,
    connected: bool,
    /// When set, remove our directory at this time: the toolstack must see
    /// state 6 before the directory disappears.
    remove_at: Option<u64>,
}

/// How long our Closed state stays visible before we delete the directory.
pub const REMOVE_GRACE_NS: u64 = 300_000_000;

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
}

/// The vif backend.
#[derive(Debug)]
pub struct Backend {
    root: String,
    /// `multi-queue-max-queues` we advertise.
    max_queues: u32,
    devices: BTreeMap<VifId, Device>,
    /// Devices whose probe failed: not retried until their directory goes.
    failed: alloc::collections::BTreeSet<VifId>,
    /// A watch event asked for a rescan; done once in `finish`.
    rescan_pending: bool,
    /// Counters.
    pub stats: BackendStats,
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.trim_end_matches('\0').split(':');
    for b in mac.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn parse_u32(v: &[u8]) -> Option<u32> {
    let s = core::str::from_utf8(v).ok()?.trim_end_matches('\0');
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn read_opt(xs: &mut Client, io: &dyn XsIo, path: &str) -> Result<Option<Vec<u8>>, XsError> {
    match xs.read(io, 0, path) {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_enoent() => Ok(None),
        Err(e) => Err(e),
    }
}

fn read_flag(xs: &mut Client, io: &dyn XsIo, path: &str) -> Result<bool, XsError> {
    Ok(read_opt(xs, io, path)?.and_then(|v| parse_u32(&v)).unwrap_or(0) == 1)
}

impl Backend {
    /// A backend for the domain whose home is `home` (`/local/domain/N`);
    /// registers the watch on `home/backend/vif`. Offers
    /// `DEFAULT_MAX_QUEUES` queues per vif.
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
            failed: alloc::collections::BTreeSet::new(),
            rescan_pending: true,
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

    /// Whether a change at `path` (under our root) can matter: the device
    /// directories themselves and their `state`/`online` nodes. Our own
    /// feature and status writes fire the watch too and are ignored here.
    fn relevant(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix(&self.root) else { return false };
        let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
        match parts.as_slice() {
            [] | [_] | [_, _] => true,
            [_, _, leaf] => *leaf == "state" || *leaf == "online",
            _ => false,
        }
    }

    /// Handles one watch event. Backend-directory changes are coalesced:
    /// call `finish` after draining the event queue.
    pub fn handle_event(&mut self, xs: &mut Client, io: &dyn XsIo, ev: &WatchEvent, host: &mut dyn VifHost) {
        if ev.token == BACKEND_TOKEN {
            if self.relevant(&ev.path) {
                self.rescan_pending = true;
            }
        } else if let Some(id) = Self::token_id(&ev.token)
            && let Err(e) = self.frontend_changed(xs, io, id, host)
        {
            warn!("vif {}/{}: {e}", id.frontend.0, id.devid);
        }
    }

    /// Runs a pending rescan (at most once per call).
    pub fn finish(&mut self, xs: &mut Client, io: &dyn XsIo, host: &mut dyn VifHost) {
        if core::mem::take(&mut self.rescan_pending)
            && let Err(e) = self.rescan(xs, io, host)
        {
            warn!("vif backend: rescan of {}: {e}", self.root);
        }
        let now = io.now_ns();
        let due: Vec<VifId> =
            self.devices.iter().filter(|(_, d)| d.remove_at.is_some_and(|t| t <= now)).map(|(id, _)| *id).collect();
        for id in due {
            self.forget(xs, io, id, host, true);
        }
    }

    /// True while a closed device waits for its directory to be removed.
    pub fn removal_pending(&self) -> bool {
        self.devices.values().any(|d| d.remove_at.is_some())
    }

    /// Closes a device the toolstack is removing: state 6 now, directory
    /// removal after `REMOVE_GRACE_NS` (in `finish`), so the toolstack sees
    /// state 6 before the directory disappears.
    fn close_for_removal(
        &mut self,
        xs: &mut Client,
        io: &dyn XsIo,
        id: VifId,
        host: &mut dyn VifHost,
    ) -> Result<(), XsError> {
        self.disconnect(id, host);
        let ours = self.devices.get(&id).map(|d| d.state);
        if ours != Some(XenbusState::Closed) {
            self.set_state(xs, io, id, XenbusState::Closed)?;
        }
        let at = io.now_ns().saturating_add(REMOVE_GRACE_NS);
        if let Some(d) = self.devices.get_mut(&id) {
            d.remove_at.get_or_insert(at);
        }
        Ok(())
    }

    fn token_id(token: &str) -> Option<VifId> {
        let rest = token.strip_prefix(FRONTEND_TOKEN_PREFIX)?;
        let (fe, devid) = rest.split_once(':')?;
        Some(VifId { frontend: DomId(fe.parse().ok()?), devid: devid.parse().ok()? })
    }

    fn fe_token(id: VifId) -> String {
        format!("{FRONTEND_TOKEN_PREFIX}{}:{}", id.frontend.0, id.devid)
    }

    /// Looks for new devices, devices the toolstack is closing, and devices
    /// whose backend directory vanished.
    fn rescan(&mut self, xs: &mut Client, io: &dyn XsIo, host: &mut dyn VifHost) -> Result<(), XsError> {
        let mut present = Vec::new();
        let fes = match xs.directory(io, 0, &self.root) {
            Ok(v) => v,
            Err(e) if e.is_enoent() => Vec::new(),
            Err(e) => return Err(e),
        };
        for fe in fes.iter().take(MAX_DEVICES * 2) {
            let Some(fe_id) = parse_u32(fe.as_bytes()).and_then(|n| u16::try_from(n).ok()) else { continue };
            let devs = match xs.directory(io, 0, &format!("{}/{fe}", self.root)) {
                Ok(v) => v,
                Err(e) if e.is_enoent() => continue,
                Err(e) => return Err(e),
            };
            for d in devs.iter().take(MAX_DEVICES) {
                if let Some(devid) = parse_u32(d.as_bytes()) {
                    present.push(VifId { frontend: DomId(fe_id), devid });
                }
            }
        }
        // Gone: the toolstack removed the directory.
        let gone: Vec<VifId> = self.devices.keys().filter(|id| !present.contains(id)).copied().collect();
        for id in gone {
            info!("vif {}/{}: backend directory removed", id.frontend.0, id.devid);
            self.forget(xs, io, id, host, false);
        }
        self.failed.retain(|id| present.contains(id));
        for id in present {
            if self.failed.contains(&id) {
                continue;
            }
            if self.devices.contains_key(&id) {
                self.toolstack_check(xs, io, id, host)?;
            } else if self.devices.len() >= MAX_DEVICES {
                self.stats.refused += 1;
                warn!("vif {}/{}: refused, already serving {MAX_DEVICES} vifs", id.frontend.0, id.devid);
            } else if let Err(e) = self.probe(xs, io, id) {
                // A xenstore error here is usually transient (the toolstack is
                // still writing the directory or its permissions): retried on
                // the next watch event. Bad values are remembered by
                // `fail_probe`, which is what stops re-probing.
                warn!("vif {}/{}: probe: {e}; will retry", id.frontend.0, id.devid);
            }
        }
        Ok(())
    }

    fn be_path(&self, id: VifId) -> String {
        format!("{}/{}/{}", self.root, id.frontend.0, id.devid)
    }

    fn probe(&mut self, xs: &mut Client, io: &dyn XsIo, id: VifId) -> Result<(), XsError> {
        let be = self.be_path(id);
        // The toolstack writes `state` last-ish; wait until it exists.
        if read_opt(xs, io, &format!("{be}/state"))?.is_none() {
            return Ok(());
        }
        let fe_id = read_opt(xs, io, &format!("{be}/frontend-id"))?.and_then(|v| parse_u32(&v));
        if fe_id != Some(u32::from(id.frontend.0)) {
            return self.fail_probe(xs, io, id, &be, "frontend-id does not match the backend path");
        }
        let fe = match read_opt(xs, io, &format!("{be}/frontend"))? {
            Some(v) => String::from_utf8_lossy(&v).trim_end_matches('\0').to_string(),
            None => return self.fail_probe(xs, io, id, &be, "no frontend path"),
        };
        if !fe.starts_with(&format!("/local/domain/{}/", id.frontend.0)) || fe.len() > 256 || fe.contains("..") {
            return self.fail_probe(xs, io, id, &be, "frontend path outside the frontend's domain");
        }
        let mac = match read_opt(xs, io, &format!("{be}/mac"))?.and_then(|v| parse_mac(&String::from_utf8_lossy(&v))) {
            Some(m) => m,
            None => return self.fail_probe(xs, io, id, &be, "missing or malformed mac"),
        };
        for (k, v) in FEATURES {
            xs.write(io, 0, &format!("{be}/{k}"), v.as_bytes())?;
        }
        xs.write(io, 0, &format!("{be}/multi-queue-max-queues"), self.max_queues.to_string().as_bytes())?;
        // No hotplug script runs for a driver-domain backend: say it ourselves.
        xs.write(io, 0, &format!("{be}/hotplug-status"), b"connected")?;
        xs.write(io, 0, &format!("{be}/state"), b"2")?;
        xs.watch(io, &format!("{fe}/state"), &Self::fe_token(id))?;
        self.stats.probed += 1;
        info!(
            "vif {}/{}: probed, mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, frontend {fe}",
            id.frontend.0, id.devid, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
        );
        self.devices
            .insert(id, Device { be, fe, mac, state: XenbusState::InitWait, connected: false, remove_at: None });
        Ok(())
    }

    fn fail_probe(&mut self, xs: &mut Client, io: &dyn XsIo, id: VifId, be: &str, why: &str) -> Result<(), XsError> {
        self.stats.failed += 1;
        self.failed.insert(id);
        warn!("vif backend {be}: {why}");
        xs.write(io, 0, &format!("{be}/error"), why.as_bytes())?;
        Ok(())
    }

    fn set_state(&mut self, xs: &mut Client, io: &dyn XsIo, id: VifId, s: XenbusState) -> Result<(), XsError> {
        let Some(d) = self.devices.get_mut(&id) else { return Ok(()) };
        d.state = s;
        let be = d.be.clone();
        xs.write(io, 0, &format!("{be}/state"), s.value().to_string().as_bytes())
    }

    fn disconnect(&mut self, id: VifId, host: &mut dyn VifHost) {
        if let Some(d) = self.devices.get_mut(&id)
            && d.connected
        {
            d.connected = false;
            host.disconnect(id);
            self.stats.disconnects += 1;
            info!("vif {}/{}: disconnected", id.frontend.0, id.devid);
        }
    }

    /// Drops a device; `remove_dir` deletes our backend directory too.
    fn forget(&mut self, xs: &mut Client, io: &dyn XsIo, id: VifId, host: &mut dyn VifHost, remove_dir: bool) {
        self.disconnect(id, host);
        if let Some(d) = self.devices.remove(&id) {
            let _ = xs.unwatch(io, &format!("{}/state", d.fe), &Self::fe_token(id));
            if remove_dir {
                if let Err(e) = xs.rm(io, 0, &d.be) {
                    warn!("vif {}/{}: cannot remove {}: {e}", id.frontend.0, id.devid, d.be);
                }
                // Remove the per-frontend directory when it became empty.
                let parent = format!("{}/{}", self.root, id.frontend.0);
                if xs.directory(io, 0, &parent).map(|v| v.is_empty()).unwrap_or(false) {
                    let _ = xs.rm(io, 0, &parent);
                }
            }
            self.stats.removed += 1;
            info!("vif {}/{}: removed", id.frontend.0, id.devid);
        }
    }

    /// The toolstack closes a device by writing `online=0` and `state=5`
    /// into our backend directory, then waits for state 6 and for the
    /// directory to disappear.
    fn toolstack_check(
        &mut self,
        xs: &mut Client,
        io: &dyn XsIo,
        id: VifId,
        host: &mut dyn VifHost,
    ) -> Result<(), XsError> {
        let Some(d) = self.devices.get(&id) else { return Ok(()) };
        let be = d.be.clone();
        let ours = d.state;
        let written = read_opt(xs, io, &format!("{be}/state"))?.map(|v| XenbusState::parse(&v));
        let online = read_flag(xs, io, &format!("{be}/online"))?;
        if written.is_none() {
            return Ok(());
        }
        // Offline and either the toolstack wrote our state (to Closing) or we
        // already closed: finish and remove the directory as it expects.
        if !online && (written != Some(ours) || ours == XenbusState::Closed) {
            self.close_for_removal(xs, io, id, host)?;
        }
        Ok(())
    }

    /// The rings and event channels of one queue under `dir`.
    fn read_queue(xs: &mut Client, io: &dyn XsIo, dir: &str) -> Result<Result<QueueInfo, String>, XsError> {
        let num = |xs: &mut Client, k: &str| -> Result<Option<u32>, XsError> {
            Ok(read_opt(xs, io, &format!("{dir}/{k}"))?.and_then(|v| parse_u32(&v)))
        };
        let (Some(tx), Some(rx)) = (num(xs, "tx-ring-ref")?, num(xs, "rx-ring-ref")?) else {
            return Ok(Err(format!("{dir}: missing or malformed tx-ring-ref/rx-ring-ref")));
        };
        let evtchn = match (num(xs, "event-channel")?, num(xs, "event-channel-tx")?, num(xs, "event-channel-rx")?) {
            (_, Some(t), Some(r)) => EventChannels::Split { tx: EvtchnPort(t), rx: EvtchnPort(r) },
            (Some(p), None, None) => EventChannels::Single(EvtchnPort(p)),
            _ => return Ok(Err(format!("{dir}: missing or malformed event channel(s)"))),
        };
        Ok(Ok(QueueInfo { tx_ring_ref: GrantRef(tx), rx_ring_ref: GrantRef(rx), evtchn }))
    }

    fn read_frontend(
        xs: &mut Client,
        io: &dyn XsIo,
        fe: &str,
        max_queues: u32,
    ) -> Result<Result<FrontendInfo, String>, XsError> {
        let nq = match read_opt(xs, io, &format!("{fe}/multi-queue-num-queues"))? {
            None => 1,
            Some(v) => match parse_u32(&v) {
                Some(q) if (1..=max_queues).contains(&q) => q,
                Some(q) => return Ok(Err(format!("frontend asks for {q} queues; 1 to {max_queues} are offered"))),
                None => return Ok(Err("malformed multi-queue-num-queues".into())),
            },
        };
        let mut queues = Vec::with_capacity(nq as usize);
        for i in 0..nq {
            // One queue: the keys are at the top level (netif.h).
            let dir = if nq == 1 { fe.to_string() } else { format!("{fe}/queue-{i}") };
            match Self::read_queue(xs, io, &dir)? {
                Ok(q) => queues.push(q),
                Err(why) => return Ok(Err(why)),
            }
        }
        if read_opt(xs, io, &format!("{fe}/request-rx-copy"))?.and_then(|v| parse_u32(&v)) != Some(1) {
            return Ok(Err("frontend does not request rx-copy (rx-flip is not supported)".into()));
        }
        Ok(Ok(FrontendInfo {
            queues,
            sg: read_flag(xs, io, &format!("{fe}/feature-sg"))?,
            gso_tcpv4: read_flag(xs, io, &format!("{fe}/feature-gso-tcpv4"))?,
            gso_tcpv6: read_flag(xs, io, &format!("{fe}/feature-gso-tcpv6"))?,
            ipv6_csum_offload: read_flag(xs, io, &format!("{fe}/feature-ipv6-csum-offload"))?,
            no_csum_offload: read_flag(xs, io, &format!("{fe}/feature-no-csum-offload"))?,
            rx_notify: read_flag(xs, io, &format!("{fe}/feature-rx-notify"))?,
            multicast_control: read_flag(xs, io, &format!("{fe}/feature-multicast-control"))?
                || read_flag(xs, io, &format!("{fe}/feature-dynamic-multicast-control"))?,
        }))
    }

    fn frontend_changed(
        &mut self,
        xs: &mut Client,
        io: &dyn XsIo,
        id: VifId,
        host: &mut dyn VifHost,
    ) -> Result<(), XsError> {
        let Some(d) = self.devices.get(&id) else { return Ok(()) };
        let fe = d.fe.clone();
        let be = d.be.clone();
        let ours = d.state;
        let fe_state = read_opt(xs, io, &format!("{fe}/state"))?.map(|v| XenbusState::parse(&v));
        match fe_state {
            Some(XenbusState::Initialised | XenbusState::Connected) if ours == XenbusState::InitWait => {
                let info = match Self::read_frontend(xs, io, &fe, self.max_queues)? {
                    Ok(i) => i,
                    Err(why) => return self.fail(xs, io, id, &why, host),
                };
                let mac = self.devices.get(&id).map_or([0; 6], |d| d.mac);
                if let Err(why) = host.connect(id, mac, &info) {
                    return self.fail(xs, io, id, &format!("connect failed: {why}"), host);
                }
                if let Some(d) = self.devices.get_mut(&id) {
                    d.connected = true;
                }
                self.stats.connects += 1;
                let _ = xs.rm(io, 0, &format!("{be}/error"));
                self.set_state(xs, io, id, XenbusState::Connected)?;
                info!(
                    "vif {}/{}: connected ({} queue(s), {:?}, sg {}, gso4 {})",
                    id.frontend.0,
                    id.devid,
                    info.queues.len(),
                    info.queues.first().map(|q| q.evtchn),
                    info.sg,
                    info.gso_tcpv4
                );
            }
            Some(XenbusState::Closing) => {
                self.disconnect(id, host);
                if ours != XenbusState::Closing && ours != XenbusState::Closed {
                    self.set_state(xs, io, id, XenbusState::Closing)?;
                }
            }
            Some(XenbusState::Closed) | None | Some(XenbusState::Unknown) => {
                self.disconnect(id, host);
                if ours != XenbusState::Closed {
                    self.set_state(xs, io, id, XenbusState::Closed)?;
                }
                // Frontend gone and toolstack done with us: clean up.
                let online = read_flag(xs, io, &format!("{be}/online"))?;
                if !online {
                    self.close_for_removal(xs, io, id, host)?;
                }
            }
            Some(XenbusState::Initialising) if matches!(ours, XenbusState::Closed | XenbusState::Closing) => {
                // The guest rebooted or reconnects: offer ourselves again.
                self.set_state(xs, io, id, XenbusState::InitWait)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn fail(
        &mut self,
        xs: &mut Client,
        io: &dyn XsIo,
        id: VifId,
        why: &str,
        host: &mut dyn VifHost,
    ) -> Result<(), XsError> {
        self.stats.failed += 1;
        warn!("vif {}/{}: {why}", id.frontend.0, id.devid);
        self.disconnect(id, host);
        if let Some(d) = self.devices.get(&id) {
            let be = d.be.clone();
            xs.write(io, 0, &format!("{be}/error"), why.as_bytes())?;
        }
        self.set_state(xs, io, id, XenbusState::Closing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parsing() {
        assert_eq!(parse_mac("00:16:3e:00:00:01"), Some([0, 0x16, 0x3e, 0, 0, 1]));
        for bad in ["", "00:16:3e:00:00", "00:16:3e:00:00:01:02", "0:16:3e:00:00:01", "zz:16:3e:00:00:01"] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
        assert_eq!(parse_u32(b"42"), Some(42));
        assert_eq!(parse_u32(b"42\0"), Some(42));
        for bad in [&b""[..], b"-1", b"4294967296", b"1 ", b"0x10"] {
            assert_eq!(parse_u32(bad), None);
        }
    }
}
