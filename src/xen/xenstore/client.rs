//! xenstore client over the shared ring page.
//!
//! `pump` moves bytes both ways without blocking and sorts what arrives into
//! replies and watch events. Two ways to ask: `call` sends one request and
//! waits (bounded) for its reply, for start-up and tests; `submit` sends one
//! and `poll_reply` collects its answer on a later turn of the main loop,
//! which never waits for xenstored. Replies are validated; the watch-event
//! queue is bounded (XSA-349) and overflow is counted, so that consumers can
//! rescan; events of a watch registered as exact are kept only for the
//! watched node itself, not for the children another domain may create
//! under it. A stream the server corrupted cannot be resynchronised, so the
//! client then refuses further use with a typed error.
#![forbid(unsafe_code)]

pub use super::error::XsError;
use super::wire::{self, HEADER_LEN, Header, MAX_PAYLOAD, MsgType, Perm, RING_SIZE};
use crate::hal::SharedMem;
use crate::xen::ring::ByteRing;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// Request ring (we produce) in `struct xenstore_domain_interface`.
pub const REQ_RING: ByteRing = ByteRing { data: 0, size: RING_SIZE, cons: 2048, prod: 2052 };
/// Response ring (we consume).
pub const RSP_RING: ByteRing = ByteRing { data: 1024, size: RING_SIZE, cons: 2056, prod: 2060 };

/// Watch events kept before the oldest are dropped.
pub const MAX_WATCH_EVENTS: usize = 256;
/// Replies kept for requests nobody is waiting for any more.
const MAX_STRAY_REPLIES: usize = 16;
/// Requests sent without waiting (`write_nowait`, `rm_nowait`) whose reply
/// has not come back yet, at most.
pub const MAX_UNACKED: usize = 256;
/// Requests sent with `submit` whose reply has not been collected, at most.
pub const MAX_TRACKED: usize = 256;
/// Watches registered as exact, at most.
pub const MAX_EXACT_WATCHES: usize = 1024;

/// What the client needs from its environment.
pub trait XsIo {
    /// The ring page.
    fn mem(&self) -> &dyn SharedMem;
    /// Kicks the xenstore event channel.
    fn notify(&self);
    /// Sleeps until the next event or a short timeout.
    fn wait(&self);
    /// Monotonic nanoseconds.
    fn now_ns(&self) -> u64;
}

/// A watch firing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchEvent {
    /// Path that changed.
    pub path: String,
    /// Token given at registration.
    pub token: String,
}

#[derive(Debug, Clone)]
struct Reply {
    req_id: u32,
    ty: MsgType,
    payload: Vec<u8>,
}

/// Client statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XsStats {
    /// Requests sent.
    pub requests: u64,
    /// Watch events received.
    pub events: u64,
    /// Watch events dropped because the queue was full.
    pub events_dropped: u64,
    /// Replies nobody waited for.
    pub stray_replies: u64,
    /// Error replies to requests sent without waiting.
    pub nowait_errors: u64,
    /// Events of an exact watch for another node than the watched one.
    pub events_filtered: u64,
}

/// The client state.
#[derive(Debug, Clone, Default)]
pub struct Client {
    out: VecDeque<u8>,
    inbuf: Vec<u8>,
    next_req: u32,
    replies: VecDeque<Reply>,
    /// Requests whose replies nobody waits for, with the path of those
    /// sent by `write_nowait`/`rm_nowait` (empty for cancelled ones), so a
    /// failure can be reported with its path.
    unacked: BTreeMap<u32, String>,
    /// Requests sent with `submit`, by id: what was sent, and the reply
    /// once it arrived.
    tracked: BTreeMap<u32, (MsgType, Option<Reply>)>,
    /// Exact watches: token to the only path whose events are kept.
    exact: BTreeMap<String, String>,
    events: VecDeque<WatchEvent>,
    dead: Option<String>,
    /// Counters.
    pub stats: XsStats,
}

