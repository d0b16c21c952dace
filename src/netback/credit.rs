//! Transmit credit: the `rate` a toolstack sets on a vif (backend key
//! `rate = "<bytes>,<usec>"`, written by libxl from `rate=10Mb/s@50ms`),
//! enforced on what the guest sends the way Linux netback does
//! (drivers/net/xen-netback/netback.c, `tx_credit_exceeded` and
//! `tx_add_credit`; our own code):
//!
//! * every interval adds `bytes` of credit, and credit accumulates up to
//!   `max(bytes, 128 KiB)`, so that a 64 KiB GSO packet always fits;
//! * a packet is charged its whole size when it is taken off the ring;
//! * a packet larger than the credit left stays on the ring (it is not
//!   dropped) until the next refill, whose time is the deadline the caller
//!   must wake up at: nothing is polled before it.
//!
//! Differences from Linux: time is in nanoseconds rather than jiffies, so
//! intervals below a jiffy are honoured; and the credit is per vif, shared
//! by its queues (Linux gives every queue the whole rate), so a
//! multi-queue guest gets the rate it was configured with.
#![forbid(unsafe_code)]

/// Credit may accumulate up to this many bytes (or one interval's worth,
/// if larger): enough for the largest packet.
pub const MAX_BURST: u64 = 131_072;

/// A rate: `bytes` per `interval_us` microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Bytes per interval (at least 1).
    pub bytes: u64,
    /// Interval in microseconds (at least 1).
    pub interval_us: u32,
}

impl Rate {
    /// Bits per second (for logs), saturating.
    pub fn bits_per_sec(&self) -> u64 {
        let per_s = u128::from(self.bytes) * 8 * 1_000_000 / u128::from(self.interval_us.max(1));
        u64::try_from(per_s).unwrap_or(u64::MAX)
    }

    fn interval_ns(&self) -> u64 {
        u64::from(self.interval_us) * 1000
    }
}

/// Why a `rate` value was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateError {
    /// Not `<digits>,<digits>`, or a number out of range.
    Malformed,
    /// Zero bytes or a zero interval: no meaningful limit.
    Zero,
}

