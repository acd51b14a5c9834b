//! Sliding replay window (RFC 6479): a ring of 64-bit words, so advancing the window clears
//! whole words instead of shifting bits. It accepts each counter at most once, and rejects
//! counters more than [`ReplayWindow::WINDOW`] behind the highest one seen.
//!
//! The caller checks a counter before the (expensive) decryption and records it only after
//! the packet authenticated, so forged packets can never move the window.

use crate::consts::REJECT_AFTER_MESSAGES;

const WORDS: usize = 128;
const BITS: u64 = 64;

/// Replay state of one receiving session.
#[derive(Clone)]
pub struct ReplayWindow {
    bitmap: [u64; WORDS],
    last: u64,
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// How far behind the newest counter an older one is still accepted (8128 packets).
    pub const WINDOW: u64 = (WORDS as u64 - 1) * BITS;

    /// An empty window.
    pub const fn new() -> Self {
        Self { bitmap: [0; WORDS], last: 0 }
    }

    /// Whether `counter` would be accepted; changes nothing.
    pub fn check(&self, counter: u64) -> bool {
        if counter >= REJECT_AFTER_MESSAGES {
            return false;
        }
        if counter > self.last {
            return true;
        }
        if self.last - counter >= Self::WINDOW {
            return false;
        }
        let (word, bit) = Self::position(counter);
        self.bitmap[word] & bit == 0
    }

    /// Records `counter`; returns false (and changes nothing) if it is a replay or too old.
    pub fn update(&mut self, counter: u64) -> bool {
        if !self.check(counter) {
            return false;
        }
        if counter > self.last {
            let current = self.last / BITS;
            let target = counter / BITS;
            let clear = (target - current).min(WORDS as u64);
            for i in 1..=clear {
                self.bitmap[((current + i) % WORDS as u64) as usize] = 0;
            }
            self.last = counter;
        }
        let (word, bit) = Self::position(counter);
        self.bitmap[word] |= bit;
        true
    }

    fn position(counter: u64) -> (usize, u64) {
        (((counter / BITS) % WORDS as u64) as usize, 1 << (counter % BITS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn in_order_duplicates_and_old() {
        let mut w = ReplayWindow::new();
        for c in 0..20_000 {
            assert!(w.update(c));
            assert!(!w.update(c));
        }
        assert!(!w.update(19_999 - ReplayWindow::WINDOW));
        assert!(!w.update(0));
    }

    #[test]
    fn reordering_inside_the_window_is_accepted_once() {
        let mut w = ReplayWindow::new();
        assert!(w.update(10_000));
        assert!(w.update(10_000 - ReplayWindow::WINDOW + 1));
        assert!(!w.update(10_000 - ReplayWindow::WINDOW));
        assert!(w.update(9_999));
        assert!(!w.update(9_999));
        assert!(w.update(1_000_000));
        assert!(!w.update(10_000));
        assert!(!w.update(REJECT_AFTER_MESSAGES));
    }

    proptest! {
        /// The window agrees with a model that remembers every counter.
        #[test]
        fn matches_a_reference_model(ops in proptest::collection::vec(0u64..30_000, 1..2000)) {
            let mut w = ReplayWindow::new();
            let mut seen = BTreeSet::new();
            let mut max = 0u64;
            for c in ops {
                let fresh = !seen.contains(&c) && (c > max || max - c < ReplayWindow::WINDOW);
                prop_assert_eq!(w.check(c), fresh);
                prop_assert_eq!(w.update(c), fresh);
                if fresh {
                    seen.insert(c);
                    max = max.max(c);
                }
            }
        }
    }
}
