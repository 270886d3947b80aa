//! Read-your-writes across requests: causal tokens from the primary's log position.
//!
//! A [`Session`] is an executor like the pool. After a statement that runs on the primary,
//! it records the primary's WAL insert position (one extra `SELECT` on the same connection,
//! see [`Backend::capture_position`](crate::Backend::capture_position)). Its reads then go
//! only to replicas known to have replayed at least that far; when none has, the read waits
//! up to [`Config::causal_wait`](crate::Config::causal_wait) for one to catch up (replay
//! positions are refreshed on demand, at most once per
//! [`Config::position_interval`](crate::Config::position_interval) however many sessions
//! wait), and otherwise reads on the primary. A read through a session therefore never sees a state older than the
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
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{Error, GtidSet};

/// How a [`Session`] keeps its reads at least as new as its writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consistency {
    /// By log position: reads go to replicas that have replayed the session's writes
    /// (PostgreSQL's WAL position and timeline, MariaDB's GTID position per domain).
    /// Backends whose replicas always see committed writes (SQLite readers of the same file)
    /// need nothing.
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
    /// GTID positions per replication domain (MariaDB): the primary's after a write, each
    /// replica's applied one.
    Gtids,
    /// Replicas see every committed write at once (SQLite readers of the same file).
    Immediate,
    /// Nothing: fall back to time.
    Unsupported,
}

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

impl CausalSupport {
    /// Whether sessions track log positions (PostgreSQL's LSNs or MariaDB's GTIDs).
    pub(crate) fn by_position(self) -> bool {
        matches!(self, CausalSupport::Positions | CausalSupport::Gtids)
    }
}

/// A log position on a timeline: "my reads must see at least this".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct At {
    /// PostgreSQL's LSN; for MariaDB the total of `gtids`, which a replica that has
    /// applied `gtids` is never below (a quick first test).
    pub(crate) position: u64,
    /// PostgreSQL's timeline (a promotion starts a new one); `None` when the backend has
    /// none. Positions on different timelines are not comparable.
    pub(crate) timeline: Option<u64>,
    /// MariaDB: the GTID position per domain, which decides.
    pub(crate) gtids: Option<GtidSet>,
}

impl At {
    pub(crate) fn from_log(p: crate::LogPosition) -> At {
        At {
            position: p.position,
            timeline: p.timeline,
            gtids: p.gtids,
        }
    }

    /// Whether `self` is past `other` somewhere (on the same timeline).
    fn ahead_of(&self, other: &At) -> bool {
        match (&self.gtids, &other.gtids) {
            (Some(a), Some(b)) => !b.contains(a),
            _ => self.position > other.position,
        }
    }
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
}

/// A session's high-water mark, carried between requests and processes.
///
/// Its string form names the format version, the kind, and the cluster (PostgreSQL's system
/// identifier), all hexadecimal:
///
/// - `pp2-l-<cluster>-<timeline>-<position>`: reads must see this log position on this
///   timeline;
/// - `pp2-p-<cluster>-<unix ms>`: a write whose position is not known yet, issued by then;
///   holders read on the primary until it has settled;
/// - `pp2-t-<cluster>-<unix ms>`: a write time, for time-based consistency;
/// - `pp2-g-<cluster>-<domain>.<seq>[_<domain>.<seq>…]`: reads must see this MariaDB GTID
///   position (cluster 0: MariaDB has no cluster identity).
///
/// A token is untrusted input: one from another cluster or of the wrong kind is refused by
/// [`ReplicaPool::session_with`](crate::ReplicaPool::session_with), and one ahead of the
/// primary is clamped to the primary's position after one check.
///
/// ```
/// use partypool::{CausalToken, TokenKind};
/// let t: CausalToken = "pp2-l-6f1a2b3c4d5e6f70-1-3000148".parse()?;
/// assert_eq!(t.to_string(), "pp2-l-6f1a2b3c4d5e6f70-1-3000148");
/// assert_eq!((t.kind(), t.timeline(), t.position()), (TokenKind::Position, Some(1), Some(0x3000148)));
/// assert!("pp2-l-zz-1-1".parse::<CausalToken>().is_err());
/// # Ok::<(), partypool::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CausalToken {
    cluster: u64,
    mark: Mark,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Mark {
    Position(At),
    Pending(u64),
    WrittenAt(u64),
}

