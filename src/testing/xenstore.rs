//! An in-memory xenstore server speaking the real wire protocol over a
//! `HeapPage` ring, with fault injection (error replies, malformed replies,
//! EAGAIN on commit, corrupt indices).
#![forbid(unsafe_code)]

use crate::hal::{HeapPage, SharedMem};
use crate::testing::xenstore_nodes::Nodes;
use crate::xen::xenstore::client::{REQ_RING, RSP_RING, XsIo};
use crate::xen::xenstore::wire::{self, HEADER_LEN, Header, MsgType, Perm, PermKind};
use alloc::borrow::Cow;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

/// The fake server state.
#[derive(Debug, Clone)]
pub struct FakeXenstore {
    page: HeapPage,
    nodes: RefCell<Nodes>,
    watches: RefCell<Vec<(String, String)>>,
    inbuf: RefCell<Vec<u8>>,
    outbuf: RefCell<VecDeque<u8>>,
    next_tx: Cell<u32>,
    clock: Cell<u64>,
    /// Commits that will fail with EAGAIN.
    pub fail_commits: Cell<u32>,
    /// Paths whose access answers this error name.
    pub errors: RefCell<BTreeMap<String, String>>,
    /// Raw bytes to send instead of the next reply.
    pub raw_next_reply: RefCell<Option<Vec<u8>>>,
    /// When false, requests are never answered (timeouts).
    pub answering: Cell<bool>,
    /// Requests seen, by type.
    pub log: RefCell<Vec<(MsgType, String)>>,
    /// This domain's id (owner of new nodes).
    pub domid: u16,
}

/// Whether `path` is `top` or a node below it. The byte after `top` is
/// looked at first: most paths fail there, before their bytes are compared.
fn below(path: &str, top: &str) -> bool {
    match path.as_bytes().get(top.len()) {
        None => path == top,
        Some(&b) => b == b'/' && path.starts_with(top),
    }
}

/// The NUL-terminated strings of a request's payload, as text.
fn strings(payload: &[u8]) -> impl Iterator<Item = Cow<'_, str>> {
    let body = payload.strip_suffix(&[0]).unwrap_or(payload);
    let parts = if body.is_empty() { None } else { Some(body.split(|&b| b == 0)) };
    parts.into_iter().flatten().map(String::from_utf8_lossy)
}

impl FakeXenstore {
    /// A store with `/local/domain/<domid>` owned by the domain.
    pub fn new(domid: u16) -> Self {
        let s = Self {
            page: HeapPage::new(4096),
            nodes: RefCell::new(Nodes::default()),
            watches: RefCell::new(Vec::new()),
            inbuf: RefCell::new(Vec::new()),
            outbuf: RefCell::new(VecDeque::new()),
            next_tx: Cell::new(1),
            clock: Cell::new(0),
            fail_commits: Cell::new(0),
            errors: RefCell::new(BTreeMap::new()),
            raw_next_reply: RefCell::new(None),
            answering: Cell::new(true),
            log: RefCell::new(Vec::new()),
            domid,
        };
        let home = alloc::format!("/local/domain/{domid}");
        s.set(&home, b"", domid);
        s.set(&alloc::format!("{home}/domid"), domid.to_string().as_bytes(), 0);
        s
    }

    /// Sets a node directly (as the toolstack would), creating parents.
    pub fn set(&self, path: &str, value: &[u8], owner: u16) {
        let perms = alloc::vec![Perm { kind: PermKind::None, domid: owner }];
        self.nodes.borrow_mut().set(path, value, perms);
        self.fire(path);
    }

    /// Reads a node directly.
    pub fn get(&self, path: &str) -> Option<Vec<u8>> {
        self.nodes.borrow().get(path).map(|n| n.value.clone())
    }

    /// Removes a node and its children directly.
    pub fn remove(&self, path: &str) {
        self.nodes.borrow_mut().remove(path);
        self.fire(path);
        // Removing a node fires the watches of everything below it too.
        let under: Vec<(String, String)> =
            self.watches.borrow().iter().filter(|(w, _)| w != path && below(w, path)).cloned().collect();
        for (w, token) in under {
            self.queue(MsgType::WatchEvent, 0, 0, &[w.as_bytes(), b"\0", token.as_bytes(), b"\0"]);
        }
    }

    /// Advances the fake clock.
    pub fn advance(&self, ns: u64) {
        self.clock.set(self.clock.get() + ns);
    }

    /// Writes garbage indices into the response ring.
    pub fn corrupt_rsp_indices(&self) {
        self.page.write_u32(RSP_RING.cons, 0);
        self.page.write_u32(RSP_RING.prod, 5000);
    }

    fn fire(&self, path: &str) {
        for (w, token) in self.watches.borrow().iter() {
            if below(path, w) {
                self.queue(MsgType::WatchEvent, 0, 0, &[path.as_bytes(), b"\0", token.as_bytes(), b"\0"]);
            }
        }
    }

    fn queue(&self, ty: MsgType, req_id: u32, tx: u32, parts: &[&[u8]]) {
        if let Ok(m) = wire::encode(ty, req_id, tx, parts) {
            self.outbuf.borrow_mut().extend(m);
        }
    }

    fn abs(&self, p: &str) -> String {
        if p.starts_with('/') { p.to_string() } else { alloc::format!("/local/domain/{}/{p}", self.domid) }
    }

