//! xenstore transactions (docs/misc/xenstore.txt): start, end, and a
//! bounded retry on EAGAIN. Blocking: for start-up and tools, not for the
//! main loop.
#![forbid(unsafe_code)]

use super::client::{Client, MAX_TX_RETRIES, XsIo};
use super::error::XsError;
use super::wire::{self, MsgType};

impl Client {
    /// Starts a transaction; returns its id.
    pub fn transaction_start(&mut self, io: &dyn XsIo) -> Result<u32, XsError> {
        let p = self.call(io, MsgType::TransactionStart, 0, &[b"\0"])?;
        let s = wire::split_strings(&p).into_iter().next().ok_or(XsError::BadReply("empty transaction id"))?;
        match s.parse::<u32>() {
            Ok(id) if id != 0 => Ok(id),
            _ => Err(XsError::BadReply("bad transaction id")),
        }
    }

    /// Ends a transaction (commit or abort).
    pub fn transaction_end(&mut self, io: &dyn XsIo, tx: u32, commit: bool) -> Result<(), XsError> {
        let arg: &[u8] = if commit { b"T\0" } else { b"F\0" };
        Self::expect_ok(self.call(io, MsgType::TransactionEnd, tx, &[arg])?)
    }

    /// Runs `body` in a transaction, retrying on EAGAIN (bounded).
    pub fn transaction<T>(
        &mut self,
        io: &dyn XsIo,
        mut body: impl FnMut(&mut Self, u32) -> Result<T, XsError>,
    ) -> Result<T, XsError> {
        let mut last = XsError::Server("EAGAIN".into());
        for _ in 0..MAX_TX_RETRIES {
            let tx = self.transaction_start(io)?;
            let value = match body(self, tx) {
                Ok(v) => v,
                Err(e) => {
                    let _ = self.transaction_end(io, tx, false);
                    return Err(e);
                }
            };
            match self.transaction_end(io, tx, true) {
                Ok(()) => return Ok(value),
                Err(e) if e.is_eagain() => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }
}
