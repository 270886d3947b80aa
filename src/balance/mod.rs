//! Load balancing: which healthy replica serves the next read.
//!
//! A policy is a small value that picks an index among `n` candidates (the healthy replicas,
//! in configuration order). The pool asks it once per routed read; policies never see the
//! nodes themselves, so each one is testable on its own.
//!
//! | policy | pick | when to use |
//! |---|---|---|
//! | [`Balance::RoundRobin`] (default) | each candidate in turn | replicas of equal size and load |
//! | [`Balance::Random`] | uniformly at random | many pool instances that should not move in lockstep |

mod random;
mod round_robin;

use serde::{Deserialize, Serialize};

pub(crate) use random::Random;
pub(crate) use round_robin::RoundRobin;

/// How reads are spread across healthy replicas.
///
/// ```
/// use partypool::{Balance, Config};
/// let config = Config { balance: Balance::Random, ..Config::default() };
/// assert_eq!(Config::default().balance, Balance::RoundRobin);
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Balance {
    /// Each healthy replica in turn (the original package's behaviour).
    #[default]
    RoundRobin,
    /// A uniformly random healthy replica.
    Random,
}

/// A balancing policy: picks one of `n > 0` candidates.
pub(crate) trait Policy: Send + Sync + 'static {
    /// Returns an index in `0..n`. `n` is never zero.
    fn pick(&self, n: usize) -> usize;
}

impl Balance {
    pub(crate) fn policy(self) -> Box<dyn Policy> {
        match self {
            Balance::RoundRobin => Box::new(RoundRobin::default()),
            Balance::Random => Box::new(Random),
        }
    }
}
