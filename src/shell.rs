//! The operator's console: command lines typed on COM1 (bare metal, QEMU)
//! or into `xl console xvif` (the PV console's input ring under Xen), and
//! their answers on the same consoles.
//!
//! Commands: `help`, `status`, `vifs`, `ports`, `fdb`, `stats <port>`,
//! `log <level>`, `poweroff`. Input is bounded (a line longer than
//! [`LINE_MAX`] is refused whole, non-printable bytes are ignored) and every
//! bad line gets a one-line error. Answers go to a bounded queue that the
//! console task drains as the console takes them, so a long answer never
//! makes the main loop wait and is not cut by a full console ring.
//!
//! Commands about the switch are answered by whoever owns it (the data
//! plane, [`ShellHost`]): the console task posts them to a mailbox that the
//! data plane serves on its next poll.
#![forbid(unsafe_code)]

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use log::LevelFilter;
use spin::Mutex;

/// Longest command line.
pub const LINE_MAX: usize = 120;
/// Answer lines queued at most; beyond that an answer is cut (and says so).
pub const REPLY_MAX: usize = 256;
/// FDB entries `fdb` lists at most.
pub const FDB_MAX: usize = 64;
/// Commands waiting for the data plane at most.
const MAILBOX_MAX: usize = 8;

/// The one-line help.
pub const HELP: &str =
    "commands: help, status, vifs, ports, fdb, stats <port>, log <error|warn|info|debug|trace>, poweroff";

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `help`.
    Help,
    /// `status`: uptime, memory, interrupts.
    Status,
    /// `vifs`: every connected vif and its netback counters.
    Vifs,
    /// `ports`: every switch port, its segment and counters.
    Ports,
    /// `fdb`: the learned and fixed MAC addresses.
    Fdb,
    /// `stats <port>`: one port's counters in full.
    Stats(String),
    /// `log <level>`: the log level from now on.
    Log(LevelFilter),
    /// `poweroff`.
    PowerOff,
}

impl Command {
    /// True for commands the switch's owner answers.
    pub fn needs_switch(&self) -> bool {
        matches!(self, Self::Vifs | Self::Ports | Self::Fdb | Self::Stats(_))
    }
}

/// Parses one line: `Ok(None)` for a blank line, `Err(message)` for a bad
/// one (the message is the whole answer).
pub fn parse(line: &str) -> Result<Option<Command>, String> {
    let mut words = line.split_ascii_whitespace();
    let Some(verb) = words.next() else { return Ok(None) };
    let arg = words.next();
    if words.next().is_some() {
        return Err(format!("console: too many arguments to '{verb}' ({HELP})"));
    }
    let no_arg = |c: Command| match arg {
        None => Ok(Some(c)),
        Some(_) => Err(format!("console: '{verb}' takes no argument")),
    };
    match verb {
        "help" => no_arg(Command::Help),
        "status" => no_arg(Command::Status),
        "vifs" => no_arg(Command::Vifs),
        "ports" => no_arg(Command::Ports),
        "fdb" => no_arg(Command::Fdb),
        "poweroff" => no_arg(Command::PowerOff),
        "stats" => match arg {
            Some(p) => Ok(Some(Command::Stats(p.to_string()))),
            None => Err("console: stats needs a port name (see 'ports')".to_string()),
        },
        "log" => match arg.map(level) {
            Some(Some(l)) => Ok(Some(Command::Log(l))),
            _ => Err("console: log needs one of error, warn, info, debug, trace".to_string()),
        },
        _ => Err(format!("console: unknown command '{verb}' ({HELP})")),
    }
}

fn level(s: &str) -> Option<LevelFilter> {
    Some(match s {
        "error" => LevelFilter::Error,
        "warn" => LevelFilter::Warn,
        "info" => LevelFilter::Info,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        _ => return None,
    })
}

/// Collects input bytes into lines.
#[derive(Debug, Default)]
pub struct LineReader {
    line: String,
    too_long: bool,
}

