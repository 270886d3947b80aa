//! Real MariaDB GTID replication for the tests: a primary and N replicas, each `mariadbd` on
//! its own datadir (copied from one `mariadb-install-db`), free loopback port and socket in a
//! temp dir; binary logs with GTIDs; replicas `read_only=ON` following the primary with
//! `MASTER_USE_GTID=slave_pos`. The application user `app` has privileges on its own
//! database only (no `SUPER`, no `READ ONLY ADMIN`), so `read_only` really refuses its writes
//! (error 1290). Missing binaries fail with a clear message.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{SECRET, Watchdog, check, free_port, scratch_root};

/// A running MariaDB primary (node 0) and its GTID replicas, stopped and removed on drop.
pub struct MariaDbCluster {
    base: PathBuf,
    nodes: Vec<MariaDbNode>,
    watchdog: Option<Watchdog>,
}

/// One server of a [`MariaDbCluster`].
pub struct MariaDbNode {
    /// Its name: `primary`, `replica1`, …
    pub name: String,
    /// Its loopback port.
    pub port: u16,
    data: PathBuf,
    server_id: usize,
    child: Option<Child>,
}

const MARIADBD: &str = "/usr/sbin/mariadbd";
const INSTALL_DB: &str = "/usr/bin/mariadb-install-db";
const CLIENT: &str = "/usr/bin/mariadb";

fn require_binaries() {
    for bin in [MARIADBD, INSTALL_DB, CLIENT] {
        assert!(
            Path::new(bin).exists(),
            "MariaDB server binaries are missing ({bin}): install them with \
             `apt-get install mariadb-server` (.ci/run does)"
        );
    }
}

/// One `mariadb-install-db` per test process, copied for every node of every cluster
/// (installs running at once clash, and each costs 1–3.5 s). Removed when the process
/// ends, however it ends.
fn template(root: &Path) -> PathBuf {
    // Statics are never dropped: the watchdog runs when the process ends.
    static TEMPLATE: std::sync::OnceLock<(PathBuf, Watchdog)> = std::sync::OnceLock::new();
    let (dir, _) = TEMPLATE.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("partypool-maria-template-")
            .tempdir_in(root)
            .expect("temp dir")
            .keep();
        let watchdog = Watchdog::spawn(&format!("cat >/dev/null; rm -rf '{}'", dir.display()));
        let data = dir.join("data");
        let out = Command::new(INSTALL_DB)
            .arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .args([
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ])
            .output()
            .expect("run mariadb-install-db");
        check(&out, "mariadb-install-db");
        (dir, watchdog)
    });
    dir.join("data")
}

impl MariaDbCluster {
    /// Starts a primary and `replicas` replicas and waits until every replica's IO and SQL
    /// threads run and a marker row has arrived.
    pub fn start(replicas: usize) -> MariaDbCluster {
        require_binaries();
        let root = scratch_root();
        let base = tempfile::Builder::new()
            .prefix("partypool-maria-")
            .tempdir_in(&root)
            .expect("temp dir")
            .keep();
        let mut cluster = MariaDbCluster {
            base,
            nodes: Vec::new(),
            watchdog: None,
        };
        cluster.spawn_watchdog();
        let template = template(&root);
        for i in 0..=replicas {
            let name = if i == 0 {
                "primary".to_owned()
            } else {
                format!("replica{i}")
            };
            let data = cluster.base.join(&name);
            let out = Command::new("cp")
                .arg("-a")
                .arg(&template)
                .arg(&data)
                .output()
                .unwrap();
            check(&out, "copy the datadir");
            cluster.nodes.push(MariaDbNode {
                name,
                port: 0,
                data,
                server_id: i + 1,
                child: None,
            });
        }
        for i in 0..=replicas {
            cluster.start_node(i);
        }
        cluster.sql(
            0,
            &format!(
                "CREATE USER 'repl'@'127.0.0.1' IDENTIFIED BY '{SECRET}'; \
                 GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'; \
                 CREATE DATABASE app; \
                 CREATE USER 'app'@'127.0.0.1' IDENTIFIED BY '{SECRET}'; \
                 GRANT ALL PRIVILEGES ON app.* TO 'app'@'127.0.0.1'; \
                 CREATE USER 'monitor'@'127.0.0.1' IDENTIFIED BY '{SECRET}'; \
                 GRANT SLAVE MONITOR, BINLOG MONITOR ON *.* TO 'monitor'@'127.0.0.1'; \
                 CREATE TABLE app.marker (id int PRIMARY KEY); INSERT INTO app.marker VALUES (1)"
            ),
        );
        for i in 1..=replicas {
            cluster.follow(i, 0);
        }
        for i in 1..=replicas {
            cluster.wait_replicating(i);
            cluster.wait_until(i, "SELECT count(*) FROM app.marker", "1");
        }
        cluster
    }

