//! weft: the daemon library. `main.rs` only wires these modules together.

pub mod api;
pub mod cli;
pub mod cli_gen;
pub mod client;
pub mod cni;
pub mod commands;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod device;
pub mod discovery;
pub mod dns;
pub mod docker;
pub mod engine;
pub mod family;
pub mod http_access;
pub mod ipam;
pub mod membership;
pub mod metrics;
pub mod netlink;
pub mod packet;
pub mod pki;
pub mod plane;
pub mod policy;
pub mod report;
#[cfg(test)]
mod testing;
pub mod ui;
