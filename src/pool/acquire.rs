//! Getting a connection for a statement: on the writer (following it when it moves), or on a
//! replica the view and the session allow (moving on from one that cannot give a connection).
//! Nothing has been sent to a server at this point, so moving on is always safe.

use std::io;
use std::sync::Arc;

use sqlx::pool::PoolConnection;

use super::journal::ReadChoice;
use super::shared::Shared;
use crate::backend::Backend;
use crate::causal::{HighWater, ReadAt, SessionState, merge, now_ms};
use crate::health;
use crate::node::{Busy, Node};
use crate::positions::At;
use crate::refresh;

/// What the process scope asks of a read.
enum Need {
    /// A replica that has replayed this (or anything, with `None`).
    Known(Option<At>),
    /// A primary position read after `seen`, and not below `floor`.
    Fetch { seen: u64, floor: Option<At> },
}

/// A connection, the member it came from, and what the view said of it when it was chosen.
pub(crate) struct Checkout<DB: Backend> {
    /// The member's index.
    pub(crate) index: usize,
    pub(crate) node: Arc<Node<DB>>,
    pub(crate) conn: PoolConnection<DB>,
    /// The statement's place in the node's load (counted from before the wait for a
    /// connection, so queued statements count).
    pub(crate) busy: Busy<DB>,
    /// It served reads: a read on it is watched, and abandoned if the node stops answering.
    pub(crate) serves_reads: bool,
    /// It was a standby (read-only): a read that failed there may run again elsewhere.
    pub(crate) standby: bool,
    /// Why it was chosen (for the [`Journal`](super::Journal)).
    pub(crate) choice: ReadChoice,
    /// On a simulated replica whose snapshots cannot be exported (MariaDB): the connection
    /// holding the snapshot, which the read runs on instead of `conn`.
    pub(crate) reader: Option<crate::simulate::Reader<DB>>,
}

impl<DB: Backend> Checkout<DB> {
    /// A read's connection on a replica the view had in the rotation (a standby).
    fn on_replica(
        index: usize,
        node: Arc<Node<DB>>,
        conn: PoolConnection<DB>,
        busy: Busy<DB>,
        choice: ReadChoice,
    ) -> Self {
        Checkout {
            index,
            node,
            conn,
            busy: busy.connected(),
            serves_reads: true,
            standby: true,
            choice,
            reader: None,
        }
    }

    fn chose(mut self, choice: ReadChoice) -> Self {
        self.choice = choice;
        self
    }

    /// Makes the connection writable when its node's sessions are read-only (a strict
    /// replica that took the writes): one statement, only on such a node.
    pub(crate) async fn writable(&mut self) -> Result<(), sqlx::Error> {
        if self.node.strict {
            DB::set_session(&mut self.conn, DB::READ_WRITE_SESSION).await?;
        }
        Ok(())
    }
}

impl<DB: Backend> Shared<DB> {
    /// A connection to the node that takes writes. Fails at once when writes are blocked
    /// (the primary is gone and `follow_promotion` is off). If writes move to another node
    /// while we wait for a connection (a promotion), the wait moves with them: nothing has
    /// been sent yet.
    pub(crate) async fn acquire_writer(self: &Arc<Self>) -> Result<Checkout<DB>, sqlx::Error> {
        self.acquire_on_writer(true).await
    }