/// Deadline for one request.
pub const DEFAULT_TIMEOUT_NS: u64 = 10_000_000_000;
/// Transaction attempts before giving up on EAGAIN.
pub const MAX_TX_RETRIES: usize = 16;

fn path_arg(path: &str) -> Result<Vec<u8>, XsError> {
    if path.is_empty() || path.len() > 3072 || path.bytes().any(|b| b == 0) {
        return Err(XsError::BadRequest("path empty, too long or containing NUL"));
    }
    let mut v = Vec::with_capacity(path.len() + 1);
    v.extend_from_slice(path.as_bytes());
    v.push(0);
    Ok(v)
}

impl Client {
    /// A fresh client.
    pub fn new() -> Self {
        Self { next_req: 1, ..Self::default() }
    }

    /// Why the connection is dead, if it is.
    pub fn dead(&self) -> Option<&str> {
        self.dead.as_deref()
    }

    /// Queues a request; returns its id.
    pub fn send(&mut self, ty: MsgType, tx_id: u32, parts: &[&[u8]]) -> Result<u32, XsError> {
        if let Some(d) = &self.dead {
            return Err(XsError::Protocol(d.clone()));
        }
        let req_id = self.next_req;
        self.next_req = self.next_req.wrapping_add(1).max(1);
        let msg = wire::encode(ty, req_id, tx_id, parts).map_err(|_| XsError::BadRequest("payload over 4096 bytes"))?;
        self.out.extend(msg);
        self.stats.requests += 1;
        Ok(req_id)
    }

    fn kill(&mut self, why: String) -> XsError {
        self.dead = Some(why.clone());
        XsError::Protocol(why)
    }

    /// Moves bytes both ways; returns true when anything moved.
    pub fn pump(&mut self, mem: &dyn SharedMem) -> Result<bool, XsError> {
        if let Some(d) = &self.dead {
            return Err(XsError::Protocol(d.clone()));
        }
        let mut moved = false;
        if !self.out.is_empty() {
            let (a, _) = self.out.as_slices();
            let chunk = a.get(..a.len().min(RING_SIZE as usize)).unwrap_or(a);
            let n = REQ_RING.write(mem, chunk).map_err(|e| self.kill(XsError::from(e).to_string()))?;
            self.out.drain(..n);
            moved |= n > 0;
        }
        let mut buf = [0u8; RING_SIZE as usize];
        loop {
            let n = RSP_RING.read(mem, &mut buf).map_err(|e| self.kill(XsError::from(e).to_string()))?;
            if n == 0 {
                break;
            }
            moved = true;
            self.inbuf.extend_from_slice(buf.get(..n).unwrap_or(&[]));
            self.parse_messages()?;
        }
        Ok(moved)
    }

    fn parse_messages(&mut self) -> Result<(), XsError> {
        loop {
            let Some(hb) = self.inbuf.get(..HEADER_LEN) else { return Ok(()) };
            let mut h = [0u8; HEADER_LEN];
            h.copy_from_slice(hb);
            let hdr = match Header::parse(&h) {
                Ok(hdr) => hdr,
                Err(e) => return Err(self.kill(alloc::format!("bad reply header: {e:?}"))),
            };
            let total = HEADER_LEN + hdr.len as usize;
            if self.inbuf.len() < total {
                return Ok(());
            }
            let payload = self.inbuf.get(HEADER_LEN..total).unwrap_or(&[]).to_vec();
            self.inbuf.drain(..total);
            if hdr.ty == MsgType::WatchEvent {
                let parts = wire::split_strings(&payload);
                self.stats.events += 1;
                if let [path, token, ..] = parts.as_slice() {
                    if self.exact.get(token).is_some_and(|p| p != path) {
                        self.stats.events_filtered += 1;
                        continue;
                    }
                    if self.events.len() >= MAX_WATCH_EVENTS {
                        self.events.pop_front();
                        self.stats.events_dropped += 1;
                    }
                    self.events.push_back(WatchEvent { path: path.clone(), token: token.clone() });
                }
                continue;
            }
            if let Some((_, slot @ None)) = self.tracked.get_mut(&hdr.req_id) {
                *slot = Some(Reply { req_id: hdr.req_id, ty: hdr.ty, payload });
                continue;
            }
            if let Some(path) = self.unacked.remove(&hdr.req_id) {
                if hdr.ty == MsgType::Error {
                    self.stats.nowait_errors += 1;
                    if !path.is_empty() {
                        let name = wire::split_strings(&payload).into_iter().next().unwrap_or_default();
                        log::warn!("xenstore: {path}: xenstore error {name} (sent without waiting)");
                    }
                }
                continue;
            }
            if self.replies.len() >= MAX_STRAY_REPLIES {
                self.replies.pop_front();
                self.stats.stray_replies += 1;
            }
            self.replies.push_back(Reply { req_id: hdr.req_id, ty: hdr.ty, payload });
        }
    }

