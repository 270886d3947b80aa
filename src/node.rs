//! One endpoint: its sqlx pool, its role, and what partypool has observed about it.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sqlx::pool::PoolConnection;
use sqlx::{Database, Pool};
use tokio::sync::Notify;

use crate::backend::Backend;
use crate::redact;

/// The role a node was configured with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The write primary.
    Primary,
    /// A read replica.
    Replica,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        })
    }
}

const RECOVERY_UNKNOWN: u8 = 0;
const RECOVERY_NO: u8 = 1;
const RECOVERY_YES: u8 = 2;

/// One database endpoint. Shared by the pool, the executor's streams and the health task;
/// all observed state is atomics or a short-held mutex, so the query path never waits on
/// the health task.
pub(crate) struct Node<DB: Database> {
    pub(crate) name: String,
    pub(crate) role: Role,
    /// The URL with its password redacted; the only form ever displayed.
    pub(crate) url: String,
    /// The node's password, kept only to scrub it out of driver messages.
    secret: Option<String>,
    pub(crate) pool: Pool<DB>,
    healthy: AtomicBool,
    in_recovery: AtomicU8,
    served: AtomicU64,
    errors: AtomicU64,
    misroutes: AtomicU64,
    last_error: Mutex<Option<String>>,
    /// Woken when the node leaves the rotation, so waits on its pool can give up at once.
    down: Notify,
}

impl<DB: Backend> Node<DB> {
    pub(crate) fn new(
        name: String,
        role: Role,
        url: String,
        secret: Option<String>,
        pool: Pool<DB>,
    ) -> Self {
        Node {
            name,
            role,
            url,
            secret,
            pool,
            healthy: AtomicBool::new(false),
            in_recovery: AtomicU8::new(RECOVERY_UNKNOWN),
            served: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            misroutes: AtomicU64::new(0),
            last_error: Mutex::new(None),
            down: Notify::new(),
        }
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    /// Counts one statement dispatched to this node.
    pub(crate) fn served(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
    }

    /// Text from the driver with this node's password scrubbed out.
    pub(crate) fn scrub(&self, text: &str) -> String {
        redact::scrub(text, self.secret.as_deref())
    }

    /// A probe succeeded.
    pub(crate) fn mark_up(&self, in_recovery: Option<bool>) {
        self.in_recovery.store(
            match in_recovery {
                None => RECOVERY_UNKNOWN,
                Some(false) => RECOVERY_NO,
                Some(true) => RECOVERY_YES,
            },
            Ordering::Relaxed,
        );
        if !self.healthy.swap(true, Ordering::AcqRel) {
            tracing::info!(node = %self.name, "node is healthy");
        }
    }

    /// A probe failed, or a statement failed in a way that says the node is unreachable.
    pub(crate) fn mark_down(&self, why: &str) {
        let why = self.scrub(why);
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::warn!(node = %self.name, error = %why, "node is unhealthy, leaving the rotation");
            self.down.notify_waiters();
        }
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
    }

    /// Acquires a connection from this node's pool, giving up as soon as the node leaves the
    /// rotation (sqlx keeps retrying a refused connection until its acquire timeout, which
    /// would make every caller wait that long on a dead node). `None` means it left.
    pub(crate) async fn acquire_while_healthy(
        &self,
    ) -> Option<Result<PoolConnection<DB>, sqlx::Error>> {
        let down = self.down.notified();
        tokio::pin!(down);
        down.as_mut().enable();
        if !self.is_healthy() {
            return None;
        }
        tokio::select! {
            biased;
            conn = self.pool.acquire() => Some(conn),
            _ = down => None,
        }
    }

    /// Counts a statement this replica refused as a write (it then ran on the primary).
    pub(crate) fn misrouted(&self) {
        self.misroutes.fetch_add(1, Ordering::Relaxed);
    }

    /// Records an error a statement returned on this node.
    pub(crate) fn record_error(&self, e: &sqlx::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if DB::is_unavailable(e) {
            self.mark_down(&e.to_string());
        }
    }

    pub(crate) fn status(&self) -> crate::status::NodeStatus {
        crate::status::NodeStatus {
            name: self.name.clone(),
            url: self.url.clone(),
            role: self.role,
            healthy: self.is_healthy(),
            in_recovery: match self.in_recovery.load(Ordering::Relaxed) {
                RECOVERY_NO => Some(false),
                RECOVERY_YES => Some(true),
                _ => None,
            },
            queries: self.served.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            misroutes: self.misroutes.load(Ordering::Relaxed),
            connections: self.pool.size(),
            idle: self.pool.num_idle(),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

impl<DB: Backend> fmt::Debug for Node<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("url", &self.url)
            .field("healthy", &self.is_healthy())
            .finish_non_exhaustive()
    }
}
