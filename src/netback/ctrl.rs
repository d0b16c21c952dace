//! The backend side of the control ring (`feature-ctrl-ring`,
//! xen/include/public/io/netif.h "Control ring"; Linux
//! xen-netback/netback.c `xenvif_ctrl_action` and hash.c): each request is
//! copied out of the ring once, served against the vif's `HashConfig`, and
//! answered in its own slot with its id and type and a status.
//!
//! Statuses follow netif.h: an unknown type is NOT_SUPPORTED; a value, a
//! grant that cannot be copied, or a table entry naming a queue the vif
//! does not have is INVALID_PARAMETER; a key or sub-table larger than we
//! keep is BUFFER_OVERFLOW. (Linux answers INVALID_PARAMETER to an
//! oversized key or sub-table; netif.h's BUFFER_OVERFLOW says more.)
//! A key or sub-table is one grant copied from its page's first byte, so a
//! length past that page is INVALID_PARAMETER before anything is copied.
//!
//! The key and the table entries are grant-copied into a local buffer and
//! checked there, never read from the guest's page twice; a failed copy or
//! a bad entry leaves the configuration as it was.
//!
//! Hostile rings: a `req_prod` more than a ring ahead of us is fatal for
//! the vif (`NetbackError::CtrlRingOverflow`, as for the data rings; Linux
//! does not check, and loops). A poll serves at most `CTRL_BUDGET`
//! requests, at most one grant-copy hypercall each, and asks to be polled
//! again for the rest, so a frontend flooding its control ring costs a
//! bounded amount of work per turn of the loop.
#![forbid(unsafe_code)]

use super::buf::PacketBuf;
use super::copy::Copier;
use super::error::NetbackError;
use super::hash::{HashConfig, MAX_MAPPING};
use super::ring::BackRing;
use super::toeplitz::KEY_SIZE;
use super::vif::PollOutcome;
use crate::hal::{GrantOps, SharedMem};
use crate::netif::PAGE_SIZE;
use crate::netif::ctrl::{CTRL_ENTRY_SIZE, CtrlRequest, CtrlResponse, CtrlStatus, CtrlType};
use crate::xen::DomId;
use alloc::boxed::Box;

/// Requests served per poll at most.
pub const CTRL_BUDGET: u32 = 16;

/// Bytes of the largest grant copy a request makes (a full mapping table).
pub const CTRL_SCRATCH: usize = MAX_MAPPING * 4;

/// Counters of one control ring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CtrlStats {
    /// Requests answered.
    pub requests: u64,
    /// Requests answered with a status other than SUCCESS.
    pub errors: u64,
    /// The status of the last request answered with an error.
    pub last_error: Option<CtrlStatus>,
}

/// What a poll works with besides the ring.
pub struct CtrlEnv<'a, B: PacketBuf> {
    /// The frontend (owner of the grants in requests).
    pub frontend: DomId,
    /// Grant copies.
    pub gnt: &'a dyn GrantOps,
    /// A local buffer of at least `CTRL_SCRATCH` bytes for the copies.
    pub scratch: &'a B,
    /// The configuration requests change.
    pub hash: &'a mut HashConfig,
    /// The vif's queue count (table entries must be below it).
    pub queues: usize,
}

/// A mapped control ring and its state.
pub struct CtrlRing {
    mem: Box<dyn SharedMem>,
    ring: BackRing,
    copier: Copier,
    stats: CtrlStats,
}

impl core::fmt::Debug for CtrlRing {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CtrlRing").field("req_cons", &self.ring.req_cons()).field("stats", &self.stats).finish()
    }
}

impl CtrlRing {
    /// Attaches to the mapped ring page (responses continue from the
    /// published `rsp_prod`).
    pub fn attach(mem: Box<dyn SharedMem>) -> Self {
        let ring = BackRing::attach(&*mem, CTRL_ENTRY_SIZE);
        Self { mem, ring, copier: Copier::new(), stats: CtrlStats::default() }
    }

    /// Counters.
    pub fn stats(&self) -> CtrlStats {
        self.stats
    }

    /// Grant-copy hypercalls issued.
    pub fn hypercalls(&self) -> u64 {
        self.copier.hypercalls()
    }

