//! Latency-aware balancing with a peak-EWMA latency estimate, in the style of Finagle and
//! linkerd (and tower's `load::PeakEwma`).
//!
//! Each node keeps an exponentially weighted moving average of statement latency that jumps
//! up at once to any slower sample ("peak") and decays towards faster ones with time constant
//! `TAU`: `ewma ← ewma·w + sample·(1 − w)`, `w = e^(−Δt/τ)`. Read back, the estimate decays
//! towards zero over the time since the last sample, so an idle slow node is tried again
//! eventually. The cost of a candidate is `ewma × (running + 1)`; of two random candidates
//! the cheaper one wins (power of two choices).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Load, Policy, two_choices};

/// Decay time constant: after `TAU`, a peak weighs `1/e`.
///
/// Finagle and tower default to 10 s. Measured here (`examples/bench.rs`, one replica 5 ms
/// slower, 8 tasks): 10 s and 1 s let one scheduling hiccup on the fast replica make it look
/// slow for seconds, sending 1.4 % of reads to the slow one (p99 8× the healthy case);
/// 100 ms forgets hiccups quickly and still re-tries an idle slow replica only every
/// ~150 ms: 0.6 % of reads, p99 1.2× the healthy case.
const TAU: Duration = Duration::from_millis(100);

/// A lock-free peak-EWMA estimate. Concurrent updates may lose a sample; an estimate does
/// not need every sample.
#[derive(Debug)]
pub(crate) struct PeakEwma {
    /// f64 seconds, as bits.
    value: AtomicU64,
    /// Nanoseconds since `epoch` of the last update.
    stamp: AtomicU64,
    epoch: Instant,
}

impl Default for PeakEwma {
    fn default() -> Self {
        PeakEwma {
            value: AtomicU64::new(0f64.to_bits()),
            stamp: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }
}

impl PeakEwma {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn decayed(&self, now: u64) -> f64 {
        let value = f64::from_bits(self.value.load(Ordering::Relaxed));
        let elapsed = now.saturating_sub(self.stamp.load(Ordering::Relaxed));
        value * (-(elapsed as f64) / TAU.as_nanos() as f64).exp()
    }

    /// Records one statement's latency.
    pub(crate) fn observe(&self, sample: Duration) {
        let now = self.now();
        let sample = sample.as_secs_f64();
        let current = self.decayed(now);
        let next = if sample > current {
            sample
        } else {
            let elapsed = now.saturating_sub(self.stamp.load(Ordering::Relaxed));
            let w = (-(elapsed as f64) / TAU.as_nanos() as f64).exp();
            current * w + sample * (1.0 - w)
        };
        self.value.store(next.to_bits(), Ordering::Relaxed);
        self.stamp.store(now, Ordering::Relaxed);
    }

    /// The current estimate in seconds (0 before any sample).
    pub(crate) fn get(&self) -> f64 {
        self.decayed(self.now())
    }
}

#[derive(Debug, Default)]
pub(crate) struct LatencyAware;

fn cost(l: &Load) -> f64 {
    l.latency * f64::from(l.in_flight + 1)
}

impl Policy for LatencyAware {
    fn pick(&self, candidates: &[Load]) -> usize {
        if candidates.len() == 1 {
            return 0;
        }
        let (a, b) = two_choices(candidates.len());
        if cost(&candidates[b]) < cost(&candidates[a]) {
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
    fn peaks_jump_up_and_decay_slowly() {
        let e = PeakEwma::default();
        assert_eq!(e.get(), 0.0);
        e.observe(Duration::from_millis(1));
        assert!((e.get() - 0.001).abs() < 1e-4);
        e.observe(Duration::from_millis(50));
        assert!(e.get() > 0.049, "a slower sample is taken at once");
        e.observe(Duration::from_millis(1));
        assert!(e.get() > 0.04, "a faster one only pulls it down over time");
    }

    #[test]
    fn prefers_the_fast_candidate() {
        let fast = Load {
            latency: 0.001,
            ..Load::default()
        };
        let slow = Load {
            latency: 0.006,
            ..Load::default()
        };
        for _ in 0..100 {
            assert_eq!(LatencyAware.pick(&[slow, fast]), 1);
        }
        // ...unless it is much busier.
        let busy_fast = Load {
            in_flight: 9,
            ..fast
        };
        assert_eq!(LatencyAware.pick(&[slow, busy_fast]), 0);
    }
}
