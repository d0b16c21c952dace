//! Errors of the xenstore client.
#![forbid(unsafe_code)]

use super::wire::MsgType;
use crate::xen::ring::RingCorrupt;
use alloc::string::String;
use core::fmt;

/// xenstore errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XsError {
    /// The server answered XS_ERROR with this name (ENOENT, EACCES, EAGAIN, ...).
    Server(String),
    /// No reply within the deadline.
    Timeout {
        /// Request type.
        ty: MsgType,
    },
    /// The reply had the wrong type.
    UnexpectedReply {
        /// What we sent.
        sent: MsgType,
        /// What came back.
        got: MsgType,
    },
    /// A reply payload that does not parse.
    BadReply(&'static str),
    /// Ring indices or a header the server corrupted; the connection is dead.
    Protocol(String),
    /// Our own request is too long or malformed.
    BadRequest(&'static str),
}

impl XsError {
    /// True for the server's ENOENT.
    pub fn is_enoent(&self) -> bool {
        matches!(self, Self::Server(s) if s == "ENOENT")
    }

    /// True for EAGAIN (a transaction must be retried).
    pub fn is_eagain(&self) -> bool {
        matches!(self, Self::Server(s) if s == "EAGAIN")
    }
}

impl fmt::Display for XsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Server(e) => write!(f, "xenstore error {e}"),
            Self::Timeout { ty } => write!(f, "xenstore timeout waiting for {ty:?}"),
            Self::UnexpectedReply { sent, got } => write!(f, "xenstore replied {got:?} to {sent:?}"),
            Self::BadReply(w) => write!(f, "malformed xenstore reply: {w}"),
            Self::Protocol(w) => write!(f, "xenstore protocol failure: {w}"),
            Self::BadRequest(w) => write!(f, "bad xenstore request: {w}"),
        }
    }
}

impl From<RingCorrupt> for XsError {
    fn from(e: RingCorrupt) -> Self {
        Self::Protocol(alloc::format!("ring indices cons={} prod={} size={}", e.cons, e.prod, e.size))
    }
}
