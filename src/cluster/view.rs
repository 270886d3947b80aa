//! [`View`]: what the cluster has decided — who takes the writes, who serves reads, who is
//! out and why — and the memory the next decision starts from.
//!
//! A view is a plain value. [`decide`](super::decide::decide) makes the next one from this
//! one and new events; the cluster publishes it with one atomic swap, and the query path reads
//! one view per statement.

use std::time::{Duration, Instant};

use crate::backend::Replication;
use crate::ban::Ban;
use crate::positions::GtidSet;
use crate::roles::Role;

/// The cluster's decision, and the memory the next one starts from.
#[derive(Debug, Clone, Default)]
pub(crate) struct View {
    /// The member that takes the writes (an index into the members).
    pub(crate) writer: usize,
    /// The newest timeline that has taken writes: no node on an older one takes them again.
    pub(crate) writes_timeline: Option<u64>,
    /// Why writes must fail at once (`None`: they go to `writer`).
    pub(crate) block: Option<String>,
    /// The cluster's identity: the first writer's system identifier (set once).
    pub(crate) cluster_id: Option<u64>,
    /// The members that serve reads now, in member order: what a read picks from.
    pub(crate) readable: Vec<usize>,
    /// One per member, in member order (removed ones stay: indices are stable).
    pub(crate) nodes: Vec<NodeView>,
    /// The writer's position in the previous lag measurement (MariaDB lag without a replay
    /// age).
    pub(crate) previous_head: Option<(u64, Option<GtidSet>)>,
}

/// What the cluster knows and has decided about one member.
#[derive(Debug, Clone)]
pub(crate) struct NodeView {
    /// Its name (`primary`, `replica-1`, `host:port`, …), unique among the members.
    pub(crate) name: String,
    /// The role it was declared with.
    pub(crate) role: Role,

    // What membership sources said.
    /// Removed from the pool: serves nothing, not probed.
    pub(crate) removed: bool,
    /// A membership source (Patroni) keeps it out of the reads, and why.
    pub(crate) veto: Option<String>,

    // What its last probe observed.
    /// It was probed at least once.
    pub(crate) probed: bool,
    /// Its last probe found it behind (a database the primary has, it has not yet).
    pub(crate) behind: bool,
    /// The last probe succeeded.
    pub(crate) healthy: bool,
    /// Not probed since the pool went idle ([`Config::idle_probe_after`]): what is known of
    /// it is as old as the rest; its lag is not measured, and a read probes it first.
    ///
    /// [`Config::idle_probe_after`]: crate::Config::idle_probe_after
    pub(crate) resting: bool,
    /// A standby (`Some(true)`), writable (`Some(false)`), or unknown.
    pub(crate) in_recovery: Option<bool>,
    /// Its log position: the current one on a primary, the replayed one on a standby.
    pub(crate) position: Option<u64>,
    /// Its timeline (PostgreSQL).
    pub(crate) timeline: Option<u64>,
    /// Its MariaDB GTID position.
    pub(crate) gtids: Option<GtidSet>,
    /// Time since the last replayed transaction (standby).
    pub(crate) replay_age: Option<Duration>,
    /// The system identifier it reported.
    pub(crate) system_id: Option<u64>,
    /// MySQL/MariaDB replication threads, as the last probe that could read them saw them.
    pub(crate) replication: Option<Replication>,
    /// The last reason it was marked unhealthy (kept after it recovers).
    pub(crate) last_error: Option<String>,

    // What was decided.
    /// Its system identifier is not the cluster's: it serves nothing.
    pub(crate) foreign: bool,
    /// A replication thread stopped with this error: it serves no reads.
    pub(crate) broken: Option<String>,
    /// It claims the primary role while another member takes the writes.
    pub(crate) rival: bool,
    /// It took the writes once and lost them: it takes them again only after it has been
    /// seen as a replica.
    pub(crate) deposed: bool,
    /// A probe once saw it following a primary.
    pub(crate) was_standby: bool,
    /// Behind the writer by more than a limit (with hysteresis).
    pub(crate) lagging: bool,
    /// How far behind the writer it is: bytes (PostgreSQL) or transactions (MariaDB).
    pub(crate) lag_bytes: u64,
    /// How far behind the writer it is in time.
    pub(crate) lag: Duration,
    /// When a lag measurement last found it level with the writer.
    pub(crate) caught_up: Option<Instant>,
    /// How long probes leave it alone after failures.
    pub(crate) ban: Ban,
    /// When the probe was last refused replication status (asked again after a while).
    pub(crate) status_denied: Option<Instant>,
}

