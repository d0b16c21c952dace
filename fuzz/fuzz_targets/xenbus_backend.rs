//! The real xenbus `Backend` against the fake xenstore, fed random trees
//! and watch events: a program of steps writing and removing nodes under
//! the backend and frontend directories (known keys with plausible or
//! arbitrary values, and arbitrary paths), whole toolstack and netfront
//! handshakes, raw watch events with any path and token, error replies,
//! xenstored going silent, failing connects, clock jumps, and main-loop
//! turns in between. A well-behaved guest (77) is connected first.
//!
//! Checked beyond "no panic":
//! * the loop never waits for xenstored, and each turn sends a bounded
//!   number of requests;
//! * connect and disconnect calls pair up (never twice, queue counts
//!   within what we offer), and the host's connected set is always the
//!   backend's;
//! * at most `MAX_DEVICES` devices;
//! * once xenstored behaves again, the backend settles in a bounded number
//!   of turns, guest 77 is still connected, and a new guest (78) attaches
//!   and connects.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeSet;
use xvif::xen::xenstore::WatchEvent;
use xvif::xenbus::backend::{BACKEND_TOKEN, FRONTEND_TOKEN_PREFIX, MAX_DEVICES, REMOVE_GRACE_NS, REQUESTS_PER_POLL};
use xvif_fuzz::Input;
use xvif_fuzz::xenbus::{BE_ROOT, GUEST, World, mac};

/// A device's step sends at most this many requests.
const MAX_JOB_REQUESTS: u64 = xvif::xenbus::backend::MAX_JOB_REQUESTS as u64;

const FES: [u16; 6] = [2, 3, 4, 5, 0, 65535];
const DEVIDS: [u32; 4] = [0, 1, 2, u32::MAX];
const KEYS: [&str; 35] = [
    "state",
    "rate",
    "ip",
    "bridge",
    "online",
    "frontend",
    "frontend-id",
    "mac",
    "handle",
    "type",
    "hotplug-status",
    "tx-ring-ref",
    "rx-ring-ref",
    "event-channel",
    "event-channel-tx",
    "event-channel-rx",
    "request-rx-copy",
    "feature-rx-notify",
    "feature-sg",
    "feature-gso-tcpv4",
    "feature-gso-tcpv6",
    "feature-ipv6-csum-offload",
    "feature-no-csum-offload",
    "request-multicast-control",
    "multi-queue-num-queues",
    "queue-0/tx-ring-ref",
    "queue-0/rx-ring-ref",
    "queue-0/event-channel",
    "queue-1/tx-ring-ref",
    "queue-1/rx-ring-ref",
    "queue-1/event-channel-tx",
    "queue-1/event-channel-rx",
    "state/child",
    "error",
    "",
];
const VALUES: [&str; 20] = [
    "10000000,50000",
    "1Mb/s",
    "10.0.0.5 fe80::1/64",
    "xenbr1",
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "8",
    "00:16:3e:00:00:05",
    "/local/domain/5/device/vif/0",
    "4294967296",
    "-1",
    "",
    " 1",
    "1\0",
    "99999999999999999999",
];
const ERRORS: [&str; 4] = ["ENOENT", "EACCES", "EINVAL", "E2BIG"];

/// A path the fuzzer chose; never one of guests 77 and 78.
fn path(inp: &mut Input) -> String {
    let fe = *inp.pick(&FES);
    let devid = *inp.pick(&DEVIDS);
    match inp.u8() % 5 {
        0 => format!("{BE_ROOT}/{fe}/{devid}/{}", inp.pick(&KEYS)),
        1 => format!("/local/domain/{fe}/device/vif/{devid}/{}", inp.pick(&KEYS)),
        2 => format!("{BE_ROOT}/{fe}/{devid}"),
        3 => format!("{BE_ROOT}/{fe}"),
        _ => {
            let raw = String::from_utf8_lossy(inp.string(24)).replace('7', "x");
            format!("{BE_ROOT}/{raw}")
        }
    }
}

