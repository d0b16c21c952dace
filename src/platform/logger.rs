//! The `log` backend: timestamped lines on the early console (and any extra
//! sink, such as Xen's PV console, registered later).

use super::{serial, time};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, Ordering};
use log::{LevelFilter, Log, Metadata, Record};
use spin::Mutex;

struct Logger;

static LOGGER: Logger = Logger;
static LOCK: Mutex<()> = Mutex::new(());
static QUIET: AtomicBool = AtomicBool::new(false);
static EXTRA: spin::Once<fn(&[u8])> = spin::Once::new();
/// Where a crash report goes besides the early console: a sink that takes no
/// lock (the crash may have interrupted its holder).
static CRASH_SINK: spin::Once<fn(&[u8])> = spin::Once::new();
/// Everything logged before a second sink exists, replayed into it when it
/// attaches (so `xl console` shows the whole boot).
const EARLY_SIZE: usize = 8192;
static EARLY: Mutex<([u8; EARLY_SIZE], usize)> = Mutex::new(([0; EARLY_SIZE], 0));

struct Line;

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if !QUIET.load(Ordering::Relaxed) {
            serial::write_bytes(s.as_bytes());
        }
        match EXTRA.get() {
            Some(f) => f(s.as_bytes()),
            None => {
                if let Some(mut g) = EARLY.try_lock() {
                    let (buf, len) = &mut *g;
                    let n = s.len().min(EARLY_SIZE - *len);
                    if let (Some(dst), Some(src)) = (buf.get_mut(*len..*len + n), s.as_bytes().get(..n)) {
                        dst.copy_from_slice(src);
                        *len += n;
                    }
                }
            }
        }
        Ok(())
    }
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
        // Never deadlock: if the lock is held (a log call from an interrupt
        // handler interrupting a log call), print without it.
        let _guard = LOCK.try_lock();
        let _ =
            writeln!(Line, "[{:>5}.{:06}] {:<5} {}", ns / 1_000_000_000, (ns / 1_000) % 1_000_000, r.level(), r.args());
    }

    fn flush(&self) {}
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

/// Adds a second sink for log lines and replays the early log into it.
pub fn set_extra_sink(f: fn(&[u8])) {
    let _guard = LOCK.lock();
    {
        let g = EARLY.lock();
        f(g.0.get(..g.1).unwrap_or(&[]));
    }
    EXTRA.call_once(|| f);
}
