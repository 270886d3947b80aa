//! Read-your-writes across requests: causal tokens from the primary's log position.
//!
//! A [`Session`] is an executor like the pool. After a statement that runs on the primary,
//! it records the primary's WAL insert position (one extra `SELECT` on the same connection,
//! see [`Backend::capture_position`](crate::Backend::capture_position)). Its reads then go
//! only to replicas known to have replayed at least that far; when none has, the read waits
//! up to [`Config::causal_wait`](crate::Config::causal_wait) for one to catch up (replay
//! positions are refreshed at once, and every
//! [`Config::position_interval`](crate::Config::position_interval)), and otherwise reads on
//! the primary. A read through a session therefore never sees a state older than the
//! session's own writes, and reads without a session are not affected.
//!
//! Why this is correct: a replica's replay position only grows, so a position partypool has
//! seen is a lower bound of the current one; and the insert position read after a commit
//! returned is past that commit's record.
//!
//! The token crosses process boundaries as a short string ([`CausalToken`]: `Display` /
//! `FromStr` / serde), e.g. in a cookie or header, and names the cluster (PostgreSQL's system
//! identifier), so a token from another cluster is rejected instead of routing wrongly.
//!
//! ```no_run
//! # async fn demo(pool: partypool::PgReplicaPool) -> Result<(), Box<dyn std::error::Error>> {
//! // Request 1: a write.
//! let session = pool.session();
//! sqlx::query("UPDATE users SET name = 'Ada' WHERE id = 1").execute(&session).await?;
//! let header = session.token().map(|t| t.to_string()); // send it back to the client
//!
//! // Request 2 (maybe another process): read your write, from a replica that has it.
//! let token: partypool::CausalToken = header.unwrap().parse()?;
//! let session = pool.session_with(token)?;
//! let name: String = sqlx::query_scalar("SELECT name FROM users WHERE id = 1").fetch_one(&session).await?;
//! # let _ = name; Ok(()) }
//! ```

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::Error;

/// How a [`Session`] keeps its reads at least as new as its writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// By log position: reads go to replicas that have replayed the session's writes
    /// (PostgreSQL). Backends whose replicas always see committed writes (SQLite readers of
    /// the same file) need nothing. Backends without positions (MySQL/MariaDB, for now) fall
    /// back to `StickyFor(2 s)`.
    #[default]
    Causal,
    /// By time, like Rails' replica delay: for this long after a write, the session reads on
    /// the primary.
    #[serde(with = "humantime_serde")]
    StickyFor(Duration),
}

/// What a backend offers for read-your-writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CausalSupport {
    /// Log positions: the primary's after a write, each replica's replayed one.
    Positions,
    /// Replicas see every committed write at once (SQLite readers of the same file).
    Immediate,
    /// Nothing: fall back to time.
    Unsupported,
}

/// The fallback of [`Consistency::Causal`] on backends without positions.
pub(crate) const STICKY_FALLBACK: Duration = Duration::from_secs(2);

/// A session's high-water mark: "my reads must see at least this".
///
/// Its string form is `pp1-l-<cluster>-<position>` (a log position) or
/// `pp1-t-<cluster>-<unix ms>` (a write time, for time-based consistency), all hexadecimal.
///
/// ```
/// use partypool::CausalToken;
/// let t: CausalToken = "pp1-l-6f1a2b3c4d5e6f70-3000148".parse()?;
/// assert_eq!(t.to_string(), "pp1-l-6f1a2b3c4d5e6f70-3000148");
/// assert!("pp1-l-zz-1".parse::<CausalToken>().is_err());
/// # Ok::<(), partypool::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CausalToken {
    cluster: u64,
    mark: Mark,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Mark {
    Position(u64),
    WrittenAt(u64),
}

impl CausalToken {
    /// The cluster it belongs to (PostgreSQL's system identifier; 0 when the backend has
    /// none).
    pub fn cluster(&self) -> u64 {
        self.cluster
    }

    /// The log position reads must have reached, for a position token.
    pub fn position(&self) -> Option<u64> {
        match self.mark {
            Mark::Position(p) => Some(p),
            Mark::WrittenAt(_) => None,
        }
    }
}

