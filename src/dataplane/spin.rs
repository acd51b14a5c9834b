//! Busy polling that pays for itself (`[underlay] busy_poll_us`).
//!
//! After a worker has handled packets it may keep polling, without sleeping, for up to the
//! configured window: the next packet then finds it awake instead of having to wake an idle
//! CPU (on a virtual machine an inter-processor interrupt and a halted vCPU to schedule), and
//! the sender of that packet does not pay for the wake-up either. Spinning is paid for with
//! credit that only handling packets earns, microsecond for microsecond: over any stretch of
//! time a worker spins at most as long as it worked (plus [`MAX_CREDIT`]), so an idle worker
//! does not spin at all and a busy one at most doubles its CPU time, where the wake-ups it
//! saves are worth the most.

use std::time::{Duration, Instant};

/// Most credit a worker can hold: a long burst of traffic does not buy a long spin after it.
pub const MAX_CREDIT: Duration = Duration::from_millis(2);

/// One worker's spin state.
#[derive(Debug)]
pub struct Spin {
    window: Duration,
    /// Spin until then (None: sleep in the next poll).
    until: Option<Instant>,
    /// Nanoseconds of spin paid for; negative after a poll overran it (a debt the next work
    /// pays first).
    credit: i64,
    /// Up to when the spin has been charged.
    charged: Instant,
}

impl Spin {
    /// `window` zero turns busy polling off.
    pub fn new(window: Duration, now: Instant) -> Self {
        Self { window, until: None, credit: 0, charged: now }
    }

    /// Whether the next poll should return at once instead of sleeping.
    pub fn spinning(&self) -> bool {
        self.until.is_some()
    }

    /// Packets were handled from `start` to `end`: the spin before `start` is charged, the
    /// work earns credit, and a new window opens at `end` if there is credit to spend.
    pub fn worked(&mut self, start: Instant, end: Instant) {
        if self.window.is_zero() {
            return;
        }
        if self.until.is_some() {
            self.charge(start);
        }
        self.credit = (self.credit + nanos(end.saturating_duration_since(start))).min(nanos(MAX_CREDIT));
        self.charged = end;
        self.until = (self.credit > 0).then(|| end + self.window);
    }

    /// A poll found nothing at `now`: charges the spin so far; returns whether to go on
    /// spinning (the window is open and there is credit left).
    pub fn idle(&mut self, now: Instant) -> bool {
        let Some(until) = self.until else { return false };
        self.charge(now);
        if now >= until || self.credit <= 0 {
            self.until = None;
            return false;
        }
        true
    }

    fn charge(&mut self, now: Instant) {
        self.credit -= nanos(now.saturating_duration_since(self.charged));
        self.charged = now;
    }
}

fn nanos(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: Duration = Duration::from_micros(1);

    /// Spins until the window or the credit ends, polling every `step`; returns how long.
    fn spin_out(s: &mut Spin, from: Instant, step: Duration) -> Duration {
        let mut now = from;
        while s.spinning() {
            now += step;
            s.idle(now);
        }
        now - from
    }

    #[test]
    fn off_never_spins() {
        let t = Instant::now();
        let mut s = Spin::new(Duration::ZERO, t);
        s.worked(t, t + 500 * US);
        assert!(!s.spinning());
    }

    #[test]
    fn a_spin_lasts_the_window_when_the_work_paid_for_it() {
        let t = Instant::now();
        let mut s = Spin::new(100 * US, t);
        s.worked(t, t + 300 * US);
        assert!(s.spinning());
        assert_eq!(spin_out(&mut s, t + 300 * US, US), 100 * US);
        assert!(!s.idle(t + 500 * US), "closed until the next packets");
    }

    #[test]
    fn a_spin_never_costs_more_than_the_work_that_earned_it() {
        // Sparse small packets (5 µs of work each, 1 ms apart) with a 100 µs window: the
        // worker spins 5 µs after each, not 100.
        let t = Instant::now();
        let mut s = Spin::new(100 * US, t);
        let (mut spun, mut worked) = (Duration::ZERO, Duration::ZERO);
        for i in 0..1000u32 {
            let start = t + i * 1000 * US;
            s.worked(start, start + 5 * US);
            worked += 5 * US;
            spun += spin_out(&mut s, start + 5 * US, US);
        }
        assert_eq!(spun, worked);
    }

    #[test]
    fn spin_time_is_bounded_by_work_time_plus_the_cap_under_any_traffic() {
        // Packets at pseudo-random gaps and work times, polled at pseudo-random steps: the
        // total spin never exceeds the total work plus MAX_CREDIT.
        let t = Instant::now();
        let mut s = Spin::new(1000 * US, t);
        let (mut now, mut spun, mut worked) = (t, Duration::ZERO, Duration::ZERO);
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for _ in 0..10_000 {
            let work = Duration::from_nanos(rnd(50_000));
            s.worked(now, now + work);
            worked += work;
            now += work;
            let gap = Duration::from_nanos(rnd(300_000));
            let until = now + gap;
            let spin_start = now;
            while s.spinning() && now < until {
                now += Duration::from_nanos(1 + rnd(3_000)).min(until - now);
                if now < until {
                    s.idle(now);
                }
            }
            spun += now - spin_start;
            now = until;
        }
        assert!(spun <= worked + MAX_CREDIT, "spun {spun:?} for {worked:?} of work");
        assert!(spun > worked / 4, "it does spin: {spun:?} for {worked:?}");
    }
}