/// How long a probe that was refused replication status goes without asking again.
const ASK_STATUS_AGAIN: Duration = Duration::from_secs(300);

impl NodeView {
    /// A member nothing is known of yet.
    pub(crate) fn new(role: Role, name: String) -> Self {
        NodeView {
            name,
            role,
            removed: false,
            veto: None,
            probed: false,
            behind: false,
            healthy: false,
            resting: false,
            in_recovery: None,
            position: None,
            timeline: None,
            gtids: None,
            replay_age: None,
            system_id: None,
            replication: None,
            last_error: None,
            foreign: false,
            broken: None,
            rival: false,
            deposed: false,
            was_standby: false,
            lagging: false,
            lag_bytes: 0,
            lag: Duration::ZERO,
            caught_up: None,
            ban: Ban::default(),
            status_denied: None,
        }
    }

    /// A reader by role: a declared replica not known to be writable, or a discovered node
    /// known to be a standby.
    pub(crate) fn is_standby(&self) -> bool {
        match self.role {
            Role::Replica => self.in_recovery != Some(false),
            Role::Discovered => self.in_recovery == Some(true),
            _ => false,
        }
    }

    /// Whether reads may go here: a reachable standby of this cluster, in the pool, not
    /// lagging, replicating without an error, and not vetoed.
    pub(crate) fn serves_reads(&self) -> bool {
        self.is_standby()
            && self.healthy
            && !self.lagging
            && self.broken.is_none()
            && self.veto.is_none()
            && !self.foreign
            && !self.removed
    }

    /// Whether reads already running here may go on: it is reachable and of this cluster.
    /// A node that left the rotation for any other reason (promoted, lagging, removed,
    /// vetoed) still answers them; a read is abandoned only when the node may never answer.
    pub(crate) fn answers(&self) -> bool {
        self.healthy && !self.foreign
    }

    /// Whether a probe should skip it now (banned after failures).
    pub(crate) fn is_banned(&self, now: Instant) -> bool {
        self.ban.is_banned(now)
    }

    /// Whether the next probe should read replication status (not while it was refused
    /// recently).
    pub(crate) fn wants_replication_status(&self, now: Instant) -> bool {
        self.status_denied
            .is_none_or(|t| now.saturating_duration_since(t) >= ASK_STATUS_AGAIN)
    }

    /// Why a reachable node serves neither reads nor writes, for `status()`; `cluster` is
    /// the cluster's identity, `writer` the name of the node that takes the writes.
    pub(crate) fn excluded(&self, cluster: Option<u64>, writer: &str) -> Option<String> {
        if self.foreign {
            Some(format!(
                "another cluster (system identifier {}, the primary's is {})",
                self.system_id.unwrap_or_default(),
                cluster.unwrap_or_default()
            ))
        } else if self.rival {
            Some(format!(
                "claims the primary role while {writer} takes the writes"
            ))
        } else if let Some(why) = &self.veto {
            Some(why.clone())
        } else {
            self.broken.clone()
        }
    }
}

impl View {
    /// The view of these members (role, name) before anything was observed.
    pub(crate) fn new(members: impl IntoIterator<Item = (Role, String)>) -> Self {
        View {
            nodes: members
                .into_iter()
                .map(|(role, name)| NodeView::new(role, name))
                .collect(),
            ..View::default()
        }
    }

    /// The writer's timeline now.
    pub(crate) fn writer_timeline(&self) -> Option<u64> {
        self.nodes.get(self.writer).and_then(|n| n.timeline)
    }

    /// Whether member `index` serves reads.
    pub(crate) fn serves_reads(&self, index: usize) -> bool {
        self.nodes.get(index).is_some_and(NodeView::serves_reads)
    }

    /// Whether reads running on member `index` may go on.
    pub(crate) fn answers(&self, index: usize) -> bool {
        self.nodes.get(index).is_some_and(NodeView::answers)
    }
}