    /// A connection to the writer, following it if it moves while we wait. Writes (`write`)
    /// fail at once while writes are blocked; reads that fell back here do not.
    async fn acquire_on_writer(self: &Arc<Self>, write: bool) -> Result<Checkout<DB>, sqlx::Error> {
        // Since when a write has waited for a writer that is down.
        let mut waiting: Option<std::time::Instant> = None;
        loop {
            let moved = self.cluster.writer_moved();
            tokio::pin!(moved);
            moved.as_mut().enable();
            let (index, node, serves_reads, standby) = {
                let snapshot = self.cluster.snapshot();
                let view = &snapshot.view;
                let index = view.writer;
                let v = &view.nodes[index];
                if (write || v.foreign)
                    && let Some(why) = &view.block
                {
                    return Err(sqlx::Error::Io(io::Error::new(
                        io::ErrorKind::NotConnected,
                        why.clone(),
                    )));
                }
                // The writer's probe failed: a connection would only be retried until
                // `acquire_timeout`. Wait up to `writer_wait` for it to answer again or for
                // another node to take the writes; then fail at once, saying why.
                if write && v.probed && !v.healthy {
                    let since = *waiting.get_or_insert_with(std::time::Instant::now);
                    let limit = self.config.writer_wait;
                    let left = limit.saturating_sub(since.elapsed());
                    if left.is_zero() {
                        let name = &snapshot.nodes[index].name;
                        let why = v.last_error.as_deref().unwrap_or("it does not answer");
                        return Err(sqlx::Error::Io(io::Error::new(
                            io::ErrorKind::NotConnected,
                            format!(
                                "no writer: {name} takes the writes and is down ({why}); \
                                 waited {limit:?} for it or another node (writer_wait)"
                            ),
                        )));
                    }
                    drop(snapshot);
                    tokio::select! {
                        _ = moved => {}
                        _ = tokio::time::sleep(left.min(std::time::Duration::from_millis(25))) => {}
                    }
                    continue;
                }
                let node = Arc::clone(snapshot.writer());
                (index, node, v.serves_reads(), v.is_standby())
            };
            let busy = node.start_call();
            let had_room = node.has_free_connection();
            let acquired = tokio::select! {
                biased;
                conn = node.acquire() => conn,
                _ = moved => continue,
            };
            if acquired.is_ok() {
                node.lending.lend();
            }
            return match acquired {
                // Writes moved while the connection was handed over: nothing is sent yet.
                Ok(_) if self.cluster.snapshot().view.writer != index => continue,
                Ok(conn) => {
                    node.served();
                    Ok(Checkout {
                        index,
                        node,
                        conn,
                        busy: busy.connected(),
                        serves_reads,
                        standby,
                        choice: ReadChoice::Write,
                        reader: None,
                    })
                }
                Err(e) => {
                    self.acquire_failed(index, &node, had_room, &e);
                    Err(e)
                }
            };
        }
    }

    /// Getting a connection from `node` failed. A full pool (`PoolTimedOut` while it had no
    /// room) says nothing about the node; a connection that could not be opened (refused
    /// until the timeout, a connection-class error) asks for a probe.
    fn acquire_failed(&self, index: usize, node: &Node<DB>, had_room: bool, e: &sqlx::Error) {
        match e {
            e if was_full(node, had_room, e) => node.metrics.timeouts.increment(1),
            sqlx::Error::PoolTimedOut => {
                node.metrics.timeouts.increment(1);
                node.count_error();
                health::suspect(&self.cluster, index);
            }
            sqlx::Error::PoolClosed => {}
            e => health::report(&self.cluster, index, e),
        }
    }

    /// A connection for a read, and whether to reconcile the session with the primary's
    /// position after the read (it went to the primary because of the session).
    ///
    /// The session (if any) decides where the read may go ([`SessionState::read_at`]). A
    /// replica read takes the next replica in the rotation not in `tried`, preferring one
    /// with a free connection; when every one is busy it waits for the chosen one, bounded
    /// by `acquire_timeout`, and then fails with `PoolTimedOut` like a plain pool: a full
    /// pool never moves reads to the primary or takes a replica out. A replica that cannot
    /// give a connection because it is unavailable (refused, it left the rotation while we
    /// waited) is probed and the next one is tried; with none left, the writer.
    ///
    /// On a simulated replica, the connection is in a read-only transaction in the snapshot
    /// the replica serves (ended when the connection comes back to the pool).
    pub(crate) async fn acquire_reader(
        self: &Arc<Self>,
        tried: &mut Vec<usize>,
        session: Option<&SessionState>,
    ) -> Result<(Checkout<DB>, bool), sqlx::Error> {
        let (mut checkout, reconcile) = self.choose_reader(tried, session).await?;
        if let Some(ring) = checkout.node.simulated.clone() {
            let limit = self.cluster.settings.health_check_timeout;
            // Boxed: only simulated replicas need this state (see `Node::acquire`).
            checkout.reader = Box::pin(crate::simulate::enter::<DB>(
                &ring,
                &mut checkout.conn,
                limit,
            ))
            .await?;
        }
        Ok((checkout, reconcile))
    }

