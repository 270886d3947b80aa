//! Recording where a session's writes left the primary's log: on the write's own connection,
//! in the background when the caller dropped the stream, or "unknown" when interrupted.

use std::sync::Arc;

use sqlx::pool::PoolConnection;

use super::shared::Shared;
use crate::backend::Backend;
use crate::causal::{At, CausalSupport, SessionState, now_ms};

impl<DB: Backend> Shared<DB> {
    /// After a session's statement finished on the primary: record where the primary's log
    /// is now, on the same connection (one light query), so the session's later reads see
    /// it. If that fails, the position is unknown and the session reads on the primary
    /// until the write has settled (never too old).
    async fn record_write(&self, conn: &mut DB::Connection, session: &SessionState) {
        let rules = self.rules();
        if rules.scope == crate::config::Scope::Off {
            return;
        }
        if rules.sticky.is_some() || rules.support == CausalSupport::Unsupported {
            session.wrote_now();
            return;
        }
        if rules.support == CausalSupport::Immediate {
            return;
        }
        match DB::capture_position(conn).await {
            Ok(Some(p)) => session.recorded(At::from_log(p)),
            _ => session.unknown(now_ms()),
        }
    }

    /// After a read that went to the primary because of the session: the primary's
    /// position, to settle or check the session's ([`SessionState::reconcile`]).
    pub(super) async fn reconcile(&self, conn: &mut DB::Connection, session: &SessionState) {
        match DB::capture_position(conn).await {
            Ok(Some(p)) => session.reconcile(At::from_log(p), &self.rules(), now_ms()),
            // The primary has no position to give (MySQL 8, an unreadable GTID set): once
            // the window has passed, the write has settled all the same.
            Ok(None) => session.settle_without_position(&self.rules(), now_ms()),
            Err(_) => {}
        }
    }
}

/// A session's write whose position is not recorded yet. While one exists, the session
/// reads on the primary and its token is a pending one. It ends one of four ways: recorded
/// on the write's own connection; handed the connection to record in the background (the
/// caller dropped the stream: the driver first drains the statement, so the position is
/// taken after its commit); marked unknown (interrupted, the commit failed); or dropped
/// before anything was sent.
pub(crate) struct PendingWrite<DB: Backend> {
    shared: Arc<Shared<DB>>,
    session: Arc<SessionState>,
    /// Whether the statement may have reached the server.
    pub(super) sent: bool,
    finished: bool,
}

impl<DB: Backend> PendingWrite<DB> {
    pub(crate) fn new(shared: &Arc<Shared<DB>>, session: &Arc<SessionState>, sent: bool) -> Self {
        session.write_started();
        PendingWrite {
            shared: Arc::clone(shared),
            session: Arc::clone(session),
            sent,
            finished: false,
        }
    }

    fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            self.session.write_recorded();
        }
    }

    /// Records the position on the connection the write ran on.
    async fn record(mut self, conn: &mut DB::Connection) {
        self.shared.record_write(conn, &self.session).await;
        self.finish();
    }

    /// The write's outcome is unknown.
    fn unknown(mut self) {
        self.session.unknown(now_ms());
        self.finish();
    }

    /// Records the position on `conn` in the background, bounded by the settle window.
    fn in_background(mut self, mut conn: PoolConnection<DB>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return self.unknown();
        };
        self.finished = true; // the task finishes it
        let (shared, session) = (Arc::clone(&self.shared), Arc::clone(&self.session));
        runtime.spawn(async move {
            let limit = shared.rules().settle;
            let record = shared.record_write(&mut conn, &session);
            if tokio::time::timeout(limit, record).await.is_err() {
                conn.close_on_drop();
                session.unknown(now_ms());
            }
            session.write_recorded();
        });
    }
}

impl<DB: Backend> Drop for PendingWrite<DB> {
    fn drop(&mut self) {
        if !self.finished && self.sent {
            self.session.unknown(now_ms());
        }
        self.finish();
    }
}

/// One attempt's connection, and the session write running on it: dropped midway (the
/// caller dropped the stream or the future), the write's position is recorded on this
/// connection in the background.
pub(super) struct Attempt<DB: Backend> {
    pub(super) conn: Option<PoolConnection<DB>>,
    /// A simulated replica's snapshot connection: the statement runs there instead.
    pub(super) reader: Option<crate::simulate::Reader<DB>>,
    pub(super) write: Option<PendingWrite<DB>>,
}

impl<DB: Backend> Attempt<DB> {
    pub(super) fn conn(&mut self) -> &mut DB::Connection {
        if let Some(Some(conn)) = self.reader.as_deref_mut() {
            return conn;
        }
        self.conn.as_mut().expect("the attempt's connection")
    }

    /// The statement ended with its outcome known: record a session write's position.
    pub(super) async fn record(&mut self) {
        if let (Some(write), Some(conn)) = (self.write.take(), self.conn.as_mut()) {
            write.record(conn).await;
        }
    }

    /// The statement was interrupted: its connection's state and a write's outcome are
    /// unknown.
    pub(super) fn abandon(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            conn.close_on_drop();
        }
        // A snapshot connection in an unknown state: no read uses it again.
        if let Some(reader) = self.reader.as_mut() {
            reader.take();
        }
        if let Some(write) = self.write.take() {
            write.unknown();
        }
    }
}

impl<DB: Backend> Drop for Attempt<DB> {
    fn drop(&mut self) {
        if let Some(write) = self.write.take() {
            match self.conn.take() {
                Some(conn) => write.in_background(conn),
                None => write.unknown(),
            }
        }
    }
}
