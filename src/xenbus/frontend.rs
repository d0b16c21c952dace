//! Reading what a netfront published for connecting (netif.h): the queue
//! count, each queue's rings and event channels, its features and its
//! control ring (optional: `ctrl-ring-ref` with `event-channel-ctrl`). Two
//! batches: the top-level keys first, then, for several queues, the
//! `queue-N/` keys. Every value is validated; a bad one is a reason to fail
//! that vif, returned as `Err(String)` inside the xenstore result.
#![forbid(unsafe_code)]

use super::batch::Batch;
use super::vif::{CtrlInfo, EventChannels, FrontendInfo, QueueInfo};
use crate::xen::xenstore::{Client, XsError};
use crate::xen::{EvtchnPort, GrantRef};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Keys of one queue (at the top level for a single queue).
const QUEUE_KEYS: &[&str] = &["tx-ring-ref", "rx-ring-ref", "event-channel", "event-channel-tx", "event-channel-rx"];
/// Reads of the largest queue batch (`request_queues` for the most queues
/// a vif may have).
pub const MAX_QUEUE_READS: usize = QUEUE_KEYS.len() * crate::netback::MAX_QUEUES;
/// Top-level keys besides the queue keys.
const TOP_KEYS: &[&str] = &[
    "multi-queue-num-queues",
    "request-rx-copy",
    "feature-sg",
    "feature-gso-tcpv4",
    "feature-gso-tcpv6",
    "feature-ipv6-csum-offload",
    "feature-no-csum-offload",
    "feature-rx-notify",
    "feature-multicast-control",
    "feature-dynamic-multicast-control",
    "ctrl-ring-ref",
    "event-channel-ctrl",
];

/// A verdict on what the frontend wrote: its value, or why the vif fails.
pub type Verdict<T> = Result<Result<T, String>, XsError>;

/// Asks for the top-level keys of frontend `fe`.
pub fn request_top(b: &mut Batch, xs: &mut Client, fe: &str) -> Result<(), XsError> {
    for k in TOP_KEYS.iter().chain(QUEUE_KEYS) {
        b.read(xs, &format!("{fe}/{k}"))?;
    }
    Ok(())
}

/// The queue count the frontend asks for (1 when it says nothing).
pub fn queue_count(top: &Batch, fe: &str, max_queues: u32) -> Verdict<u32> {
    let path = format!("{fe}/multi-queue-num-queues");
    Ok(match top.value(&path)? {
        None => Ok(1),
        Some(v) => match super::vif::parse_u32(v) {
            Some(q) if (1..=max_queues).contains(&q) => Ok(q),
            Some(q) => Err(format!("frontend asks for {q} queues; 1 to {max_queues} are offered")),
            None => Err("malformed multi-queue-num-queues".into()),
        },
    })
}

/// The directory of queue `i` of `n`: the frontend itself for one queue.
fn queue_dir(fe: &str, i: u32, n: u32) -> String {
    if n == 1 { String::from(fe) } else { format!("{fe}/queue-{i}") }
}

/// Asks for the keys of queues `0..n` (n > 1).
pub fn request_queues(b: &mut Batch, xs: &mut Client, fe: &str, n: u32) -> Result<(), XsError> {
    for i in 0..n {
        let dir = queue_dir(fe, i, n);
        for k in QUEUE_KEYS {
            b.read(xs, &format!("{dir}/{k}"))?;
        }
    }
    Ok(())
}

/// The rings and event channels of the queue under `dir`.
fn read_queue(b: &Batch, dir: &str) -> Verdict<QueueInfo> {
    let num = |k: &str| b.number(&format!("{dir}/{k}"));
    let (Some(tx), Some(rx)) = (num("tx-ring-ref")?, num("rx-ring-ref")?) else {
        return Ok(Err(format!("{dir}: missing or malformed tx-ring-ref/rx-ring-ref")));
    };
    let evtchn = match (num("event-channel")?, num("event-channel-tx")?, num("event-channel-rx")?) {
        (_, Some(t), Some(r)) => EventChannels::Split { tx: EvtchnPort(t), rx: EvtchnPort(r) },
        (Some(p), None, None) => EventChannels::Single(EvtchnPort(p)),
        _ => return Ok(Err(format!("{dir}: missing or malformed event channel(s)"))),
    };
    Ok(Ok(QueueInfo { tx_ring_ref: GrantRef(tx), rx_ring_ref: GrantRef(rx), evtchn }))
}

/// Everything needed to connect, from the top-level batch and, for several
/// queues, the queue batch.
pub fn info(top: &Batch, queues: Option<&Batch>, fe: &str, n: u32) -> Verdict<FrontendInfo> {
    let src = if n == 1 { top } else { queues.unwrap_or(top) };
    let mut list = Vec::with_capacity(n as usize);
    for i in 0..n {
        match read_queue(src, &queue_dir(fe, i, n))? {
            Ok(q) => list.push(q),
            Err(why) => return Ok(Err(why)),
        }
    }
    if top.number(&format!("{fe}/request-rx-copy"))? != Some(1) {
        return Ok(Err("frontend does not request rx-copy (rx-flip is not supported)".into()));
    }
    let ctrl = match control_ring(top, fe)? {
        Ok(c) => c,
        Err(why) => return Ok(Err(why)),
    };
    let flag = |k: &str| top.flag(&format!("{fe}/{k}"));
    Ok(Ok(FrontendInfo {
        queues: list,
        sg: flag("feature-sg")?,
        gso_tcpv4: flag("feature-gso-tcpv4")?,
        gso_tcpv6: flag("feature-gso-tcpv6")?,
        ipv6_csum_offload: flag("feature-ipv6-csum-offload")?,
        no_csum_offload: flag("feature-no-csum-offload")?,
        rx_notify: flag("feature-rx-notify")?,
        multicast_control: flag("feature-multicast-control")? || flag("feature-dynamic-multicast-control")?,
        ctrl,
    }))
}

/// The control ring, as Linux netback reads it (xenbus.c
/// `connect_ctrl_ring`): no `ctrl-ring-ref`, no control ring; a ring
/// without a usable `event-channel-ctrl` fails the vif. A malformed ring
/// reference fails it too (Linux would take it for absent; a frontend that
/// wrote one meant to have a ring).
fn control_ring(top: &Batch, fe: &str) -> Verdict<Option<CtrlInfo>> {
    let Some(raw) = top.value(&format!("{fe}/ctrl-ring-ref"))? else { return Ok(Ok(None)) };
    let Some(ring) = super::vif::parse_u32(raw) else {
        return Ok(Err("malformed ctrl-ring-ref".into()));
    };
    Ok(match top.number(&format!("{fe}/event-channel-ctrl"))? {
        Some(port) => Ok(Some(CtrlInfo { ring_ref: GrantRef(ring), evtchn: EvtchnPort(port) })),
        None => Err("ctrl-ring-ref without a usable event-channel-ctrl".into()),
    })
}
