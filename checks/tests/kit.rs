//! The testing kit's clusters: parallel clusters do not collide, and nothing outlives a test
//! process, even one that aborts without unwinding.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::PgCluster;

fn alive(pid: &str) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
}

/// Run by `nothing_outlives_a_test_process_that_aborts`, in a process of its own.
#[test]
#[ignore = "the child process of nothing_outlives_a_test_process_that_aborts"]
fn child_starts_a_cluster_and_aborts() {
    let c = PgCluster::start(1);
    println!("FOLDER {}", c.folder().display());
    println!("PIDS {} {}", c.pid(0), c.pid(1));
    std::io::stdout().flush().unwrap();
    std::process::abort();
}

#[test]
fn nothing_outlives_a_test_process_that_aborts() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "child_starts_a_cluster_and_aborts",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "the child did not abort: {stdout}");
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.split_once(name).map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("no {name} in the child's output: {stdout}"))
            .trim()
            .to_owned()
    };
    let folder = field("FOLDER ");
    let pids: Vec<String> = field("PIDS ").split(' ').map(str::to_owned).collect();
    assert!(pids.iter().all(|p| !p.is_empty()));
    let deadline = Instant::now() + Duration::from_secs(20);
    while Path::new(&folder).exists() || pids.iter().any(|p| alive(p)) {
        assert!(
            Instant::now() < deadline,
            "left behind after the abort: folder {folder} exists: {}, servers alive: {:?}",
            Path::new(&folder).exists(),
            pids.iter().filter(|p| alive(p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn parallel_clusters_do_not_collide_and_clean_up_on_drop() {
    let started: Vec<PgCluster> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3).map(|_| s.spawn(|| PgCluster::start(1))).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ports: Vec<u16> = started
        .iter()
        .flat_map(|c| c.nodes.iter().map(|n| n.port))
        .collect();
    ports.sort();
    ports.dedup();
    assert_eq!(ports.len(), 6, "ports shared between clusters");
    for c in &started {
        assert_eq!(c.psql(1, "SELECT pg_is_in_recovery()").trim(), "t");
    }
    let left: Vec<(String, Vec<String>)> = started
        .iter()
        .map(|c| (c.folder().display().to_string(), vec![c.pid(0), c.pid(1)]))
        .collect();
    drop(started);
    for (folder, pids) in left {
        assert!(!Path::new(&folder).exists(), "{folder} left behind");
        assert!(pids.iter().all(|p| !alive(p)), "servers of {folder} alive");
    }
}