/// What a [`CausalToken`] records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenKind {
    /// A log position on a timeline (`l`).
    Position,
    /// A write whose position is not known yet (`p`): holders read on the primary until it
    /// has settled.
    Pending,
    /// A write time, for [`Consistency::StickyFor`] (`t`).
    Time,
    /// A MariaDB GTID position, per replication domain (`g`).
    Gtid,
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenKind::Position => "position (l)",
            TokenKind::Pending => "pending (p)",
            TokenKind::Time => "time (t)",
            TokenKind::Gtid => "GTID (g)",
        })
    }
}

impl CausalToken {
    /// The cluster it belongs to (PostgreSQL's system identifier; 0 when the backend has
    /// none).
    pub fn cluster(&self) -> u64 {
        self.cluster
    }

    /// What it records.
    pub fn kind(&self) -> TokenKind {
        match self.mark {
            Mark::Position(At { gtids: Some(_), .. }) => TokenKind::Gtid,
            Mark::Position(_) => TokenKind::Position,
            Mark::Pending(_) => TokenKind::Pending,
            Mark::WrittenAt(_) => TokenKind::Time,
        }
    }

    /// The log position reads must have reached, for a position token.
    pub fn position(&self) -> Option<u64> {
        match self.mark {
            Mark::Position(at) => Some(at.position),
            _ => None,
        }
    }

    /// The GTID position reads must have reached, for a GTID token.
    pub fn gtids(&self) -> Option<GtidSet> {
        match self.mark {
            Mark::Position(at) => at.gtids,
            _ => None,
        }
    }

    /// The timeline of that position, when the backend has timelines.
    pub fn timeline(&self) -> Option<u64> {
        match self.mark {
            Mark::Position(at) => at.timeline,
            _ => None,
        }
    }
}

impl fmt::Display for CausalToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.cluster;
        match self.mark {
            Mark::Position(At { gtids: Some(g), .. }) => {
                write!(f, "pp2-g-{c:016x}-{}", g.to_token())
            }
            Mark::Position(At {
                position, timeline, ..
            }) => {
                write!(f, "pp2-l-{c:016x}-{:x}-{position:x}", timeline.unwrap_or(0))
            }
            Mark::Pending(t) => write!(f, "pp2-p-{c:016x}-{t:x}"),
            Mark::WrittenAt(t) => write!(f, "pp2-t-{c:016x}-{t:x}"),
        }
    }
}

impl FromStr for CausalToken {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| {
            Error::InvalidToken(format!(
                "{why} (expected pp2-l-<cluster>-<timeline>-<position>, pp2-g-<cluster>-<domain>.<seq>, pp2-p-<cluster>-<ms> or pp2-t-<cluster>-<ms>)"
            ))
        };
        let s = s.trim();
        if s.len() > 140 {
            return Err(bad("too long"));
        }
        let parts: Vec<&str> = s.split('-').collect();
        match parts.first() {
            Some(&"pp2") => {}
            Some(&"pp1") => return Err(bad("an old token format (pp1)")),
            _ => return Err(bad("not a partypool token")),
        }
        let hex = |v: Option<&&str>, what: &str| {
            let v = v.ok_or_else(|| bad(&format!("no {what}")))?;
            if v.is_empty() || v.starts_with('+') {
                return Err(bad(&format!("{what} is not hexadecimal")));
            }
            u64::from_str_radix(v, 16).map_err(|_| bad(&format!("{what} is not hexadecimal")))
        };
        let kind = parts.get(1).copied().ok_or_else(|| bad("no kind"))?;
        let cluster = hex(parts.get(2), "cluster")?;
        let (mark, len) = match kind {
            "l" => {
                let timeline = hex(parts.get(3), "timeline")?;
                let position = hex(parts.get(4), "position")?;
                let timeline = (timeline != 0).then_some(timeline);
                (
                    Mark::Position(At {
                        position,
                        timeline,
                        gtids: None,
                    }),
                    5,
                )
            }
            "g" => {
                let gtids = parts.get(3).ok_or_else(|| bad("no GTID position"))?;
                let gtids = GtidSet::from_token(gtids).map_err(|e| bad(&e))?;
                (
                    Mark::Position(At {
                        position: gtids.total(),
                        timeline: None,
                        gtids: Some(gtids),
                    }),
                    4,
                )
            }
            "p" => (Mark::Pending(hex(parts.get(3), "time")?), 4),
            "t" => (Mark::WrittenAt(hex(parts.get(3), "time")?), 4),
            _ => return Err(bad("unknown kind")),
        };
        if parts.len() != len {
            return Err(bad("trailing text"));
        }
        if matches!(
            mark,
            Mark::Position(At {
                position: u64::MAX,
                ..
            })
        ) {
            return Err(bad("position out of range"));
        }
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

/// What the pool's consistency settings say about sessions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    pub(crate) support: CausalSupport,
    /// `Some(d)`: time-based, reads on the primary for `d` after a write.
    pub(crate) sticky: Option<Duration>,
    pub(crate) settle: Duration,
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

/// What a session has written, shared by the session and the statements it runs.
#[derive(Debug, Default)]
pub(crate) struct SessionState {
    marks: std::sync::Mutex<Marks>,
    /// Writes running (or finished) whose position is not recorded yet.
    unrecorded: AtomicU32,
    /// Woken when a write's position is recorded.
    recorded: tokio::sync::Notify,
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
        self.marks.lock().unwrap_or_else(|e| e.into_inner())
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

