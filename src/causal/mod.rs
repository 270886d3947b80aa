//! Read-your-writes as pure rules: where a session's next read may go ([`ReadAt`]), what a
//! session has written ([`SessionState`]), and the token that carries it
//! ([`CausalToken`]). The public face is [`consistency`](crate::consistency).

mod high_water;
mod session_state;
mod token;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use crate::config::Consistency;
pub use crate::error::TokenKind;
pub(crate) use crate::positions::At;
pub use crate::positions::CausalSupport;
pub(crate) use high_water::{ClusterKey, HighWater};
pub(crate) use session_state::{SessionState, merge};
pub use token::CausalToken;

/// The fallback of [`Consistency::Causal`] on backends without positions.
pub(crate) const STICKY_FALLBACK: Duration = Duration::from_secs(2);

/// How long a write whose position could not be recorded (its connection broke, it was
/// interrupted, its commit failed) may still be settling on the primary. Until then the
/// session and the holders of its token read on the primary; afterwards the first read on
/// the primary records the primary's position, which is then past the write if it
/// committed. `statement_timeout` plus a second when one is set.
pub(crate) fn settle_window(statement_timeout: Option<Duration>) -> Duration {
    statement_timeout.map_or(Duration::from_secs(30), |t| t + Duration::from_secs(1))
}

/// Where a session's next read may go: the one place the read-your-writes decision is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadAt {
    /// Any replica (no writes yet, or replicas see everything at once).
    Anywhere,
    /// Only the primary: a write is being recorded, or its outcome is still settling, or
    /// time-based consistency says so.
    Primary,
    /// The primary, then record its position after the read (a settled unknown write, or a
    /// token from an older timeline: the primary's state now covers all that survived).
    PrimaryThenRecord,
    /// A replica on this timeline that has replayed at least this far, else (after
    /// `causal_wait`) the primary, whose position is then checked against it (a token ahead
    /// of the primary is clamped to it).
    AtLeast(At),
    /// A replica that has replayed the primary's position as read after now (the session
    /// began a transaction, whose commit it cannot see); that position is then the session's.
    Fresh,
}

/// What the pool's consistency settings say about sessions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    pub(crate) support: CausalSupport,
    /// `Some(d)`: time-based, reads on the primary for `d` after a write.
    pub(crate) sticky: Option<Duration>,
    pub(crate) settle: Duration,
    /// Whose writes reads see.
    pub(crate) scope: crate::config::Scope,
}

impl Rules {
    /// Whether a write whose outcome became unknown at `since_ms` has settled by `now_ms`.
    pub(crate) fn settled(&self, since_ms: u64, now_ms: u64) -> bool {
        now_ms >= since_ms.saturating_add(self.settle.as_millis() as u64)
    }

    /// The token kind sessions of this pool issue and accept, if any.
    pub(crate) fn token_kind(&self) -> Option<TokenKind> {
        match (self.sticky, self.support) {
            (Some(_), _) => Some(TokenKind::Time),
            (None, CausalSupport::Positions) => Some(TokenKind::Position),
            (None, CausalSupport::Gtids) => Some(TokenKind::Gtid),
            (None, _) => None,
        }
    }
}

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

#[cfg(test)]
mod tests;
