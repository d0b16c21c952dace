//! What the toolstack configured for a vif in its backend directory besides
//! the MAC, as libxl writes it (tools/libs/light/libxl_nic.c,
//! `libxl__set_xenstore_nic`):
//!
//! * `rate = "<bytes per interval>,<interval in µs>"`, only when the vif has
//!   `rate=`; watched while the vif lives, as Linux netback does;
//! * `ip = "<addr> <addr>..."`, only when the vif has `ip=`, handed
//!   unchanged from the xl config (whitespace-separated, as the
//!   `vif-common.sh` hotplug script reads it);
//! * `bridge`, always (libxl's default is `xenbr0`);
//! * `mtu = "<decimal>"`, the vif's IP MTU, only when the vif has `mtu=`.
//!   Without it the vif has 1500 (xvif's segments have no MTU of their
//!   own to inherit, unlike a Linux bridge). Like the `vif-bridge` hotplug
//!   script, xvif copies it to the frontend's `mtu` node (which the
//!   toolstack makes the backend's) for frontends that read it; Linux
//!   netfront does not, its guest sets its MTU itself.
//!
//! Every value is hostile. A malformed `rate` leaves the vif unlimited with
//! a warning, as Linux netback does (`xen_net_read_rate`); a malformed or
//! out-of-range `mtu` leaves it at 1500 with a warning. A malformed `ip`
//! or `bridge` refuses the vif: treating it as unset would silently
//! disable the anti-spoofing or the isolation the operator asked for.
#![forbid(unsafe_code)]

use super::batch::Batch;
use crate::netback::credit::{Rate, RateError, parse_rate};
use crate::switch::ipfilter::{IpFilter, IpKeyError};
use crate::switch::segment::{DEFAULT_SEGMENT, valid_name};
use crate::xen::xenstore::{Client, XsError};
use alloc::format;
use alloc::string::String;
use log::warn;

/// Backend keys read at probe time.
pub const KEYS: &[&str] = &["rate", "ip", "bridge", "mtu"];

/// The MTU of a vif without an `mtu` key (and of one whose frontend
/// cannot take frames spanning several slots: no `feature-sg`).
pub const DEFAULT_MTU: u16 = 1500;
/// Smallest IP MTU (IPv4's minimum).
pub const MIN_MTU: u16 = 68;
/// Largest: a 64 KiB frame with an Ethernet header and a VLAN tag, as
/// Linux netback allows with scatter-gather.
pub const MAX_MTU: u16 = 65535 - 18;

/// What the toolstack configured for one vif.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VifParams {
    /// Transmit rate limit (`rate`); None: unlimited.
    pub rate: Option<Rate>,
    /// Addresses the guest may send from (`ip`); None: any.
    pub ip: Option<IpFilter>,
    /// The switch segment (`bridge`).
    pub bridge: String,
    /// The IP MTU the toolstack gave (`mtu`); None: [`DEFAULT_MTU`].
    pub mtu: Option<u16>,
}

impl VifParams {
    /// The MTU of the vif's switch port, for a frontend with or without
    /// `feature-sg`.
    pub fn port_mtu(&self, sg: bool) -> u16 {
        let mtu = self.mtu.unwrap_or(DEFAULT_MTU);
        if sg { mtu } else { mtu.min(DEFAULT_MTU) }
    }
}

/// Parses an `mtu` key: decimal in `MIN_MTU..=MAX_MTU`, a trailing NUL
/// tolerated.
pub fn parse_mtu(v: &[u8]) -> Option<u16> {
    let s = core::str::from_utf8(v).ok()?.trim_end_matches('\0');
    if s.is_empty() || s.len() > 5 || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse::<u16>().ok().filter(|m| (MIN_MTU..=MAX_MTU).contains(m))
}

impl Default for VifParams {
    fn default() -> Self {
        Self { rate: None, ip: None, bridge: String::from(DEFAULT_SEGMENT), mtu: None }
    }
}

/// Asks for the keys of backend directory `be`.
pub fn request(b: &mut Batch, xs: &mut Client, be: &str) -> Result<(), XsError> {
    for k in KEYS {
        b.read(xs, &format!("{be}/{k}"))?;
    }
    Ok(())
}