    /// [`acquire_reader`](Self::acquire_reader) but for the simulated replicas' snapshot.
    async fn choose_reader(
        self: &Arc<Self>,
        tried: &mut Vec<usize>,
        session: Option<&SessionState>,
    ) -> Result<(Checkout<DB>, bool), sqlx::Error> {
        let cluster = &self.cluster;
        let mut at = None;
        if let Some(session) = session {
            let writer_timeline = cluster.snapshot().view.writer_timeline();
            match session.read_at(&cluster.settings.rules, writer_timeline, now_ms()) {
                ReadAt::Primary => {
                    return Ok((
                        self.read_on_writer(ReadChoice::SessionOnPrimary).await?,
                        false,
                    ));
                }
                ReadAt::PrimaryThenRecord => {
                    return Ok((
                        self.read_on_writer(ReadChoice::SessionOnPrimary).await?,
                        true,
                    ));
                }
                ReadAt::AtLeast(position) => at = Some(position),
                ReadAt::Fresh => match self.fresh_position().await {
                    Some(position) => {
                        session.recorded(position);
                        at = Some(position);
                    }
                    None => {
                        return Ok((
                            self.read_on_writer(ReadChoice::SessionOnPrimary).await?,
                            false,
                        ));
                    }
                },
                ReadAt::Anywhere => {}
            }
        }
        // The session's position is checked against the primary's when no replica has it.
        let reconcile = at.is_some();
        let process = self.process_high_water();
        // A lazily built pool whose cluster is not identified yet, after a write: the primary.
        if process.is_none() && self.wrote_before_identified() {
            return Ok((
                self.read_on_writer(ReadChoice::NotReplayed).await?,
                reconcile,
            ));
        }
        // What the process asks, kept apart from the session's: only it may raise the floor
        // (a session's position can come from a token, which is untrusted input).
        let mut process_at = None;
        if let Some(hw) = process {
            match self.process_needs(hw) {
                Need::Known(need) => process_at = need,
                Need::Fetch { seen, floor } => {
                    // The primary's position and a replica's, asked at once: when the
                    // replica has replayed it already, the read costs one round trip more,
                    // not two.
                    let snapshot = arc_swap::Guard::into_inner(cluster.snapshot());
                    // Boxed: only reads after a write wait for both (see `Node::acquire`).
                    let (fetched, asked) = Box::pin(async {
                        tokio::join!(
                            refresh::primary_after(cluster, hw, seen),
                            self.asked_replica_once(&snapshot, tried)
                        )
                    })
                    .await;
                    // The primary did not answer (it is going away: a write it acknowledged
                    // that no replica has is lost with it anyway): the newest position known.
                    let fetched = fetched.or_else(|| hw.last_known());
                    let need = fetched.map(|f| merge(floor, f)).or(floor);
                    process_at = need;
                    if let Some(need) = need {
                        let want = merge(at, need);
                        at = Some(want);
                        if let Some(mut checkout) = asked {
                            // Asked before the primary's position was known: not having it
                            // yet says little (the write may be a moment old). Ask once more.
                            if (checkout.node.covers(&want) || self.ask(&mut checkout).await)
                                && let Some(checkout) = self.confirmed(checkout, &want)
                            {
                                return Ok((checkout, false));
                            }
                        }
                    } else if let Some(checkout) = asked
                        && let Some(checkout) = self.confirmed_any(checkout)
                    {
                        return Ok((checkout.chose(ReadChoice::AnyReplica), false));
                    }
                }
            }
            if let Some(need) = process_at {
                at = Some(merge(at, need));
            }
        }
        loop {
            let chosen = match at {
                // One snapshot for the choice: the view and the members read once.
                None => {
                    let snapshot = cluster.snapshot();
                    cluster
                        .pick(&snapshot, tried, None, true)
                        .or_else(|| cluster.pick(&snapshot, tried, None, false))
                        .map(|i| (i, Arc::clone(&snapshot.nodes[i])))
                }
                Some(at) => {
                    // The next replica by the balancing policy (a free one first): if it is
                    // not known to have `at`, ask it, on the connection the read will use;
                    // else another replica known to have it; else (a session's position)
                    // wait for one to catch up, or (the process's) read on the primary.
                    let snapshot = arc_swap::Guard::into_inner(cluster.snapshot());
                    let next = cluster
                        .pick(&snapshot, tried, None, true)
                        .or_else(|| cluster.pick(&snapshot, tried, None, false));
                    match next {
                        None => None,
                        Some(i) if snapshot.nodes[i].covers(&at) => {
                            Some((i, Arc::clone(&snapshot.nodes[i])))
                        }
                        Some(i) => {
                            if let Some(checkout) = self.asked_once(&snapshot, i).await
                                && let Some(checkout) = self.confirmed(checkout, &at)
                            {
                                return Ok((checkout, false));
                            }
                            match cluster.pick(&snapshot, tried, Some(&at), false) {
                                Some(j) => Some((j, Arc::clone(&snapshot.nodes[j]))),
                                None if reconcile => {
                                    let index = self.refresher.replica_at(cluster, tried, at).await;
                                    index.map(|i| (i, cluster.node(i)))
                                }
                                None => None,
                            }
                        }
                    }
                }
            };
            let Some((index, node)) = chosen else { break };
            // Not probed while the pool was idle: probed now, before it is trusted (a
            // suspended serverless replica wakes up on the probe's connection).
            // (Boxed: a probe's state would otherwise sit inside every read's future.)
            if cluster.snapshot().view.nodes[index].resting
                && !Box::pin(health::wake(cluster, index)).await
            {
                tried.push(index);
                continue;
            }
            let busy = node.start_call();
            let had_room = node.has_free_connection();
            let serves = || cluster.snapshot().view.serves_reads(index);
            let acquired = node.acquire_while_in_rotation(serves).await;
            if let Some(Ok(_)) = &acquired {
                node.lending.lend();
            }
            match acquired {
                Some(Ok(conn)) => {
                    node.served();
                    // Later reads in the process must not see an older state than this one.
                    if let (Some(hw), Some(known)) = (process, node.known_at()) {
                        hw.raise(known);
                    }
                    // Chosen from the view's readable replicas: a standby serving reads.
                    let choice = if at.is_some() {
                        ReadChoice::CaughtUpReplica
                    } else {
                        ReadChoice::AnyReplica
                    };
                    return Ok((Checkout::on_replica(index, node, conn, busy, choice), false));
                }
                // A busy node, not a down one.
                Some(Err(e)) if was_full(&node, had_room, &e) => return Err(e),
                Some(Err(e))
                    if DB::is_unavailable(&e) || matches!(e, sqlx::Error::PoolTimedOut) =>
                {
                    self.acquire_failed(index, &node, had_room, &e)
                }
                // Removed from the pool while we waited: its pool closed, nothing was sent.
                Some(Err(sqlx::Error::PoolClosed))
                    if cluster.snapshot().view.nodes[index].removed => {}
                Some(Err(e)) => return Err(e),
                None => {}
            }
            tracing::debug!(node = %node.name, "replica unavailable, trying the next node");
            tried.push(index);
        }
        // No replica (that has the session's writes): the writer. A session's position is
        // then checked against the primary's (a forged token ahead of it is clamped).
        if let (Some(hw), Some(at)) = (process, process_at) {
            hw.raise(at);
        }
        let choice = if at.is_some() && !self.cluster.snapshot().view.readable.is_empty() {
            ReadChoice::NotReplayed
        } else {
            ReadChoice::NoReplica
        };
        Ok((self.read_on_writer(choice).await?, reconcile))
    }

