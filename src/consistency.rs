//! Read-your-writes: within the process by default, across requests and processes with
//! sessions and causal tokens.
//!
//! **The process scope** ([`Scope::Process`], the default): every pool of one cluster in the
//! process shares a high-water mark. A plain `&pool` read never sees a state older than a
//! write partypool acknowledged in this process before the read began, nor older than an
//! earlier read saw. Writes pay two atomic increments; the first reads after a write read the
//! primary's position once (shared) and ask a replica for its own. See the README's "Read your
//! writes, by default" for the mechanism and BENCHMARKS.md for the cost.
//!
//! **Sessions and request scopes** carry writes to other processes. A [`Session`] is an
//! executor like the pool, and [`Session::scope`] makes plain `&pool` calls inside a future
//! belong to it (the tower layer and the actix-web middleware run each request that way). After a statement that runs on the primary,
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

pub use crate::causal::{CausalSupport, CausalToken, Consistency, TokenKind};
pub use crate::config::Scope;
pub use crate::pool::Session;
