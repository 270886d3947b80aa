//! Round-robin: candidate `k mod n` for the `k`-th pick.
//!
//! One relaxed atomic increment per pick. When the set of replicas in the rotation changes,
//! `n` changes and the sequence continues from the same counter, so no replica is favoured for
//! long after a membership change.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Load, Policy};

#[derive(Debug, Default)]
pub(crate) struct RoundRobin {
    next: AtomicUsize,
}

impl Policy for RoundRobin {
    fn pick(&self, candidates: &[Load]) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % candidates.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cycles_evenly() {
        let rr = RoundRobin::default();
        let loads = [Load::default(); 3];
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[rr.pick(&loads)] += 1;
        }
        assert_eq!(counts, [100, 100, 100]);
        assert_eq!(rr.pick(&loads[..1]), 0);
    }
}
