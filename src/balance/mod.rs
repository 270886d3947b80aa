//! Load balancing: which replica serves the next read.
//!
//! A policy is a small value that picks one of the candidates (the replicas in the rotation,
//! in configuration order), seeing only a `Load` snapshot of each: its configured weight,
//! the statements running on it, and its recent latency. The pool asks once per routed read;
//! each policy is testable on its own.
//!
//! | policy | pick | when to use |
//! |---|---|---|
//! | [`Balance::RoundRobin`] (default) | each candidate in turn | replicas of equal size and load |
//! | [`Balance::Random`] | uniformly at random | many pool instances that should not move in lockstep |
//! | [`Balance::WeightedRoundRobin`] | in turn, in proportion to `Config::replica_weights` | replicas of different sizes |
//! | [`Balance::LeastOutstanding`] | the less busy of two random candidates | uneven statement costs; a replica that slows down gets fewer reads at once |
//! | [`Balance::LatencyAware`] | the cheaper of two random candidates by peak-EWMA latency × load | replicas whose latency differs or drifts (another AZ, a noisy neighbour) |

mod least_outstanding;
mod peak_ewma;
mod random;
mod round_robin;
mod weighted;

use serde::{Deserialize, Serialize};

pub(crate) use least_outstanding::LeastOutstanding;
pub(crate) use peak_ewma::{LatencyAware, PeakEwma};
pub(crate) use random::Random;
pub(crate) use round_robin::RoundRobin;
pub(crate) use weighted::WeightedRoundRobin;

/// How reads are spread across the replicas in the rotation.
///
/// ```
/// use partypool::{Balance, Config};
/// let config = Config::default().balance(Balance::LatencyAware);
/// assert_eq!(Config::default().balance, Balance::RoundRobin);
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Balance {
    /// Each replica in turn (the original package's behaviour).
    #[default]
    RoundRobin,
    /// A uniformly random replica.
    Random,
    /// Each replica in turn, as often as its weight in `Config::replica_weights`.
    WeightedRoundRobin,
    /// Of two random replicas, the one with fewer statements running (power of two choices).
    LeastOutstanding,
    /// Of two random replicas, the one with the lower peak-EWMA latency × (running + 1).
    LatencyAware,
}

/// What a policy sees of one candidate.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Load {
    /// Configured weight (at least 1).
    pub(crate) weight: u32,
    /// Statements running on it now.
    pub(crate) in_flight: u32,
    /// Peak-EWMA latency in seconds; 0 when nothing has been measured yet.
    pub(crate) latency: f64,
}

/// A balancing policy: picks one of the candidates.
pub(crate) trait Policy: Send + Sync + 'static {
    /// Returns an index into `candidates`, which is never empty.
    fn pick(&self, candidates: &[Load]) -> usize;
}

impl Balance {
    pub(crate) fn policy(self) -> Box<dyn Policy> {
        match self {
            Balance::RoundRobin => Box::new(RoundRobin::default()),
            Balance::Random => Box::new(Random),
            Balance::WeightedRoundRobin => Box::new(WeightedRoundRobin::default()),
            Balance::LeastOutstanding => Box::new(LeastOutstanding),
            Balance::LatencyAware => Box::new(LatencyAware),
        }
    }
}

/// Two distinct random indices in `0..n` (n ≥ 2): the "power of two choices".
pub(crate) fn two_choices(n: usize) -> (usize, usize) {
    let a = fastrand::usize(..n);
    let b = (a + 1 + fastrand::usize(..n - 1)) % n;
    (a, b)
}
