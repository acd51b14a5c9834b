//! Per-network firewall, Nebula style: rules from `[network.policy]` compiled into bit tests
//! ([`rules::Compiled`]), an Ethernet/IP header parser ([`flow::parse`]) and a sharded
//! connection tracker ([`conntrack::Conntrack`]) so replies to allowed flows pass.
//!
//! Pure: no I/O, no threads, no clock; callers pass `now` in seconds. The calling order per
//! frame (outbound, before encryption; inbound, after decryption, before the bridge):
//! 1. [`flow::parse`] the frame; `AlwaysPass` passes, `Malformed`/`Other` are the caller's call.
//! 2. If [`conntrack::Conntrack::lookup`] says the flow is tracked (or related), pass.
//! 3. Else [`rules::Compiled::decide`] with the stored masks of both sides, then
//!    [`rules::Compiled::count`]; if allowed, [`conntrack::Conntrack::insert`] it.
//!
//! Once a second call [`conntrack::Conntrack::expire`]; when a node leaves,
//! [`conntrack::Conntrack::clear_peer`]. Reload swaps a new `Compiled`; conntrack survives.
#![warn(missing_docs)]

pub mod config;
pub mod conntrack;
mod file;
pub mod flow;
pub mod rules;

pub use config::{validate, Direction, Policy, PolicyError, PolicyFile, Verdict};
pub use conntrack::{Conntrack, Full};
pub use flow::{parse, Flow, Parsed};
pub use rules::{Compiled, Decider, Decision, Explanation, Identity, Mask};
