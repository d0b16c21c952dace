//! The kernel command line, parsed into a typed configuration.
//!
//! Syntax: whitespace-separated `key=value` or bare `key` words. Unknown keys
//! are reported; a malformed value is reported with what was expected and
//! the default is kept. Parsing never fails and never panics.
#![forbid(unsafe_code)]

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use log::LevelFilter;

/// When to power off on our own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PowerOff {
    /// Run until told to stop.
    #[default]
    Never,
    /// Power off with success as soon as initialisation finished (tests).
    Ready,
}

/// Built-in self tests, triggered after initialisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfTest {
    /// Read the unmapped stack guard page: page fault, crash report.
    Fault,
    /// Unbounded recursion into the stack guard: double fault on its own stack.
    StackOverflow,
    /// A Rust panic.
    Panic,
    /// Grant-table checks against the real hypervisor (Xen only).
    Xen,
}

/// IPv4 address with prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    /// Address octets.
    pub addr: [u8; 4],
    /// Prefix length (0..=32).
    pub prefix: u8,
}

/// Management address configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpConfig {
    /// Static address.
    Static(Ipv4Cidr),
    /// DHCPv4.
    Dhcp,
}

/// How the NIC is driven.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NicMode {
    /// Interrupts (MSI-X, MSI, or INTx through the I/O APIC), polling as fallback.
    #[default]
    Irq,
    /// No interrupts: the NIC is polled every 100 µs and whenever the loop runs.
    Poll,
}

/// The serial console (COM1, or port 0xe9 without a UART) besides Xen's PV
/// console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsoleMode {
    /// Until the PV console attaches, then the PV console alone: under Xen
    /// every byte to port 0xe9 is a VM exit (tens of microseconds nested).
    Auto,
    /// Always, even with a PV console.
    On,
    /// Silent once booted (the PV console, if any, keeps the log).
    Off,
}

/// Typed configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Log level (`log=error|warn|info|debug|trace|off`).
    pub log: LevelFilter,
    /// `poweroff=ready|never`.
    pub poweroff: PowerOff,
    /// `selftest=fault|stack|panic`.
    pub selftest: Option<SelfTest>,
    /// `ip=A.B.C.D/N` or `ip=dhcp`.
    pub ip: Option<IpConfig>,
    /// `gw=A.B.C.D`.
    pub gw: Option<[u8; 4]>,
    /// `console=auto|on|off`: where the log goes besides Xen's PV console.
    pub console: ConsoleMode,
    /// `nic=irq|poll`.
    pub nic: NicMode,
    /// `queues=N` (1 to 8): netback queues offered per vif
    /// (`multi-queue-max-queues`).
    pub queues: u32,
    /// `bridge=NAME`: the switch segment the NIC and the management stack
    /// join; vifs whose `bridge` key names it share their network. The
    /// default is libxl's default bridge, `xenbr0`, so that vifs configured
    /// without `bridge=` reach the NIC.
    pub bridge: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            log: LevelFilter::Info,
            poweroff: PowerOff::Never,
            selftest: None,
            ip: None,
            gw: None,
            console: ConsoleMode::Auto,
            nic: NicMode::Irq,
            queues: 4,
            bridge: String::from(crate::switch::segment::DEFAULT_SEGMENT),
        }
    }
}

/// Something wrong with the command line, reported on the console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigIssue {
    /// A key we do not know.
    UnknownKey(String),
    /// A value that does not parse; the default was kept.
    BadValue {
        /// The key.
        key: String,
        /// The value given.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKey(k) => write!(f, "unknown command-line key '{k}' ignored"),
            Self::BadValue { key, value, expected } => {
                write!(f, "bad value '{value}' for '{key}' (expected {expected}); using the default")
            }
        }
    }
}

