//! [`SessionState`]: what one session has written, and where its next read may go.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use super::token::Mark;
use super::{CausalToken, ReadAt, Rules, now_ms, unix_ms};
use crate::positions::At;

/// What a session has written, shared by the session and the statements it runs.
#[derive(Debug, Default)]
pub(crate) struct SessionState {
    marks: std::sync::Mutex<Marks>,
    /// Writes running (or finished) whose position is not recorded yet.
    unrecorded: AtomicU32,
    /// Woken when a write's position is recorded.
    recorded: tokio::sync::Notify,
    /// It began a transaction, whose commit partypool does not see (the driver runs it):
    /// from then on its reads need the primary's position as read after they began.
    began: AtomicBool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Marks {
    /// The newest position after the session's writes.
    at: Option<At>,
    /// Unix ms of the session's last write (0: none), for time-based consistency.
    written_at_ms: u64,
    /// Unix ms since which a write's position is unknown.
    unknown_since_ms: Option<u64>,
    /// `at` came from a token (untrusted input), not from a write this session recorded:
    /// only such a position is ever clamped to the primary's.
    from_token: bool,
}

impl SessionState {
    fn marks(&self) -> std::sync::MutexGuard<'_, Marks> {
        crate::sync::lock(&self.marks)
    }

    /// A write's position: positions only move forward on a timeline, and a newer timeline
    /// replaces an older one.
    pub(crate) fn recorded(&self, at: At) {
        let mut m = self.marks();
        // A position from a token is untrusted: the primary's position recorded now is past
        // every real write, so it replaces a larger (forged) one on the same timeline.
        m.at = Some(match m.at {
            Some(old) if m.from_token && old.timeline == at.timeline => at,
            old => merge(old, at),
        });
        m.from_token = false;
    }

    /// A write whose position could not be recorded: reads go to the primary until it has
    /// settled.
    pub(crate) fn unknown(&self, now_ms: u64) {
        let mut m = self.marks();
        m.unknown_since_ms = Some(m.unknown_since_ms.map_or(now_ms, |t| t.max(now_ms)));
    }

    pub(crate) fn wrote_now(&self) {
        let mut m = self.marks();
        m.written_at_ms = m.written_at_ms.max(unix_ms(SystemTime::now()));
    }

    /// The session began a transaction on the primary.
    pub(crate) fn began_transaction(&self) {
        self.began.store(true, Ordering::Release);
    }

    /// Whether it ever began a transaction ([`began_transaction`](Self::began_transaction)).
    pub(crate) fn has_transactions(&self) -> bool {
        self.began.load(Ordering::Acquire)
    }

