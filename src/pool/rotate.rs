//! The credentials task ([`Builder::credentials`](super::Builder::credentials)): asks the
//! source before the current credential expires, or at once when a node refused it, and
//! makes every node's new connections use the answer.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::backend::Backend;
use crate::cluster::Cluster;
use crate::credentials::{Credential, Rotation};
use crate::error::Error;

/// The first failed ask is retried after this; then twice as long each time, up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Refusals ask again at most this often, doubling (up to [`MAX_BACKOFF`]) while the
/// answers keep being refused: a wrong password refused by every new connection must not
/// hammer the source.
const REFUSAL_SPACING: Duration = Duration::from_secs(1);

/// Asks for the credential `connect` logs in with, bounded by `limit`.
pub(super) async fn first(rotation: &Rotation, limit: Duration) -> Result<Credential, Error> {
    match tokio::time::timeout(limit, rotation.fetch()).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(why)) => Err(Error::Credentials(why)),
        Err(_) => Err(Error::Credentials(format!(
            "the credential source did not answer within {limit:?}"
        ))),
    }
}

/// Starts the task; it stops when the cluster is dropped (the pool closes it by aborting).
pub(super) fn spawn<DB: Backend>(
    cluster: Weak<Cluster<DB>>,
    rotation: Arc<Rotation>,
    limit: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        let mut last_ask: Option<Instant> = None;
        let mut spacing = REFUSAL_SPACING;
        loop {
            let refused = tokio::select! {
                _ = tokio::time::sleep(rotation.refresh_in()) => false,
                _ = rotation.was_refused() => true,
                // A refused login fetched it: every node uses it.
                _ = rotation.was_renewed() => {
                    let Some(cluster) = cluster.upgrade() else { break };
                    if let Some(credential) = rotation.current() {
                        apply(&cluster, &credential);
                        tracing::info!(user = credential.username(), "credentials renewed after a refused login");
                    }
                    continue;
                }
            };
            if refused && let Some(at) = last_ask {
                // Refused again soon after the last ask: the source's answer is refused too
                // (a pg_hba rule, a user not replicated yet): ask less and less often.
                spacing = if at.elapsed() < spacing * 2 {
                    (spacing * 2).min(MAX_BACKOFF)
                } else {
                    REFUSAL_SPACING
                };
                tokio::time::sleep(spacing.saturating_sub(at.elapsed())).await;
            }
            if cluster.strong_count() == 0 {
                break;
            }
            last_ask = Some(Instant::now());
            let asked = tokio::time::timeout(limit, rotation.fetch()).await;
            match asked {
                Ok(Ok(credential)) => {
                    backoff = FIRST_BACKOFF;
                    let Some(cluster) = cluster.upgrade() else {
                        break;
                    };
                    apply(&cluster, &credential);
                    tracing::info!(user = credential.username(), refused, "credentials rotated");
                }
                failed => {
                    let why = match failed {
                        Ok(Err(why)) => why,
                        _ => format!("no answer within {limit:?}"),
                    };
                    tracing::warn!(
                        error = %why,
                        retry_in = ?backoff,
                        "credential source failed; new connections keep the current credential"
                    );
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    })
}

/// Every node's new connections (and probes') log in with `credential`.
pub(super) fn apply<DB: Backend>(cluster: &Cluster<DB>, credential: &Credential) {
    for node in cluster.snapshot().nodes.iter() {
        node.use_credential(credential);
    }
}