fn value(inp: &mut Input) -> Vec<u8> {
    let v = inp.u8();
    if v < 0xe0 { VALUES[usize::from(v) % VALUES.len()].as_bytes().to_vec() } else { inp.string(16).to_vec() }
}

fn check_turn(w: &World) {
    assert_eq!(w.waits.get(), 0, "the main loop waited for xenstored");
    let most = w.max_requests;
    assert!(most <= REQUESTS_PER_POLL + MAX_JOB_REQUESTS, "{most} requests in one turn");
    let devices: Vec<_> = w.be.devices().collect();
    assert!(devices.len() <= MAX_DEVICES, "{} devices", devices.len());
    let connected: BTreeSet<_> = devices.iter().filter(|(_, c)| *c).map(|(id, _)| *id).collect();
    assert_eq!(connected, w.host.connected, "backend and host disagree on what is connected");
}

fn run(data: &[u8]) {
    let mut inp = Input::new(data);
    let mut w = World::with_guest(*inp.pick(&[1u32, 4, 8]));

    for _ in 0..48 {
        if inp.is_empty() {
            break;
        }
        match inp.u8() % 10 {
            0 | 1 => {
                let p = path(&mut inp);
                let v = value(&mut inp);
                let owner = *inp.pick(&[0u16, 5, 1]);
                w.xs.set(&p, &v, owner);
            }
            2 => {
                let p = path(&mut inp);
                w.xs.remove(&p);
            }
            3 => {
                let fe = *inp.pick(&FES);
                w.toolstack_write(fe, *inp.pick(&DEVIDS), &mac(fe));
            }
            4 => {
                let fe = *inp.pick(&FES);
                let split = inp.bool();
                w.frontend_write(fe, *inp.pick(&DEVIDS), split);
            }
            5 | 6 => {
                for _ in 0..1 + inp.u8() % 8 {
                    w.poll();
                    check_turn(&w);
                }
            }
            7 => w.xs.advance(*inp.pick(&[1_000_000u64, 100_000_000, REMOVE_GRACE_NS + 1, 10_000_000_000])),
            8 => {
                let token = match inp.u8() % 4 {
                    0 => BACKEND_TOKEN.to_string(),
                    1 => format!("{FRONTEND_TOKEN_PREFIX}{}:{}", inp.pick(&FES), inp.pick(&DEVIDS)),
                    2 => format!("{FRONTEND_TOKEN_PREFIX}77:0"),
                    _ => String::from_utf8_lossy(inp.string(16)).into_owned(),
                };
                let path = if inp.bool() { path(&mut inp) } else { "/local/domain/77/device/vif/0/state".into() };
                w.be.handle_event(&WatchEvent { path, token });
            }
            _ => match inp.u8() % 4 {
                0 => {
                    let p = path(&mut inp);
                    let e = inp.pick(&ERRORS);
                    w.xs.errors.borrow_mut().insert(p, e.to_string());
                }
                1 => {
                    let answering = !w.xs.answering.get();
                    w.xs.answering.set(answering);
                    if answering {
                        // Back at work, xenstored answers what it had read.
                        w.xs.serve();
                    }
                }
                2 => w.host.fail_connect = !w.host.fail_connect,
                _ => w.xs.fail_commits.set(inp.u8().into()),
            },
        }
    }

    // xenstored and the data plane behave again: everything must settle.
    w.xs.errors.borrow_mut().clear();
    w.xs.answering.set(true);
    w.xs.serve();
    w.host.fail_connect = false;
    let mut settled = false;
    for _ in 0..200 {
        w.xs.advance(50_000_000);
        // Busy once idle means waiting for the clock (a request's deadline).
        if w.idle_within(50) && !w.be.busy() {
            settled = true;
            break;
        }
    }
    assert!(settled, "the backend did not settle");
    check_turn(&w);
    assert_eq!(w.be_state(GUEST, 0).as_deref(), Some("4"), "guest {GUEST} lost its vif");
    assert!(w.host.connected.contains(&xvif::xenbus::VifId { frontend: xvif::xen::DomId(GUEST), devid: 0 }));
    w.connect(78, "guest 78 after");
    check_turn(&w);
}

fuzz_target!(|data: &[u8]| run(data));
