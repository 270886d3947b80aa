//! Random: a uniformly random candidate (`fastrand`, thread-local, no lock).

use super::Policy;

#[derive(Debug, Default)]
pub(crate) struct Random;

impl Policy for Random {
    fn pick(&self, n: usize) -> usize {
        fastrand::usize(..n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_in_range_and_spreads() {
        let mut counts = [0u32; 4];
        for _ in 0..4000 {
            counts[Random.pick(4)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
        assert_eq!(Random.pick(1), 0);
    }
}
