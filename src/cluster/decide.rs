//! [`decide`]: the next [`View`] from the previous one and what happened since. Pure: no
//! clock (the time is an argument), no I/O, no locks; every rule about roles lives here.
//!
//! - **Observations** (a probe's outcome) set what is known of a member: reachable, in
//!   recovery, position, timeline, identity, replication threads. A member of another cluster
//!   is foreign before it could serve a single read; a failed probe bans it from probing for
//!   a while ([`Ban`](crate::ban::Ban)), unless it takes the writes.
//! - **The election** (after a round of probes, a join or a removal) keeps the writes where
//!   they are while the writer holds them and moves them only to a node promoted after it —
//!   see [`elect`].
//! - **Lag** (after a round) is measured against the writer's position of the same round;
//!   limits apply with hysteresis — see [`measure_lag`].

use std::time::{Duration, Instant};

use super::Settings;
use super::view::{NodeView, View};
use crate::backend::Probe;
use crate::roles::Role;

/// What a probe saw.
#[derive(Debug, Clone)]
pub(crate) enum Observation {
    /// The probe succeeded.
    Up(Probe),
    /// The probe failed or timed out, and why (passwords already scrubbed).
    Down(String),
    /// The node answered but lacks what the primary has (a database created there that it
    /// has not replayed yet): out of the rotation, probed again soon, never banned for it.
    Behind(String),
}

/// Something that happened since the last view.
#[derive(Debug, Clone)]
pub(crate) enum Event {
    /// The cluster's identity (the first writer's system identifier); only the first one
    /// counts.
    Identity(Option<u64>),
    /// The writer before the first election (at connect).
    Writer(usize),
    /// A member joined (it is the last one), with its role and name.
    Joined(Role, String),
    /// A probe's outcome for a member.
    Observed(usize, Observation),
    /// A member left the pool.
    Removed(usize),
    /// A membership source's word on a member: `Some(why)` keeps it out of the reads.
    #[cfg_attr(not(any(test, feature = "patroni")), allow(dead_code))]
    Veto(usize, Option<String>),
    /// Choose the writer again (a membership change).
    Elect,
    /// A round of probes ended: choose the writer and measure lag.
    Round,
    /// The pool went idle: the member is not probed until a read needs it.
    Rest(usize),
}

/// The next view: `previous`, changed by `events` in order, at `now`.
pub(crate) fn decide(previous: &View, events: &[Event], settings: &Settings, now: Instant) -> View {
    let mut view = previous.clone();
    for event in events {
        if let Event::Observed(i, _) = event {
            view.nodes[*i].resting = false;
        }
        match event {
            Event::Identity(id) => {
                if view.cluster_id.is_none() {
                    view.cluster_id = *id;
                }
            }
            Event::Writer(i) => view.writer = *i,
            Event::Joined(role, name) => view.nodes.push(NodeView::new(*role, name.clone())),
            Event::Observed(i, Observation::Up(probe)) => {
                let cluster = view.cluster_id;
                up(&mut view.nodes[*i], probe, cluster, now);
            }
            Event::Observed(i, Observation::Down(why)) => {
                let writer = *i == view.writer;
                down(&mut view.nodes[*i], why, writer, settings, now);
            }
            Event::Observed(i, Observation::Behind(why)) => {
                let n = &mut view.nodes[*i];
                n.probed = true;
                n.behind = true;
                n.healthy = false;
                n.last_error = Some(why.clone());
            }
            Event::Removed(i) => view.nodes[*i].removed = true,
            Event::Rest(i) => view.nodes[*i].resting = true,
            Event::Veto(i, why) => view.nodes[*i].veto.clone_from(why),
            Event::Elect => {
                elect(&mut view, settings.follow_promotion);
                adopt_identity(&mut view);
            }
            Event::Round => {
                elect(&mut view, settings.follow_promotion);
                adopt_identity(&mut view);
                measure_lag(&mut view, settings, now);
            }
        }
    }
    view.readable = (0..view.nodes.len())
        .filter(|&i| view.nodes[i].serves_reads())
        .collect();
    view
}

/// A probe succeeded: what it saw, its identity checked against the cluster's first, so a
/// node of another cluster never enters the rotation, not even for one view.
fn up(n: &mut NodeView, probe: &Probe, cluster: Option<u64>, now: Instant) {
    n.probed = true;
    n.behind = false;
    n.system_id = probe.cluster_id;
    n.foreign = matches!((probe.cluster_id, cluster), (Some(a), Some(b)) if a != b);
    n.in_recovery = probe.in_recovery;
    // Following a primary: in recovery, and where replication status is known (MySQL with a
    // monitor credential) with a replication thread running — `read_only` alone may just be
    // a restarted old primary's configuration.
    let following = probe.in_recovery == Some(true)
        && match &probe.replication {
            Some(r) if r.unavailable.is_none() => r.channels.iter().any(|c| c.is_running()),
            _ => true,
        };
    if following {
        n.was_standby = true;
        n.deposed = false;
    }
    n.position = probe.position;
    n.gtids = probe.gtids;
    n.timeline = probe.timeline;
    n.replay_age = probe.replay_age;
    if let Some(r) = &probe.replication {
        if r.unavailable.is_some() {
            n.status_denied = Some(now);
        }
        n.broken = r.broken();
        // A refusal keeps what an earlier probe could read.
        if r.unavailable.is_none() || n.replication.is_none() {
            n.replication = Some(r.clone());
        }
    }
    if !n.healthy {
        n.ban.readmit(now);
        n.healthy = true;
    }
}