    /// Takes the reply to `req_id` if it arrived.
    fn take_reply(&mut self, req_id: u32) -> Option<Reply> {
        let pos = self.replies.iter().position(|r| r.req_id == req_id)?;
        self.replies.remove(pos)
    }

    /// Next queued watch event.
    pub fn next_event(&mut self) -> Option<WatchEvent> {
        self.events.pop_front()
    }

    /// The payload of a reply to a request of type `sent`, or its error.
    fn decode(sent: MsgType, r: Reply) -> Result<Vec<u8>, XsError> {
        match r.ty {
            MsgType::Error => {
                let name = wire::split_strings(&r.payload).into_iter().next().unwrap_or_default();
                Err(XsError::Server(name))
            }
            got if got == sent => Ok(r.payload),
            got => Err(XsError::UnexpectedReply { sent, got }),
        }
    }

    /// Sends a request and waits for its reply payload.
    pub fn call(&mut self, io: &dyn XsIo, ty: MsgType, tx_id: u32, parts: &[&[u8]]) -> Result<Vec<u8>, XsError> {
        let req_id = self.send(ty, tx_id, parts)?;
        let deadline = io.now_ns().saturating_add(DEFAULT_TIMEOUT_NS);
        loop {
            if self.pump(io.mem())? {
                io.notify();
            }
            if let Some(r) = self.take_reply(req_id) {
                return Self::decode(ty, r);
            }
            if io.now_ns() > deadline {
                return Err(XsError::Timeout { ty });
            }
            io.wait();
        }
    }

    /// Reads a value.
    pub fn read(&mut self, io: &dyn XsIo, tx: u32, path: &str) -> Result<Vec<u8>, XsError> {
        self.call(io, MsgType::Read, tx, &[&path_arg(path)?])
    }

    /// Reads a UTF-8 value.
    pub fn read_str(&mut self, io: &dyn XsIo, tx: u32, path: &str) -> Result<String, XsError> {
        let v = self.read(io, tx, path)?;
        String::from_utf8(v).map_err(|_| XsError::BadReply("value is not UTF-8"))
    }

