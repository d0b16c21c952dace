//! Wiring of the unikernel: configuration, services and the main loop.
//! Runs after `platform::init`.
#![forbid(unsafe_code)]

use crate::config::{self, PowerOff, SelfTest};
use crate::platform::{self, cpu, exit, heap, idt, logger, serial, time};
use crate::shell::{self, Command, LineReader};
use crate::timer::{Nanos, Poller, Progress, Task};
use alloc::boxed::Box;
use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};
use log::{error, info, warn};

/// The operator's console (`shell`): command lines from COM1 and from
/// `xl console` (the PV console's input ring), answers drained into both as
/// they take them.
struct ShellTask {
    com1: LineReader,
    pv: LineReader,
    /// Answer lines wait for room in the PV console.
    waiting: bool,
}

impl Task for ShellTask {
    fn name(&self) -> &str {
        "console"
    }

    fn poll(&mut self, _now: Nanos) -> Progress {
        let mut progress = Progress::Idle;
        // Bounded: at most one FIFO's worth per poll.
        for _ in 0..64 {
            let Some(b) = serial::try_read() else { break };
            progress = Progress::Busy;
            if let Some(line) = self.com1.push(b) {
                handle(line);
            }
        }
        let mut buf = [0u8; 64];
        let n = platform::xen::console_read(&mut buf);
        for &b in buf.get(..n).unwrap_or(&[]) {
            progress = Progress::Busy;
            if let Some(line) = self.pv.push(b) {
                handle(line);
            }
        }
        self.waiting = shell::drain(write_answer);
        progress
    }

    fn next_deadline(&self, now: Nanos) -> Option<Nanos> {
        // xenconsoled drains the ring in well under a millisecond.
        self.waiting.then_some(now + 1_000_000)
    }
}

/// One answer line to the PV console (false: no room yet) and COM1.
fn write_answer(l: &str) -> bool {
    if !platform::xen::console_answer(l.as_bytes()) {
        return false;
    }
    if !logger::quiet() {
        serial::write_bytes(l.as_bytes());
        serial::write_bytes(b"\r\n");
    }
    true
}

fn handle(line: Result<String, String>) {
    match line.and_then(|l| shell::parse(&l)) {
        Ok(None) => {}
        Err(e) => shell::reply([e]),
        Ok(Some(cmd)) => run_command(cmd),
    }
}

fn run_command(cmd: Command) {
    match cmd {
        Command::Help => shell::reply([String::from(shell::HELP)]),
        Command::Status => shell::reply([status()]),
        Command::Log(level) => {
            log::set_max_level(level);
            shell::reply([alloc::format!("log: level {level}")]);
        }
        Command::PowerOff => {
            // The answers to earlier commands first (what fits).
            shell::drain(|l| {
                write_answer(l);
                true
            });
            info!("console: poweroff requested");
            exit::poweroff(exit::Status::Success);
        }
        c if !shell::served() => {
            shell::reply([alloc::format!("console: no switch here (no NIC, no Xen) for {c:?}")]);
        }
        c => {
            if !shell::post(c) {
                shell::reply([String::from("console: busy, try again")]);
            }
        }
    }
}

fn status() -> String {
    let (used, free) = heap::usage();
    let f = platform::frames::stats();
    alloc::format!(
        "status: uptime {} ms, heap {} KiB used / {} KiB free, frames {}/{} used, irqs {}, console irqs {}, \
         log lines suppressed {}",
        time::now_ns() / 1_000_000,
        used / 1024,
        free / 1024,
        f.used,
        f.total,
        idt::irq_count(),
        CONSOLE_IRQS.load(Ordering::Relaxed),
        logger::suppressed()
    )
}

static CONSOLE_IRQS: AtomicU64 = AtomicU64::new(0);

fn serial_irq() {
    CONSOLE_IRQS.fetch_add(1, Ordering::Relaxed);
}