impl LineReader {
    /// Takes one byte; returns a finished line (`Err` for one that was
    /// too long).
    pub fn push(&mut self, b: u8) -> Option<Result<String, String>> {
        match b {
            b'\r' | b'\n' => {
                let line = core::mem::take(&mut self.line);
                if core::mem::take(&mut self.too_long) {
                    return Some(Err(format!("console: line longer than {LINE_MAX} characters ignored")));
                }
                Some(Ok(line))
            }
            0x20..=0x7e if self.line.len() < LINE_MAX => {
                self.line.push(char::from(b));
                None
            }
            0x20..=0x7e => {
                self.too_long = true;
                None
            }
            _ => None,
        }
    }
}

/// What the owner of the switch answers.
pub trait ShellHost {
    /// One line per connected vif.
    fn vifs(&self, out: &mut Vec<String>);
    /// One line per switch port.
    fn ports(&self, out: &mut Vec<String>);
    /// One line per FDB entry, at most `max`, then a count of the rest.
    fn fdb(&self, out: &mut Vec<String>, max: usize);
    /// The counters of the port named `name`; None if there is none.
    fn stats(&self, name: &str) -> Option<Vec<String>>;
}

/// Answers a switch command (see [`Command::needs_switch`]).
pub fn answer(cmd: &Command, host: &dyn ShellHost) -> Vec<String> {
    let mut out = Vec::new();
    match cmd {
        Command::Vifs => {
            host.vifs(&mut out);
            if out.is_empty() {
                out.push("vifs: none connected".to_string());
            }
        }
        Command::Ports => {
            host.ports(&mut out);
            if out.is_empty() {
                out.push("ports: none".to_string());
            }
        }
        Command::Fdb => {
            host.fdb(&mut out, FDB_MAX);
            if out.is_empty() {
                out.push("fdb: empty".to_string());
            }
        }
        Command::Stats(name) => match host.stats(name) {
            Some(lines) => out = lines,
            None => out.push(format!("console: no port '{name}' (see 'ports')")),
        },
        _ => {}
    }
    out
}

static MAILBOX: Mutex<VecDeque<Command>> = Mutex::new(VecDeque::new());
static REPLIES: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());
static SERVED: AtomicBool = AtomicBool::new(false);
/// Set while the mailbox may hold commands: the data plane looks at it on
/// every poll, and takes the lock only when something was posted.
static POSTED: AtomicBool = AtomicBool::new(false);
static CUT: AtomicU64 = AtomicU64::new(0);

/// The data plane announces that it serves switch commands.
pub fn set_served() {
    SERVED.store(true, Ordering::Relaxed);
}

/// Whether anything serves switch commands.
pub fn served() -> bool {
    SERVED.load(Ordering::Relaxed)
}

/// Posts a switch command for the data plane; false if the mailbox is full.
pub fn post(cmd: Command) -> bool {
    let mut m = MAILBOX.lock();
    if m.len() >= MAILBOX_MAX {
        return false;
    }
    m.push_back(cmd);
    POSTED.store(true, Ordering::Release);
    true
}

/// The next posted switch command.
pub fn take() -> Option<Command> {
    if !POSTED.load(Ordering::Acquire) {
        return None;
    }
    let mut m = MAILBOX.lock();
    let cmd = m.pop_front();
    if m.is_empty() {
        POSTED.store(false, Ordering::Release);
    }
    cmd
}

/// Queues answer lines; lines beyond [`REPLY_MAX`] are dropped, and the
/// answer then ends with a note saying how many.
pub fn reply(lines: impl IntoIterator<Item = String>) {
    let mut q = REPLIES.lock();
    let mut cut = 0u64;
    for l in lines {
        if q.len() < REPLY_MAX - 1 {
            q.push_back(l);
        } else {
            cut += 1;
        }
    }
    if cut > 0 {
        q.push_back(format!("console: {cut} line(s) of this answer cut"));
        CUT.fetch_add(cut, Ordering::Relaxed);
    }
}

