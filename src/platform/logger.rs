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

struct Line;

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if !QUIET.load(Ordering::Relaxed) {
            serial::write_bytes(s.as_bytes());
        }
        if let Some(f) = EXTRA.get() {
            f(s.as_bytes());
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

/// Adds a second sink for log lines.
pub fn set_extra_sink(f: fn(&[u8])) {
    EXTRA.call_once(|| f);
}