/// Recurses until `limit` (never reached: the guard page stops it first).
#[inline(never)]
fn recurse(depth: u64, limit: u64) -> u64 {
    let pad = core::hint::black_box([depth; 64]);
    if depth >= limit {
        return pad[3];
    }
    core::hint::black_box(recurse(depth + 1, limit)) + pad[7]
}

/// The kernel after platform bring-up: configuration, self tests, the poll loop.
pub fn run(mut p: platform::Platform) -> ! {
    let mut from_xenstore = false;
    if let (true, Some(Ok(info))) = (p.boot.cmdline().is_empty(), &p.xen) {
        match crate::xenhost::boot_cmdline(info) {
            Ok(Some(line)) => {
                p.boot.set_cmdline(&line);
                from_xenstore = true;
            }
            Ok(None) => {}
            Err(e) => p.warnings.push(alloc::format!("xenstore: cannot read {}: {e}", crate::xenhost::CMDLINE_KEY)),
        }
    }
    let (cfg, issues) = config::parse(p.boot.cmdline());
    logger::init(cfg.log);
    info!("xvif {} booting (PVH start_info v{})", env!("CARGO_PKG_VERSION"), p.boot.version);
    if from_xenstore {
        info!("command line: '{}' (from xenstore {})", p.boot.cmdline(), crate::xenhost::CMDLINE_KEY);
    } else {
        info!("command line: '{}'", p.boot.cmdline());
    }
    if let Some(h) = &p.hvm {
        info!(
            "HVM container: {} vCPU(s), RAM below 4 GiB to {:#x}, memory types: {}",
            h.nr_vcpus,
            u64::from(h.low_mem_pgend) << 12,
            p.mtrr.map_or(alloc::string::String::from("?"), |m| alloc::format!("{m}"))
        );
    }
    for i in &issues {
        warn!("config: {i}");
    }
    for w in &p.warnings {
        warn!("{w}");
    }
    for r in p.boot.memmap() {
        log::debug!("memmap {:#012x}-{:#012x} {:?}", r.base, r.end(), r.kind);
    }
    let k = platform::kernel_range();
    info!(
        "memory: {} MiB RAM, image {:#x}-{:#x}, heap {} KiB, {} frames free",
        p.boot.ram_bytes() >> 20,
        k.start,
        k.end,
        p.heap_bytes / 1024,
        platform::frames::stats().total
    );
    info!(
        "clock: TSC {} MHz ({:?}), LAPIC timer {} ticks/ms",
        time::tsc_hz() / 1_000_000,
        p.tsc_source,
        platform::apic::ticks_per_ms()
    );
    let mut poller = Poller::new();
    if let Some(madt) = p.acpi.as_ref().and_then(|a| a.madt.as_ref()) {
        info!("ACPI: {} CPU(s), {} I/O APIC(s), {} IRQ override(s)", madt.cpus, p.ioapics, madt.overrides.len());
        for o in &madt.overrides {
            log::debug!("irq override: IRQ{} -> GSI{} {:?} {:?}", o.irq, o.gsi, o.polarity, o.trigger);
        }
        if serial::com1_present() {
            let (gsi, pol, trig) = madt.route_isa_irq(4);
            match idt::alloc_vector(serial_irq) {
                Some(v) if platform::apic::route_gsi(gsi, v, pol, trig) => {
                    serial::enable_rx_interrupt();
                    info!("console: COM1 IRQ4 -> GSI{gsi} -> vector {v:#x}");
                }
                _ => warn!("console: cannot route COM1 IRQ4 (GSI{gsi})"),
            }
        }
    }
    poller.add(Box::new(ShellTask { com1: LineReader::default(), pv: LineReader::default(), waiting: false }));
    // The NIC first: under Xen it becomes a port of the vifs' switch.
    let mut nic = crate::net::probe(p.acpi.as_ref(), &cfg, p.hvm.is_some());
    let mut on_xen: Option<u16> = None;
    let mut pv_console = false;
    match &p.xen {
        None => {}
        Some(Err(e)) => warn!("xen: platform init failed: {e}"),
        Some(Ok(info)) => {
            pv_console = platform::xen::attach_console(info);
            info!(
                "xen: Xen {}.{}, upcall vector {:#x}, {} grant entries, PV console {}",
                info.version.0,
                info.version.1,
                info.vector,
                info.grant_entries,
                if pv_console { "attached" } else { "absent" }
            );
            cpu::enable_interrupts();
            match crate::xenhost::XenHost::start(info, &cfg, &mut nic) {
                Ok(host) => {
                    info!(
                        "xen: domid {} name '{}', xenstore ready {} ms after entry",
                        host.domid,
                        host.name,
                        time::now_ns() / 1_000_000
                    );
                    on_xen = Some(host.domid);
                    poller.add(Box::new(host));
                }
                Err(e) => warn!("xen: xenstore unavailable: {e}"),
            }
        }
    }
    if let Some(dev) = nic {
        poller.add(Box::new(crate::net::NetTask::new(dev, &cfg, time::now_ns())));
    }
    cpu::enable_interrupts();

    match cfg.selftest {
        Some(SelfTest::Fault) => {
            info!("selftest: reading the stack guard page at {:#x}", platform::stack_guard());
            let v = platform::touch_stack_guard();
            error!("selftest: guard page read returned {v}: it is mapped!");
            exit::poweroff(exit::Status::Failure);
        }
        Some(SelfTest::StackOverflow) => {
            info!("selftest: overflowing the stack");
            let v = recurse(0, core::hint::black_box(u64::MAX));
            error!("selftest: recursion returned {v}");
            exit::poweroff(exit::Status::Failure);
        }
        Some(SelfTest::Panic) => panic!("selftest: requested panic"),
        Some(SelfTest::Xen) => match on_xen.map(crate::xenhost::grant_selftest) {
            Some(Ok(summary)) => {
                info!("selftest xen: {summary}");
                let costs = platform::xen::event_path_costs(200);
                let text: alloc::vec::Vec<String> = costs.iter().map(|(k, v)| alloc::format!("{k}={v}ns")).collect();
                info!("selftest xen: costs {}", text.join(" "));
            }
            Some(Err(e)) => error!("selftest xen: FAILED: {e}"),
            None => error!("selftest xen: FAILED: not running on Xen"),
        },
        None => {}
    }

    let ready_ns = time::now_ns();
    info!(
        "xvif ready: {}.{:03} ms after entry, {} ms since reset",
        ready_ns / 1_000_000,
        (ready_ns / 1_000) % 1_000,
        time::since_reset_ns() / 1_000_000
    );
    logger::set_quiet(match cfg.console {
        config::ConsoleMode::On => false,
        config::ConsoleMode::Off => true,
        config::ConsoleMode::Auto => pv_console,
    });
    if cfg.poweroff == PowerOff::Ready {
        info!("poweroff=ready: powering off");
        exit::poweroff(exit::Status::Success);
    }
    loop {
        let now = time::now_ns();
        let irqs = idt::irq_count();
        if poller.run_once(now) == Progress::Busy {
            continue;
        }
        let deadline = poller.next_deadline(now).unwrap_or(now + 1_000_000_000);
        // With interrupts off, nothing can slip in between the last check and
        // the halt: an interrupt taken since `run_once` started (a device, or
        // an early timer) means work may be pending, so poll again; otherwise
        // `sti; hlt` arms the wake-up atomically. This count is needed besides
        // the wake flag in `sleep_until_interrupt`: a blocking xenstore call
        // inside `run_once` sleeps too and may consume that flag.
        // Under Xen, `before_sleep` also re-arms the event upcall, which
        // stays quiet while the loop is busy, and says if events came in.
        cpu::disable_interrupts();
        if idt::irq_count() != irqs || platform::xen::before_sleep() {
            cpu::enable_interrupts();
            continue;
        }
        platform::apic::arm_deadline(time::now_ns(), deadline);
        idt::sleep_until_interrupt();
    }
}