/// The `rate` in a batch that read it: absent is unlimited, malformed is
/// unlimited with a warning.
pub fn rate(b: &Batch, be: &str) -> Result<Option<Rate>, XsError> {
    let Some(v) = b.value(&format!("{be}/rate"))? else { return Ok(None) };
    Ok(match parse_rate(v) {
        Ok(r) => Some(r),
        Err(e) => {
            let why = match e {
                RateError::Malformed => "not <bytes>,<usec>",
                RateError::Zero => "zero bytes or interval",
            };
            warn!("{be}: ignoring rate '{}' ({why}); traffic unlimited", printable(v));
            None
        }
    })
}

/// The parameters in a batch that read `KEYS`, for a vif whose MAC is
/// `mac`; `Ok(Err(why))` refuses the vif.
pub fn read(b: &Batch, be: &str, mac: [u8; 6]) -> Result<Result<VifParams, String>, XsError> {
    let rate = rate(b, be)?;
    let ip = match b.value(&format!("{be}/ip"))? {
        None => None,
        Some(v) => match IpFilter::parse(v, mac) {
            Ok(f) => Some(f),
            Err(IpKeyError::Malformed) => return Ok(Err(format!("malformed ip '{}'", printable(v)))),
            Err(IpKeyError::BadEntry(e)) => {
                return Ok(Err(format!("malformed ip entry '{}'", printable(e.as_bytes()))));
            }
        },
    };
    let bridge = match b.value(&format!("{be}/bridge"))? {
        None => String::from(DEFAULT_SEGMENT),
        Some(v) => {
            let name = core::str::from_utf8(v).unwrap_or("").trim_end_matches('\0');
            if !valid_name(name) {
                return Ok(Err(format!("bad bridge name '{}'", printable(v))));
            }
            String::from(name)
        }
    };
    let mtu = match b.value(&format!("{be}/mtu"))? {
        None => None,
        Some(v) => {
            let m = parse_mtu(v);
            if m.is_none() {
                warn!("{be}: ignoring mtu '{}' (not {MIN_MTU}..{MAX_MTU}); using {DEFAULT_MTU}", printable(v));
            }
            m
        }
    };
    Ok(Ok(VifParams { rate, ip, bridge, mtu }))
}

/// A value for a log line: at most 64 bytes, non-printable bytes as `?`.
fn printable(v: &[u8]) -> String {
    v.iter().take(64).map(|&c| if (0x20..0x7f).contains(&c) { char::from(c) } else { '?' }).collect()
}

/// One line for the log: `rate 10.0 Mb/s (62500 B/50000 us) ip 10.0.0.2 segment red`.
pub fn describe(p: &VifParams) -> String {
    use core::fmt::Write;
    let mut s = String::new();
    match p.rate {
        Some(r) => {
            let bps = r.bits_per_sec();
            let _ = write!(
                s,
                "rate {}.{:03} Mb/s ({} B/{} us)",
                bps / 1_000_000,
                bps % 1_000_000 / 1000,
                r.bytes,
                r.interval_us
            );
        }
        None => s.push_str("rate unlimited"),
    }
    match &p.ip {
        Some(f) => {
            s.push_str(" ip");
            for n in &f.v4 {
                let a = n.addr;
                let _ = write!(s, " {}.{}.{}.{}/{}", a[0], a[1], a[2], a[3], n.prefix);
            }
            for n in &f.v6 {
                let _ = write!(s, " {}/{}", core::net::Ipv6Addr::from(n.addr), n.prefix);
            }
        }
        None => s.push_str(" ip any"),
    }
    let _ = write!(s, " segment {} mtu {}", p.bridge, p.mtu.unwrap_or(DEFAULT_MTU));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mtu_keys_are_checked_and_bounded_by_sg() {
        assert_eq!(parse_mtu(b"9000"), Some(9000));
        assert_eq!(parse_mtu(b"1500\0"), Some(1500));
        assert_eq!(parse_mtu(b"68"), Some(68));
        assert_eq!(parse_mtu(b"65517"), Some(65517));
        for bad in [&b""[..], b"67", b"65518", b"99999", b"123456", b"-1", b" 9000", b"9000 ", b"0x10", b"\xff"] {
            assert_eq!(parse_mtu(bad), None, "{bad:?}");
        }
        let p = VifParams { mtu: Some(9000), ..VifParams::default() };
        assert_eq!(p.port_mtu(true), 9000);
        assert_eq!(p.port_mtu(false), 1500);
        assert_eq!(VifParams::default().port_mtu(true), 1500);
        let small = VifParams { mtu: Some(1280), ..VifParams::default() };
        assert_eq!(small.port_mtu(false), 1280);
    }
}
