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
//! replica), `health` (the probe task), `backend` (what differs per database), [`pool`]
//! (the [`ReplicaPool`] itself), [`config`], [`error`], [`status`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod backend;
pub mod balance;
mod ban;
mod cluster;
pub mod config;
pub mod consistency;
pub mod discovery;
pub mod error;
mod gtid;
mod health;
mod node;
#[cfg(feature = "patroni")]
mod patroni;
pub mod pool;
mod redact;
pub mod route;
#[cfg(feature = "sea-orm")]
pub mod sea_orm;
pub mod status;
mod topology;
#[cfg(feature = "tower")]
pub mod tower;

pub use backend::{Backend, LogPosition};
pub use balance::Balance;
pub use config::Config;
pub use consistency::{CausalToken, Consistency, Session, TokenKind};
pub use error::{Error, may_have_committed};
pub use gtid::GtidSet;
pub use pool::{Builder, ReplicaPool, Targeted};
pub use route::{Dialect, Route, Router, Target, route, route_in};
pub use status::Role;
pub use status::{NodeStatus, Status};
pub use topology::Origin;

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

/// The README's examples, compiled as doctests so the front door stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