    fn socket(&self, i: usize) -> PathBuf {
        self.base.join(format!("{}.sock", self.nodes[i].name))
    }

    /// Starts (or restarts) node `i` on its port (a free one the first time).
    pub fn start_node(&mut self, i: usize) {
        if self.nodes[i].port == 0 {
            self.nodes[i].port = free_port();
        }
        let node = &self.nodes[i];
        let mut cmd = Command::new(MARIADBD);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", node.data.display()))
            .arg(format!("--socket={}", self.socket(i).display()))
            .arg(format!(
                "--pid-file={}",
                self.base.join(format!("{}.pid", node.name)).display()
            ))
            .arg(format!(
                "--log-error={}",
                self.base.join(format!("{}.err", node.name)).display()
            ))
            .arg(format!("--port={}", node.port))
            .arg(format!("--server-id={}", node.server_id))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
                "--log-bin=mariadb-bin",
                "--gtid-strict-mode=1",
                "--log-slave-updates=1",
                "--user=root",
                "--innodb-buffer-pool-size=16M",
                "--skip-slave-start",
                "--log-bin-trust-function-creators=1",
            ]);
        if i > 0 {
            cmd.arg("--read-only=1");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mariadbd");
        self.nodes[i].child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.try_sql(i, "SELECT 1").status.success() {
            assert!(
                Instant::now() < deadline,
                "{} did not start: see {}",
                self.nodes[i].name,
                self.base
                    .join(format!("{}.err", self.nodes[i].name))
                    .display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Points replica `i` at node `source` for the first time (GTID, from the source's whole
    /// binary log).
    fn follow(&self, i: usize, source: usize) {
        self.sql(i, "STOP SLAVE; SET GLOBAL gtid_slave_pos = ''");
        self.repoint(i, source);
    }

    /// Points replica `i` at node `source` (after a promotion), continuing from what it has
    /// applied.
    pub fn repoint(&self, i: usize, source: usize) {
        self.sql(
            i,
            &format!(
                "STOP SLAVE; \
                 CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {}, \
                 MASTER_USER = 'repl', MASTER_PASSWORD = '{SECRET}', MASTER_USE_GTID = slave_pos; \
                 START SLAVE",
                self.nodes[source].port
            ),
        );
    }

    /// Waits until replica `i`'s IO and SQL threads both run.
    pub fn wait_replicating(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.slave_status(i);
            if status.contains("Slave_IO_Running: Yes") && status.contains("Slave_SQL_Running: Yes")
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} does not replicate:\n{status}",
                self.nodes[i].name
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Polls `query` on node `i` until it prints `want`.
    pub fn wait_until(&self, i: usize, query: &str, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = self.sql(i, query);
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: {query} gave {got:?}, want {want:?}",
                self.nodes[i].name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every replica has applied everything the primary has logged.
    pub fn wait_replayed(&self) {
        let pos = self.sql(0, "SELECT @@gtid_binlog_pos");
        for i in 1..self.nodes.len() {
            self.wait_until(i, &format!("SELECT MASTER_GTID_WAIT('{pos}', 20) = 0"), "1");
        }
    }

    /// The application user's URL for node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("mysql://app:{SECRET}@127.0.0.1:{}/app", self.nodes[i].port)
    }

    /// The primary's URL (server 0), as the application user.
    pub fn primary_url(&self) -> String {
        self.url(0)
    }

    /// The replicas' URLs, as the application user.
    pub fn replica_urls(&self) -> Vec<String> {
        (1..self.nodes.len()).map(|i| self.url(i)).collect()
    }

    /// Server `i` (0 is the primary).
    pub fn node(&self, i: usize) -> &MariaDbNode {
        &self.nodes[i]
    }

    /// `SHOW SLAVE STATUS` of node `i`, one `Field: value` per line.
    pub fn slave_status(&self, i: usize) -> String {
        let out = Command::new(CLIENT)
            .arg(format!("--socket={}", self.socket(i).display()))
            .args(["-uroot", "-e", "SHOW SLAVE STATUS\\G"])
            .output()
            .expect("run the mariadb client");
        check(&out, "SHOW SLAVE STATUS");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn try_sql(&self, i: usize, sql: &str) -> Output {
        Command::new(CLIENT)
            .arg(format!("--socket={}", self.socket(i).display()))
            .args(["-uroot", "-N", "-B", "-e", sql])
            .output()
            .expect("run the mariadb client")
    }

    /// Runs `sql` as root over the socket on node `i`; returns its trimmed output.
    pub fn sql(&self, i: usize, sql: &str) -> String {
        let out = self.try_sql(i, sql);
        check(&out, &format!("{}: {sql}", self.nodes[i].name));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Runs the SQL file `path` as root on node `i`, in database `app`.
    pub fn sql_file(&self, i: usize, path: &std::path::Path) {
        let file = std::fs::File::open(path).expect("open the SQL file");
        let out = Command::new(CLIENT)
            .arg(format!("--socket={}", self.socket(i).display()))
            .args(["-uroot", "app"])
            .stdin(file)
            .output()
            .expect("run the mariadb client");
        check(&out, &format!("{}: {}", self.nodes[i].name, path.display()));
    }

    /// Kills node `i` at once (SIGKILL), like a crash.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed node again on its port; a replica resumes replicating.
    pub fn restart(&mut self, i: usize) {
        self.start_node(i);
        if i > 0 {
            self.sql(i, "START SLAVE");
        }
    }

    /// Stops applying on replica `i` (it keeps fetching): deterministic lag.
    pub fn stop_sql_thread(&self, i: usize) {
        self.sql(i, "STOP SLAVE SQL_THREAD");
    }

    /// Starts replica `i`'s SQL thread again (see [`stop_sql_thread`](Self::stop_sql_thread)).
    pub fn start_sql_thread(&self, i: usize) {
        self.sql(i, "START SLAVE SQL_THREAD");
    }

    /// Makes replica `i` a primary: it applies what it received, forgets its source and
    /// becomes writable.
    pub fn promote(&self, i: usize) {
        let status = self.slave_status(i);
        let received = status
            .lines()
            .find_map(|l| l.trim().strip_prefix("Gtid_IO_Pos:"))
            .unwrap_or("")
            .trim()
            .to_owned();
        if !received.is_empty() {
            self.sql(i, &format!("SELECT MASTER_GTID_WAIT('{received}', 20)"));
        }
        self.sql(i, "STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = OFF");
    }

    fn spawn_watchdog(&mut self) {
        // Kills every node and removes the folder when the test process ends, however.
        let script = format!(
            "cat >/dev/null; for p in '{base}'/*.pid; do [ -f \"$p\" ] && kill -9 \"$(cat \"$p\")\" 2>/dev/null; done; sleep 0.2; rm -rf '{base}'",
            base = self.base.display()
        );
        self.watchdog = Some(Watchdog::spawn(&script));
    }
}

impl Drop for MariaDbCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // The watchdog removes the folder.
        self.watchdog.take();
    }
}