fn digits(s: &str, max_len: usize) -> Option<&str> {
    (!s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
}

/// Parses a `rate` key: `<bytes per interval>,<interval in µs>` in decimal
/// (libxl writes `%PRIu64,%PRIu32`), a trailing NUL tolerated.
pub fn parse_rate(v: &[u8]) -> Result<Rate, RateError> {
    let s = core::str::from_utf8(v).map_err(|_| RateError::Malformed)?.trim_end_matches('\0');
    let (b, u) = s.split_once(',').ok_or(RateError::Malformed)?;
    let bytes: u64 = digits(b, 20).and_then(|b| b.parse().ok()).ok_or(RateError::Malformed)?;
    let interval_us: u32 = digits(u, 10).and_then(|u| u.parse().ok()).ok_or(RateError::Malformed)?;
    if bytes == 0 || interval_us == 0 {
        return Err(RateError::Zero);
    }
    Ok(Rate { bytes, interval_us })
}

/// The credit of one vif.
#[derive(Debug, Clone, Copy, Default)]
pub struct Credit {
    rate: Option<Rate>,
    /// Bytes that may be sent now.
    remaining: u64,
    /// Start of the current interval.
    window_start: u64,
    /// Set while a packet waits for credit: the refill time.
    waiting_until: Option<u64>,
}

impl Credit {
    /// A credit with `rate` (None: unlimited), full for one interval.
    pub fn new(rate: Option<Rate>, now: u64) -> Self {
        Self { rate, remaining: rate.map_or(0, |r| r.bytes), window_start: now, waiting_until: None }
    }

    /// The rate in force.
    pub fn rate(&self) -> Option<Rate> {
        self.rate
    }

    /// Changes the rate (the toolstack rewrote `rate`). Credit above one new
    /// interval's worth is cut back, unless a packet is already waiting
    /// for its refill.
    pub fn set_rate(&mut self, rate: Option<Rate>, now: u64) {
        match (self.rate, rate) {
            (None, Some(r)) => *self = Self::new(Some(r), now),
            (_, None) => *self = Self::new(None, now),
            (Some(_), Some(r)) => {
                self.rate = Some(r);
                if self.waiting_until.is_none() {
                    self.remaining = self.remaining.min(r.bytes);
                }
            }
        }
    }

    /// When a waiting packet gets its credit: the caller's wake-up time.
    pub fn waiting_until(&self) -> Option<u64> {
        self.waiting_until
    }

    /// Bytes that may be sent now (unlimited: `u64::MAX`).
    pub fn remaining(&self) -> u64 {
        if self.rate.is_some() { self.remaining } else { u64::MAX }
    }

    fn refill(&mut self, r: Rate) {
        let cap = r.bytes.max(MAX_BURST);
        self.remaining = self.remaining.saturating_add(r.bytes).min(cap);
    }

    /// Charges a packet of `size` bytes at `now`. `Err(t)`: not enough
    /// credit; leave the packet on the ring and come back at `t`.
    pub fn take(&mut self, size: u64, now: u64) -> Result<(), u64> {
        let Some(r) = self.rate else { return Ok(()) };
        if let Some(t) = self.waiting_until {
            if now < t {
                return Err(t);
            }
            // The refill this packet waited for.
            self.waiting_until = None;
            self.window_start = t;
            self.refill(r);
        }
        let next = self.window_start.saturating_add(r.interval_ns());
        if now >= next {
            self.window_start = now;
            self.refill(r);
        }
        if size > self.remaining {
            let t = self.window_start.saturating_add(r.interval_ns());
            self.waiting_until = Some(t);
            return Err(t);
        }
        self.remaining -= size;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn callers_off_the_refill_times_lose_no_credit() {
        // 10 Mb/s as libxl writes it; the sender comes every 37 ms (as a TCP
        // sender paced by its ACKs would), never at the refill time, and
        // sends whatever the credit allows.
        let r = parse_rate(b"62500,50000").unwrap();
        let mut c = Credit::new(Some(r), 0);
        let mut sent = 0u64;
        let mut now = 0u64;
        while now < 20_000 * MS {
            while c.take(1514, now).is_ok() {
                sent += 1514;
            }
            now += 37 * MS;
        }
        let mbit = sent as f64 * 8.0 / 20.0 / 1e6;
        assert!((9.8..=10.2).contains(&mbit), "{mbit} Mb/s");
    }

    #[test]
    fn parses_what_libxl_writes_and_nothing_else() {
        assert_eq!(parse_rate(b"62500,50000"), Ok(Rate { bytes: 62500, interval_us: 50000 }));
        assert_eq!(parse_rate(b"62500,50000\0"), Ok(Rate { bytes: 62500, interval_us: 50000 }));
        assert_eq!(parse_rate(b"18446744073709551615,4294967295").map(|r| r.bytes), Ok(u64::MAX));
        for bad in [&b""[..], b"1", b"1,", b",1", b"1,2,3", b"-1,5", b"1 ,5", b"0x10,5", b"1,4294967296", b"\xff,1"] {
            assert_eq!(parse_rate(bad), Err(RateError::Malformed), "{bad:?}");
        }
        assert_eq!(parse_rate(b"0,50000"), Err(RateError::Zero));
        assert_eq!(parse_rate(b"100,0"), Err(RateError::Zero));
        assert_eq!(Rate { bytes: 62500, interval_us: 50000 }.bits_per_sec(), 10_000_000);
    }

    #[test]
    fn waits_for_the_refill_and_never_loses_a_packet() {
        let r = Rate { bytes: 3000, interval_us: 10_000 };
        let mut c = Credit::new(Some(r), 0);
        assert_eq!(c.take(1500, 0), Ok(()));
        assert_eq!(c.take(1500, 1), Ok(()));
        assert_eq!(c.take(1500, 2), Err(10 * MS));
        assert_eq!(c.take(1500, 5 * MS), Err(10 * MS), "still waiting");
        assert_eq!(c.waiting_until(), Some(10 * MS));
        assert_eq!(c.take(1500, 10 * MS), Ok(()));
        assert_eq!(c.waiting_until(), None);
        assert_eq!(c.take(1500, 10 * MS), Ok(()));
        assert_eq!(c.take(1, 10 * MS), Err(20 * MS));
    }

    #[test]
    fn big_packets_fit_through_the_burst() {
        let mut c = Credit::new(Some(Rate { bytes: 1000, interval_us: 1000 }), 0);
        let mut t = 0;
        let mut waits = 0;
        while let Err(next) = c.take(65_535, t) {
            t = next;
            waits += 1;
            assert!(waits < 100);
        }
        assert!((65 * MS..=66 * MS).contains(&t), "{t}");
    }

    #[test]
    fn unlimited_and_rate_changes() {
        let mut c = Credit::new(None, 0);
        assert_eq!(c.take(u64::MAX, 0), Ok(()));
        c.set_rate(Some(Rate { bytes: 100, interval_us: 1000 }), 5);
        assert_eq!(c.take(100, 5), Ok(()));
        assert_eq!(c.take(100, 6), Err(5 + MS));
        c.set_rate(Some(Rate { bytes: 50, interval_us: 1000 }), 7);
        assert_eq!(c.waiting_until(), Some(5 + MS), "a waiting packet keeps its refill time");
        c.set_rate(None, 8);
        assert_eq!(c.waiting_until(), None);
        assert_eq!(c.take(1_000_000, 8), Ok(()));
    }
}
