//! Least outstanding requests, with the power of two choices: of two random candidates, the
//! one with fewer statements running.
//!
//! Picking the global minimum makes every pool instance pile onto the same replica at the
//! same moment; two random choices keep nearly all of the benefit without herding
//! (Mitzenmacher, "The Power of Two Choices in Randomized Load Balancing", 2001; as in
//! tower's `p2c` balancer).

use super::{Load, Policy, two_choices};

#[derive(Debug, Default)]
pub(crate) struct LeastOutstanding;

impl Policy for LeastOutstanding {
    fn pick(&self, candidates: &[Load]) -> usize {
        if candidates.len() == 1 {
            return 0;
        }
        let (a, b) = two_choices(candidates.len());
        if candidates[b].in_flight < candidates[a].in_flight {
            b
        } else {
            a
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avoids_the_busy_candidate() {
        let loads = [0, 50].map(|in_flight| Load {
            in_flight,
            ..Load::default()
        });
        for _ in 0..100 {
            assert_eq!(LeastOutstanding.pick(&loads), 0);
        }
        // With three, the busiest is never picked (it loses to whichever it meets).
        let loads = [0, 5, 50].map(|in_flight| Load {
            in_flight,
            ..Load::default()
        });
        for _ in 0..300 {
            assert_ne!(LeastOutstanding.pick(&loads), 2);
        }
    }
}
