//! Seams between the hardware-free core and the platform. The core is
//! generic over these traits; host tests plug fakes in.
#![forbid(unsafe_code)]

/// A monotonic clock.
pub trait Clock {
    /// Nanoseconds since boot.
    fn now_ns(&self) -> u64;
}
