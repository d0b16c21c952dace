//! What the toolstack configured for a vif in its backend directory besides
//! the MAC, as libxl writes it (tools/libs/light/libxl_nic.c,
//! `libxl__set_xenstore_nic`):
//!
//! * `rate = "<bytes per interval>,<interval in µs>"`, only when the vif has
//!   `rate=`; watched while the vif lives, as Linux netback does;
//! * `ip = "<addr> <addr>..."`, only when the vif has `ip=`, handed
//!   unchanged from the xl config (whitespace-separated, as the
//!   `vif-common.sh` hotplug script reads it);
//! * `bridge`, always (libxl's default is `xenbr0`).
//!
//! Every value is hostile. A malformed `rate` leaves the vif unlimited with
//! a warning, as Linux netback does (`xen_net_read_rate`). A malformed `ip`
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
pub const KEYS: &[&str] = &["rate", "ip", "bridge"];

/// What the toolstack configured for one vif.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VifParams {
    /// Transmit rate limit (`rate`); None: unlimited.
    pub rate: Option<Rate>,
    /// Addresses the guest may send from (`ip`); None: any.
    pub ip: Option<IpFilter>,
    /// The switch segment (`bridge`).
    pub bridge: String,
}

impl Default for VifParams {
    fn default() -> Self {
        Self { rate: None, ip: None, bridge: String::from(DEFAULT_SEGMENT) }
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
    Ok(Ok(VifParams { rate, ip, bridge }))
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
    let _ = write!(s, " segment {}", p.bridge);
    s
}