    /// A read's connection on the writer, chosen for `choice`.
    async fn read_on_writer(
        self: &Arc<Self>,
        choice: ReadChoice,
    ) -> Result<Checkout<DB>, sqlx::Error> {
        Ok(self.acquire_on_writer(false).await?.chose(choice))
    }

    /// The next replica by the balancing policy, asked for its replay position (see
    /// [`asked_once`](Self::asked_once)).
    async fn asked_replica_once(
        self: &Arc<Self>,
        snapshot: &crate::cluster::Snapshot<DB>,
        tried: &[usize],
    ) -> Option<Checkout<DB>> {
        let index = self
            .cluster
            .pick(snapshot, tried, None, true)
            .or_else(|| self.cluster.pick(snapshot, tried, None, false))?;
        self.asked_once(snapshot, index).await
    }

    /// A connection to member `index` with its replay position asked once on it, the answer
    /// in the node's known position. `None` when it may not be asked now (a query found it
    /// behind less than `position_interval` ago), or another read is asking it (then after
    /// that answer is in: concurrent reads after a write ask each replica once, not once
    /// each), or the ask failed.
    async fn asked_once(
        self: &Arc<Self>,
        snapshot: &crate::cluster::Snapshot<DB>,
        index: usize,
    ) -> Option<Checkout<DB>> {
        let node = &snapshot.nodes[index];
        if !node.may_ask() {
            return None;
        }
        if !node.start_asking() {
            node.wait_asked(self.cluster.settings.health_check_timeout)
                .await;
            return None;
        }
        struct Asking<'a, DB: Backend>(&'a Node<DB>);
        impl<DB: Backend> Drop for Asking<'_, DB> {
            fn drop(&mut self) {
                self.0.done_asking();
            }
        }
        let _asking = Asking(node);
        let node = Arc::clone(node);
        let busy = node.start_call();
        // Waited for like any read's connection (a busy replica is not a down one).
        let serves = || self.cluster.snapshot().view.serves_reads(index);
        let Some(Ok(conn)) = node.acquire_while_in_rotation(serves).await else {
            return None;
        };
        node.lending.lend();
        let mut checkout =
            Checkout::on_replica(index, node, conn, busy, ReadChoice::CaughtUpReplica);
        self.ask(&mut checkout).await.then_some(checkout)
    }

    /// Reads the replay position on `checkout`'s connection into its node; `false` when
    /// that failed (the connection is then not reused).
    async fn ask(&self, checkout: &mut Checkout<DB>) -> bool {
        let bound = self.cluster.settings.health_check_timeout;
        if let Some(p) = crate::simulate::replayed(&checkout.node) {
            if let Some(p) = p {
                checkout.node.advance_position(p);
            }
            return p.is_some();
        }
        match tokio::time::timeout(bound, DB::replayed_position(&mut checkout.conn)).await {
            Ok(Ok(Some(p))) => {
                checkout.node.advance_position(p);
                true
            }
            Ok(Ok(None)) => false,
            Ok(Err(e)) => {
                health::report(&self.cluster, checkout.index, &e);
                false
            }
            Err(_) => {
                checkout.conn.close_on_drop();
                false
            }
        }
    }

    /// `checkout` if its replica has replayed `at` as asked. If not, and that keeps
    /// happening, the replica is not asked again for `position_interval`: a lagging replica
    /// stays behind for a while, and waiting reads cost it at most one query per interval.
    fn confirmed(&self, checkout: Checkout<DB>, at: &At) -> Option<Checkout<DB>> {
        if !checkout.node.covers(at) {
            checkout
                .node
                .found_behind(self.cluster.settings.position_interval);
            return None;
        }
        checkout.node.found_ahead();
        self.confirmed_any(checkout)
    }

    /// `checkout` for a read with no position to reach, if its node still serves reads.
    fn confirmed_any(&self, checkout: Checkout<DB>) -> Option<Checkout<DB>> {
        if !self.cluster.snapshot().view.serves_reads(checkout.index) {
            return None;
        }
        checkout.node.served();
        if let Some(hw) = self.process_high_water()
            && let Some(known) = checkout.node.known_at()
        {
            hw.raise(known);
        }
        Some(checkout)
    }

    /// A primary position that covers every write acknowledged before now: the last one
    /// fetched while it still does, else one fetched after now (shared). `None` when the
    /// primary does not answer, or there are no positions to read.
    pub(crate) async fn fresh_position(&self) -> Option<At> {
        let hw = self.high_water()?;
        match hw.covered() {
            Ok(at) => Some(at),
            Err(seen) => refresh::primary_after(&self.cluster, hw, seen).await,
        }
    }

    /// What the process scope asks of a read.
    ///
    /// Nothing until something wrote; then the last fetched primary position while it still
    /// covers every write ([`HighWater::covered`]), else one fetched after now, shared with
    /// the reads waiting at the same moment ([`refresh::primary_after`]). Never below the
    /// floor of earlier reads. While the view says the writer is down, the newest position
    /// known: the replicas keep serving reads (a write it acknowledged that no replica
    /// received is lost with it anyway, unless replication is synchronous).
    fn process_needs(&self, hw: &HighWater) -> Need {
        let floor = hw.floor();
        if !hw.ever_written() {
            return Need::Known(floor);
        }
        match hw.covered() {
            Ok(at) => Need::Known(Some(merge(floor, at))),
            Err(seen) => {
                let writer_up = {
                    let snapshot = self.cluster.snapshot();
                    let view = &snapshot.view;
                    view.nodes[view.writer].healthy
                };
                if writer_up {
                    Need::Fetch { seen, floor }
                } else {
                    Need::Known(hw.last_known().map(|at| merge(floor, at)).or(floor))
                }
            }
        }
    }
}

/// Whether `e` is a wait for a connection that timed out because `node`'s pool was full,
/// before the wait (`had_room` false) or after it: a busy node, not evidence against it.
fn was_full<DB: Backend>(node: &Node<DB>, had_room: bool, e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::PoolTimedOut) && (!had_room || !node.has_free_connection())
}
