//! Round-robin: candidate `k mod n` for the `k`-th pick.
//!
//! One relaxed atomic increment per pick. When the set of healthy replicas changes, `n`
//! changes and the sequence continues from the same counter, so no replica is favoured for
//! long after a membership change.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::Policy;

#[derive(Debug, Default)]
pub(crate) struct RoundRobin {
    next: AtomicUsize,
}

impl Policy for RoundRobin {
    fn pick(&self, n: usize) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_evenly() {
        let rr = RoundRobin::default();
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[rr.pick(3)] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
        assert_eq!(rr.pick(1), 0);
    }
}
