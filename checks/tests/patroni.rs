//! Members, roles and switchovers from a real Patroni cluster (etcd + 3 Patroni members on
//! PostgreSQL 15, started by the test support); no node is named primary anywhere. Where a
//! statement ran is the server's word (`inet_server_port()`, `pg_is_in_recovery()`).
#![cfg(feature = "patroni")]

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use partypool::{Config, Origin, PgReplicaPool};
use sqlx::Row;
use support::patroni::PatroniCluster;

const INTERVAL: Duration = Duration::from_millis(250);

/// Probes only every 5 s, Patroni every 250 ms: writes that move within a discovery
/// interval moved on Patroni's word, not on a probe round's.
fn config() -> Config {
    support::run::fault_config(Duration::from_secs(5), Duration::from_millis(500))
        .discovery_interval(INTERVAL)
}

/// A switchover under a mixed read/write loop: no read fails, every acknowledged write is
/// on the new leader exactly once, and writes reach it within one discovery interval plus
/// one health interval of it becoming writable. A member Patroni reports as stopped leaves
/// the rotation with Patroni's word in `status()`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_moves_the_writes_without_losing_any() {
    let c = support::run::blocking(|| PatroniCluster::start(3));
    let leader = c.leader();
    c.psql(&leader, "CREATE TABLE acked (k int NOT NULL)");
    // Patroni's REST API over HTTPS: each member behind a TLS front whose certificate the
    // test's own CA signed. Without the CA the certificate is not trusted: no member is
    // found, and `connect` says why.
    let ca = support::tls::TestCa::new();
    let fronts: Vec<_> = c.members.iter().map(|m| ca.proxy(m.rest_port)).collect();
    let https = fronts
        .iter()
        .map(|f| format!("https://127.0.0.1:{}", f.port))
        .collect::<Vec<_>>()
        .join(",");
    let untrusted = PgReplicaPool::builder()
        .patroni(&https, c.template())
        .config(config())
        .connect()
        .await
        .unwrap_err();
    assert!(untrusted.to_string().contains("certificate"), "{untrusted}");
    // With it: the members, their roles and zones, and later discovery rounds.
    let over_tls = PgReplicaPool::builder()
        .patroni(&https, c.template())
        .patroni_ca(&ca.pem)
        .config(config())
        .connect()
        .await
        .unwrap();
    tokio::time::sleep(INTERVAL * 4).await;
    let status = over_tls.status();
    assert_eq!(status.nodes.len(), c.members.len(), "{status}");
    for m in &c.members {
        let n = status
            .node(&m.name)
            .unwrap_or_else(|| panic!("{}: {status}", m.name));
        assert_eq!(n.origin, Origin::Patroni);
        assert_eq!(n.writer, m.name == leader, "{status}");
        assert_eq!(n.zone, Some(format!("zone-{}", m.name)), "{status}");
    }
    over_tls.close().await;
    drop(fronts);

    let pool = PgReplicaPool::builder()
        .patroni(c.endpoints(), c.template())
        .config(config())
        .connect()
        .await
        .unwrap();
    let status = pool.status();
    for m in &c.members {
        let n = status
            .node(&m.name)
            .unwrap_or_else(|| panic!("{}: {status}", m.name));
        assert_eq!(n.origin, Origin::Patroni);
        assert_eq!(n.writer, m.name == leader, "{status}");
        // Each member's `zone` tag.
        assert_eq!(n.zone, Some(format!("zone-{}", m.name)), "{status}");
    }
    let port_of = |name: &str| c.member(name).pg_port;
    let first: i32 =
        sqlx::query_scalar("INSERT INTO acked VALUES (0) RETURNING inet_server_port()")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(first as u16, port_of(&leader));

    let stop = Arc::new(AtomicBool::new(false));
    let writes = tokio::spawn({
        let (pool, stop) = (pool.clone(), stop.clone());
        async move {
            let (mut acked, mut failed) = (Vec::new(), 0usize);
            let mut k = 0;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                match sqlx::query_scalar::<_, i32>(
                    "INSERT INTO acked VALUES ($1) RETURNING inet_server_port()",
                )
                .bind(k)
                .fetch_one(&pool)
                .await
                {
                    Ok(port) => acked.push((k, port as u16, Instant::now())),
                    Err(_) => failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (acked, failed)
        }
    });
    let reads = tokio::spawn({
        let (pool, stop) = (pool.clone(), stop.clone());
        async move {
            let (mut seen, mut failed) = (HashMap::new(), Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match sqlx::query("SELECT inet_server_port(), pg_is_in_recovery()")
                    .fetch_one(&pool)
                    .await
                {
                    Ok(row) => *seen.entry(row.get::<i32, _>(0) as u16).or_insert(0) += 1,
                    Err(e) => failed.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (seen, failed)
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let candidate = c
        .members
        .iter()
        .map(|m| m.name.clone())
        .find(|n| *n != leader)
        .unwrap();
    let requested = Instant::now();
    support::run::blocking(|| c.switchover(&leader, &candidate));
    // When the candidate really accepts writes (the test's own connection says so).
    let writable = support::run::blocking(|| {
        loop {
            if c.try_psql(&candidate, "SELECT pg_is_in_recovery()")
                .as_deref()
                == Some("f")
            {
                break Instant::now();
            }
            assert!(
                requested.elapsed() < Duration::from_secs(30),
                "the switchover never ended"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    // Let the old leader rejoin as a replica, under the loops.
    support::run::blocking(|| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = c.reported();
            if r.iter()
                .filter(|m| m.state == "running" || m.state == "streaming")
                .count()
                == 3
                && r.iter().any(|m| m.name == candidate && m.role == "leader")
            {
                break;
            }
            assert!(Instant::now() < deadline, "{r:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let (acked, failed_writes) = writes.await.unwrap();
    let (seen, failed_reads) = reads.await.unwrap();

    let on_new = acked
        .iter()
        .find(|(_, port, _)| *port == port_of(&candidate))
        .map(|(_, _, at)| *at)
        .unwrap_or_else(|| {
            panic!(
                "no write reached the new leader {candidate} ({}) in {:?} after it was writable; \
                 {} acknowledged (on {:?}), {failed_writes} failed\n{}",
                port_of(&candidate),
                writable.elapsed(),
                acked.len(),
                acked
                    .iter()
                    .map(|a| a.1)
                    .collect::<std::collections::BTreeSet<_>>(),
                pool.status()
            )
        });
    let moved = on_new.saturating_duration_since(writable);
    // The application's view: from its last write on the old leader to its first on the new.
    let last_old = acked
        .iter()
        .filter(|(_, port, _)| *port == port_of(&leader))
        .map(|(_, _, at)| *at)
        .max()
        .expect("writes on the old leader");
    let outage = on_new.saturating_duration_since(last_old);
    println!(
        "Patroni switchover: candidate writable {:?} after the request; writes there {moved:?} later \
         (discovery interval {INTERVAL:?}, health interval 5 s); no write acknowledged for {outage:?}; \
         {} writes acknowledged, {failed_writes} failed; reads {seen:?}, {} failed",
        writable - requested,
        acked.len(),
        failed_reads.len()
    );
    // A read that had to run on the leader (read-your-writes: the replicas had not replayed
    // the loop's newest write yet) fails like a write when the leader is stopped under it,
    // and says so honestly; any other failed read is a bug.
    let on_the_old_leader = |e: &String| e.contains("may have committed");
    assert!(
        failed_reads.iter().all(on_the_old_leader) && failed_reads.len() <= 3,
        "failed reads: {failed_reads:?}"
    );
    assert!(
        moved <= INTERVAL + Duration::from_millis(250),
        "writes reached the new leader {moved:?} after it became writable"
    );
    for (k, port, _) in &acked {
        assert!(
            *port == port_of(&leader) || *port == port_of(&candidate),
            "write {k} on {port}"
        );
    }
    // Every acknowledged write exactly once on the new leader (which has the old one's too).
    let mut count: HashMap<i32, usize> = HashMap::new();
    for line in c.psql(&candidate, "SELECT k FROM acked").lines() {
        *count.entry(line.parse().unwrap()).or_insert(0) += 1;
    }
    for (k, _, _) in &acked {
        assert_eq!(count.get(k), Some(&1), "acknowledged write {k}");
    }
    assert!(count.values().all(|n| *n == 1), "a write applied twice");
    let status = pool.status();
    assert!(status.node(&candidate).unwrap().writer, "{status}");

    // A member that crashes (Patroni and its postgres killed) is probed down at once, and
    // leaves the pool when Patroni no longer lists it (its key expires after the ttl).
    let gone = c
        .members
        .iter()
        .map(|m| m.name.clone())
        .find(|n| *n != candidate)
        .unwrap();
    support::run::blocking(|| c.crash(&gone));
    let crashed = Instant::now();
    support::run::wait_until("the crashed member leaves", &pool, |s| {
        s.node(&gone).is_none()
    })
    .await;
    println!(
        "a crashed member left the pool {:?} after the crash (Patroni ttl 10 s)",
        crashed.elapsed()
    );
    for _ in 0..20 {
        let port: i32 = sqlx::query_scalar("SELECT inet_server_port()")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_ne!(port as u16, port_of(&gone));
    }
    pool.close().await;
}