impl fmt::Display for CausalToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.mark {
            Mark::Position(p) => write!(f, "pp1-l-{:016x}-{p:x}", self.cluster),
            Mark::WrittenAt(t) => write!(f, "pp1-t-{:016x}-{t:x}", self.cluster),
        }
    }
}

impl FromStr for CausalToken {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad =
            |why: &str| Error::InvalidToken(format!("{why} (expected pp1-l-<cluster>-<position>)"));
        let mut parts = s.trim().split('-');
        if parts.next() != Some("pp1") {
            return Err(bad("not a partypool token"));
        }
        let kind = parts.next().ok_or_else(|| bad("no kind"))?;
        let cluster = parts.next().ok_or_else(|| bad("no cluster"))?;
        let value = parts.next().ok_or_else(|| bad("no position"))?;
        if parts.next().is_some() {
            return Err(bad("trailing text"));
        }
        let hex = |v: &str, what: &str| {
            u64::from_str_radix(v, 16).map_err(|_| bad(&format!("{what} is not hexadecimal")))
        };
        let cluster = hex(cluster, "cluster")?;
        let value = hex(value, "position")?;
        let mark = match kind {
            "l" => Mark::Position(value),
            "t" => Mark::WrittenAt(value),
            _ => return Err(bad("unknown kind")),
        };
        Ok(CausalToken { cluster, mark })
    }
}

impl Serialize for CausalToken {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CausalToken {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a session has written, shared by the session and the statements it runs.
#[derive(Debug, Default)]
pub(crate) struct SessionState {
    /// Highest primary position after the session's writes (0: none).
    position: AtomicU64,
    /// Unix time in ms of the session's last write (0: none), for time-based consistency.
    written_at_ms: AtomicU64,
    /// Writes running (or finished) whose position is not recorded yet.
    unrecorded: std::sync::atomic::AtomicU32,
}

impl SessionState {
    pub(crate) fn advance(&self, position: u64) {
        self.position.fetch_max(position, Ordering::AcqRel);
    }

    pub(crate) fn wrote_now(&self) {
        self.written_at_ms
            .fetch_max(unix_ms(SystemTime::now()), Ordering::AcqRel);
    }

