//! Zone affinity on a real cluster: a replica in this process's zone and one behind a proxy
//! adding latency (another zone). Reads stay local while the local replica is well, spill
//! to the remote one when it is behind or dies, and never fail. The server says who answered.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use partypool::{Config, PgReplicaPool};
use support::PgCluster;
use support::proxy::{Fault, FaultProxy};

/// Reads `SELECT inet_server_port()` from `tasks` tasks until `stop`: the ports that
/// answered, and the errors.
async fn read_loop(
    pool: &PgReplicaPool,
    tasks: usize,
    stop: Arc<AtomicBool>,
) -> (Vec<i32>, Vec<String>) {
    let ports = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (pool, stop, ports, errors) =
            (pool.clone(), stop.clone(), ports.clone(), errors.clone());
        handles.push(tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                match sqlx::query_scalar::<_, i32>("SELECT inet_server_port()")
                    .fetch_one(&pool)
                    .await
                {
                    Ok(p) => ports.lock().unwrap().push(p),
                    Err(e) => errors.lock().unwrap().push(e.to_string()),
                }
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let ports = ports.lock().unwrap().clone();
    let errors = errors.lock().unwrap().clone();
    (ports, errors)
}

fn share(ports: &[i32], port: u16) -> f64 {
    ports.iter().filter(|&&p| p == i32::from(port)).count() as f64 / ports.len().max(1) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_stay_in_the_local_zone_and_spill_when_it_cannot_serve() {
    let c = PgCluster::start(2);
    c.psql(0, "CREATE TABLE z (id int)");
    c.wait_replayed();
    let local = c.replica(1).port;
    let remote = c.replica(2).port;
    // The other zone: 2 ms more each way.
    let proxy = FaultProxy::start(remote);
    proxy.set(Fault::Latency(Duration::from_millis(2)));
    let pool = PgReplicaPool::builder()
        .primary(c.primary_url())
        .in_zone("zone-a")
        // The zone as a URL parameter (taken out before the driver sees the URL)…
        .replica(format!("{}?zone=zone-a", c.url(1)))
        // … and with the builder.
        .replica(c.url_via(proxy.port))
        .in_zone("zone-b")
        .config(
            Config::default()
                .prefer_zone("zone-a")
                .health_check_interval(Duration::from_millis(100))
                .health_check_timeout(Duration::from_millis(500)),
        )
        .wait_for_replicas(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    let status = pool.status();
    assert_eq!(
        status.node("replica-1").unwrap().zone.as_deref(),
        Some("zone-a")
    );
    assert_eq!(
        status.node("replica-2").unwrap().zone.as_deref(),
        Some("zone-b")
    );
    assert!(status.to_string().contains("zone-b"), "{status}");
    assert!(
        !status.node("replica-1").unwrap().url.contains("zone"),
        "{status}"
    );

    // 1. Well: the local replica takes the reads.
    let stop = Arc::new(AtomicBool::new(false));
    let reading = {
        let (pool, stop) = (pool.clone(), stop.clone());
        tokio::spawn(async move { read_loop(&pool, 8, stop).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    let (ports, errors) = reading.await.unwrap();
    let local_share = share(&ports, local);
    eprintln!(
        "well: {} reads, {:.2}% local, {} on the remote zone, {} failed",
        ports.len(),
        local_share * 100.0,
        ports.len() - ports.iter().filter(|&&p| p == i32::from(local)).count(),
        errors.len()
    );
    let mut by_port = std::collections::BTreeMap::new();
    for p in &ports {
        *by_port.entry(*p).or_insert(0) += 1;
    }
    eprintln!(
        "by port: {by_port:?} (local {local}, remote {remote}, primary {})",
        c.primary().port
    );
    assert!(ports.len() > 1000, "{}", ports.len());
    assert!(local_share >= 0.99, "{:.4} local", local_share);
    assert!(errors.is_empty(), "{errors:?}");

    // 2. Behind what a read needs (its replay paused after a write): the remote replica,
    // which has the write, not the primary.
    tokio::task::block_in_place(|| c.pause_replay(1));
    sqlx::query("INSERT INTO z VALUES (1)")
        .execute(&pool)
        .await
        .unwrap();
    // (Once the probes have seen the remote replica replay it.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (port, n): (i32, i64) =
        sqlx::query_as("SELECT inet_server_port(), (SELECT count(*) FROM z)")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(n, 1, "read its write");
    assert_eq!(
        port,
        i32::from(remote),
        "the caught-up replica of the other zone (local {local}, primary {})",
        c.primary().port
    );
    tokio::task::block_in_place(|| c.resume_replay(1));
    c.wait_replayed();

    // 3. The local replica dies under load: no read fails; the remote zone takes them.
    let stop = Arc::new(AtomicBool::new(false));
    let reading = {
        let (pool, stop) = (pool.clone(), stop.clone());
        tokio::spawn(async move { read_loop(&pool, 8, stop).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| c.kill(1));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    let (ports, errors) = reading.await.unwrap();
    let after_kill = ports
        .iter()
        .rev()
        .take(200)
        .filter(|&&p| p == i32::from(remote))
        .count();
    eprintln!(
        "local killed: {} reads, {} failed; the last 200: {after_kill} on the remote zone",
        ports.len(),
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "{} failed: {:?}",
        errors.len(),
        &errors[..errors.len().min(3)]
    );
    assert_eq!(
        after_kill, 200,
        "the remote zone serves once the local replica is gone"
    );
    pool.close().await;
}
