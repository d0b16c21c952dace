//! An in-memory xenstore server speaking the real wire protocol over a
//! `HeapPage` ring, with fault injection (error replies, malformed replies,
//! EAGAIN on commit, corrupt indices).
#![forbid(unsafe_code)]

use crate::hal::{HeapPage, SharedMem};
use crate::xen::xenstore::client::{REQ_RING, RSP_RING, XsIo};
use crate::xen::xenstore::wire::{self, HEADER_LEN, Header, MsgType, Perm, PermKind};
use alloc::collections::{BTreeMap, VecDeque};
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

#[derive(Debug, Clone)]
struct Node {
    value: Vec<u8>,
    perms: Vec<Perm>,
}

/// The fake server state.
#[derive(Debug, Clone)]
pub struct FakeXenstore {
    page: HeapPage,
    nodes: RefCell<BTreeMap<String, Node>>,
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

fn parent(path: &str) -> Option<&str> {
    path.rfind('/').map(|i| if i == 0 { "/" } else { &path[..i] })
}

impl FakeXenstore {
    /// A store with `/local/domain/<domid>` owned by the domain.
    pub fn new(domid: u16) -> Self {
        let s = Self {
            page: HeapPage::new(4096),
            nodes: RefCell::new(BTreeMap::new()),
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
        let mut nodes = self.nodes.borrow_mut();
        let mut p = parent(path);
        while let Some(q) = p {
            nodes.entry(q.to_string()).or_insert(Node { value: Vec::new(), perms: perms.clone() });
            p = if q == "/" { None } else { parent(q) };
        }
        nodes.insert(path.to_string(), Node { value: value.to_vec(), perms });
        drop(nodes);
        self.fire(path);
    }

    /// Reads a node directly.
    pub fn get(&self, path: &str) -> Option<Vec<u8>> {
        self.nodes.borrow().get(path).map(|n| n.value.clone())
    }

    /// Removes a node and its children directly.
    pub fn remove(&self, path: &str) {
        let prefix = alloc::format!("{path}/");
        self.nodes.borrow_mut().retain(|k, _| k != path && !k.starts_with(&prefix));
        self.fire(path);
        // Removing a node fires the watches of everything below it too.
        let below: Vec<(String, String)> =
            self.watches.borrow().iter().filter(|(w, _)| w.starts_with(&prefix)).cloned().collect();
        for (w, token) in below {
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
            if path == w || path.starts_with(&alloc::format!("{w}/")) {
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
        let args = wire::split_strings(payload);
        let path = args.first().map(|p| self.abs(p)).unwrap_or_default();
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
            MsgType::Read => match self.get(&path) {
                Some(v) => reply(&[&v]),
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
                let prefix = if path == "/" { "/".to_string() } else { alloc::format!("{path}/") };
                let mut body = Vec::new();
                for k in self.nodes.borrow().keys() {
                    if let Some(rest) = k.strip_prefix(&prefix)
                        && !rest.is_empty()
                        && !rest.contains('/')
                    {
                        body.extend_from_slice(rest.as_bytes());
                        body.push(0);
                    }
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
                let perms: Option<Vec<Perm>> = args.iter().skip(1).map(|s| Perm::parse(s)).collect();
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
                let token = args.get(1).cloned().unwrap_or_default();
                self.watches.borrow_mut().push((path.clone(), token));
                reply(&[b"OK\0"]);
                // Fires once on registration.
                let token = args.get(1).cloned().unwrap_or_default();
                self.queue(MsgType::WatchEvent, 0, 0, &[path.as_bytes(), b"\0", token.as_bytes(), b"\0"]);
            }
            MsgType::Unwatch => {
                let token = args.get(1).cloned().unwrap_or_default();
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
        loop {
            let mut inb = self.inbuf.borrow_mut();
            if inb.len() < HEADER_LEN || !self.answering.get() {
                break;
            }
            let mut h = [0u8; HEADER_LEN];
            h.copy_from_slice(&inb[..HEADER_LEN]);
            let Ok(hdr) = Header::parse(&h) else { break };
            let total = HEADER_LEN + hdr.len as usize;
            if inb.len() < total {
                break;
            }
            let payload: Vec<u8> = inb.drain(..total).skip(HEADER_LEN).collect();
            drop(inb);
            self.handle(hdr, &payload);
        }
        self.deliver();
    }

    /// Moves queued replies and watch events into the response ring, as
    /// xenstored does on its own; requests are not read (a real xenstored
    /// reads them when the client kicks its event channel).
    pub fn deliver(&self) {
        let mut out = self.outbuf.borrow_mut();
        while !out.is_empty() {
            let chunk: Vec<u8> = out.iter().copied().take(1024).collect();
            match RSP_RING.write(&self.page, &chunk) {
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