    pub(crate) fn write_started(&self) {
        self.unrecorded.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn write_recorded(&self) {
        self.unrecorded.fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether reads must go to the primary because a write's position is not known: one is
    /// still being recorded, or could not be (position `u64::MAX`).
    pub(crate) fn position_unknown(&self) -> bool {
        self.unrecorded.load(Ordering::Acquire) > 0
            || self.position.load(Ordering::Acquire) == u64::MAX
    }

    /// The position reads must have reached, if any.
    pub(crate) fn min_position(&self) -> Option<u64> {
        match self.position.load(Ordering::Acquire) {
            0 => None,
            p => Some(p),
        }
    }

    /// Whether reads must stay on the primary for time-based consistency.
    pub(crate) fn sticky(&self, window: Duration) -> bool {
        match self.written_at_ms.load(Ordering::Acquire) {
            0 => false,
            t => unix_ms(SystemTime::now()) < t.saturating_add(window.as_millis() as u64),
        }
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// An executor that reads its own writes, across requests too. Made by
/// [`ReplicaPool::session`](crate::ReplicaPool::session) or
/// [`ReplicaPool::session_with`](crate::ReplicaPool::session_with); see the
/// [module docs](crate::consistency).
///
/// Use `&session` wherever you would use `&pool`. Cheap to create (one allocation); make one
/// per request or per user interaction.
pub struct Session<DB: crate::Backend> {
    pub(crate) pool: crate::ReplicaPool<DB>,
    pub(crate) state: Arc<SessionState>,
}

impl<DB: crate::Backend> Session<DB> {
    pub(crate) fn new(pool: crate::ReplicaPool<DB>, token: Option<CausalToken>) -> Self {
        let state = SessionState::default();
        if let Some(t) = token {
            match t.mark {
                Mark::Position(p) => state.advance(p),
                Mark::WrittenAt(ms) => state.written_at_ms.store(ms, Ordering::Release),
            }
        }
        Session {
            pool,
            state: Arc::new(state),
        }
    }

    /// The token to carry to the next request: `None` until the session has written
    /// something (or was made from a token).
    pub fn token(&self) -> Option<CausalToken> {
        let cluster = self.pool.shared.cluster.cluster_id().unwrap_or(0);
        if let Some(p) = self.state.min_position() {
            return Some(CausalToken {
                cluster,
                mark: Mark::Position(p),
            });
        }
        match self.state.written_at_ms.load(Ordering::Acquire) {
            0 => None,
            t => Some(CausalToken {
                cluster,
                mark: Mark::WrittenAt(t),
            }),
        }
    }

    /// The pool this session reads and writes through.
    pub fn pool(&self) -> &crate::ReplicaPool<DB> {
        &self.pool
    }

    /// Begins a transaction on the primary; committing it through
    /// [`SessionTransaction::commit`] makes the session's later reads see it.
    ///
    /// ```no_run
    /// # async fn demo(session: partypool::Session<sqlx::Postgres>) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut tx = session.begin().await?;
    /// sqlx::query("UPDATE accounts SET balance = balance - 10 WHERE id = 1").execute(&mut *tx).await?;
    /// tx.commit().await?;
    /// let b: i64 = sqlx::query_scalar("SELECT balance FROM accounts WHERE id = 1").fetch_one(&session).await?;
    /// # let _ = b; Ok(()) }
    /// ```
    pub async fn begin(&self) -> Result<SessionTransaction<'_, DB>, Error> {
        let tx = self.pool.begin().await?;
        Ok(SessionTransaction {
            tx: Some(tx),
            session: self,
        })
    }
}

/// A transaction begun through a [`Session`]. Use `&mut *tx` as the executor, like a
/// `sqlx::Transaction`; dropping it without `commit` rolls back.
pub struct SessionTransaction<'s, DB: crate::Backend> {
    tx: Option<sqlx::Transaction<'static, DB>>,
    session: &'s Session<DB>,
}

impl<DB: crate::Backend> SessionTransaction<'_, DB> {
    /// Commits, then records the primary's position in the session.
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        if let Some(tx) = self.tx.take() {
            tx.commit().await?;
            let shared = &self.session.pool.shared;
            shared.record_commit(&self.session.state).await;
        }
        Ok(())
    }

    /// Rolls back.
    pub async fn rollback(mut self) -> Result<(), sqlx::Error> {
        match self.tx.take() {
            Some(tx) => tx.rollback().await,
            None => Ok(()),
        }
    }
}

impl<DB: crate::Backend> std::ops::Deref for SessionTransaction<'_, DB> {
    type Target = DB::Connection;

    fn deref(&self) -> &DB::Connection {
        self.tx.as_ref().expect("transaction already finished")
    }
}

impl<DB: crate::Backend> std::ops::DerefMut for SessionTransaction<'_, DB> {
    fn deref_mut(&mut self) -> &mut DB::Connection {
        self.tx.as_mut().expect("transaction already finished")
    }
}

impl<DB: crate::Backend> fmt::Debug for Session<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("token", &self.token())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_reads_from_config_files() {
        let sticky: Consistency = serde_json::from_str(r#"{ "sticky_for": "2s" }"#).unwrap();
        assert_eq!(sticky, Consistency::StickyFor(Duration::from_secs(2)));
        let causal: Consistency = serde_json::from_str(r#""causal""#).unwrap();
        assert_eq!(causal, Consistency::Causal);
    }

    #[test]
    fn tokens_round_trip() {
        for t in [
            CausalToken {
                cluster: u64::MAX,
                mark: Mark::Position(0x3000148),
            },
            CausalToken {
                cluster: 1,
                mark: Mark::WrittenAt(1_790_000_000_000),
            },
        ] {
            assert_eq!(t.to_string().parse::<CausalToken>().unwrap(), t);
        }
    }

    #[test]
    fn state_moves_forward_only() {
        let s = SessionState::default();
        assert_eq!(s.min_position(), None);
        s.advance(10);
        s.advance(5);
        assert_eq!(s.min_position(), Some(10));
        assert!(!s.sticky(Duration::from_secs(1)));
        s.wrote_now();
        assert!(s.sticky(Duration::from_secs(1)));
    }
}