/// Parses a dotted-quad IPv4 address.
pub fn parse_ipv4(s: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = s.split('.');
    for o in out.iter_mut() {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn parse_cidr(s: &str) -> Option<Ipv4Cidr> {
    let (a, p) = s.split_once('/')?;
    let prefix: u8 = p.parse().ok().filter(|&n| n <= 32)?;
    Some(Ipv4Cidr { addr: parse_ipv4(a)?, prefix })
}

/// Parses a command line.
pub fn parse(cmdline: &str) -> (Config, Vec<ConfigIssue>) {
    let mut cfg = Config::default();
    let mut issues = Vec::new();
    for word in cmdline.split_ascii_whitespace() {
        let (key, value) = word.split_once('=').unwrap_or((word, ""));
        let bad =
            |expected: &'static str| ConfigIssue::BadValue { key: key.to_string(), value: value.to_string(), expected };
        match key {
            "log" => match value {
                "off" => cfg.log = LevelFilter::Off,
                "error" => cfg.log = LevelFilter::Error,
                "warn" => cfg.log = LevelFilter::Warn,
                "info" => cfg.log = LevelFilter::Info,
                "debug" => cfg.log = LevelFilter::Debug,
                "trace" => cfg.log = LevelFilter::Trace,
                _ => issues.push(bad("off|error|warn|info|debug|trace")),
            },
            "poweroff" => match value {
                "ready" => cfg.poweroff = PowerOff::Ready,
                "never" => cfg.poweroff = PowerOff::Never,
                _ => issues.push(bad("ready|never")),
            },
            "selftest" => match value {
                "fault" => cfg.selftest = Some(SelfTest::Fault),
                "stack" => cfg.selftest = Some(SelfTest::StackOverflow),
                "panic" => cfg.selftest = Some(SelfTest::Panic),
                "xen" => cfg.selftest = Some(SelfTest::Xen),
                "none" => cfg.selftest = None,
                _ => issues.push(bad("fault|stack|panic|xen|none")),
            },
            "ip" => match value {
                "dhcp" => cfg.ip = Some(IpConfig::Dhcp),
                v => match parse_cidr(v) {
                    Some(c) => cfg.ip = Some(IpConfig::Static(c)),
                    None => issues.push(bad("A.B.C.D/N or dhcp")),
                },
            },
            "gw" => match parse_ipv4(value) {
                Some(a) => cfg.gw = Some(a),
                None => issues.push(bad("A.B.C.D")),
            },
            "nic" => match value {
                "irq" => cfg.nic = NicMode::Irq,
                "poll" => cfg.nic = NicMode::Poll,
                _ => issues.push(bad("irq|poll")),
            },
            "queues" => match value.parse::<u32>() {
                Ok(n) if (1..=8).contains(&n) => cfg.queues = n,
                _ => issues.push(bad("1..8")),
            },
            "bridge" => {
                if crate::switch::segment::valid_name(value) {
                    cfg.bridge = value.to_string();
                } else {
                    issues.push(bad("1 to 32 characters of A-Z a-z 0-9 _ . -"));
                }
            }
            "console" => match value {
                "auto" => cfg.console = ConsoleMode::Auto,
                "off" => cfg.console = ConsoleMode::Off,
                "on" => cfg.console = ConsoleMode::On,
                _ => issues.push(bad("auto|on|off")),
            },
            _ => issues.push(ConfigIssue::UnknownKey(key.to_string())),
        }
    }
    (cfg, issues)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_line_gives_defaults() {
        let (c, i) = parse("");
        assert_eq!(c, Config::default());
        assert!(i.is_empty());
    }

    #[test]
    fn all_keys_parse() {
        let (c, i) =
            parse("log=debug poweroff=ready selftest=fault ip=10.0.2.15/24 gw=10.0.2.2 console=off nic=poll queues=2");
        assert_eq!(c.queues, 2);
        assert!(i.is_empty(), "{i:?}");
        assert_eq!(c.log, LevelFilter::Debug);
        assert_eq!(c.poweroff, PowerOff::Ready);
        assert_eq!(c.selftest, Some(SelfTest::Fault));
        assert_eq!(c.ip, Some(IpConfig::Static(Ipv4Cidr { addr: [10, 0, 2, 15], prefix: 24 })));
        assert_eq!(c.gw, Some([10, 0, 2, 2]));
        assert_eq!(c.console, ConsoleMode::Off);
        assert_eq!(c.nic, NicMode::Poll);
        assert_eq!(parse("nic=bogus").1.len(), 1);
        assert_eq!(parse("ip=dhcp").0.ip, Some(IpConfig::Dhcp));
        assert_eq!(c.bridge, "xenbr0");
        assert_eq!(parse("bridge=red").0.bridge, "red");
        let (c, i) = parse("bridge=a/b");
        assert_eq!((c.bridge.as_str(), i.len()), ("xenbr0", 1));
        assert_eq!(parse("bridge=").1.len(), 1);
    }

    #[test]
    fn malformed_values_keep_defaults_and_are_reported() {
        let (c, i) = parse("log=loud ip=300.1.1.1/24 gw=1.2.3 ip=1.2.3.4/33 poweroff= selftest=boom =x");
        assert_eq!(c, Config::default());
        assert_eq!(i.len(), 7, "{i:?}");
        assert!(matches!(&i[0], ConfigIssue::BadValue { key, value, .. } if key == "log" && value == "loud"));
        assert!(i[0].to_string().contains("expected off|error|warn|info|debug|trace"));
        assert_eq!(i[6], ConfigIssue::UnknownKey(String::new()));
    }

    #[test]
    fn unknown_keys_are_reported() {
        let (_, i) = parse("frobnicate=1 quiet");
        assert_eq!(i, vec![ConfigIssue::UnknownKey("frobnicate".into()), ConfigIssue::UnknownKey("quiet".into())]);
    }

    #[test]
    fn ipv4_parser_rejects_junk() {
        for bad in ["", "1.2.3", "1.2.3.4.5", "1..3.4", "a.b.c.d", "256.0.0.1", "1.2.3.4 ", "0001.2.3.4", "+1.2.3.4"] {
            assert_eq!(parse_ipv4(bad), None, "{bad}");
        }
        assert_eq!(parse_ipv4("255.0.10.1"), Some([255, 0, 10, 1]));
    }
}
