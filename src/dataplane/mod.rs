//! The data plane: worker threads that each own one UDP socket (SO_REUSEPORT) and one queue
//! of every network's TAP, and forward frames between them through the sessions of the
//! current [`tables::Tables`] snapshot. Anything that is not a steady-state frame (handshakes,
//! frames for peers without a session, table changes) goes to the engine over a bounded
//! channel; when that channel is full the item is dropped and counted, never blocked on.

mod batch;
pub mod filter;
pub mod frame;
pub mod offload;
mod preauth;
mod scatter;
pub mod source_guard;
mod spin;
mod worker;

pub use worker::{admit, deliver, run_worker, Received};
// The contract with the engine thread lives in `crate::plane`; these names keep the workers'
// `super::…` paths short.
use crate::plane::{inc, tables, NetInfo, Shared, WorkerMsg as EngineMsg};
