//! weft: the daemon library. `main.rs` only wires these modules together.

pub mod device;
pub mod netlink;
