//! Simulated replicas ([`Builder::simulate_replicas`](crate::Builder::simulate_replicas)):
//! replicas that lag, on the one server a developer already runs.
//!
//! A task holds a ring of snapshots of the primary's server, each in a transaction kept open
//! on a connection of its own: every tick (an eighth of the lag) it takes a new one and
//! releases those no read can use any more. A read on a simulated replica runs in the newest
//! snapshot at least `Config::simulated_lag` old, so it sees the database as it was about
//! that long ago — and a write sent there is refused like on a real standby:
//!
//! - PostgreSQL exports its snapshots: a read begins a read-only transaction in it on its
//!   own connection (`SET TRANSACTION SNAPSHOT`), as many at once as the pool allows.
//! - MariaDB and SQLite cannot: a read borrows the connection holding the snapshot and runs
//!   there (`Reader`), one read at a time per snapshot.
//!
//! A simulated replica's replay position is its snapshot's (see [`Backend::hold_snapshot`]):
//! so sessions, tokens and the process scope treat it exactly as a real replica that far
//! behind, and the probes report it as a standby of the same cluster, lagging by its
//! snapshot's age.
//!
//! For development and CI only: every held snapshot keeps the server's vacuum horizon
//! `lag` back and holds a connection (about ten, see [`Ring::tick`]).

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Instant;

use sqlx::{ConnectOptions, SqlSafeStr};
use sqlx_core::transaction::TransactionManager;

use crate::backend::Backend;
use crate::node::{Held, Node, Ring};
use crate::positions::LogPosition;

type Tm<DB> = <DB as sqlx::Database>::TransactionManager;

/// Starts the ring task of `nodes` (the simulated replicas of one pool, sharing `ring`). It
/// stops when the ring is closed or every node is gone.
pub(crate) fn spawn<DB: Backend>(
    ring: &Arc<Ring>,
    nodes: &[Arc<Node<DB>>],
) -> Option<tokio::task::JoinHandle<()>> {
    nodes.first()?;
    let nodes: Vec<Weak<Node<DB>>> = nodes.iter().map(Arc::downgrade).collect();
    let ring = Arc::downgrade(ring);
    Some(tokio::spawn(async move {
        let mut held: VecDeque<(Held, Slot<DB>)> = VecDeque::new();
        let mut spare: Vec<DB::Connection> = Vec::new();
        let mut last: Option<LogPosition> = None;
        // When the snapshot reads entered until this tick was taken.
        let mut previous: Option<Instant> = None;
        let mut warned = false;
        let Some(tick) = ring.upgrade().map(|r| r.tick()) else {
            return;
        };
        let mut interval = tokio::time::interval(tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            {
                let Some(r) = ring.upgrade() else { break };
                let closing = r.closing();
                if r.is_closed() {
                    break;
                }
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = closing => break,
                }
            }
            let Some(r) = ring.upgrade() else { break };
            // A new snapshot, on a spare connection or a new one.
            let mut conn = match spare.pop() {
                Some(c) => c,
                // The options now (rotating credentials change them), of a simulated
                // replica still there (they are all the primary's).
                None => match nodes.iter().find_map(Weak::upgrade) {
                    None => break,
                    Some(node) => match node.pool.connect_options().connect().await {
                        Ok(c) => c,
                        Err(e) => {
                            let e = node.scrub(&e.to_string());
                            if !warned {
                                tracing::warn!(error = %e, "simulated replicas: cannot connect");
                                warned = true;
                            }
                            r.failed(Some(format!("cannot connect: {e}")));
                            continue;
                        }
                    },
                },
            };
            match DB::hold_snapshot(&mut conn).await {
                Ok((name, at)) => {
                    warned = false;
                    r.failed(None);
                    // Uncertain: it has at least what the previous one had.
                    let Some(at) = at.or(last) else {
                        release::<DB>(conn, &mut spare).await;
                        continue;
                    };
                    last = Some(at);
                    let taken = Instant::now();
                    let (slot, reader) = if DB::EXPORTS_SNAPSHOTS {
                        (Slot::Exporter(conn), None)
                    } else {
                        let reader = Arc::new(tokio::sync::Mutex::new(Some(conn)));
                        let shared: Arc<dyn std::any::Any + Send + Sync> = reader.clone();
                        (Slot::Reader(reader), Some(shared))
                    };
                    held.push_back((
                        Held {
                            name: name.into(),
                            at,
                            taken,
                            reader,
                        },
                        slot,
                    ));
                }
                Err(e) => {
                    if !warned {
                        tracing::warn!(error = %e, "simulated replicas: cannot hold a snapshot");
                        warned = true;
                    }
                    r.failed(Some(e.to_string()));
                    continue;
                }
            }
            // The newest snapshot at least `lag` old (the oldest while none is).
            let now = Instant::now();
            let current = held
                .iter()
                .rposition(|(h, _)| now.saturating_duration_since(h.taken) >= r.lag)
                .unwrap_or(0);
            // Those older than the one reads entered until now are released; that one stays
            // a tick longer: a read may be entering it right now.
            let keep_from = previous
                .and_then(|p| held.iter().position(|(h, _)| h.taken >= p))
                .unwrap_or(0)
                .min(current);
            for _ in 0..keep_from {
                match held.pop_front() {
                    Some((_, Slot::Exporter(conn))) => release::<DB>(conn, &mut spare).await,
                    Some((_, Slot::Reader(reader))) => retire::<DB>(reader),
                    None => {}
                }
            }
            let current = current - keep_from;
            let (current, newest) = (held[current].0.clone(), held[held.len() - 1].0.clone());
            previous = Some(current.taken);
            r.publish(current.clone(), newest);
            for node in nodes.iter().filter_map(Weak::upgrade) {
                node.advance_position(current.at);
            }
        }
        for (_, slot) in held {
            match slot {
                Slot::Exporter(conn) => {
                    let _ = sqlx::Connection::close(conn).await;
                }
                // Closing: after the read on it (if any), here, so that the pool's close
                // returns with every connection closed.
                Slot::Reader(reader) => {
                    if let Some(conn) = reader.lock().await.take() {
                        let _ = sqlx::Connection::close(conn).await;
                    }
                }
            }
        }
        for conn in spare {
            let _ = sqlx::Connection::close(conn).await;
        }
    }))
}