/// A pool that connected lazily learns the cluster's identity from the first writer it
/// elects (an eager one from its primary's probe at connect, with `Event::Identity`).
fn adopt_identity(view: &mut View) {
    let w = &view.nodes[view.writer];
    if view.cluster_id.is_none() && w.healthy && w.in_recovery == Some(false) {
        view.cluster_id = w.system_id;
    }
}

/// A probe failed: the node leaves the rotation; unless it takes the writes (probed every
/// round), it is banned from probing for a while, longer each time it fails again soon.
fn down(n: &mut NodeView, why: &str, writer: bool, settings: &Settings, now: Instant) {
    n.probed = true;
    n.behind = false;
    let was_healthy = std::mem::replace(&mut n.healthy, false);
    if !writer {
        n.ban.fail(now, was_healthy, settings.ban_backoff);
    }
    n.last_error = Some(why.to_owned());
}

/// Whether `n` may take the writes from a writer that lost them: reachable, writable, in
/// the pool, of this cluster, never deposed (a node that lost the writes takes them again
/// only after it has been seen as a replica), and promoted: on a newer timeline than writes
/// have been on (the same one when the writer was removed: the same server at a new address,
/// as when a pod restarts), or, where there are no timelines (MariaDB), seen as a standby
/// before it became writable (a node that never replicated is a second primary, not a
/// promoted one).
pub(crate) fn may_take_writes(n: &NodeView, floor: Option<u64>, writer_removed: bool) -> bool {
    n.healthy
        && !n.removed
        && n.in_recovery == Some(false)
        && !n.foreign
        && !n.deposed
        && match (floor, n.timeline) {
            (None, None) => n.was_standby || writer_removed,
            (None, Some(_)) => true,
            (Some(f), Some(t)) => t > f || (writer_removed && t == f),
            (Some(_), None) => false,
        }
}

/// Whether a member of `view` other than `index` could take the writes now, were the writer
/// removed (see [`may_take_writes`]).
pub(crate) fn has_other_writable(view: &View, index: usize) -> bool {
    let floor = view.writes_timeline;
    view.nodes
        .iter()
        .enumerate()
        .any(|(i, n)| i != index && may_take_writes(n, floor, true))
}

/// Chooses the writer: an election with memory.
///
/// - The writer keeps the writes while it is reachable and not in recovery. Another node
///   that claims the primary role meanwhile (an accidental promotion, an unfenced old
///   primary) gets no writes, and no reads either (it is not a standby): a *rival*.
/// - Writes move only once the writer is lost (unreachable, in recovery, removed, foreign,
///   or its address now leads to an older timeline), to a node that [`may_take_writes`]
///   (with `follow_promotion`); the newest timeline and position win.
/// - Once writes were on timeline T, no node on an older timeline takes them again: a
///   stalled or failing writer makes writes wait or fail (bounded by the timeouts), never go
///   back.
fn elect(view: &mut View, follow_promotion: bool) {
    let current = view.writer.min(view.nodes.len().saturating_sub(1));
    let Some(writer) = view.nodes.get(current) else {
        return;
    };
    let floor = view.writes_timeline;
    // A writer whose address now leads to an older timeline (a VIP moved back to an
    // unfenced old primary) has lost the writes as surely as one that is gone.
    let behind = matches!((floor, writer.timeline), (Some(f), Some(t)) if t < f);
    let holds = writer.healthy
        && !writer.removed
        && writer.in_recovery != Some(true)
        && !writer.foreign
        && !behind;
    let mut next = current;
    let mut block = None;
    let mut timeline = None;
    if holds {
        timeline = writer.timeline;
    } else {
        let promoted = view
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| *i != current && may_take_writes(n, floor, writer.removed))
            .max_by_key(|(_, n)| (n.timeline, n.position));
        let why = if writer.removed {
            "removed from the pool"
        } else if writer.foreign {
            "a node of another cluster"
        } else if behind {
            "on an older timeline than writes have been on"
        } else if writer.healthy {
            "in recovery (a standby)"
        } else {
            "unreachable"
        };
        match (promoted, follow_promotion) {
            (Some((i, n)), true) => {
                next = i;
                timeline = n.timeline;
            }
            (Some((_, n)), false) => {
                block = Some(format!(
                    "{} (the writer) is {why}; {} has been promoted, but follow_promotion is off",
                    writer.name, n.name
                ))
            }
            (None, false) => {
                block = Some(format!(
                    "{} (the writer) is {why} and follow_promotion is off",
                    writer.name
                ))
            }
            // Never write to another cluster's node, to an older timeline or to a node that
            // left the pool: fail at once.
            (None, true) if writer.foreign || behind || writer.removed => {
                block = Some(format!(
                    "{} (the writer) is {why}; no node of this cluster has been promoted",
                    writer.name
                ))
            }
            // Every node that answers is a standby: writes fail at once, saying so, until
            // one is promoted.
            (None, true) if writer.healthy && writer.in_recovery == Some(true) => {
                block = Some(format!(
                    "no node takes writes: {} is in recovery (a standby) and no node is writable",
                    writer.name
                ))
            }
            // Nothing promoted (on a newer timeline) yet: writes keep trying the writer.
            (None, true) => {}
        }
    }
    if let Some(t) = timeline {
        view.writes_timeline = Some(view.writes_timeline.map_or(t, |f| f.max(t)));
    }
    view.block = block;
    for (i, n) in view.nodes.iter_mut().enumerate() {
        n.rival =
            i != next && n.healthy && !n.removed && n.in_recovery == Some(false) && !n.foreign;
        if i == next {
            // The writer is never banned: it is probed every round.
            n.ban.lift();
        }
    }
    if next != current {
        view.nodes[current].deposed = true;
        view.writer = next;
    }
}