    pub(crate) fn write_started(&self) {
        self.unrecorded.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn write_recorded(&self) {
        self.unrecorded.fetch_sub(1, Ordering::AcqRel);
        self.recorded.notify_waiters();
    }

    /// Where the next read may go. `writer_timeline` is the writer's timeline now.
    pub(crate) fn read_at(
        &self,
        rules: &Rules,
        writer_timeline: Option<u64>,
        now_ms: u64,
    ) -> ReadAt {
        if rules.scope == crate::config::Scope::Off {
            return ReadAt::Anywhere;
        }
        let m = *self.marks();
        if let Some(window) = rules.sticky {
            let until = m.written_at_ms.saturating_add(window.as_millis() as u64);
            return if m.written_at_ms != 0 && now_ms < until {
                ReadAt::Primary
            } else {
                ReadAt::Anywhere
            };
        }
        if !rules.support.by_position() {
            return ReadAt::Anywhere;
        }
        if self.unrecorded.load(Ordering::Acquire) > 0 {
            return ReadAt::Primary;
        }
        if let Some(since) = m.unknown_since_ms {
            return if !rules.settled(since, now_ms) {
                ReadAt::Primary
            } else {
                ReadAt::PrimaryThenRecord
            };
        }
        if self.has_transactions() {
            return ReadAt::Fresh;
        }
        match m.at {
            None => ReadAt::Anywhere,
            Some(at)
                if at.timeline.is_some()
                    && writer_timeline.is_some()
                    && at.timeline != writer_timeline =>
            {
                ReadAt::PrimaryThenRecord
            }
            Some(at) => ReadAt::AtLeast(at),
        }
    }

    /// The primary's position, read after a read that [`read_at`](Self::read_at) sent
    /// there: settles an unknown write whose window has passed, replaces a position from
    /// another timeline, and clamps a position ahead of the primary (a forged or corrupt
    /// token) to it.
    pub(crate) fn reconcile(&self, primary: At, rules: &Rules, now_ms: u64) {
        let mut m = self.marks();
        if let Some(since) = m.unknown_since_ms
            && rules.settled(since, now_ms)
        {
            m.unknown_since_ms = None;
            m.at = Some(merge(m.at, primary));
            return;
        }
        match m.at {
            // From an older timeline, or a token's (untrusted) other one: the primary's
            // state now covers all of it that survived.
            Some(old)
                if old.timeline < primary.timeline
                    || (m.from_token && old.timeline != primary.timeline) =>
            {
                m.at = Some(primary);
                m.from_token = false;
            }
            Some(old) if old.ahead_of(&primary) && m.from_token => {
                tracing::warn!(
                    token = old.position,
                    primary = primary.position,
                    "a session position is ahead of the primary (a forged or corrupt token?); clamped to the primary's"
                );
                m.at = Some(primary);
                m.from_token = false;
            }
            _ => {}
        }
    }

    /// Settles an unknown write whose window has passed when the primary has no position
    /// to record: the session reads anywhere again (having read on the primary for the
    /// whole window, like `StickyFor(window)`).
    pub(crate) fn settle_without_position(&self, rules: &Rules, now_ms: u64) {
        let mut m = self.marks();
        if let Some(since) = m.unknown_since_ms
            && rules.settled(since, now_ms)
        {
            m.unknown_since_ms = None;
        }
    }

    /// The session's token, if it wrote (or was made from a token). `settled`: the
    /// primary's position was just recorded, after every transaction the session began
    /// ended; else a session that began a transaction (whose commit it does not see) gets a
    /// pending token.
    pub(crate) fn token(&self, cluster: u64, settled: bool) -> Option<CausalToken> {
        let m = *self.marks();
        let mark = if self.unrecorded.load(Ordering::Acquire) > 0
            || (!settled && self.has_transactions())
        {
            Mark::Pending(
                m.unknown_since_ms
                    .unwrap_or(0)
                    .max(unix_ms(SystemTime::now())),
            )
        } else if let Some(since) = m.unknown_since_ms {
            Mark::Pending(since)
        } else if let Some(at) = m.at {
            Mark::Position(at)
        } else if m.written_at_ms != 0 {
            Mark::WrittenAt(m.written_at_ms)
        } else {
            return None;
        };
        Some(CausalToken { cluster, mark })
    }

    /// Starts from a trusted token.
    #[cfg(test)]
    pub(crate) fn from_token(token: CausalToken) -> Self {
        Self::from_client_token(token, true)
    }

    /// Starts from a token; `trusted`: it is known to be one of ours (signed and verified,
    /// or handed over by the application itself). An untrusted pending token costs one
    /// read on the primary, which records the primary's position, instead of the primary
    /// for the whole settle window: a client that forges one on every request costs one
    /// primary read per request, never more.
    pub(crate) fn from_client_token(token: CausalToken, trusted: bool) -> Self {
        let state = SessionState::default();
        // Times from the future (a forged token, a skewed clock) count as now, so no token
        // pins its holders to the primary for longer than its window.
        let now = now_ms();
        {
            let mut m = state.marks();
            match token.mark {
                Mark::Position(at) => {
                    m.at = Some(at);
                    m.from_token = true;
                }
                Mark::Pending(ms) if trusted => m.unknown_since_ms = Some(ms.min(now)),
                // Already settled: the first read goes to the primary and records its
                // position ([`ReadAt::PrimaryThenRecord`]).
                Mark::Pending(_) => m.unknown_since_ms = Some(0),
                Mark::WrittenAt(ms) => m.written_at_ms = ms.min(now),
            }
        }
        state
    }

    /// Waits (up to `limit`) until no write's position is still being recorded.
    pub(crate) async fn settled(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            loop {
                let recorded = self.recorded.notified();
                tokio::pin!(recorded);
                recorded.as_mut().enable();
                if self.unrecorded.load(Ordering::Acquire) == 0 {
                    return;
                }
                recorded.await;
            }
        })
        .await;
    }
}

/// Positions only move forward on a timeline, and a newer timeline replaces an older one.
/// GTID positions move forward in every domain. (Both are the primary's whole position at
/// some point, so the newer contains the older; should their union need more domains than a
/// [`GtidSet`] holds, the newer one is kept.)
pub(crate) fn merge(old: Option<At>, new: At) -> At {
    match old {
        Some(At {
            gtids: Some(a),
            timeline,
            ..
        }) if timeline == new.timeline && new.gtids.is_some() => {
            let b = new.gtids.expect("checked");
            let gtids = a.union(&b).unwrap_or(b);
            At {
                position: gtids.total(),
                timeline,
                gtids: Some(gtids),
            }
        }
        Some(old) if old.timeline == new.timeline => At {
            position: old.position.max(new.position),
            ..new
        },
        Some(old) if old.timeline > new.timeline => old,
        _ => new,
    }
}
