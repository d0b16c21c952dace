//! The netback data path (issue 5): the backend half of the Xen network
//! protocol, xen/include/public/io/netif.h, as hardware-free code.
//!
//! * `ring`: the shared-ring indices and notification rules (io/ring.h);
//! * `tx`: guest-to-backend packets, validation, grant copies out;
//! * `rx`: grant copies of queued frames into guest buffers;
//! * `rxqueue`: the byte-budgeted frame queue with a fair share per source;
//! * `vif`: one interface tying both together, with counters;
//! * `vifconfig`: its features and sizes; `staging`: the TX staging buffers;
//! * `credit`: the transmit rate limit (`rate` key);
//! * `ctrl`: the control ring (`feature-ctrl-ring`), which configures
//!   `hash`: Toeplitz hashing (`toeplitz`) of frames for the guest and the
//!   table that maps a hash to an RX queue;
//! * `buf`: the local packet buffers the platform provides;
//! * `direct`, `turn`, `vifturn`: one copy between guests (a sender's
//!   grants straight into a receiver's) and the grant copies of a whole
//!   data-plane turn issued together;
//! * `copy`, `mcast`, `meta`, `error`: helpers and types.
//!
//! The xenbus lifecycle (handshake, ring mapping, event channels) lives
//! beside this in `xenbus*` and builds a `Vif` once the rings are mapped.
//! The control ring is optional: the caller maps it and hands it to
//! `Vif::attach_ctrl`; without it, or while its frontend has selected no
//! hash algorithm, a vif's RX queue is chosen by xvif's own flow hash.
#![forbid(unsafe_code)]

pub mod buf;
pub mod copy;
pub mod credit;
pub mod ctrl;
pub mod direct;
pub mod error;
pub mod hash;
pub mod mcast;
pub mod meta;
pub mod pool;
pub mod ring;
pub mod rx;
pub mod rxqueue;
pub mod staging;
pub mod toeplitz;
pub mod turn;
pub mod tx;
mod txparse;
pub mod vif;
pub mod vifconfig;
mod vifturn;

pub use buf::{BufPool, LocalFrame, PacketBuf};
pub use credit::{Rate, parse_rate};
pub use ctrl::CtrlStats;
pub use direct::{DirectFrame, TxSink, TxTicket};
pub use error::{NetbackError, RxDrop, TxDrop};
pub use hash::{HashAlgorithm, HashConfig, RxHash};
pub use meta::{FrameMeta, Gso, GsoKind};
pub use pool::{RxPool, RxPoolStats, SharedRxPool};
pub use rxqueue::{RX_QUEUE_BYTES, RxSource};
pub use turn::{Fault, Turn};
pub use vif::{Features, MAX_QUEUES, PollOutcome, QueueRings, TxStaging, Vif, VifConfig, VifError, VifStats};
