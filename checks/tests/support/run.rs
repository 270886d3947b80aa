//! Helpers for tests that fault a cluster under a running pool: one test at a time, blocking
//! cluster commands from async tests, waiting for a pool's status to change.

use std::time::{Duration, Instant};

/// The configuration of the fault tests: probes every `interval` bounded by `probe_timeout`,
/// a 2 s acquire timeout, and short bans (200 ms … 1 s), so faults show within a second.
pub fn fault_config(interval: Duration, probe_timeout: Duration) -> partypool::Config {
    partypool::Config::default()
        .health_check_interval(interval)
        .health_check_timeout(probe_timeout)
        .acquire_timeout(Duration::from_secs(2))
        .ban_backoff(partypool::config::Backoff::new(
            Duration::from_millis(200),
            Duration::from_secs(1),
        ))
}

/// Tests that assert timings run one at a time: on a 2-core machine, two clusters under fault
/// at once would measure each other. Hold the guard for the whole test.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// Runs a blocking cluster command (psql, pg_ctl) from a multi-threaded async test.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Polls `pool.status()` until `cond` holds (20 s at most), then returns; fails showing the
/// last status otherwise.
pub async fn wait_until<DB: partypool::Backend>(
    what: &str,
    pool: &partypool::ReplicaPool<DB>,
    mut cond: impl FnMut(&partypool::Status) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = pool.status();
        if cond(&status) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}:\n{status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