/// Measures each replica's lag against the writer's position from the same round and
/// applies the limits.
fn measure_lag(view: &mut View, settings: &Settings, now: Instant) {
    let Some(writer) = view.nodes.get(view.writer) else {
        return;
    };
    if !writer.healthy {
        // Nothing to measure against (and a standby's replay age grows while the primary is
        // gone: it must not take the replicas out of the reads).
        return;
    }
    let Some(head) = writer.position else {
        // A writer without a position (MySQL 8, an unreadable GTID set): the replicas' own
        // word on how far behind they are (`Seconds_Behind_Source`) still counts.
        for n in &mut view.nodes {
            if let Some(age) = n.replay_age.filter(|_| n.is_standby()) {
                set_lag(n, 0, age, settings);
            }
        }
        return;
    };
    let head_gtids = writer.gtids;
    let previous = view.previous_head.replace((head, head_gtids));
    let writer_index = view.writer;
    for (i, n) in view.nodes.iter_mut().enumerate() {
        // A resting member's position is as old as its last probe, not behind.
        if !n.healthy || n.in_recovery != Some(true) || i == writer_index || n.resting {
            continue;
        }
        let Some(replayed) = n.position else {
            continue;
        };
        let gtids = n.gtids;
        let bytes = match (gtids, head_gtids) {
            // MariaDB: transactions not applied yet, summed over the domains.
            (Some(have), Some(head)) => have.behind(&head),
            _ => head.saturating_sub(replayed),
        };
        // Caught up: no lag, however long ago the last commit was (an idle primary). Behind:
        // the age of the newest replayed commit — but never more than the time since it was
        // last seen caught up, or a few bytes of non-commit WAL on a quiet primary would
        // count the whole quiet period as lag.
        //
        // MariaDB without a replay age (no `SLAVE MONITOR`, or its SQL thread stopped, when
        // `Seconds_Behind_Master` is NULL): behind by the time since it last had what the
        // primary had one round before. The probes of a round are not simultaneous, so on a
        // busy primary a healthy replica is never exactly level.
        let age = n.replay_age;
        let level_with_last_round = gtids.is_some()
            && age.is_none()
            && previous.is_some_and(|(p, g)| match (gtids, g) {
                (Some(have), Some(g)) => have.contains(&g),
                _ => replayed >= p,
            });
        let since = n.caught_up.map(|t| now.saturating_duration_since(t));
        let time = if bytes == 0 || level_with_last_round {
            n.caught_up = Some(now);
            Duration::ZERO
        } else {
            match (age, since) {
                (Some(age), since) => since.map_or(age, |since| age.min(since)),
                (None, Some(since)) if gtids.is_some() => since,
                (None, None) if gtids.is_some() => {
                    // Never seen level yet: measured from now on.
                    n.caught_up = Some(now);
                    Duration::ZERO
                }
                (None, _) => Duration::ZERO,
            }
        };
        set_lag(n, bytes, time, settings);
    }
}

/// Records a replica's lag and applies the limits, with hysteresis: it leaves the rotation
/// above a limit and returns only below half of it, so it does not flap.
fn set_lag(n: &mut NodeView, bytes: u64, time: Duration, settings: &Settings) {
    let (max_time, max_bytes) = (settings.max_replica_lag, settings.max_replica_lag_bytes);
    n.lag_bytes = bytes;
    n.lag = time;
    let over = max_time.is_some_and(|m| time > m) || max_bytes.is_some_and(|m| bytes > m);
    let under_half =
        max_time.is_none_or(|m| time <= m / 2) && max_bytes.is_none_or(|m| bytes <= m / 2);
    if !n.lagging && over {
        n.lagging = true;
    } else if n.lagging && under_half {
        n.lagging = false;
    }
}
