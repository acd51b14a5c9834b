//! Service discovery: the service catalog, health checks, and the name table DNS serves.

pub mod catalog;
pub mod directory;
pub mod health;
pub mod registry;
