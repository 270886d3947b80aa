//! Throwaway PostgreSQL clusters: a primary and streaming replicas.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::{
    SECRET, Watchdog, append, check, free_port, is_root, run, run_as_postgres, scratch_root,
};

/// A running primary + replicas.
pub struct PgCluster {
    bin: PathBuf,
    base: PathBuf,
    as_postgres: bool,
    /// Its servers; `nodes[0]` is the primary.
    pub nodes: Vec<PgNode>,
    watchdog: Option<Watchdog>,
}

/// One server of a cluster. `nodes[0]` is the primary.
#[derive(Debug, Clone)]
pub struct PgNode {
    /// Its name: `primary`, `replica1`, …
    pub name: String,
    /// Its loopback port.
    pub port: u16,
    /// Its data folder.
    pub data: PathBuf,
}

static SHARED: OnceLock<PgCluster> = OnceLock::new();

/// One cluster (primary + 2 replicas) shared by all tests of a test binary that do not stop,
/// pause or promote nodes.
pub fn shared() -> &'static PgCluster {
    SHARED.get_or_init(|| PgCluster::start(2))
}

impl PgCluster {
    /// Starts a primary and `replicas` streaming replicas and waits until all of them stream.
    pub fn start(replicas: usize) -> PgCluster {
        let bin = pg_bin();
        let as_postgres = is_root();
        let base = tempfile::Builder::new()
            .prefix("partypool-")
            .tempdir_in(scratch_root())
            .expect("create a temp dir for the cluster")
            .keep();
        let mut cluster = PgCluster {
            bin,
            base,
            as_postgres,
            nodes: Vec::new(),
            watchdog: None,
        };
        cluster.spawn_watchdog();
        if as_postgres {
            run(Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(&cluster.base));
        }

        // Primary.
        let primary = PgNode {
            name: "primary".into(),
            port: 0,
            data: cluster.base.join("primary"),
        };
        let out = cluster.pg_cmd("initdb", |c| {
            c.arg("-D").arg(&primary.data).args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
            ]);
        });
        check(&out, "initdb");
        let conf = "\n# partypool test cluster\n\
            listen_addresses = '127.0.0.1'\n\
            unix_socket_directories = ''\n\
            fsync = off\n\
            full_page_writes = off\n\
            wal_level = replica\n\
            max_wal_senders = 40\n\
            hot_standby = on\n\
            max_connections = 300\n\
            shared_buffers = 32MB\n\
            wal_keep_size = 512MB\n\
            wal_receiver_status_interval = 1s\n\
            log_min_messages = warning\n";
        append(&primary.data.join("postgresql.conf"), conf);
        cluster.nodes.push(primary);
        cluster.start_node(0);

        // Replicas: base backups of the primary, streaming from it.
        for _ in 1..=replicas {
            cluster.base_backup();
        }
        cluster.wait_streaming(replicas);
        cluster
    }

    /// Adds a standby: a base backup of node 0, streaming from it, started; returns its
    /// index (wait for it with `wait_streaming`).
    pub fn base_backup(&mut self) -> usize {
        let i = self.nodes.len();
        let node = PgNode {
            name: format!("replica{i}"),
            port: 0,
            data: self.base.join(format!("replica{i}")),
        };
        let conninfo = format!(
            "host=127.0.0.1 port={} user=postgres application_name={}",
            self.nodes[0].port, node.name
        );
        let out = self.pg_cmd("pg_basebackup", |c| {
            c.arg("-D")
                .arg(&node.data)
                .args(["-R", "-X", "stream", "-c", "fast", "-d", &conninfo]);
        });
        check(&out, "pg_basebackup");
        self.nodes.push(node);
        self.start_node(i);
        i
    }

    /// One libpq-style multi-host URL over the given nodes.
    pub fn multi_host_url(&self, nodes: &[usize]) -> String {
        let hosts: Vec<String> = nodes
            .iter()
            .map(|&i| format!("127.0.0.1:{}", self.nodes[i].port))
            .collect();
        format!("postgres://postgres:{SECRET}@{}/postgres", hosts.join(","))
    }

    /// The primary (server 0).
    pub fn primary(&self) -> &PgNode {
        &self.nodes[0]
    }

    /// The replica `i` (1-based, as in partypool's `replica-1`).
    pub fn replica(&self, i: usize) -> &PgNode {
        &self.nodes[i]
    }

    /// A URL for a node, with a password in it (trust auth ignores it) so tests can check it
    /// never shows up anywhere.
    pub fn url(&self, node: usize) -> String {
        format!(
            "postgres://postgres:{SECRET}@127.0.0.1:{}/postgres",
            self.nodes[node].port
        )
    }

    /// The primary's URL.
    pub fn primary_url(&self) -> String {
        self.url(0)
    }

    /// Every replica's URL, in order.
    pub fn replica_urls(&self) -> Vec<String> {
        (1..self.nodes.len()).map(|i| self.url(i)).collect()
    }

    /// Starts node `i` (on its old port, or a free one the first time).
    pub fn start_node(&mut self, i: usize) {
        for attempt in 0..5 {
            if self.nodes[i].port == 0 || attempt > 0 {
                self.nodes[i].port = free_port();
            }
            if self.try_start(i) {
                return;
            }
        }
        panic!(
            "could not start {}: see {}",
            self.nodes[i].name,
            self.log(i).display()
        );
    }

    /// Starts a stopped node again on its port. Tried for a few seconds: right after a
    /// SIGKILL the old postmaster's children may still hold the port or shared memory.
    pub fn restart(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.try_start(i) {
            assert!(
                Instant::now() < deadline,
                "restart {}: see {}",
                self.nodes[i].name,
                self.log(i).display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn try_start(&self, i: usize) -> bool {
        let node = &self.nodes[i];
        let opts = format!("-p {}", node.port);
        let log = self.log(i);
        let out = self.pg_cmd("pg_ctl", |c| {
            c.arg("-D")
                .arg(&node.data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o", &opts, "start"]);
        });
        out.status.success()
    }

    fn log(&self, i: usize) -> PathBuf {
        self.base.join(format!("{}.log", self.nodes[i].name))
    }

    /// Stops node `i` at once, like a crash (`pg_ctl stop -m immediate`).
    pub fn stop(&self, i: usize) {
        let out = self.pg_cmd("pg_ctl", |c| {
            c.arg("-D")
                .arg(&self.nodes[i].data)
                .args(["-w", "-m", "immediate", "stop"]);
        });
        check(&out, "pg_ctl stop");
    }

    /// Kills node `i`'s postmaster with SIGKILL (its backends notice and exit).
    pub fn kill(&self, i: usize) {
        let pid_file = self.nodes[i].data.join("postmaster.pid");
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("read {}: {e}", pid_file.display()));
        let pid = pid.lines().next().unwrap_or_default().trim().to_owned();
        run(Command::new("kill").args(["-KILL", &pid]));
    }

    /// The folder holding every node's data (removed when the cluster is dropped).
    pub fn folder(&self) -> &Path {
        &self.base
    }

    /// The postmaster's process id of node `i`.
    pub fn pid(&self, i: usize) -> String {
        let pid_file = self.nodes[i].data.join("postmaster.pid");
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|e| panic!("read {}: {e}", pid_file.display()));
        pid.lines().next().unwrap_or_default().trim().to_owned()
    }

    /// Stalls node `i`: SIGSTOP to its postmaster *and* each child by pid (the children call
    /// `setsid()`, so a process-group signal would stop only the postmaster). Undo with
    /// [`unstall`](Self::unstall); always do.
    pub fn stall(&self, i: usize) {
        self.signal_all(i, "-STOP");
    }

    /// Lets a stalled node run again (SIGCONT to the postmaster and its children).
    pub fn unstall(&self, i: usize) {
        self.signal_all(i, "-CONT");
    }

    fn signal_all(&self, i: usize, signal: &str) {
        let pid = self.pid(i);
        let children = Command::new("pgrep")
            .args(["-P", &pid])
            .output()
            .expect("run pgrep");
        let mut pids = vec![pid];
        pids.extend(
            String::from_utf8_lossy(&children.stdout)
                .split_whitespace()
                .map(str::to_owned),
        );
        // The postmaster first on SIGSTOP (it cannot fork new children meanwhile), last on
        // SIGCONT.
        if signal == "-CONT" {
            pids.reverse();
        }
        for p in pids {
            let _ = Command::new("kill").args([signal, &p]).status();
        }
    }

    /// Makes node `i` log every statement it runs (for counting them with
    /// [`statements_logged`](Self::statements_logged)).
    pub fn log_statements(&self, i: usize) {
        self.psql(i, "ALTER SYSTEM SET log_statement = 'all'");
        self.psql(i, "ALTER SYSTEM SET log_min_messages = 'log'");
        self.psql(i, "SELECT pg_reload_conf()");
        std::thread::sleep(Duration::from_millis(200));
    }

    /// How many statements node `i` has logged so far (after
    /// [`log_statements`](Self::log_statements)): written as they run, unlike the cumulative
    /// statistics, which a backend may flush seconds later.
    pub fn statements_logged(&self, i: usize) -> usize {
        self.logged_statements(i).len()
    }

    /// How many of the statements node `i` has logged contain one of `needles`.
    pub fn statements_logged_matching(&self, i: usize, needles: &[&str]) -> usize {
        self.logged_statements(i)
            .iter()
            .filter(|l| needles.iter().any(|n| l.contains(n)))
            .count()
    }

    /// The statement lines of node `i`'s log.
    fn logged_statements(&self, i: usize) -> Vec<String> {
        std::fs::read_to_string(self.log(i))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("LOG:  execute ") || l.contains("LOG:  statement: "))
            .map(str::to_owned)
            .collect()
    }

    /// Node `i`'s system identifier (the same on every node of one cluster).
    pub fn system_id(&self, i: usize) -> u64 {
        self.psql(i, "SELECT system_identifier FROM pg_control_system()")
            .parse::<i64>()
            .expect("system identifier") as u64
    }

    /// Promotes standby `i` to a primary and waits until it accepts writes.
    pub fn promote(&self, i: usize) {
        let out = self.pg_cmd("pg_ctl", |c| {
            c.arg("-D")
                .arg(&self.nodes[i].data)
                .args(["-w", "-t", "60", "promote"]);
        });
        check(&out, "pg_ctl promote");
        self.wait_until(i, "SELECT pg_is_in_recovery()", "f", "leave recovery");
    }

    /// Polls `sql` on node `i` until it prints `want` (30 s at most).
    fn wait_until(&self, i: usize, sql: &str, want: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.psql(i, sql) != want {
            assert!(
                Instant::now() < deadline,
                "{} did not {what} in 30 s",
                self.nodes[i].name
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Pauses WAL replay on standby `i` and waits until it is really paused.
    pub fn pause_replay(&self, i: usize) {
        self.psql(i, "SELECT pg_wal_replay_pause()");
        self.wait_until(
            i,
            "SELECT pg_get_wal_replay_pause_state()",
            "paused",
            "pause replay",
        );
    }

    /// Resumes WAL replay on replica `i` (`pg_wal_replay_resume()`).
    pub fn resume_replay(&self, i: usize) {
        self.psql(i, "SELECT pg_wal_replay_resume()");
    }

    /// A URL like [`url`](Self::url) but to another port on loopback (a fault proxy).
    pub fn url_via(&self, port: u16) -> String {
        format!("postgres://postgres:{SECRET}@127.0.0.1:{port}/postgres")
    }

    /// psql connected to node `i` as `postgres`, stopping at the first error.
    fn psql_command(&self, i: usize) -> Command {
        let mut cmd = Command::new(self.bin.join("psql"));
        cmd.args([
            "-X",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
        ])
        .arg("-p")
        .arg(self.nodes[i].port.to_string())
        .stdin(Stdio::null());
        cmd
    }

    /// Runs SQL on node `i` with psql and returns its unaligned output.
    pub fn psql(&self, i: usize, sql: &str) -> String {
        let out = self
            .psql_command(i)
            .args(["-At", "-c", sql])
            .output()
            .expect("run psql");
        check(&out, &format!("psql on {}: {sql}", self.nodes[i].name));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Runs a SQL file on node `i` with psql (statements one by one, stopping at the first
    /// error).
    pub fn psql_file(&self, i: usize, path: &Path) {
        let out = self
            .psql_command(i)
            .arg("-q")
            .arg("-f")
            .arg(path)
            .output()
            .expect("run psql");
        check(
            &out,
            &format!("psql -f {} on {}", path.display(), self.nodes[i].name),
        );
    }

    /// Makes every node check the passwords of `roles` (SCRAM) on its TCP connections; the
    /// cluster trusts every login otherwise. For tests of credentials: create the roles
    /// with `CREATE ROLE … LOGIN PASSWORD '…'` on the primary (they replicate).
    pub fn require_passwords(&self, roles: &[&str]) {
        let line = format!("host all {} 127.0.0.1/32 scram-sha-256\n", roles.join(","));
        for (i, node) in self.nodes.iter().enumerate() {
            let path = node.data.join("pg_hba.conf");
            let old = std::fs::read_to_string(&path).expect("read pg_hba.conf");
            std::fs::write(&path, format!("{line}{old}")).expect("write pg_hba.conf");
            self.psql(i, "SELECT pg_reload_conf()");
        }
    }

    /// Makes replica `i` apply each commit `delay` after the primary made it
    /// (`recovery_min_apply_delay`), while streaming continues: a replica that is always
    /// that far behind. `Duration::ZERO` ends it.
    pub fn delay_replay(&self, i: usize, delay: Duration) {
        self.apply_delay(i, &format!("{}ms", delay.as_millis()));
    }

    /// Makes replica `i` apply each commit `delay` (e.g. `"200ms"`) after the primary made
    /// it, while streaming continues: a replica that is always a little behind.
    pub fn apply_delay(&self, i: usize, delay: &str) {
        self.psql(
            i,
            &format!("ALTER SYSTEM SET recovery_min_apply_delay = '{delay}'"),
        );
        self.psql(i, "SELECT pg_reload_conf()");
    }

    /// Waits until `n` replicas stream from the primary.
    pub fn wait_streaming(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let streaming: usize = self
                .psql(
                    0,
                    "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'",
                )
                .parse()
                .unwrap_or(0);
            if streaming >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "only {streaming} of {n} replicas stream after 60 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every replica has replayed everything the primary has written so far.
    pub fn wait_replayed(&self) {
        let lsn = self.psql(0, "SELECT pg_current_wal_lsn()");
        for i in 1..self.nodes.len() {
            let sql = format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn");
            self.wait_until(i, &sql, "t", &format!("replay {lsn}"));
        }
    }

    /// Waits until replica `i` has replayed everything the primary has written so far.
    pub fn wait_replayed_on(&self, i: usize) {
        let lsn = self.psql(0, "SELECT pg_current_wal_lsn()");
        let sql = format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn");
        self.wait_until(i, &sql, "t", &format!("replay {lsn}"));
    }

    fn pg_cmd(&self, tool: &str, args: impl FnOnce(&mut Command)) -> Output {
        let exe = self.bin.join(tool);
        let mut cmd = run_as_postgres(&exe, self.as_postgres);
        // runuser keeps the working folder, and postgres cannot enter /root.
        cmd.current_dir(&self.base).stdin(Stdio::null());
        args(&mut cmd);
        cmd.output()
            .unwrap_or_else(|e| panic!("run {}: {e}", exe.display()))
    }

    /// A child that waits for our end of a pipe to close (which happens however this
    /// process ends) and then stops every server and removes the folder.
    fn spawn_watchdog(&mut self) {
        let pg_ctl = self.bin.join("pg_ctl");
        let prefix = if self.as_postgres {
            "runuser -u postgres -- "
        } else {
            ""
        };
        let script = format!(
            "cat >/dev/null; cd /; for d in '{base}'/*/; do [ -f \"$d/postmaster.pid\" ] && {prefix}'{pg_ctl}' -D \"$d\" -m immediate stop >/dev/null 2>&1; done; rm -rf '{base}'",
            base = self.base.display(),
            pg_ctl = pg_ctl.display(),
        );
        self.watchdog = Some(Watchdog::spawn(&script));
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // The watchdog stops the servers and removes the folder.
        self.watchdog.take();
    }
}

const TOOLS: [&str; 5] = ["initdb", "pg_ctl", "pg_basebackup", "postgres", "psql"];

fn has_tools(dir: &Path) -> bool {
    TOOLS.iter().all(|t| dir.join(t).is_file())
}

/// Finds the PostgreSQL server binaries, or panics saying how to get them.
pub fn pg_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(dir) = std::env::var_os("PARTYPOOL_PG_BIN") {
            candidates.push(dir.into());
        }
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
            candidates.push(String::from_utf8_lossy(&out.stdout).trim().into());
        }
        if let Some(path) = std::env::var_os("PATH") {
            candidates.extend(std::env::split_paths(&path));
        }
        if let Ok(dirs) = std::fs::read_dir("/usr/lib/postgresql") {
            let mut versions: Vec<(u32, PathBuf)> = dirs
                .flatten()
                .filter_map(|d| {
                    let v = d.file_name().to_string_lossy().parse().ok()?;
                    Some((v, d.path().join("bin")))
                })
                .collect();
            versions.sort();
            candidates.extend(versions.into_iter().rev().map(|(_, p)| p));
        }
        candidates
            .into_iter()
            .find(|d| has_tools(d))
            .unwrap_or_else(|| {
                panic!(
                    "PostgreSQL server binaries not found: the tests need {TOOLS:?} in one folder. \
                 Install them (Debian: `apt-get install postgresql`) or set PARTYPOOL_PG_BIN \
                 to their folder. `bash .ci/run` installs them."
                )
            })
    })
    .clone()
}