/// A connection holding a snapshot that reads run on, one at a time: `None` once the ring
/// released it, or a read on it was interrupted (its state is unknown).
type Shared<DB> = tokio::sync::Mutex<Option<<DB as sqlx::Database>::Connection>>;

/// A read's hold on a simulated replica's snapshot connection ([`enter`]).
pub(crate) type Reader<DB> =
    tokio::sync::OwnedMutexGuard<Option<<DB as sqlx::Database>::Connection>>;

/// A held snapshot, by how reads reach it.
enum Slot<DB: Backend> {
    /// Exported: reads enter it on their own connections; this one only keeps it open.
    Exporter(DB::Connection),
    /// Not exportable: reads run on this connection.
    Reader(Arc<Shared<DB>>),
}

/// Releases a snapshot reads run on, once the read on it (if any) is done.
fn retire<DB: Backend>(reader: Arc<Shared<DB>>) {
    tokio::spawn(async move {
        if let Some(conn) = reader.lock().await.take() {
            let _ = sqlx::Connection::close(conn).await;
        }
    });
}

/// Ends a held snapshot's transaction; the connection is kept for the next one.
async fn release<DB: Backend>(mut conn: DB::Connection, spare: &mut Vec<DB::Connection>) {
    if Tm::<DB>::rollback(&mut conn).await.is_ok() && Tm::<DB>::get_transaction_depth(&conn) == 0 {
        spare.push(conn);
    }
}

/// Prepares a read on simulated replica `ring`: where snapshots are exported, begins on
/// `conn` a read-only transaction in the snapshot reads enter now (a snapshot released just
/// before it was entered is retried once with the next); elsewhere, borrows the connection
/// holding that snapshot, on which the read then runs.
pub(crate) async fn enter<DB: Backend>(
    ring: &Ring,
    conn: &mut DB::Connection,
    limit: std::time::Duration,
) -> Result<Option<Reader<DB>>, sqlx::Error> {
    let mut tries = 0;
    loop {
        let Some(held) = ring.first(limit).await else {
            let why = ring.failure().unwrap_or_else(|| "none taken yet".into());
            return Err(sqlx::Error::Configuration(
                format!("the simulated replica holds no snapshot: {why}").into(),
            ));
        };
        if held.reader.is_some() {
            // The current snapshot's connection; if a read on it broke (or the ring released
            // it meanwhile), the newest one: newer than the replica's position says, never
            // older.
            for held in [Some(held), ring.newest()].into_iter().flatten() {
                let Some(reader) = held.reader else { continue };
                let Ok(reader) = reader.downcast::<Shared<DB>>() else {
                    continue;
                };
                let reader = reader.lock_owned().await;
                if reader.is_some() {
                    return Ok(Some(reader));
                }
            }
            if tries > 2 {
                return Err(sqlx::Error::Configuration(
                    "the simulated replica's snapshots keep going away".into(),
                ));
            }
            tries += 1;
            continue;
        }
        let sql = sqlx::AssertSqlSafe(DB::enter_snapshot(&held.name)).into_sql_str();
        match Tm::<DB>::begin(conn, Some(sql)).await {
            Ok(()) => return Ok(None),
            Err(e) => {
                // The transaction began but the snapshot could not be entered: the server
                // is in a failed transaction sqlx does not count. End it.
                DB::set_session(conn, "ROLLBACK").await?;
                // Released just before it was entered (a read that waited a whole tick):
                // the next one.
                if tries > 0 || e.as_database_error().is_none() {
                    return Err(e);
                }
                tries += 1;
            }
        }
    }
}

/// Ends what [`enter`] began, when the connection comes back to the pool.
pub(crate) async fn leave<DB: Backend>(conn: &mut DB::Connection) -> Result<(), sqlx::Error> {
    while Tm::<DB>::get_transaction_depth(conn) > 0 {
        Tm::<DB>::rollback(conn).await?;
    }
    Ok(())
}

/// The replay position of a simulated replica: its current snapshot's.
pub(crate) fn replayed<DB: Backend>(node: &Node<DB>) -> Option<Option<LogPosition>> {
    node.simulated
        .as_ref()
        .map(|ring| ring.current().map(|h| h.at))
}
