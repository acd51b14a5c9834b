//! Test support shared by the simulations: where their fake clocks start. `Instant` has no
//! constructor but `now()`, so each simulation reads the real clock exactly once, here, and
//! only ever adds to that instant afterwards.

use std::time::Instant;

/// The instant a simulation's fake clock starts at.
pub fn clock_origin() -> Instant {
    Instant::now()
}
