//! Certificate expiry as an operator should see it: the warning thresholds, which warning is
//! due at a given time, and the words for it ("expires in 12 days (2027-01-15T08:00:00Z)").
//!
//! Pure: every function takes `now` (seconds since the Unix epoch) and reads no clock, so the
//! daemon's periodic check and `weft check-config` judge the same way and tests need no sleep.
//! A certificate counts as expired from `not_after` on (as `NodeCert::verify` has it), and is
//! within a threshold of N days while at most N × 86 400 seconds remain.

use super::fmt_time;

/// Seconds in a day.
const DAY: u64 = 86_400;

/// Days before `not_after` at which an operator is warned, least urgent first.
pub const THRESHOLDS_DAYS: [u64; 3] = [30, 7, 1];

/// A warning about a certificate's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warning {
    /// At most `days` days remain; `days` is one of [`THRESHOLDS_DAYS`].
    Within {
        /// The threshold crossed.
        days: u64,
    },
    /// `not_after` has passed.
    Expired,
}

impl Warning {
    /// Orders warnings by how urgent they are: 30 days < 7 days < 1 day < expired.
    fn urgency(self) -> usize {
        match self {
            Warning::Within { days } => THRESHOLDS_DAYS.iter().position(|&d| d == days).map_or(0, |i| i + 1),
            Warning::Expired => THRESHOLDS_DAYS.len() + 1,
        }
    }
}

/// The most urgent warning that applies at `now`, or `None` while more than the first
/// threshold remains.
pub fn warning_at(now: u64, not_after: u64) -> Option<Warning> {
    if now >= not_after {
        return Some(Warning::Expired);
    }
    let left = not_after - now;
    THRESHOLDS_DAYS.iter().rev().find(|&&days| left <= days * DAY).map(|&days| Warning::Within { days })
}

/// The warning to log now, given the last one already logged for this certificate (`None`
/// after a start): the most urgent one that applies, if it is more urgent than `last`. A
/// threshold skipped while the daemon was down is not logged late; the tighter one is.
/// Reset `last` to `None` when the certificate changes (see [`ExpiryWatch`]).
pub fn due_warning(now: u64, not_after: u64, last: Option<Warning>) -> Option<Warning> {
    let due = warning_at(now, not_after)?;
    match last {
        Some(last) if last.urgency() >= due.urgency() => None,
        _ => Some(due),
    }
}

/// One certificate's warnings over time: each threshold once, and once again after a restart
/// (a new watch) or a new certificate (another `not_after`).
#[derive(Debug, Clone, Default)]
pub struct ExpiryWatch {
    /// The certificate's `not_after` and the last warning logged for it.
    last: Option<(u64, Warning)>,
}

impl ExpiryWatch {
    /// The warning to log at `now` for a certificate ending at `not_after`, remembered so it
    /// is not returned again for the same certificate.
    pub fn poll(&mut self, now: u64, not_after: u64) -> Option<Warning> {
        let last = self.last.filter(|&(end, _)| end == not_after).map(|(_, w)| w);
        let due = due_warning(now, not_after, last);
        if let Some(w) = due {
            self.last = Some((not_after, w));
        } else if last.is_none() {
            self.last = None;
        }
        due
    }
}

/// "expires in 12 days" / "expires in 5 hours" / "expired 3 days ago": how far `not_after` is
/// from `now`, in whole days (rounded down) or, under a day, whole hours.
pub fn relative(now: u64, not_after: u64) -> String {
    if now < not_after {
        format!("expires in {}", span(not_after - now))
    } else {
        format!("expired {} ago", span(now - not_after))
    }
}

/// [`relative`] with the date: "expires in 12 days (2027-01-15T08:00:00Z)".
pub fn describe(now: u64, not_after: u64) -> String {
    format!("{} ({})", relative(now, not_after), fmt_time(not_after))
}

