//! Transmit credit: the `rate` a toolstack sets on a vif (backend key
//! `rate = "<bytes>,<usec>"`, written by libxl from `rate=10Mb/s@50ms`),
//! enforced on what the guest sends the way Linux netback does
//! (drivers/net/xen-netback/netback.c, `tx_credit_exceeded` and
//! `tx_add_credit`; our own code):
//!
//! * every interval adds `bytes` of credit, and credit accumulates up to
//!   a burst of `max(4 × bytes, 128 KiB)`, so that a 64 KiB GSO packet
//!   always fits;
//! * a packet is charged its whole size when it is taken off the ring;
//! * a packet larger than the credit left stays on the ring (it is not
//!   dropped) until the next refill, whose time is the deadline the caller
//!   must wake up at: nothing is polled before it.
//!
//! Differences from Linux: time is in nanoseconds rather than jiffies, so
//! intervals below a jiffy are honoured; the credit is per vif, shared by
//! its queues (Linux gives every queue the whole rate), so a multi-queue
//! guest gets the rate it was configured with; and the intervals keep
//! their phase. Linux restarts the interval at the moment it next looks,
//! so every look later than a refill time (a late wake-up, or a sender
//! whose ring was empty at that moment) loses the time since that refill;
//! here each whole interval that has passed adds its credit, so a late
//! poll sends what an on-time one would have. For the same reason the
//! burst is four intervals rather than Linux's one: on a busy host the
//! backend's vCPU can run tens of milliseconds after a refill (measured
//! on the nested Xen: 66 ms late on average at 50 ms intervals), and a
//! one-interval cap throws that credit away for good, holding a 10 Mb/s
//! guest to under 8. Over any time T a vif still sends at most
//! `rate × T + burst`.
#![forbid(unsafe_code)]

/// Credit may accumulate up to this many bytes (or [`BURST_INTERVALS`]
/// intervals' worth, if larger): enough for the largest packet.
pub const MAX_BURST: u64 = 131_072;
/// Intervals of credit that may accumulate.
pub const BURST_INTERVALS: u64 = 4;

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
    /// Waits for a refill that ended (a packet went on after one).
    waits: u64,
    /// Sum over those waits of how late the caller came back after the
    /// refill time: how far behind its deadlines the poller runs.
    late_ns: u64,
    /// Credit a waiting packet's vif lost to the burst cap (polled more
    /// than the burst's worth of intervals late).
    lost: u64,
}

impl Credit {
    /// A credit with `rate` (None: unlimited), full for one interval.
    pub fn new(rate: Option<Rate>, now: u64) -> Self {
        Self { rate, remaining: rate.map_or(0, |r| r.bytes), window_start: now, ..Self::default() }
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

    /// Finished waits, how late (in total, ns) their callers came back,
    /// and the credit (bytes) lost to the burst cap while packets waited.
    pub fn waits(&self) -> (u64, u64, u64) {
        (self.waits, self.late_ns, self.lost)
    }

    /// Adds the credit of every whole interval since `window_start`, and
    /// moves the window by as many intervals: the phase is kept. Returns
    /// the credit the cap cut off.
    fn catch_up(&mut self, r: Rate, now: u64) -> u64 {
        let iv = r.interval_ns().max(1);
        let elapsed = now.saturating_sub(self.window_start);
        if elapsed < iv {
            return 0;
        }
        let k = elapsed / iv;
        let cap = r.bytes.saturating_mul(BURST_INTERVALS).max(MAX_BURST);
        let full = self.remaining.saturating_add(r.bytes.saturating_mul(k));
        self.remaining = full.min(cap);
        self.window_start = self.window_start.saturating_add(k.saturating_mul(iv));
        full - self.remaining
    }

    /// Charges a packet of `size` bytes at `now`. `Err(t)`: not enough
    /// credit; leave the packet on the ring and come back at `t`.
    pub fn take(&mut self, size: u64, now: u64) -> Result<(), u64> {
        let Some(r) = self.rate else { return Ok(()) };
        let waited = self.waiting_until.is_some();
        if let Some(t) = self.waiting_until {
            if now < t {
                return Err(t);
            }
            self.waiting_until = None;
            self.waits += 1;
            self.late_ns = self.late_ns.saturating_add(now - t);
        }
        let cut = self.catch_up(r, now);
        if waited {
            self.lost = self.lost.saturating_add(cut);
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

    /// Sends at 10 Mb/s as libxl writes it for 20 s, the poller coming
    /// back `late` after every refill it was told to wait for, and the
    /// sender's ring empty for `idle` after each refill; returns Mb/s.
    fn sent_mbit(late: u64, idle: u64) -> f64 {
        let r = parse_rate(b"62500,50000").unwrap();
        let mut c = Credit::new(Some(r), 0);
        let (mut sent, mut now) = (0u64, 0u64);
        while now < 20_000 * MS {
            match c.take(1514, now) {
                Ok(()) => sent += 1514,
                Err(t) => now = t + late + idle,
            }
        }
        sent as f64 * 8.0 / (now as f64 / 1e9) / 1e6
    }

    #[test]
    fn late_pollers_and_idle_senders_keep_the_rate() {
        // On time; 30 ms late (under an interval); 65 and 140 ms late (over
        // one and two); a ring that is empty for 20 ms after each refill.
        for (late, idle) in [(0, 0), (30 * MS, 0), (65 * MS, 0), (140 * MS, 0), (0, 20 * MS)] {
            let mbit = sent_mbit(late, idle);
            assert!((9.7..=10.3).contains(&mbit), "late {late} idle {idle}: {mbit} Mb/s");
        }
        let mut c = Credit::new(Some(parse_rate(b"62500,50000").unwrap()), 0);
        assert!(c.take(200_000, 0).is_err());
        assert_eq!(c.take(1, 70 * MS), Ok(()));
        assert_eq!(c.waits(), (1, 20 * MS, 0));
        // Polled far later than the burst lasts: the excess is counted.
        assert!(c.take(400_000, 70 * MS).is_err());
        assert!(c.take(1, 1_000 * MS).is_ok());
        let (_, _, lost) = c.waits();
        assert!(lost > 0 && lost < 19 * 62_500, "{lost}");
    }

    #[test]
    fn idle_time_is_capped_at_the_burst() {
        let r = Rate { bytes: 1000, interval_us: 1000 };
        let mut c = Credit::new(Some(r), 0);
        // An hour idle buys one burst, not an hour of credit.
        let mut sent = 0;
        while c.take(1000, 3_600_000 * MS).is_ok() {
            sent += 1000;
        }
        assert_eq!(sent, MAX_BURST / 1000 * 1000);
        // A large rate's burst is four intervals.
        let mut c = Credit::new(Some(Rate { bytes: 100_000, interval_us: 1000 }), 0);
        let mut sent = 0;
        while c.take(1000, 3_600_000 * MS).is_ok() {
            sent += 1000;
        }
        assert_eq!(sent, 400_000);
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
