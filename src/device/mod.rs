//! TAP devices.