/// Hands queued answer lines to `write` until it refuses one (the console
/// is full: the line stays for the next call); returns whether lines are
/// still waiting.
pub fn drain(mut write: impl FnMut(&str) -> bool) -> bool {
    let mut q = REPLIES.lock();
    while let Some(l) = q.front() {
        if !write(l) {
            return true;
        }
        q.pop_front();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_command_and_refuses_the_rest_in_one_line() {
        assert_eq!(parse("  "), Ok(None));
        assert_eq!(parse("status"), Ok(Some(Command::Status)));
        assert_eq!(parse(" ports "), Ok(Some(Command::Ports)));
        assert_eq!(parse("stats vif3.0"), Ok(Some(Command::Stats("vif3.0".into()))));
        assert_eq!(parse("log debug"), Ok(Some(Command::Log(LevelFilter::Debug))));
        for bad in ["bogus", "stats", "log", "log loud", "status now", "stats a b", "fdb x"] {
            let e = parse(bad).unwrap_err();
            assert!(e.starts_with("console: ") && !e.contains('\n'), "{bad}: {e}");
        }
        assert!(parse("bogus").unwrap_err().contains("unknown command 'bogus'"));
        assert!(Command::Stats("x".into()).needs_switch() && !Command::Status.needs_switch());
    }

    #[test]
    fn lines_are_bounded_and_printable() {
        let mut r = LineReader::default();
        let mut got = Vec::new();
        for &b in b"st\x07atus\r\n\x1b[Ahelp\n" {
            if let Some(l) = r.push(b) {
                got.push(l);
            }
        }
        assert_eq!(got, [Ok("status".to_string()), Ok(String::new()), Ok("[Ahelp".to_string())]);
        for _ in 0..LINE_MAX + 10 {
            assert_eq!(r.push(b'x'), None);
        }
        assert!(r.push(b'\n').unwrap().is_err());
        assert_eq!(r.push(b'\n'), Some(Ok(String::new())), "the next line is fine again");
    }

    #[test]
    fn the_mailbox_is_bounded_and_empties() {
        assert_eq!(take(), None);
        for i in 0..MAILBOX_MAX {
            assert!(post(Command::Stats(format!("p{i}"))));
        }
        assert!(!post(Command::Fdb), "full");
        for i in 0..MAILBOX_MAX {
            assert_eq!(take(), Some(Command::Stats(format!("p{i}"))));
        }
        assert_eq!(take(), None);
        assert!(post(Command::Ports));
        assert_eq!(take(), Some(Command::Ports));
        assert_eq!(take(), None);
    }

    struct Host;
    impl ShellHost for Host {
        fn vifs(&self, _: &mut Vec<String>) {}
        fn ports(&self, out: &mut Vec<String>) {
            out.push("port mgmt".into());
        }
        fn fdb(&self, out: &mut Vec<String>, max: usize) {
            out.extend((0..max).map(|i| format!("entry {i}")));
        }
        fn stats(&self, name: &str) -> Option<Vec<String>> {
            (name == "mgmt").then(|| alloc::vec!["mgmt rx_packets=1".into()])
        }
    }

    #[test]
    fn answers_and_a_queue_that_waits_for_the_console() {
        assert_eq!(answer(&Command::Vifs, &Host), ["vifs: none connected"]);
        assert_eq!(answer(&Command::Fdb, &Host).len(), FDB_MAX);
        assert_eq!(answer(&Command::Stats("mgmt".into()), &Host), ["mgmt rx_packets=1"]);
        assert!(answer(&Command::Stats("vif9.0".into()), &Host)[0].contains("no port 'vif9.0'"));
        reply((0..REPLY_MAX + 5).map(|i| format!("l{i}")));
        // A console with room for 10 lines: the rest stays queued.
        let mut taken = Vec::new();
        assert!(drain(|l| {
            taken.push(l.to_string());
            taken.len() < 10
        }));
        assert_eq!(taken.len(), 10, "the refused line is offered again");
        let mut rest = Vec::new();
        assert!(!drain(|l| {
            rest.push(l.to_string());
            true
        }));
        assert_eq!(rest[0], "l9");
        assert_eq!(9 + rest.len(), REPLY_MAX);
        assert_eq!(rest.last().unwrap(), "console: 6 line(s) of this answer cut");
    }
}