    /// Reads and parses an unsigned number.
    pub fn read_u64(&mut self, io: &dyn XsIo, tx: u32, path: &str) -> Result<u64, XsError> {
        let s = self.read_str(io, tx, path)?;
        let t = s.trim_end_matches('\0');
        if t.is_empty() || t.len() > 20 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(XsError::BadReply("not an unsigned number"));
        }
        t.parse().map_err(|_| XsError::BadReply("number out of range"))
    }

    pub(super) fn expect_ok(payload: Vec<u8>) -> Result<(), XsError> {
        if payload.starts_with(b"OK") { Ok(()) } else { Err(XsError::BadReply("expected OK")) }
    }

    /// Writes a value.
    pub fn write(&mut self, io: &dyn XsIo, tx: u32, path: &str, value: &[u8]) -> Result<(), XsError> {
        let p = path_arg(path)?;
        Self::expect_ok(self.call(io, MsgType::Write, tx, &[&p, value])?)
    }

    /// Queues a request whose reply nobody waits for (it is dropped when it
    /// arrives; an error reply is counted in `stats.nowait_errors`), and
    /// pushes what fits into the ring. Later `pump` calls push the rest.
    fn send_nowait(&mut self, io: &dyn XsIo, ty: MsgType, parts: &[&[u8]]) -> Result<(), XsError> {
        if self.unacked.len() >= MAX_UNACKED {
            return Err(XsError::BadRequest("too many requests in flight"));
        }
        let id = self.send(ty, 0, parts)?;
        let path = parts.first().map(|p| String::from_utf8_lossy(p.strip_suffix(&[0]).unwrap_or(p)).into_owned());
        self.unacked.insert(id, path.unwrap_or_default());
        if self.pump(io.mem())? {
            io.notify();
        }
        Ok(())
    }

    /// Writes a value without waiting for the reply: for periodic counters,
    /// so that the data path never stalls on xenstored.
    pub fn write_nowait(&mut self, io: &dyn XsIo, path: &str, value: &[u8]) -> Result<(), XsError> {
        self.send_nowait(io, MsgType::Write, &[&path_arg(path)?, value])
    }

    /// Removes a node without waiting for the reply.
    pub fn rm_nowait(&mut self, io: &dyn XsIo, path: &str) -> Result<(), XsError> {
        self.send_nowait(io, MsgType::Rm, &[&path_arg(path)?])
    }

    /// Requests sent without waiting that are not answered yet.
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// Queues a request whose reply `poll_reply` collects later; returns
    /// its id. Nothing is waited for: `flush` (or the loop's `pump`) pushes
    /// it into the ring. At most `MAX_TRACKED` are outstanding; every id
    /// must end in `poll_reply` returning `Some` or in `cancel`.
    pub fn submit(&mut self, ty: MsgType, parts: &[&[u8]]) -> Result<u32, XsError> {
        if self.tracked.len() >= MAX_TRACKED {
            return Err(XsError::BadRequest("too many requests in flight"));
        }
        let id = self.send(ty, 0, parts)?;
        self.tracked.insert(id, (ty, None));
        Ok(id)
    }

    /// `submit` for a read.
    pub fn submit_read(&mut self, path: &str) -> Result<u32, XsError> {
        self.submit(MsgType::Read, &[&path_arg(path)?])
    }

    /// `submit` for a directory listing.
    pub fn submit_directory(&mut self, path: &str) -> Result<u32, XsError> {
        self.submit(MsgType::Directory, &[&path_arg(path)?])
    }

    /// `submit` for a watch registration.
    pub fn submit_watch(&mut self, path: &str, token: &str) -> Result<u32, XsError> {
        self.submit(MsgType::Watch, &[&path_arg(path)?, &path_arg(token)?])
    }

    /// The reply to a submitted request once it arrived (then the id is
    /// forgotten); `None` while it is still out. An id that is not
    /// outstanding answers an error.
    pub fn poll_reply(&mut self, id: u32) -> Option<Result<Vec<u8>, XsError>> {
        match self.tracked.get(&id) {
            None => Some(Err(XsError::BadRequest("no such request in flight"))),
            Some((_, None)) => None,
            Some((_, Some(_))) => {
                let (ty, reply) = self.tracked.remove(&id)?;
                reply.map(|r| Self::decode(ty, r))
            }
        }
    }

    /// Gives up on a submitted request: its reply is dropped when it comes.
    pub fn cancel(&mut self, id: u32) {
        if let Some((_, None)) = self.tracked.remove(&id)
            && self.unacked.len() < MAX_UNACKED
        {
            self.unacked.insert(id, String::new());
        }
    }

    /// Submitted requests not collected yet.
    pub fn tracked(&self) -> usize {
        self.tracked.len()
    }

    /// Pushes queued requests into the ring and collects what arrived;
    /// kicks xenstored when anything moved. Never waits.
    pub fn flush(&mut self, io: &dyn XsIo) -> Result<bool, XsError> {
        let moved = self.pump(io.mem())?;
        if moved {
            io.notify();
        }
        Ok(moved)
    }

    /// Keeps only the events of watch `token` whose path is exactly `path`
    /// (a watch also fires for every node created below its path, which
    /// another domain may do at will). Bounded by `MAX_EXACT_WATCHES`.
    pub fn filter_exact(&mut self, token: &str, path: &str) -> Result<(), XsError> {
        if self.exact.len() >= MAX_EXACT_WATCHES && !self.exact.contains_key(token) {
            return Err(XsError::BadRequest("too many exact watches"));
        }
        self.exact.insert(token.to_string(), path.to_string());
        Ok(())
    }

    /// Forgets an exact-watch filter.
    pub fn unfilter(&mut self, token: &str) {
        self.exact.remove(token);
    }

    /// Registers a watch without waiting for the reply.
    pub fn watch_nowait(&mut self, io: &dyn XsIo, path: &str, token: &str) -> Result<(), XsError> {
        self.send_nowait(io, MsgType::Watch, &[&path_arg(path)?, &path_arg(token)?])
    }

    /// Removes a watch without waiting for the reply.
    pub fn unwatch_nowait(&mut self, io: &dyn XsIo, path: &str, token: &str) -> Result<(), XsError> {
        self.send_nowait(io, MsgType::Unwatch, &[&path_arg(path)?, &path_arg(token)?])
    }

    /// Creates a directory node.
    pub fn mkdir(&mut self, io: &dyn XsIo, tx: u32, path: &str) -> Result<(), XsError> {
        Self::expect_ok(self.call(io, MsgType::Mkdir, tx, &[&path_arg(path)?])?)
    }

    /// Removes a node and everything under it.
    pub fn rm(&mut self, io: &dyn XsIo, tx: u32, path: &str) -> Result<(), XsError> {
        Self::expect_ok(self.call(io, MsgType::Rm, tx, &[&path_arg(path)?])?)
    }

    /// Lists children.
    pub fn directory(&mut self, io: &dyn XsIo, tx: u32, path: &str) -> Result<Vec<String>, XsError> {
        Ok(wire::split_strings(&self.call(io, MsgType::Directory, tx, &[&path_arg(path)?])?))
    }

    /// Reads permissions (owner first).
    pub fn get_perms(&mut self, io: &dyn XsIo, tx: u32, path: &str) -> Result<Vec<Perm>, XsError> {
        let parts = wire::split_strings(&self.call(io, MsgType::GetPerms, tx, &[&path_arg(path)?])?);
        parts.iter().map(|p| Perm::parse(p).ok_or(XsError::BadReply("bad permission entry"))).collect()
    }

    /// Sets permissions (owner first).
    pub fn set_perms(&mut self, io: &dyn XsIo, tx: u32, path: &str, perms: &[Perm]) -> Result<(), XsError> {
        if perms.is_empty() {
            return Err(XsError::BadRequest("no permissions"));
        }
        let mut body = path_arg(path)?;
        for p in perms {
            body.extend_from_slice(p.to_string().as_bytes());
            body.push(0);
        }
        Self::expect_ok(self.call(io, MsgType::SetPerms, tx, &[&body])?)
    }

    /// Registers a watch (it fires once right away).
    pub fn watch(&mut self, io: &dyn XsIo, path: &str, token: &str) -> Result<(), XsError> {
        let t = path_arg(token)?;
        Self::expect_ok(self.call(io, MsgType::Watch, 0, &[&path_arg(path)?, &t])?)
    }

    /// Removes a watch.
    pub fn unwatch(&mut self, io: &dyn XsIo, path: &str, token: &str) -> Result<(), XsError> {
        let t = path_arg(token)?;
        Self::expect_ok(self.call(io, MsgType::Unwatch, 0, &[&path_arg(path)?, &t])?)
    }
}

/// Payload size limit re-exported for callers that build values.
pub const MAX_VALUE: usize = MAX_PAYLOAD;
