//! `enum xenbus_state` (xen/include/public/io/xenbus.h).
#![forbid(unsafe_code)]

/// A xenbus device state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XenbusState {
    /// 0.
    Unknown,
    /// 1.
    Initialising,
    /// 2: waiting for the peer's details.
    InitWait,
    /// 3.
    Initialised,
    /// 4.
    Connected,
    /// 5.
    Closing,
    /// 6.
    Closed,
    /// 7.
    Reconfiguring,
    /// 8.
    Reconfigured,
    /// Anything else a peer wrote.
    Invalid(u32),
}

impl XenbusState {
    /// Parses the decimal text of a `state` node; garbage is `Invalid`.
    pub fn parse(text: &[u8]) -> Self {
        let t = core::str::from_utf8(text).unwrap_or("").trim_end_matches('\0').trim();
        match t.parse::<u32>() {
            Ok(0) => Self::Unknown,
            Ok(1) => Self::Initialising,
            Ok(2) => Self::InitWait,
            Ok(3) => Self::Initialised,
            Ok(4) => Self::Connected,
            Ok(5) => Self::Closing,
            Ok(6) => Self::Closed,
            Ok(7) => Self::Reconfiguring,
            Ok(8) => Self::Reconfigured,
            Ok(n) => Self::Invalid(n),
            Err(_) => Self::Invalid(u32::MAX),
        }
    }

    /// Wire value.
    pub fn value(self) -> u32 {
        match self {
            Self::Unknown => 0,
            Self::Initialising => 1,
            Self::InitWait => 2,
            Self::Initialised => 3,
            Self::Connected => 4,
            Self::Closing => 5,
            Self::Closed => 6,
            Self::Reconfiguring => 7,
            Self::Reconfigured => 8,
            Self::Invalid(n) => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_roundtrip_and_garbage() {
        for v in 0..9u32 {
            assert_eq!(XenbusState::parse(v.to_string().as_bytes()).value(), v);
        }
        assert_eq!(XenbusState::parse(b"4\0"), XenbusState::Connected);
        assert_eq!(XenbusState::parse(b"99"), XenbusState::Invalid(99));
        assert_eq!(XenbusState::parse(b"x"), XenbusState::Invalid(u32::MAX));
        assert_eq!(XenbusState::parse(b""), XenbusState::Invalid(u32::MAX));
    }
}
