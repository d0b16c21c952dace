//! A group of xenstore requests sent together without waiting. The requests
//! go out on one turn of the main loop and their replies are collected on
//! later turns; the step that needs them runs once all are in. xenstored
//! answers in order, so a batch costs one round trip however many requests
//! it holds.
#![forbid(unsafe_code)]

use super::vif::parse_u32;
use crate::xen::xenstore::client::DEFAULT_TIMEOUT_NS;
use crate::xen::xenstore::{Client, XsError};
use alloc::string::String;
use alloc::vec::Vec;

#[derive(Debug, Clone)]
struct Item {
    /// The path asked about; `get` finds the reply by it.
    path: String,
    /// The request id while the reply is out.
    id: Option<u32>,
    result: Option<Result<Vec<u8>, XsError>>,
}

/// Requests in flight and the replies collected so far.
#[derive(Debug, Clone)]
pub struct Batch {
    items: Vec<Item>,
    deadline: u64,
}

impl Batch {
    /// An empty batch; it expires `DEFAULT_TIMEOUT_NS` after `now`.
    pub fn new(now: u64) -> Self {
        Self { items: Vec::new(), deadline: now.saturating_add(DEFAULT_TIMEOUT_NS) }
    }

    /// A batch filled by `build`; when a request cannot be sent, the ones
    /// already sent are cancelled and the error returned.
    pub fn start(
        xs: &mut Client,
        now: u64,
        build: impl FnOnce(&mut Self, &mut Client) -> Result<(), XsError>,
    ) -> Result<Self, XsError> {
        let mut b = Self::new(now);
        match build(&mut b, xs) {
            Ok(()) => Ok(b),
            Err(e) => {
                b.cancel(xs);
                Err(e)
            }
        }
    }

    fn push(&mut self, path: &str, id: Result<u32, XsError>) -> Result<(), XsError> {
        let id = id?;
        self.items.push(Item { path: String::from(path), id: Some(id), result: None });
        Ok(())
    }

    /// Asks for the value at `path`.
    pub fn read(&mut self, xs: &mut Client, path: &str) -> Result<(), XsError> {
        self.push(path, xs.submit_read(path))
    }

    /// Asks for the children of `path`.
    pub fn directory(&mut self, xs: &mut Client, path: &str) -> Result<(), XsError> {
        self.push(path, xs.submit_directory(path))
    }

    /// Registers a watch on `path`.
    pub fn watch(&mut self, xs: &mut Client, path: &str, token: &str) -> Result<(), XsError> {
        self.push(path, xs.submit_watch(path, token))
    }

    /// Collects the replies that arrived; true once all are in.
    pub fn poll(&mut self, xs: &mut Client) -> bool {
        for item in &mut self.items {
            if let Some(id) = item.id
                && let Some(r) = xs.poll_reply(id)
            {
                item.id = None;
                item.result = Some(r);
            }
        }
        self.items.iter().all(|i| i.id.is_none())
    }

    /// True when the replies are overdue.
    pub fn expired(&self, now: u64) -> bool {
        now > self.deadline
    }

    /// Gives up on the replies still out. Every batch that is dropped
    /// before `poll` returned true must be cancelled, or the client keeps
    /// waiting for it.
    pub fn cancel(&mut self, xs: &mut Client) {
        for item in &mut self.items {
            if let Some(id) = item.id.take() {
                xs.cancel(id);
            }
        }
    }

    fn result(&self, path: &str) -> Result<&Result<Vec<u8>, XsError>, XsError> {
        self.items
            .iter()
            .find(|i| i.path == path)
            .and_then(|i| i.result.as_ref())
            .ok_or(XsError::BadRequest("no reply for this path in the batch"))
    }

    /// The value at `path`; `None` when the node does not exist.
    pub fn value(&self, path: &str) -> Result<Option<&[u8]>, XsError> {
        match self.result(path)? {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_enoent() => Ok(None),
            Err(e) => Err(e.clone()),
        }
    }

    /// The number at `path`; `None` when absent or malformed.
    pub fn number(&self, path: &str) -> Result<Option<u32>, XsError> {
        Ok(self.value(path)?.and_then(parse_u32))
    }

    /// True when `path` holds 1.
    pub fn flag(&self, path: &str) -> Result<bool, XsError> {
        Ok(self.number(path)? == Some(1))
    }

    /// The children listed for `path`, at most `max`; `None` when the node
    /// does not exist.
    pub fn children(&self, path: &str, max: usize) -> Result<Option<Vec<String>>, XsError> {
        Ok(self.value(path)?.map(|v| {
            v.split(|&b| b == 0)
                .filter(|c| !c.is_empty())
                .take(max)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect()
        }))
    }

    /// The reply to a request that is not a read (a watch registration):
    /// `Ok` or the server's error.
    pub fn status(&self, path: &str) -> Result<(), XsError> {
        self.result(path)?.as_ref().map(|_| ()).map_err(Clone::clone)
    }
}