    /// Serves up to `CTRL_BUDGET` requests and publishes their responses.
    /// A fatal error comes back beside what was done before it.
    pub fn poll<B: PacketBuf>(&mut self, env: &mut CtrlEnv<'_, B>) -> (PollOutcome, Option<NetbackError>) {
        let mut out = PollOutcome::default();
        let pending = match self.ring.unconsumed(&*self.mem) {
            Ok(n) => n,
            Err(e) => return (out, Some(NetbackError::CtrlRingOverflow(e))),
        };
        let todo = pending.min(CTRL_BUDGET);
        for _ in 0..todo {
            let mut entry = [0u8; CTRL_ENTRY_SIZE];
            self.ring.copy_request(&*self.mem, 0, &mut entry);
            self.ring.consume(1);
            let req = CtrlRequest::parse(&entry);
            let (status, data) = match self.serve(&req, env) {
                Ok(data) => (CtrlStatus::Success, data),
                Err(s) => (s, 0),
            };
            self.stats.requests += 1;
            if status != CtrlStatus::Success {
                self.stats.errors += 1;
                self.stats.last_error = Some(status);
            }
            let rsp = CtrlResponse { id: req.id, ty: req.ty.to_raw(), status: status.to_raw(), data };
            self.ring.write_response(&*self.mem, &rsp.emit());
        }
        out.progress = todo > 0;
        out.notify = self.ring.push_responses(&*self.mem);
        if pending > todo {
            out.more = true;
            return (out, None);
        }
        match self.ring.final_check(&*self.mem) {
            Ok(more) => out.more = more,
            Err(e) => return (out, Some(NetbackError::CtrlRingOverflow(e))),
        }
        (out, None)
    }

    /// One request: its response data, or the error status.
    fn serve<B: PacketBuf>(&mut self, req: &CtrlRequest, env: &mut CtrlEnv<'_, B>) -> Result<u32, CtrlStatus> {
        let [d0, d1, d2] = req.data;
        match req.ty {
            CtrlType::SetHashAlgorithm => env.hash.set_algorithm(d0).map(|()| 0),
            CtrlType::GetHashFlags => env.hash.supported_flags(),
            CtrlType::SetHashFlags => env.hash.set_flags(d0).map(|()| 0),
            CtrlType::SetHashKey => self.set_key(env, d0, d1).map(|()| 0),
            CtrlType::GetHashMappingSize => Ok(MAX_MAPPING as u32),
            CtrlType::SetHashMappingSize => env.hash.set_mapping_size(d0).map(|()| 0),
            CtrlType::SetHashMapping => self.set_mapping(env, d0, d1, d2).map(|()| 0),
            CtrlType::Unknown(_) => Err(CtrlStatus::NotSupported),
        }
    }

    /// SET_HASH_KEY: `len` bytes from the start of grant `gref`.
    fn set_key<B: PacketBuf>(&mut self, env: &mut CtrlEnv<'_, B>, gref: u32, len: u32) -> Result<(), CtrlStatus> {
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > PAGE_SIZE {
            return Err(CtrlStatus::InvalidParameter);
        }
        if len > KEY_SIZE {
            return Err(CtrlStatus::BufferOverflow);
        }
        self.copy_in(env, gref, len)?;
        let hash = &mut *env.hash;
        env.scratch.with_bytes(len, |key| hash.set_key(key));
        Ok(())
    }

    /// SET_HASH_MAPPING: `len` u32 queue numbers from the start of grant
    /// `gref`, for table entries `off..off + len`.
    fn set_mapping<B: PacketBuf>(
        &mut self,
        env: &mut CtrlEnv<'_, B>,
        gref: u32,
        len: u32,
        off: u32,
    ) -> Result<(), CtrlStatus> {
        let bytes = usize::try_from(len).ok().and_then(|n| n.checked_mul(4)).unwrap_or(usize::MAX);
        if off.checked_add(len).is_none() || bytes > PAGE_SIZE {
            return Err(CtrlStatus::InvalidParameter);
        }
        if len as usize > MAX_MAPPING {
            return Err(CtrlStatus::BufferOverflow);
        }
        if !env.hash.mapping_fits(off, len) {
            return Err(CtrlStatus::InvalidParameter);
        }
        self.copy_in(env, gref, bytes)?;
        let mut entries = [0u32; MAX_MAPPING];
        let n = len as usize;
        env.scratch.with_bytes(bytes, |b| {
            for (e, w) in entries.iter_mut().zip(b.chunks_exact(4)) {
                *e = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            }
        });
        env.hash.set_mapping(off, entries.get(..n).unwrap_or(&[]), env.queues)
    }

    /// Copies `len` bytes from the start of the frontend's grant `gref` to
    /// the start of the scratch buffer; a failed copy is the request's
    /// INVALID_PARAMETER (nothing is copied for 0 bytes).
    fn copy_in<B: PacketBuf>(&mut self, env: &CtrlEnv<'_, B>, gref: u32, len: usize) -> Result<(), CtrlStatus> {
        if len == 0 {
            return Ok(());
        }
        if len > CTRL_SCRATCH.min(env.scratch.capacity()) {
            return Err(CtrlStatus::InvalidParameter);
        }
        self.copier
            .from_guest(0, env.frontend, gref, 0, env.scratch, 0, len)
            .map_err(|_| CtrlStatus::InvalidParameter)?;
        let mut failed = false;
        self.copier.flush(env.gnt, |_, _| failed = true);
        if failed { Err(CtrlStatus::InvalidParameter) } else { Ok(()) }
    }

    /// The mapped ring, to unmap.
    pub fn into_mem(self) -> Box<dyn SharedMem> {
        self.mem
    }
}
