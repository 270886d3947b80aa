//! Random: a uniformly random candidate (`fastrand`, thread-local, no lock).

use super::{Load, Policy};

#[derive(Debug, Default)]
pub(crate) struct Random;

impl Policy for Random {
    fn pick(&self, candidates: &[Load]) -> usize {
        fastrand::usize(..candidates.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_in_range_and_spreads() {
        let loads = [Load::default(); 4];
        let mut counts = [0u32; 4];
        for _ in 0..4000 {
            counts[Random.pick(&loads)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
        assert_eq!(Random.pick(&loads[..1]), 0);
    }
}
