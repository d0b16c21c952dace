//! A token bucket: at most `burst` events at once, refilled at `per_sec`
//! events per second. Used to bound log output, so that a guest which makes
//! xvif log (by connecting and disconnecting in a loop, say) cannot make the
//! main loop spend its time writing lines.
#![forbid(unsafe_code)]

/// A token bucket over a nanosecond clock supplied by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenBucket {
    burst: u32,
    per_sec: u32,
    /// Tokens in milli-tokens, so slow refill rates still accumulate.
    milli: u64,
    last_ns: u64,
    /// Events refused since the last one that was allowed.
    suppressed: u64,
}

impl TokenBucket {
    /// A full bucket.
    pub const fn new(burst: u32, per_sec: u32) -> Self {
        Self { burst, per_sec, milli: burst as u64 * 1000, last_ns: 0, suppressed: 0 }
    }

    fn refill(&mut self, now_ns: u64) {
        let elapsed = now_ns.saturating_sub(self.last_ns);
        // A clock that goes backwards adds nothing and moves `last_ns` back,
        // so the next refill is measured from the earlier time again.
        self.last_ns = now_ns;
        // milli-tokens = elapsed_ns * per_sec / 1e6, computed in u128 so a
        // long pause cannot overflow.
        let add = (u128::from(elapsed) * u128::from(self.per_sec) / 1_000_000).min(u128::from(u64::MAX)) as u64;
        self.milli = self.milli.saturating_add(add).min(u64::from(self.burst) * 1000);
    }

    /// Takes one token if there is one. `Some(n)`: allowed, and `n` events
    /// were refused since the previous allowed one (so the caller can say
    /// so); `None`: refused and counted.
    pub fn take(&mut self, now_ns: u64) -> Option<u64> {
        self.refill(now_ns);
        if self.milli >= 1000 {
            self.milli -= 1000;
            Some(core::mem::take(&mut self.suppressed))
        } else {
            self.suppressed = self.suppressed.saturating_add(1);
            None
        }
    }

    /// Events refused since the last allowed one.
    pub fn suppressed(&self) -> u64 {
        self.suppressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn burst_then_refill_rate() {
        let mut b = TokenBucket::new(5, 10);
        for _ in 0..5 {
            assert_eq!(b.take(0), Some(0));
        }
        assert_eq!(b.take(0), None);
        assert_eq!(b.take(50 * MS), None, "half a token after 50 ms at 10/s");
        assert_eq!(b.take(100 * MS), Some(2), "one token after 100 ms; two refused before it");
        assert_eq!(b.take(100 * MS), None);
        // A long pause refills to the burst, not beyond.
        for _ in 0..5 {
            assert!(b.take(3_600_000 * MS).is_some());
        }
        assert_eq!(b.take(3_600_000 * MS), None);
    }

    #[test]
    fn a_flood_gets_the_rate_and_no_more() {
        let mut b = TokenBucket::new(20, 50);
        let mut allowed = 0;
        // 10 s of one attempt per 100 µs: 100,000 attempts.
        for i in 0..100_000u64 {
            if b.take(i * 100_000).is_some() {
                allowed += 1;
            }
        }
        assert!((20 + 490..=20 + 500).contains(&allowed), "{allowed}");
    }

    #[test]
    fn clock_going_backwards_adds_nothing() {
        let mut b = TokenBucket::new(1, 1);
        assert!(b.take(10_000 * MS).is_some());
        assert!(b.take(0).is_none());
        assert!(b.take(500 * MS).is_none());
        assert!(b.take(1_000 * MS).is_some());
        assert_eq!(b.suppressed(), 0);
    }
}