    /// The session's token, if it wrote (or was made from a token).
    pub(crate) fn token(&self, cluster: u64) -> Option<CausalToken> {
        let m = *self.marks();
        let mark = if self.unrecorded.load(Ordering::Acquire) > 0 {
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

    /// Starts from a token that [`ReplicaPool::session_with`](crate::ReplicaPool::session_with)
    /// accepted.
    fn from_token(token: CausalToken) -> Self {
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
                Mark::Pending(ms) => m.unknown_since_ms = Some(ms.min(now)),
                Mark::WrittenAt(ms) => m.written_at_ms = ms.min(now),
            }
        }
        state
    }

    /// Waits (up to `limit`) until no write's position is still being recorded.
    async fn settled(&self, limit: Duration) {
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
fn merge(old: Option<At>, new: At) -> At {
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

pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(crate) fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
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

/// A clone is the same session (it shares its writes and positions), e.g. to hand it to
/// another task or to keep it in a request's extensions.
impl<DB: crate::Backend> Clone for Session<DB> {
    fn clone(&self) -> Self {
        Session {
            pool: self.pool.clone(),
            state: Arc::clone(&self.state),
        }
    }
}

impl<DB: crate::Backend> Session<DB> {
    pub(crate) fn new(pool: crate::ReplicaPool<DB>, token: Option<CausalToken>) -> Self {
        Session {
            pool,
            state: Arc::new(token.map(SessionState::from_token).unwrap_or_default()),
        }
    }

    /// The token to carry to the next request: `None` until the session has written
    /// something (or was made from a token).
    ///
    /// It never describes a state older than a write the session issued: while a write's
    /// position is still being recorded (e.g. its result stream was dropped and is being
    /// drained in the background) it is a [`TokenKind::Pending`] token, whose holders read on
    /// the primary. [`settled_token`](Self::settled_token) waits for the position instead.
    pub fn token(&self) -> Option<CausalToken> {
        self.state
            .token(self.pool.shared.cluster.cluster_id().unwrap_or(0))
    }

    /// Like [`token`](Self::token), but first waits (bounded by the settle window:
    /// `statement_timeout` plus a second, or 30 s) until the positions of the session's
    /// writes are recorded, so the token is a position whenever that is possible. Use it at
    /// the end of a request.
    ///
    /// ```no_run
    /// # async fn demo(session: partypool::Session<sqlx::Postgres>) {
    /// let header = session.settled_token().await.map(|t| t.to_string());
    /// # let _ = header; }
    /// ```
    pub async fn settled_token(&self) -> Option<CausalToken> {
        let rules = self.pool.shared.rules();
        self.state.settled(rules.settle).await;
        self.token()
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
        self.begin_owned().await
    }

    /// [`begin`](Self::begin), for holders that outlive the borrow (SeaORM's transactions).
    pub(crate) async fn begin_owned(&self) -> Result<SessionTransaction<'static, DB>, Error> {
        let tx = self.pool.begin().await?;
        Ok(SessionTransaction {
            tx: Some(tx),
            session: self.clone(),
            _session: std::marker::PhantomData,
        })
    }
}

/// A transaction begun through a [`Session`]. Use `&mut *tx` as the executor, like a
/// `sqlx::Transaction`; dropping it without `commit` rolls back.
pub struct SessionTransaction<'s, DB: crate::Backend> {
    tx: Option<sqlx::Transaction<'static, DB>>,
    // The same session (a clone shares its state); the lifetime keeps the public API of a
    // transaction borrowed from its session.
    session: Session<DB>,
    _session: std::marker::PhantomData<&'s Session<DB>>,
}

impl<DB: crate::Backend> SessionTransaction<'_, DB> {
    /// Commits, then records the primary's position in the session. If the commit fails
    /// or is cancelled midway, its outcome is unknown: the session reads on the primary
    /// until it has settled (it never reads a state without the transaction's writes).
    pub async fn commit(mut self) -> Result<(), sqlx::Error> {
        let Some(tx) = self.tx.take() else {
            return Ok(());
        };
        let shared = &self.session.pool.shared;
        let state = &self.session.state;
        // Until recorded, the session reads on the primary; dropped midway (the future was
        // cancelled), the guard marks the outcome unknown.
        let pending = crate::pool::PendingWrite::new(shared, state, true);
        match tx.commit().await {
            Ok(()) => {
                // The commit returned: any writer connection's position is past it now.
                shared.record_commit(state).await;
                pending.recorded();
                Ok(())
            }
            // `pending` drops: the outcome is unknown. A transport error mid-commit says so.
            Err(e) if DB::is_unavailable(&e) => Err(crate::error::OutcomeUnknown::error(
                &shared.cluster.writer().name,
                std::io::ErrorKind::ConnectionAborted,
                "the connection broke during COMMIT".into(),
                Some(Box::new(e)),
            )),
            Err(e) => Err(e),
        }
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

    const RULES: Rules = Rules {
        support: CausalSupport::Positions,
        sticky: None,
        settle: Duration::from_secs(10),
    };

    fn at(position: u64, timeline: u64) -> At {
        At {
            position,
            timeline: Some(timeline),
            gtids: None,
        }
    }

    #[test]
    fn consistency_reads_from_config_files() {
        let sticky: Consistency = serde_json::from_str(r#"{ "sticky_for": "2s" }"#).unwrap();
        assert_eq!(sticky, Consistency::StickyFor(Duration::from_secs(2)));
        let causal: Consistency = serde_json::from_str(r#""causal""#).unwrap();
        assert_eq!(causal, Consistency::Causal);
    }

    #[test]
    fn tokens_round_trip() {
        for mark in [
            Mark::Position(at(0x3000148, 3)),
            Mark::Pending(1_790_000_000_000),
            Mark::WrittenAt(1_790_000_000_000),
        ] {
            let t = CausalToken {
                cluster: u64::MAX,
                mark,
            };
            assert_eq!(t.to_string().parse::<CausalToken>().unwrap(), t);
        }
    }

    #[test]
    fn gtid_tokens_round_trip_and_compare_per_domain() {
        let t: CausalToken = "pp2-g-0000000000000000-0.64_1.5".parse().unwrap();
        assert_eq!(t.kind(), TokenKind::Gtid);
        assert_eq!(t.to_string(), "pp2-g-0000000000000000-0.64_1.5");
        let g = t.gtids().unwrap();
        assert_eq!((g.seq(0), g.seq(1), t.position()), (100, 5, Some(105)));
        for bad in [
            "pp2-g-0",
            "pp2-g-0-",
            "pp2-g-0-0.1-2",
            "pp2-g-0-0.1_0.2",
            "pp2-g-0-0.1_1.1_2.1_3.1_4.1",
        ] {
            assert!(bad.parse::<CausalToken>().is_err(), "{bad}");
        }
        // A session's position merges per domain, and a token ahead in any domain is
        // clamped to the primary's position.
        let rules = Rules {
            support: CausalSupport::Gtids,
            ..RULES
        };
        assert_eq!(rules.token_kind(), Some(TokenKind::Gtid));
        let gat = |s: &str| At::from_log(crate::LogPosition::gtid(s.parse().unwrap()));
        let s = SessionState::from_token(t);
        s.reconcile(gat("0-1-200,1-1-4"), &rules, now_ms());
        match s.read_at(&rules, None, now_ms()) {
            ReadAt::AtLeast(at) => assert_eq!(at.gtids, gat("0-1-200,1-1-4").gtids),
            other => panic!("{other:?}"),
        }
        s.recorded(gat("0-1-201,1-1-4,2-1-1"));
        s.recorded(gat("0-1-150"));
        let g = s.token(0).unwrap().gtids().unwrap();
        assert_eq!((g.seq(0), g.seq(1), g.seq(2)), (201, 4, 1));
    }

    #[test]
    fn garbled_tokens_are_errors() {
        for bad in [
            "",
            "pp2",
            "pp1-l-1-10",
            "pp2-l-1-1",
            "pp2-l-1-1-10-0",
            "pp2-x-1-1",
            "pp2-l-+1-1-1",
            "pp2-l-1-1-ffffffffffffffff",
            "pp2-l-1-1-1ffffffffffffffff",
            &"pp2-l-1-1-".repeat(20),
        ] {
            assert!(bad.parse::<CausalToken>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_read_decision() {
        let s = SessionState::default();
        assert_eq!(s.read_at(&RULES, Some(1), 0), ReadAt::Anywhere);
        s.recorded(at(100, 1));
        assert_eq!(s.read_at(&RULES, Some(1), 0), ReadAt::AtLeast(at(100, 1)));
        // The writer moved to a newer timeline: the position means nothing there.
        assert_eq!(s.read_at(&RULES, Some(2), 0), ReadAt::PrimaryThenRecord);
        // A write being recorded: the primary.
        s.write_started();
        assert_eq!(s.read_at(&RULES, Some(1), 0), ReadAt::Primary);
        assert_eq!(s.token(7).unwrap().kind(), TokenKind::Pending);
        s.write_recorded();
        // A write whose position is unknown: the primary until it settles, then the
        // primary once more to record its position.
        s.unknown(1_000);
        assert_eq!(s.read_at(&RULES, Some(1), 5_000), ReadAt::Primary);
        assert_eq!(
            s.read_at(&RULES, Some(1), 11_000),
            ReadAt::PrimaryThenRecord
        );
        assert_eq!(
            s.token(7).unwrap().to_string(),
            "pp2-p-0000000000000007-3e8"
        );
        s.reconcile(at(500, 1), &RULES, 11_000);
        assert_eq!(
            s.read_at(&RULES, Some(1), 11_000),
            ReadAt::AtLeast(at(500, 1))
        );
    }

    #[test]
    fn settling_too_early_records_nothing() {
        let s = SessionState::default();
        s.unknown(1_000);
        s.reconcile(at(500, 1), &RULES, 2_000);
        assert_eq!(s.read_at(&RULES, Some(1), 2_000), ReadAt::Primary);
    }

    #[test]
    fn positions_ahead_of_the_primary_are_clamped() {
        let s = SessionState::from_token("pp2-l-7-1-ffffffffffff".parse().unwrap());
        s.reconcile(at(0x5000, 1), &RULES, 0);
        assert_eq!(s.token(7).unwrap().position(), Some(0x5000));
        // A position this session recorded is never lowered (a concurrent write of the same
        // session may have recorded it after the primary's position was read).
        s.recorded(at(0x6000, 1));
        s.reconcile(at(0x5800, 1), &RULES, 0);
        assert_eq!(s.token(7).unwrap().position(), Some(0x6000));
    }

    #[test]
    fn a_forged_position_is_replaced_by_the_sessions_first_write() {
        let s = SessionState::from_token("pp2-l-7-1-ffffffffffff".parse().unwrap());
        s.recorded(at(0x5000, 1));
        assert_eq!(s.token(7).unwrap().position(), Some(0x5000));
    }

    #[test]
    fn future_times_in_tokens_count_as_now() {
        let s = SessionState::from_token("pp2-p-7-ffffffffffff".parse().unwrap());
        let later = now_ms() + RULES.settle.as_millis() as u64 + 1_000;
        assert_eq!(s.read_at(&RULES, Some(1), later), ReadAt::PrimaryThenRecord);
    }

    #[test]
    fn a_forged_timeline_is_replaced_once() {
        let s = SessionState::from_token("pp2-l-7-9-10".parse().unwrap());
        assert_eq!(s.read_at(&RULES, Some(1), 0), ReadAt::PrimaryThenRecord);
        s.reconcile(at(0x5000, 1), &RULES, 0);
        assert_eq!(
            s.read_at(&RULES, Some(1), 0),
            ReadAt::AtLeast(at(0x5000, 1))
        );
    }

    #[test]
    fn timelines_only_move_forward() {
        let s = SessionState::default();
        s.recorded(at(900, 2));
        s.recorded(at(5_000, 1));
        assert_eq!(s.token(1).unwrap().timeline(), Some(2));
        assert_eq!(s.token(1).unwrap().position(), Some(900));
        s.recorded(at(10, 3));
        assert_eq!(s.token(1).unwrap().position(), Some(10));
    }

    #[test]
    fn time_based_sessions() {
        let rules = Rules {
            sticky: Some(Duration::from_secs(1)),
            ..RULES
        };
        let s = SessionState::default();
        assert_eq!(s.read_at(&rules, None, now_ms()), ReadAt::Anywhere);
        s.wrote_now();
        assert_eq!(s.read_at(&rules, None, now_ms()), ReadAt::Primary);
        assert_eq!(s.read_at(&rules, None, now_ms() + 2_000), ReadAt::Anywhere);
        assert_eq!(s.token(0).unwrap().kind(), TokenKind::Time);
    }
}