/// Whole days, or whole hours under a day, or "less than an hour".
fn span(secs: u64) -> String {
    let plural = |n: u64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match (secs / DAY, secs / 3600) {
        (0, 0) => "less than an hour".to_owned(),
        (0, hours) => plural(hours, "hour"),
        (days, _) => plural(days, "day"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_800_000_000; // 2027-01-15T08:00:00Z

    fn within(days: u64) -> Option<Warning> {
        Some(Warning::Within { days })
    }

    #[test]
    fn far_from_the_end_nothing_is_due() {
        assert_eq!(warning_at(T - 365 * DAY, T), None);
        assert_eq!(warning_at(T - 30 * DAY - 1, T), None);
        assert_eq!(due_warning(T - 31 * DAY, T, None), None);
    }

    #[test]
    fn each_threshold_applies_from_exactly_its_day_on() {
        for (i, &days) in THRESHOLDS_DAYS.iter().enumerate() {
            let at = T - days * DAY;
            let before = THRESHOLDS_DAYS.get(i.wrapping_sub(1)).map(|&d| Warning::Within { days: d });
            assert_eq!(warning_at(at - 1, T), before, "one second before {days} days");
            assert_eq!(warning_at(at, T), within(days), "at {days} days");
            assert_eq!(warning_at(at + 1, T), within(days), "just after {days} days");
        }
        assert_eq!(warning_at(T - 1, T), within(1));
    }

    #[test]
    fn expired_from_not_after_on() {
        assert_eq!(warning_at(T, T), Some(Warning::Expired));
        assert_eq!(warning_at(T + 400 * DAY, T), Some(Warning::Expired));
    }

    #[test]
    fn each_warning_is_due_once_in_order() {
        let mut last = None;
        let mut logged = Vec::new();
        for now in (T - 40 * DAY..=T + 2 * DAY).step_by(3600) {
            if let Some(w) = due_warning(now, T, last) {
                logged.push((w, now));
                last = Some(w);
            }
        }
        let want = [
            (Warning::Within { days: 30 }, T - 30 * DAY),
            (Warning::Within { days: 7 }, T - 7 * DAY),
            (Warning::Within { days: 1 }, T - DAY),
            (Warning::Expired, T),
        ];
        assert_eq!(logged, want);
    }

    #[test]
    fn after_a_restart_the_current_warning_is_due_again_and_skipped_ones_are_not() {
        // A restart forgets `last`: the warning that applies is logged again.
        assert_eq!(due_warning(T - 10 * DAY, T, None), within(30));
        assert_eq!(due_warning(T - 10 * DAY, T, within(30)), None);
        // Down from 31 to 5 days before the end: 7 days is logged, not 30 then 7.
        assert_eq!(due_warning(T - 5 * DAY, T, None), within(7));
        assert_eq!(due_warning(T - 5 * DAY, T, within(30)), within(7));
        assert_eq!(due_warning(T + DAY, T, within(30)), Some(Warning::Expired));
        assert_eq!(due_warning(T + DAY, T, Some(Warning::Expired)), None);
        // A less urgent stage never follows a more urgent one.
        assert_eq!(due_warning(T - 20 * DAY, T, within(1)), None);
    }

    #[test]
    fn a_watch_starts_over_for_a_renewed_certificate() {
        let mut w = ExpiryWatch::default();
        assert_eq!(w.poll(T - 6 * DAY, T), within(7));
        assert_eq!(w.poll(T - 5 * DAY, T), None);
        // Renewed for 20 days: its 30-day warning is new, though less urgent than the last.
        let renewed = T + 14 * DAY;
        assert_eq!(w.poll(T - 5 * DAY, renewed), within(30));
        assert_eq!(w.poll(T - 4 * DAY, renewed), None);
        // Renewed for a year: nothing, and the next warnings come at their thresholds.
        let far = T + 365 * DAY;
        assert_eq!(w.poll(T, far), None);
        assert_eq!(w.poll(far - 30 * DAY, far), within(30));
        assert_eq!(w.poll(far, far), Some(Warning::Expired));
        assert_eq!(w.poll(far + DAY, far), None);
    }

    #[test]
    fn words_say_days_hours_and_the_date() {
        assert_eq!(describe(T - 12 * DAY - 5, T), "expires in 12 days (2027-01-15T08:00:00Z)");
        assert_eq!(relative(T - 30 * DAY, T), "expires in 30 days");
        assert_eq!(relative(T - DAY - 3600, T), "expires in 1 day");
        assert_eq!(relative(T - 5 * 3600 - 1, T), "expires in 5 hours");
        assert_eq!(relative(T - 3600, T), "expires in 1 hour");
        assert_eq!(relative(T - 59, T), "expires in less than an hour");
        assert_eq!(relative(T, T), "expired less than an hour ago");
        assert_eq!(relative(T + 2 * 3600, T), "expired 2 hours ago");
        assert_eq!(describe(T + 3 * DAY, T), "expired 3 days ago (2027-01-15T08:00:00Z)");
        assert_eq!(relative(T + 400 * DAY, T), "expired 400 days ago");
    }
}
