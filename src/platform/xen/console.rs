//! The PV console: log lines and crash reports into the console ring that
//! xenconsoled drains (`xl console`, the console log).

use super::{XenInfo, XenPage, evtchn_send};
use crate::platform::time;
use crate::xen::EvtchnPort;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use spin::Mutex;

static CONSOLE: Mutex<Option<(XenPage, EvtchnPort)>> = Mutex::new(None);
static CONSOLE_DROPPED: AtomicU64 = AtomicU64::new(0);
/// The console page and port again, readable without the lock by the crash
/// path (0: no console).
static CONSOLE_RAW: AtomicU64 = AtomicU64::new(0);
static CONSOLE_RAW_PORT: AtomicU32 = AtomicU32::new(0);
/// How long the boot log's replay waits for xenconsoled to drain a full
/// ring (once, at attach; later log lines never wait).
const REPLAY_STALL_NS: u64 = 20_000_000;
/// How long a crash report waits: it is the last thing the domain says.
const CRASH_STALL_NS: u64 = 200_000_000;

/// Sends log output to the PV console too (`xl console`).
pub fn attach_console(info: &XenInfo) -> bool {
    let Some((pfn, port)) = info.console else { return false };
    let Some(page) = XenPage::from_special_pfn(pfn) else { return false };
    *CONSOLE.lock() = Some((page, port));
    CONSOLE_RAW_PORT.store(port.0, Ordering::Relaxed);
    CONSOLE_RAW.store(page.addr, Ordering::Release);
    crate::platform::logger::set_extra_sink(console_write, console_replay);
    crate::platform::logger::set_crash_sink(console_write_crash);
    true
}

/// Writes all of `data` to the console ring, kicking xenconsoled and waiting
/// (bounded: `stall_ns` without progress) when the ring is full.
fn console_put(page: &XenPage, port: EvtchnPort, data: &[u8], stall_ns: u64) {
    let mut rest = data;
    let mut stalled_since = None;
    while !rest.is_empty() {
        let n = crate::xen::console::OUT.write(page, rest).unwrap_or(0);
        rest = rest.get(n..).unwrap_or(&[]);
        if rest.is_empty() {
            break;
        }
        if n > 0 {
            stalled_since = None;
            let _ = evtchn_send(port);
            continue;
        }
        let now = time::now_ns();
        let since = *stalled_since.get_or_insert(now);
        if now.saturating_sub(since) > stall_ns {
            CONSOLE_DROPPED.fetch_add(rest.len() as u64, Ordering::Relaxed);
            return;
        }
        let _ = evtchn_send(port);
        core::hint::spin_loop();
    }
}

/// A log line (ending in '\n'): written whole if the ring has room, else
/// dropped and counted; never waits, never takes a contended lock.
fn console_write(bytes: &[u8]) {
    let Some(g) = CONSOLE.try_lock() else {
        CONSOLE_DROPPED.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        return;
    };
    let Some((page, port)) = *g else { return };
    let line = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    match crate::xen::console::put_line(&page, line) {
        Ok(true) => {
            let _ = evtchn_send(port);
        }
        Ok(false) | Err(_) => {
            CONSOLE_DROPPED.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
    }
}

/// The boot log, replayed once when the console attaches.
fn console_replay(bytes: &[u8]) {
    let Some(g) = CONSOLE.try_lock() else { return };
    let Some((page, port)) = *g else { return };
    console_lines(&page, port, bytes, REPLAY_STALL_NS);
    let _ = evtchn_send(port);
}

/// The crash path: no lock (the crashed context may hold it; it never runs
/// again), a longer wait for xenconsoled, and a kick at the end.
fn console_write_crash(bytes: &[u8]) {
    let addr = CONSOLE_RAW.load(Ordering::Acquire);
    if addr == 0 {
        return;
    }
    let port = EvtchnPort(CONSOLE_RAW_PORT.load(Ordering::Relaxed));
    console_lines(&XenPage { addr }, port, bytes, CRASH_STALL_NS);
    let _ = evtchn_send(port);
}

fn console_lines(page: &XenPage, port: EvtchnPort, bytes: &[u8], stall_ns: u64) {
    // The console expects CRLF line ends.
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if i > 0 {
            console_put(page, port, b"\r\n", stall_ns);
            let _ = evtchn_send(port);
        }
        console_put(page, port, line, stall_ns);
    }
}

/// Console bytes dropped because the ring was full.
pub fn console_dropped() -> u64 {
    CONSOLE_DROPPED.load(Ordering::Relaxed)
}

/// Reads what was typed into `xl console` (the input ring) into `buf`;
/// returns the byte count (0: nothing, or no console). Never waits.
pub fn console_read(buf: &mut [u8]) -> usize {
    let Some(g) = CONSOLE.try_lock() else { return 0 };
    let Some((page, port)) = *g else { return 0 };
    match crate::xen::console::IN.read(&page, buf) {
        Ok(n) if n > 0 => {
            // xenconsoled may wait for room in the input ring.
            let _ = evtchn_send(port);
            n
        }
        _ => 0,
    }
}

/// Writes one console answer line (no line end) to the PV console if it
/// fits whole; false when the ring is full for now (try again later).
/// Without a PV console there is nothing to wait for: true.
pub fn console_answer(line: &[u8]) -> bool {
    let Some(g) = CONSOLE.try_lock() else { return false };
    let Some((page, port)) = *g else { return true };
    match crate::xen::console::put_line(&page, line) {
        Ok(true) => {
            let _ = evtchn_send(port);
            true
        }
        Ok(false) => false,
        // A console whose indices are corrupt takes nothing: do not retry.
        Err(_) => true,
    }
}
