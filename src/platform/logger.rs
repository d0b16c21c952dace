//! The `log` backend: timestamped lines on the early console (and any extra
//! sink, such as Xen's PV console, registered later).

use super::{serial, time};
use crate::ratelimit::TokenBucket;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use log::{LevelFilter, Log, Metadata, Record};
use spin::Mutex;

struct Logger;

static LOGGER: Logger = Logger;
static LOCK: Mutex<()> = Mutex::new(());
static QUIET: AtomicBool = AtomicBool::new(false);
/// The second sink takes whole lines (with their '\n') and must not wait.
static EXTRA: spin::Once<fn(&[u8])> = spin::Once::new();
/// Lines per second the logger writes at most, after a burst: whatever a
/// guest makes xvif log, logging stays a bounded share of the main loop.
const LINE_BURST: u32 = 200;
const LINES_PER_SEC: u32 = 50;
static BUDGET: Mutex<TokenBucket> = Mutex::new(TokenBucket::new(LINE_BURST, LINES_PER_SEC));
static SUPPRESSED: AtomicU64 = AtomicU64::new(0);
/// A log line longer than this is cut (and ends in "...").
const LINE_MAX: usize = 512;
/// Where a crash report goes besides the early console: a sink that takes no
/// lock (the crash may have interrupted its holder).
static CRASH_SINK: spin::Once<fn(&[u8])> = spin::Once::new();
/// Everything logged before a second sink exists, replayed into it when it
/// attaches (so `xl console` shows the whole boot).
const EARLY_SIZE: usize = 8192;
static EARLY: Mutex<([u8; EARLY_SIZE], usize)> = Mutex::new(([0; EARLY_SIZE], 0));

/// One formatted line, cut at `LINE_MAX` bytes.
struct Line {
    buf: [u8; LINE_MAX + 4],
    len: usize,
    cut: bool,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = LINE_MAX - self.len;
        let n = s.len().min(room);
        if let (Some(dst), Some(src)) = (self.buf.get_mut(self.len..self.len + n), s.as_bytes().get(..n)) {
            dst.copy_from_slice(src);
            self.len += n;
        }
        self.cut |= n < s.len();
        Ok(())
    }
}

impl Line {
    fn finish(&mut self) -> &[u8] {
        let end: &[u8] = if self.cut { b"...\n" } else { b"\n" };
        if let Some(dst) = self.buf.get_mut(self.len..self.len + end.len()) {
            dst.copy_from_slice(end);
            self.len += end.len();
        }
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

fn emit(bytes: &[u8]) {
    if !QUIET.load(Ordering::Relaxed) {
        serial::write_bytes(bytes);
    }
    match EXTRA.get() {
        Some(f) => f(bytes),
        None => {
            if let Some(mut g) = EARLY.try_lock() {
                let (buf, len) = &mut *g;
                let n = bytes.len().min(EARLY_SIZE - *len);
                if let (Some(dst), Some(src)) = (buf.get_mut(*len..*len + n), bytes.get(..n)) {
                    dst.copy_from_slice(src);
                    *len += n;
                }
            }
        }
    }
}

fn stamp(out: &mut Line, ns: u64) {
    let _ = write!(out, "[{:>5}.{:06}] ", ns / 1_000_000_000, (ns / 1_000) % 1_000_000);
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let ns = time::now_ns();
        // Errors always pass; the rest takes a token. A log call
        // from an interrupt handler that finds the budget locked passes too.
        let earlier = match BUDGET.try_lock() {
            Some(mut b) if r.level() > log::Level::Error => match b.take(ns) {
                Some(n) => n,
                None => {
                    SUPPRESSED.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
            _ => 0,
        };
        // Never deadlock: if the lock is held (a log call from an interrupt
        // handler interrupting a log call), print without it.
        let _guard = LOCK.try_lock();
        if earlier > 0 {
            let mut note = Line { buf: [0; LINE_MAX + 4], len: 0, cut: false };
            stamp(&mut note, ns);
            let _ = write!(note, "WARN  {earlier} log line(s) suppressed (over {LINES_PER_SEC}/s)");
            emit(note.finish());
        }
        let mut line = Line { buf: [0; LINE_MAX + 4], len: 0, cut: false };
        stamp(&mut line, ns);
        let _ = write!(line, "{:<5} {}", r.level(), r.args());
        emit(line.finish());
    }

    fn flush(&self) {}
}

/// Whether log output to COM1 is off (the PV console carries it).
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Installs the logger.
pub fn init(level: LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

/// Silences the serial console (the extra sink keeps logging).
pub fn set_quiet(q: bool) {
    QUIET.store(q, Ordering::Relaxed);
}

/// Adds a lock-free sink for crash reports (Xen's PV console), so a crash is
/// seen on `xl console` and in the console log, not only on COM1/port 0xe9.
pub fn set_crash_sink(f: fn(&[u8])) {
    CRASH_SINK.call_once(|| f);
}

/// Writes crash-report bytes to the early console, even when it is quiet,
/// and to the crash sink. Takes no lock.
pub fn write_crash(bytes: &[u8]) {
    serial::write_bytes(bytes);
    if let Some(f) = CRASH_SINK.get() {
        f(bytes);
    }
}

/// Adds a second sink for log lines (`f`, which never waits) and replays
/// the early log into it through `replay` (which may wait, boundedly).
pub fn set_extra_sink(f: fn(&[u8]), replay: fn(&[u8])) {
    let _guard = LOCK.lock();
    {
        let g = EARLY.lock();
        replay(g.0.get(..g.1).unwrap_or(&[]));
    }
    EXTRA.call_once(|| f);
}

/// Log lines not written because they were over the line budget.
pub fn suppressed() -> u64 {
    SUPPRESSED.load(Ordering::Relaxed)
}
