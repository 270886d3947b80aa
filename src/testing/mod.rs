//! A testing kit (feature `testing`): the real clusters partypool's own tests run against,
//! for your tests.
//!
//! - [`PgCluster::start(n)`](PgCluster::start): a throwaway PostgreSQL primary and `n`
//!   streaming replicas on free loopback ports, with levers for the faults replicas have in
//!   production: [`pause_replay`](PgCluster::pause_replay),
//!   [`delay_replay`](PgCluster::delay_replay), [`kill`](PgCluster::kill),
//!   [`promote`](PgCluster::promote), …
//! - [`MariaDbCluster::start(n)`](MariaDbCluster::start): a MariaDB primary and `n` GTID
//!   replicas.
//!
//! Server binaries: PostgreSQL from `$PARTYPOOL_PG_BIN`, `pg_config --bindir`, `$PATH` or
//! the newest `/usr/lib/postgresql/*/bin`; MariaDB from the Debian package paths. Missing
//! binaries panic with a message saying how to install them: a test never passes without a
//! database. As root, PostgreSQL runs as the `postgres` OS user (it refuses root).
//!
//! Clusters live in a temp folder under `/dev/shm` (else the temp dir). Dropping one stops
//! every server and removes the folder; so does a watchdog process when the test process
//! dies without unwinding (a `static` cluster, an abort, a panic with `panic = "abort"`).
//! Clusters of parallel tests do not share anything.
//!
//! Every method panics with a clear message when the server does not do what was asked:
//! these are test fixtures.
//!
//! ```no_run
//! use partypool::PgReplicaPool;
//! use partypool::testing::PgCluster;
//!
//! #[tokio::test]
//! async fn reads_go_to_the_replica() {
//!     let cluster = PgCluster::start(1);
//!     let pool = PgReplicaPool::connect(&cluster.primary_url(), &[&cluster.url(1)], Default::default())
//!         .await
//!         .unwrap();
//!     let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
//!         .fetch_one(&pool)
//!         .await
//!         .unwrap();
//!     assert!(standby);
//! }
//! ```

mod mariadb;
mod postgres;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};

pub use mariadb::{MariaDbCluster, MariaDbNode};
pub use postgres::{PgCluster, PgNode, pg_bin, shared};

/// A shell script that runs once our process lets go of its stdin: at `Drop`, or when the
/// process dies without unwinding (only our process holds the pipe open). Cleans up after
/// clusters whatever ends a test.
pub struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Watchdog {
    /// Starts `sh -c script`; the script should begin with `cat >/dev/null` (the wait).
    pub fn spawn(script: &str) -> Watchdog {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn a cleanup watchdog");
        let stdin = child.stdin.take();
        Watchdog { child, stdin }
    }
}

impl Drop for Watchdog {
    /// Runs the script and waits for it.
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// `program`, run as the `postgres` OS user when `as_postgres` (through `runuser`).
pub fn run_as_postgres(program: impl AsRef<std::ffi::OsStr>, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Where clusters keep their data: `/dev/shm` when there is one (~15× faster than `/tmp`
/// for a data folder's many small files), else the temp dir.
pub fn scratch_root() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// The password every cluster URL carries (the servers trust loopback connections, so it is
/// only there to prove that no output ever shows it).
pub const SECRET: &str = "s3cr3t-pw";

pub(crate) fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.write_all(text.as_bytes())
        .expect("append to postgresql.conf");
}

pub(crate) fn run(cmd: &mut Command) {
    let out = cmd.output().expect("run command");
    check(&out, &format!("{cmd:?}"));
}

/// Panics with `what` and the command's output unless it succeeded.
pub fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether this process runs as root (PostgreSQL servers then run as the `postgres` user).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}
