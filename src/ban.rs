//! The ban policy: how long a failing replica is left alone before it is probed again.
//!
//! A pure value over [`Instant`]s, so it can be tested without a clock or a database. Only
//! *probes* feed it — a statement failing on a node only asks for an immediate probe — so
//! strikes count consecutive failed probes (and failures soon after readmission), never how
//! many statements happened to fail at once.
//!
//! - The first failure bans for `base`.
//! - Each further failure while banned, or soon after coming back (within `max` of the
//!   readmission), doubles the ban, up to `max`.
//! - A node that stayed up for at least `max` starts over at `base`.
//! - The first successful probe after a ban readmits the node (half-open).

use std::time::{Duration, Instant};

use crate::config::Backoff;

/// One node's ban state.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ban {
    until: Option<Instant>,
    /// Consecutive failures without a stable period in between.
    strikes: u32,
    readmitted: Option<Instant>,
    /// Whether it ever failed.
    failed: bool,
}

impl Ban {
    /// Whether probes should skip the node at `now`.
    pub(crate) fn is_banned(&self, now: Instant) -> bool {
        self.until.is_some_and(|t| now < t)
    }

    /// A probe failed at `now`; `was_up` says whether the node was in the rotation until
    /// then. Returns the length of the new ban.
    pub(crate) fn fail(&mut self, now: Instant, was_up: bool, backoff: Backoff) -> Duration {
        let first = !self.failed;
        self.failed = true;
        let stable = self
            .readmitted
            .is_some_and(|t| now.duration_since(t) >= backoff.max);
        self.strikes = if first || (was_up && stable) {
            0
        } else {
            self.strikes.saturating_add(1)
        };
        let length = backoff
            .base
            .saturating_mul(1 << self.strikes.min(16))
            .min(backoff.max);
        self.until = Some(now + length);
        length
    }

    /// A probe succeeded at `now` after the node was out: it is back.
    pub(crate) fn readmit(&mut self, now: Instant) {
        self.until = None;
        self.readmitted = Some(now);
    }

    /// Lifts the ban without counting a success (the node became the writer, which is
    /// probed every round).
    pub(crate) fn lift(&mut self) {
        self.until = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        base: Duration::from_millis(100),
        max: Duration::from_millis(400),
    };
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_while_failing_up_to_the_maximum() {
        let t0 = Instant::now();
        let mut ban = Ban::default();
        assert_eq!(ban.fail(t0, false, B), 100 * MS);
        assert!(ban.is_banned(t0 + 99 * MS) && !ban.is_banned(t0 + 100 * MS));
        assert_eq!(ban.fail(t0 + 100 * MS, false, B), 200 * MS);
        assert_eq!(ban.fail(t0 + 300 * MS, false, B), 400 * MS);
        assert_eq!(ban.fail(t0 + 700 * MS, false, B), 400 * MS);
    }

    #[test]
    fn a_failure_soon_after_readmission_keeps_growing() {
        let t0 = Instant::now();
        let mut ban = Ban::default();
        ban.fail(t0, true, B);
        ban.readmit(t0 + 100 * MS);
        assert!(!ban.is_banned(t0 + 100 * MS));
        assert_eq!(ban.fail(t0 + 150 * MS, true, B), 200 * MS);
    }

    #[test]
    fn a_stable_period_starts_over() {
        let t0 = Instant::now();
        let mut ban = Ban::default();
        ban.fail(t0, true, B);
        ban.fail(t0 + 100 * MS, false, B);
        ban.readmit(t0 + 300 * MS);
        assert_eq!(ban.fail(t0 + 700 * MS, true, B), 100 * MS);
    }

    #[test]
    fn lifting_is_not_readmission() {
        let t0 = Instant::now();
        let mut ban = Ban::default();
        ban.fail(t0, true, B);
        ban.lift();
        assert!(!ban.is_banned(t0));
        assert_eq!(
            ban.fail(t0 + MS, false, B),
            200 * MS,
            "still counts as failing"
        );
    }

    #[test]
    fn strikes_never_overflow() {
        let t0 = Instant::now();
        let mut ban = Ban::default();
        for i in 0..100 {
            assert!(ban.fail(t0 + i * MS, false, B) <= B.max);
        }
    }
}