    fn handle(&self, hdr: Header, payload: &[u8]) {
        let mut args = strings(payload);
        let path = args.next().map(|p| self.abs(&p)).unwrap_or_default();
        self.log.borrow_mut().push((hdr.ty, path.clone()));
        if let Some(raw) = self.raw_next_reply.borrow_mut().take() {
            self.outbuf.borrow_mut().extend(raw);
            return;
        }
        let reply = |parts: &[&[u8]]| self.queue(hdr.ty, hdr.req_id, hdr.tx_id, parts);
        let err = |name: &str| self.queue(MsgType::Error, hdr.req_id, hdr.tx_id, &[name.as_bytes(), b"\0"]);
        if let Some(e) = self.errors.borrow().get(&path) {
            return err(e);
        }
        match hdr.ty {
            MsgType::Read => match self.nodes.borrow().get(&path) {
                Some(n) => reply(&[&n.value]),
                None => err("ENOENT"),
            },
            MsgType::Write => {
                let split = payload.iter().position(|&b| b == 0).unwrap_or(payload.len());
                let value = payload.get(split + 1..).unwrap_or(&[]);
                self.set(&path, value, self.domid);
                reply(&[b"OK\0"]);
            }
            MsgType::Mkdir => {
                if self.get(&path).is_none() {
                    self.set(&path, b"", self.domid);
                }
                reply(&[b"OK\0"]);
            }
            MsgType::Rm => {
                // As xenstored: removing a missing node is fine when its
                // parent exists, ENOENT otherwise.
                let parent = path.rsplit_once('/').map_or("/", |(p, _)| if p.is_empty() { "/" } else { p });
                if self.get(&path).is_none() && parent != "/" && self.get(parent).is_none() {
                    return err("ENOENT");
                }
                self.remove(&path);
                reply(&[b"OK\0"]);
            }
            MsgType::Directory => {
                if self.get(&path).is_none() {
                    return err("ENOENT");
                }
                let mut body = Vec::new();
                for name in self.nodes.borrow().children(&path).filter(|n| !n.is_empty()) {
                    body.extend_from_slice(name.as_bytes());
                    body.push(0);
                }
                reply(&[&body]);
            }
            MsgType::GetPerms => match self.nodes.borrow().get(&path) {
                Some(n) => {
                    let mut body = Vec::new();
                    for p in &n.perms {
                        body.extend_from_slice(p.to_string().as_bytes());
                        body.push(0);
                    }
                    reply(&[&body]);
                }
                None => err("ENOENT"),
            },
            MsgType::SetPerms => {
                let perms: Option<Vec<Perm>> = args.map(|s| Perm::parse(&s)).collect();
                let mut nodes = self.nodes.borrow_mut();
                match (nodes.get_mut(&path), perms) {
                    (Some(n), Some(p)) if !p.is_empty() => {
                        n.perms = p;
                        drop(nodes);
                        reply(&[b"OK\0"]);
                    }
                    (None, _) => {
                        drop(nodes);
                        err("ENOENT")
                    }
                    _ => {
                        drop(nodes);
                        err("EINVAL")
                    }
                }
            }
            MsgType::Watch => {
                let token = args.next().map(Cow::into_owned).unwrap_or_default();
                self.watches.borrow_mut().push((path.clone(), token.clone()));
                reply(&[b"OK\0"]);
                // Fires once on registration.
                self.queue(MsgType::WatchEvent, 0, 0, &[path.as_bytes(), b"\0", token.as_bytes(), b"\0"]);
            }
            MsgType::Unwatch => {
                let token = args.next().map(Cow::into_owned).unwrap_or_default();
                self.watches.borrow_mut().retain(|(p, t)| !(p == &path && t == &token));
                reply(&[b"OK\0"]);
            }
            MsgType::TransactionStart => {
                let id = self.next_tx.get();
                self.next_tx.set(id + 1);
                reply(&[id.to_string().as_bytes(), b"\0"]);
            }
            MsgType::TransactionEnd => {
                if self.fail_commits.get() > 0 && payload.starts_with(b"T") {
                    self.fail_commits.set(self.fail_commits.get() - 1);
                    err("EAGAIN")
                } else {
                    reply(&[b"OK\0"])
                }
            }
            _ => err("ENOSYS"),
        }
    }

    /// Serves every complete request in the ring and pushes replies.
    pub fn serve(&self) {
        let mut buf = [0u8; 1024];
        while let Ok(n) = REQ_RING.read(&self.page, &mut buf) {
            if n == 0 {
                break;
            }
            self.inbuf.borrow_mut().extend_from_slice(&buf[..n]);
        }
        // Handled requests leave the buffer at the end, in one move.
        let mut inb = self.inbuf.take();
        let mut at = 0;
        while self.answering.get() {
            let mut h = [0u8; HEADER_LEN];
            let Some(head) = inb.get(at..at + HEADER_LEN) else { break };
            h.copy_from_slice(head);
            let Ok(hdr) = Header::parse(&h) else { break };
            let end = at + HEADER_LEN + hdr.len as usize;
            let Some(payload) = inb.get(at + HEADER_LEN..end) else { break };
            self.handle(hdr, payload);
            at = end;
        }
        inb.drain(..at);
        self.inbuf.replace(inb);
        self.deliver();
    }

    /// Moves queued replies and watch events into the response ring, as
    /// xenstored does on its own; requests are not read (a real xenstored
    /// reads them when the client kicks its event channel).
    pub fn deliver(&self) {
        let mut out = self.outbuf.borrow_mut();
        while !out.is_empty() {
            match RSP_RING.write(&self.page, out.as_slices().0) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    out.drain(..n);
                }
            }
        }
    }
}

impl XsIo for FakeXenstore {
    fn mem(&self) -> &dyn SharedMem {
        &self.page
    }

    fn notify(&self) {
        self.serve();
    }

    fn wait(&self) {
        self.clock.set(self.clock.get() + 1_000_000);
        self.serve();
    }

    fn now_ns(&self) -> u64 {
        self.clock.get()
    }
}
