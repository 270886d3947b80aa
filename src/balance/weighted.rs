//! Weighted round-robin: candidate `i` gets `weight_i / Σ weight` of the picks, in a fixed
//! cycle.
//!
//! The `k`-th pick walks the cumulative weights to the slot `k mod Σ weight` — one atomic
//! increment and a walk over a handful of candidates. Unlike nginx's "smooth" variant it
//! sends a heavy replica its share in a burst per cycle; with the few replicas a pool has,
//! the cycle is short and the difference does not matter, while this needs no lock.

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Load, Policy};

#[derive(Debug, Default)]
pub(crate) struct WeightedRoundRobin {
    next: AtomicU64,
}

impl Policy for WeightedRoundRobin {
    fn pick(&self, candidates: &[Load]) -> usize {
        let total: u64 = candidates.iter().map(|c| u64::from(c.weight.max(1))).sum();
        let mut slot = self.next.fetch_add(1, Ordering::Relaxed) % total;
        for (i, c) in candidates.iter().enumerate() {
            let w = u64::from(c.weight.max(1));
            if slot < w {
                return i;
            }
            slot -= w;
        }
        candidates.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_follow_weights() {
        let wrr = WeightedRoundRobin::default();
        let loads = [1, 3, 0].map(|weight| Load {
            weight,
            ..Load::default()
        });
        let mut counts = [0; 3];
        for _ in 0..500 {
            counts[wrr.pick(&loads)] += 1;
        }
        // Weight 0 counts as 1: 1 : 3 : 1.
        assert_eq!(counts, [100, 300, 100]);
    }
}
