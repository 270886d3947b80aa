//! Topology that follows the deployment, on real streaming replication: nodes without
//! declared roles (a libpq-style multi-host URL), failover with no role declared anywhere,
//! and members added and removed while statements run. Who answered is the server's word
//! (`inet_server_port()`, `pg_is_in_recovery()`).

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use partypool::{Config, Error, Origin, PgReplicaPool, Role};
use sqlx::Row;
use support::PgCluster;

const INTERVAL: Duration = Duration::from_millis(250);

fn config() -> Config {
    support::run::fault_config(INTERVAL, Duration::from_millis(500))
}

async fn who(pool: &PgReplicaPool) -> Result<(u16, bool), sqlx::Error> {
    let row = sqlx::query("SELECT inet_server_port(), pg_is_in_recovery()")
        .fetch_one(pool)
        .await?;
    Ok((row.get::<i32, _>(0) as u16, row.get(1)))
}

/// Where a write ran.
async fn write(pool: &PgReplicaPool) -> Result<u16, sqlx::Error> {
    let port: i32 =
        sqlx::query_scalar("INSERT INTO topo (v) VALUES ('w') RETURNING inet_server_port()")
            .fetch_one(pool)
            .await?;
    Ok(port as u16)
}

/// Reads in the background until `stop`; returns (reads per port, failures).
fn read_loop(
    pool: &PgReplicaPool,
    stop: &Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(HashMap<u16, usize>, Vec<String>)> {
    let (pool, stop) = (pool.clone(), stop.clone());
    tokio::spawn(async move {
        let (mut seen, mut failed) = (HashMap::new(), Vec::new());
        while !stop.load(Ordering::Relaxed) {
            match who(&pool).await {
                Ok((port, _)) => *seen.entry(port).or_insert(0) += 1,
                Err(e) => failed.push(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        (seen, failed)
    })
}

/// 30 reads: none on `gone`, some on each of `serving`.
async fn reads_skip(pool: &PgReplicaPool, gone: u16, serving: &[u16]) {
    let mut seen = HashMap::new();
    for _ in 0..30 {
        *seen.entry(who(pool).await.unwrap().0).or_insert(0) += 1;
    }
    assert!(!seen.contains_key(&gone), "{seen:?}");
    assert!(serving.iter().all(|p| seen.contains_key(p)), "{seen:?}");
}

/// Stops a read loop; not one of its reads may have failed.
async fn no_failed_reads(
    stop: &AtomicBool,
    reads: tokio::task::JoinHandle<(HashMap<u16, usize>, Vec<String>)>,
) {
    stop.store(true, Ordering::Relaxed);
    let (_, failed) = reads.await.unwrap();
    assert!(failed.is_empty(), "failed reads: {failed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_host_url_needs_no_roles_and_follows_a_failover() {
    let c = PgCluster::start(2);
    c.psql(0, "CREATE TABLE topo (id serial PRIMARY KEY, v text)");
    c.wait_replayed();
    let (p0, p1, p2) = (c.primary().port, c.replica(1).port, c.replica(2).port);
    // The primary in the middle: nothing says which host it is.
    let pool = PgReplicaPool::builder()
        .nodes(c.multi_host_url(&[1, 0, 2]))
        .config(config())
        .connect()
        .await
        .unwrap();
    let status = pool.status();
    let primary = status
        .node(&format!("127.0.0.1:{p0}"))
        .expect("named host:port");
    assert!(primary.writer, "{status}");
    assert_eq!(
        (primary.role, primary.origin),
        (Role::Discovered, Origin::MultiHost)
    );
    assert!(!status.to_string().contains(support::SECRET), "{status}");

    assert_eq!(write(&pool).await.unwrap(), p0);
    let mut seen = HashMap::new();
    for _ in 0..20 {
        let (port, standby) = who(&pool).await.unwrap();
        assert!(standby, "a read ran on the primary");
        *seen.entry(port).or_insert(0) += 1;
    }
    assert!(seen.contains_key(&p1) && seen.contains_key(&p2), "{seen:?}");

    // The primary dies and a replica is promoted; no role is declared anywhere.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = read_loop(&pool, &stop);
    tokio::time::sleep(Duration::from_millis(200)).await;
    support::run::blocking(|| {
        c.kill(0);
        c.promote(1);
    });
    let promoted = Instant::now();
    let moved = loop {
        if let Ok(port) = write(&pool).await {
            if port == p1 {
                break promoted.elapsed();
            }
            panic!("a write ran on {port}");
        }
        assert!(
            promoted.elapsed() < Duration::from_secs(20),
            "{}",
            pool.status()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    println!(
        "multi-host failover: writes on the promoted node {moved:?} after the promotion (health interval {INTERVAL:?})"
    );
    assert!(
        moved <= 2 * INTERVAL + Duration::from_millis(250),
        "writes moved after {moved:?}"
    );
    for _ in 0..5 {
        assert_eq!(write(&pool).await.unwrap(), p1);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let (seen, failed) = reads.await.unwrap();
    assert!(failed.is_empty(), "failed reads: {failed:?}");
    assert!(seen.get(&p2).is_some_and(|n| *n > 0), "{seen:?}");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_join_and_leave_while_statements_run() {
    let mut c = PgCluster::start(2);
    c.psql(0, "CREATE TABLE topo (id serial PRIMARY KEY, v text)");
    c.wait_replayed();
    let (p0, p1, p2) = (c.primary().port, c.replica(1).port, c.replica(2).port);

    // Only the standbys at first: reads work, writes fail at once and say why.
    let pool = PgReplicaPool::builder()
        .nodes(c.multi_host_url(&[1, 2]))
        .config(config())
        .connect()
        .await
        .unwrap();
    assert!(who(&pool).await.unwrap().1);
    let started = Instant::now();
    let err = write(&pool).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("no node takes writes"), "{err}");

    // The primary joins: it takes the writes.
    let name = pool.add_node(&c.url(0)).await.unwrap();
    assert_eq!(name, format!("127.0.0.1:{p0}"));
    assert_eq!(pool.status().node(&name).unwrap().origin, Origin::Added);
    assert_eq!(write(&pool).await.unwrap(), p0);

    // A standby started after connect serves reads within one interval of joining.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = read_loop(&pool, &stop);
    let p3 = support::run::blocking(|| {
        let i = c.base_backup();
        c.wait_streaming(3);
        c.replica(i).port
    });
    let joined = Instant::now();
    let new = pool.add_replica(&c.url(3)).await.unwrap();
    assert_eq!(new, "replica-1", "the first declared replica");
    let served = loop {
        let (port, standby) = who(&pool).await.unwrap();
        assert!(standby);
        if port == p3 {
            break joined.elapsed();
        }
        assert!(
            joined.elapsed() < Duration::from_secs(5),
            "{}",
            pool.status()
        );
    };
    println!("a standby added at run time served a read {served:?} after add_replica");
    assert!(served <= INTERVAL, "{served:?}");

    // Removing a standby under the read loop fails no read; it gets none afterwards.
    let dropped = format!("127.0.0.1:{p1}");
    pool.remove_node(&dropped).await.unwrap();
    assert!(pool.status().node(&dropped).is_none(), "{}", pool.status());
    reads_skip(&pool, p1, &[p2, p3]).await;
    no_failed_reads(&stop, reads).await;

    // The writer cannot be removed while no other node is writable; unknown names fail.
    let refused = pool.remove_node(&name).await.unwrap_err();
    assert!(matches!(refused, Error::Membership(_)), "{refused}");
    assert!(
        refused.to_string().contains("no other node is writable"),
        "{refused}"
    );
    assert!(matches!(
        pool.remove_node("nope").await,
        Err(Error::Membership(_))
    ));
    assert!(matches!(
        pool.add_node(&c.multi_host_url(&[1, 2])).await,
        Err(Error::Membership(_))
    ));
    assert_eq!(write(&pool).await.unwrap(), p0);
    pool.close().await;
}

/// A resolver the test drives: the addresses it answers, or an error.
#[derive(Clone)]
struct Fixed(Arc<std::sync::Mutex<Result<Vec<std::net::SocketAddr>, String>>>);

impl Fixed {
    fn new() -> Fixed {
        Fixed(Arc::new(std::sync::Mutex::new(Ok(Vec::new()))))
    }

    fn set(&self, ports: &[u16]) {
        *self.0.lock().unwrap() = Ok(ports
            .iter()
            .map(|p| std::net::SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect());
    }

    fn fail(&self) {
        *self.0.lock().unwrap() = Err("SERVFAIL".into());
    }
}

impl partypool::discovery::Resolve for Fixed {
    fn resolve<'a>(
        &'a self,
        _host: &'a str,
        _port: u16,
    ) -> futures_core::future::BoxFuture<'a, std::io::Result<Vec<std::net::SocketAddr>>> {
        let answer = self.0.lock().unwrap().clone();
        Box::pin(async move { answer.map_err(std::io::Error::other) })
    }
}

/// A DNS name is one node per address, followed as its addresses change: a new address
/// serves reads after its first probe, a vanished one drains without failing a read, a
/// failed lookup changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dns_name_is_followed_as_its_addresses_change() {
    let mut c = PgCluster::start(2);
    let (p1, p2) = (c.replica(1).port, c.replica(2).port);
    let resolver = Fixed::new();
    resolver.set(&[p1, p2]);
    let pool = PgReplicaPool::builder()
        .primary(c.url(0))
        .dns(format!(
            "postgres://postgres:{}@replicas.test/postgres",
            support::SECRET
        ))
        .resolver(resolver.clone())
        .config(config().discovery_interval(INTERVAL))
        .connect()
        .await
        .unwrap();
    let status = pool.status();
    let n1 = format!("replicas.test/127.0.0.1:{p1}");
    let n2 = format!("replicas.test/127.0.0.1:{p2}");
    for name in [&n1, &n2] {
        let n = status
            .node(name)
            .unwrap_or_else(|| panic!("{name}: {status}"));
        assert_eq!((n.origin, n.role), (Origin::Dns, Role::Discovered));
        assert!(n.healthy, "{status}");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let reads = read_loop(&pool, &stop);
    // A lookup that fails keeps every member.
    resolver.fail();
    tokio::time::sleep(3 * INTERVAL).await;
    assert!(pool.status().node(&n1).is_some() && pool.status().node(&n2).is_some());

    // A new standby appears in DNS and the first one leaves.
    let p3 = support::run::blocking(|| {
        let i = c.base_backup();
        c.wait_streaming(3);
        c.replica(i).port
    });
    resolver.set(&[p2, p3]);
    let changed = Instant::now();
    support::run::wait_until("the new address serves", &pool, |s| {
        s.node(&format!("replicas.test/127.0.0.1:{p3}"))
            .is_some_and(|n| n.healthy && n.in_recovery == Some(true))
            && s.node(&n1).is_none()
    })
    .await;
    println!(
        "DNS change followed in {:?} (discovery interval {INTERVAL:?})",
        changed.elapsed()
    );
    reads_skip(&pool, p1, &[p2, p3]).await;
    no_failed_reads(&stop, reads).await;
    pool.close().await;
}

/// Lines added to `/etc/hosts` for one test, removed when dropped.
struct HostsEntry {
    lines: String,
}

impl HostsEntry {
    fn add(name: &str, addrs: &[&str]) -> HostsEntry {
        let lines: String = addrs
            .iter()
            .map(|a| format!("{a} {name} # partypool test\n"))
            .collect();
        let mut hosts = std::fs::read_to_string("/etc/hosts").expect("read /etc/hosts");
        if !hosts.ends_with('\n') {
            hosts.push('\n');
        }
        hosts.push_str(&lines);
        std::fs::write("/etc/hosts", hosts)
            .unwrap_or_else(|e| panic!("this test adds a name to /etc/hosts and needs root: {e}"));
        HostsEntry { lines }
    }
}

impl Drop for HostsEntry {
    fn drop(&mut self) {
        if let Ok(hosts) = std::fs::read_to_string("/etc/hosts") {
            let _ = std::fs::write("/etc/hosts", hosts.replace(&self.lines, ""));
        }
    }
}

/// Through the system resolver: a name with two loopback addresses (in `/etc/hosts`) is two
/// nodes. The second address is a proxy on 127.0.0.2 to the second standby, on the first
/// one's port, so the same `host:port` reaches two servers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_system_resolver_gives_one_node_per_address() {
    let c = PgCluster::start(2);
    let (p1, p2) = (c.replica(1).port, c.replica(2).port);
    let _proxy =
        support::proxy::FaultProxy::start_at(format!("127.0.0.2:{p1}").parse().unwrap(), p2);
    let name = format!("partypool-{}.test", std::process::id());
    let _hosts = HostsEntry::add(&name, &["127.0.0.1", "127.0.0.2"]);
    let pool = PgReplicaPool::builder()
        .primary(c.url(0))
        .dns(format!(
            "postgres://postgres:{}@{name}:{p1}/postgres",
            support::SECRET
        ))
        .config(config())
        .connect()
        .await
        .unwrap();
    let status = pool.status();
    for addr in ["127.0.0.1", "127.0.0.2"] {
        let node = format!("{name}/{addr}:{p1}");
        assert!(
            status.node(&node).is_some_and(|n| n.healthy),
            "{node}: {status}"
        );
    }
    let mut seen = HashMap::new();
    for _ in 0..20 {
        *seen.entry(who(&pool).await.unwrap().0).or_insert(0) += 1;
    }
    assert!(seen.contains_key(&p1) && seen.contains_key(&p2), "{seen:?}");
    pool.close().await;
}
