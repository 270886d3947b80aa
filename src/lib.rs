//! # partypool
//!
//! One [`sqlx`] handle over a database deployment with one write primary and many read
//! replicas. `&ReplicaPool` is a [`sqlx::Executor`]: reads go to healthy replicas
//! (round-robin by default), everything else — writes, locks, volatile functions, session
//! state, transactions — goes to the primary. A background task probes every node; a dead
//! or hung replica leaves the rotation and comes back when it answers again, and reads fall
//! back to the primary when no replica is healthy.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use partypool::PgReplicaPool;
//!
//! let pool = PgReplicaPool::builder()
//!     .primary("postgres://app@db-primary/app")
//!     .replica("postgres://app@db-replica-1/app")
//!     .replica("postgres://app@db-replica-2/app")
//!     .connect()
//!     .await?;
//!
//! let n: i64 = sqlx::query_scalar("SELECT count(*) FROM users").fetch_one(&pool).await?; // a replica
//! sqlx::query("DELETE FROM sessions WHERE expires < now()").execute(&pool).await?;      // the primary
//! println!("{}", pool.status());
//! # let _ = n; Ok(()) }
//! ```
//!
//! Modules, from pure logic to I/O: [`route`](mod@route) (classify a statement), [`balance`] (pick a
//! replica), [`consistency`] (read-your-writes), [`backend`] (what differs per database),
//! [`pool`] (the [`ReplicaPool`] itself), [`config`], [`error`], [`status`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// Layers, arrows pointing down only (README "Layout"; `.ci/run` checks for module cycles):
//
// integrations  tower · sea_orm · bin/ · consistency (the public face of causal/ and
//               the session types)
// face          pool/ (ReplicaPool, Session, the executor and its attempt loop)
// tasks         health (probes) · refresh (replay positions on demand) · discovery/
// state         cluster/ (observe → decide → publish) · causal/ (read-your-writes rules)
// node          node/ · status
// backend       backend/
// ground        route/ · balance/ · config · error · redact · positions/ · roles · ban ·
//               topology

// ground
pub mod balance;
mod ban;
pub mod config;
mod credentials;
pub mod error;
mod positions;
mod redact;
mod roles;
pub mod route;
mod sync;
mod telemetry;
mod topology;
// backend
pub mod backend;
// node
mod node;
pub mod status;
// state
mod causal;
mod cluster;
// tasks
pub mod discovery;
mod health;
mod refresh;
mod simulate;
// face
pub mod pool;
// integrations (and the public face of read-your-writes)
#[cfg(feature = "actix-web")]
pub mod actix;
#[cfg(any(feature = "tower", feature = "actix-web"))]
mod carrier;
pub mod consistency;
#[cfg(feature = "sea-orm")]
pub mod sea_orm;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "tower")]
pub mod tower;

pub use backend::{Backend, LogPosition};
pub use balance::Balance;
pub use config::{Config, Consistency, Scope};
pub use consistency::{CausalToken, TokenKind};
pub use credentials::{Credential, CredentialError, CredentialSource};
pub use error::{Error, may_have_committed};
pub use pool::{Builder, Journal, JournalEntry, ReadChoice, ReplicaPool, Session, Targeted};
pub use positions::GtidSet;
pub use roles::{Origin, Role};
pub use route::{Dialect, Route, Router, Target, route, route_in};
pub use status::{NodeState, NodeStatus, Status};

/// A [`ReplicaPool`] over PostgreSQL.
#[cfg(feature = "postgres")]
pub type PgReplicaPool = ReplicaPool<sqlx::Postgres>;

/// A [`ReplicaPool`] over MySQL or MariaDB.
#[cfg(feature = "mysql")]
pub type MySqlReplicaPool = ReplicaPool<sqlx::MySql>;

/// A [`ReplicaPool`] over SQLite: one writer pool and any number of read-only reader pools
/// on the same database file (in WAL mode), which sidesteps SQLite's single-writer
/// contention with the same API.
#[cfg(feature = "sqlite")]
pub type SqliteReplicaPool = ReplicaPool<sqlx::Sqlite>;

/// A read-your-writes [`Session`] of a [`PgReplicaPool`].
#[cfg(feature = "postgres")]
pub type PgSession = Session<sqlx::Postgres>;

/// A read-your-writes [`Session`] of a [`MySqlReplicaPool`].
#[cfg(feature = "mysql")]
pub type MySqlSession = Session<sqlx::MySql>;

/// A read-your-writes [`Session`] of a [`SqliteReplicaPool`].
#[cfg(feature = "sqlite")]
pub type SqliteSession = Session<sqlx::Sqlite>;
