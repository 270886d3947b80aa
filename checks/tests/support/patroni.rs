//! A real Patroni cluster for the tests: one etcd member and N Patroni members (each
//! managing its own PostgreSQL), on free loopback ports under a temp folder, as the
//! `postgres` OS user when run as root. Debian: `apt-get install patroni etcd-server`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{SECRET, Watchdog, free_port, pg_bin, scratch_root};

const PATRONI: &str = "/usr/bin/patroni";
const ETCD: &str = "/usr/bin/etcd";

pub struct PatroniCluster {
    base: PathBuf,
    etcd_port: u16,
    pub members: Vec<PatroniMember>,
    children: Vec<Child>,
    watchdog: Option<Watchdog>,
}

pub struct PatroniMember {
    pub name: String,
    pub pg_port: u16,
    pub rest_port: u16,
}

/// One member as `GET /cluster` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reported {
    pub name: String,
    pub role: String,
    pub state: String,
}

fn require_binaries() {
    for bin in [PATRONI, ETCD] {
        assert!(
            std::path::Path::new(bin).is_file(),
            "the Patroni tests need {bin} (Debian: apt-get install patroni etcd-server); \
             .ci/run installs them"
        );
    }
}

fn as_postgres(program: impl AsRef<std::ffi::OsStr>) -> Command {
    super::run_as_postgres(program, super::is_root())
}

/// A minimal HTTP/1.0 request to 127.0.0.1:`port`; the status code and the body.
pub fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    try_http(port, method, path, body, Duration::from_secs(30)).expect("reach the REST API")
}

/// The same, `None` when the port does not answer; reads wait at most `timeout`.
fn try_http(
    port: u16,
    method: &str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    Some((code, body))
}

impl PatroniCluster {
    /// Starts etcd and `n` members; waits until one leads and the others run as replicas.
    pub fn start(n: usize) -> PatroniCluster {
        require_binaries();
        let root = scratch_root();
        let base = tempfile::Builder::new()
            .prefix("partypool-patroni-")
            .tempdir_in(&root)
            .expect("temp dir")
            .keep();
        let (etcd_port, peer_port) = (free_port(), free_port());
        let mut cluster = PatroniCluster {
            base: base.clone(),
            etcd_port,
            members: Vec::new(),
            children: Vec::new(),
            watchdog: None,
        };
        // Patroni first (so it cannot restart its postgres), then everything under the
        // folder, then the folder. Each pattern has one character in brackets: the regex
        // still matches the servers, but no longer this script's own command line, which
        // contains the pattern's text (a plain pattern made `pkill` kill the watchdog itself
        // before it had killed anything, and the servers outlived the tests).
        cluster.watchdog = Some(Watchdog::spawn(&format!(
            "cat >/dev/null; cd /; pkill -KILL -f '[p]atroni {b}/' ; pkill -KILL -f '{b}/[e]tcd'; \
             sleep 0.3; pkill -KILL -f '{b}[/]'; sleep 0.3; rm -rf '{b}'",
            b = base.display()
        )));
        let bin = pg_bin();
        let scope = format!("pp{}", std::process::id());
        for i in 1..=n {
            let m = PatroniMember {
                name: format!("pg{i}"),
                pg_port: free_port(),
                rest_port: free_port(),
            };
            let yml = format!(
                r#"scope: {scope}
name: {name}
tags:
  zone: zone-{name}
restapi:
  listen: 127.0.0.1:{rest}
  connect_address: 127.0.0.1:{rest}
etcd3:
  hosts: 127.0.0.1:{etcd_port}
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      parameters:
        wal_log_hints: "on"
        wal_retrieve_retry_interval: 500ms
        fsync: "off"
        full_page_writes: "off"
        max_connections: 100
        shared_buffers: 32MB
  initdb:
  - encoding: UTF8
  - locale: C
  pg_hba:
  - local all all trust
  - host replication all 127.0.0.1/32 trust
  - host all all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:{pg}
  connect_address: 127.0.0.1:{pg}
  data_dir: {base}/{name}
  bin_dir: {bin}
  pgpass: {base}/pgpass-{name}
  authentication:
    replication:
      username: postgres
    superuser:
      username: postgres
  parameters:
    unix_socket_directories: {base}
"#,
                name = m.name,
                rest = m.rest_port,
                pg = m.pg_port,
                base = base.display(),
                bin = bin.display(),
            );
            std::fs::write(base.join(format!("{}.yml", m.name)), yml).unwrap();
            cluster.members.push(m);
        }
        if super::is_root() {
            let out = Command::new("chown")
                .args(["-R", "postgres:"])
                .arg(&base)
                .output()
                .unwrap();
            super::check(&out, "chown the Patroni folder");
        }
        let log = |name: &str| {
            let f = std::fs::File::create(base.join(format!("{name}.log"))).unwrap();
            (Stdio::from(f.try_clone().unwrap()), Stdio::from(f))
        };
        let (out, err) = log("etcd");
        let etcd = as_postgres(ETCD)
            .current_dir(&base)
            .args(["--name", "e1", "--data-dir"])
            .arg(base.join("etcd"))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{etcd_port}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
            ))
            .arg(format!("--initial-cluster=e1=http://127.0.0.1:{peer_port}"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start etcd");
        cluster.children.push(etcd);
        cluster.wait_for("etcd to answer", || {
            std::net::TcpStream::connect(("127.0.0.1", etcd_port)).is_ok()
        });
        for i in 0..n {
            let name = cluster.members[i].name.clone();
            let (out, err) = log(&name);
            let child = as_postgres(PATRONI)
                .current_dir(&base)
                .arg(base.join(format!("{name}.yml")))
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .expect("start patroni");
            cluster.children.push(child);
        }
        let started = Instant::now();
        cluster.wait_for("a leader and running replicas", || {
            let m = cluster.reported();
            m.len() == n
                && m.iter().filter(|m| m.role == "leader").count() == 1
                && m.iter()
                    .all(|m| m.state == "running" || m.state == "streaming")
        });
        println!("Patroni cluster of {n} up in {:?}", started.elapsed());
        cluster
    }

    fn wait_for(&self, what: &str, mut ok: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !ok() {
            assert!(
                Instant::now() < deadline,
                "Patroni cluster: no {what} after 60 s; logs in {}",
                self.base.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The members as `GET /cluster` on any member reports them (empty if none answers).
    pub fn reported(&self) -> Vec<Reported> {
        for m in &self.members {
            let Some((_, body)) =
                try_http(m.rest_port, "GET", "/cluster", "", Duration::from_secs(2))
            else {
                continue;
            };
            let Ok(doc) = serde_json::from_str::<serde_json::Value>(&body) else {
                continue;
            };
            return doc["members"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| Reported {
                    name: m["name"].as_str().unwrap_or("").to_owned(),
                    role: m["role"].as_str().unwrap_or("").to_owned(),
                    state: m["state"].as_str().unwrap_or("").to_owned(),
                })
                .collect();
        }
        Vec::new()
    }

    /// The leader's name.
    pub fn leader(&self) -> String {
        self.reported()
            .into_iter()
            .find(|m| m.role == "leader")
            .map(|m| m.name)
            .expect("a leader")
    }

    pub fn member(&self, name: &str) -> &PatroniMember {
        self.members
            .iter()
            .find(|m| m.name == name)
            .expect("member")
    }

    /// Every REST endpoint, comma-separated.
    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.rest_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The database URL template (host and port are the members').
    pub fn template(&self) -> String {
        format!("postgres://postgres:{SECRET}@127.0.0.1/postgres")
    }

    /// Runs `sql` through psql on member `name`; its trimmed output, or `None` on error.
    pub fn try_psql(&self, name: &str, sql: &str) -> Option<String> {
        let out = as_postgres(pg_bin().join("psql"))
            .current_dir(&self.base)
            .args([
                "-X",
                "-A",
                "-t",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
            ])
            .args(["-p", &self.member(name).pg_port.to_string(), "-c", sql])
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    pub fn psql(&self, name: &str, sql: &str) -> String {
        self.try_psql(name, sql)
            .unwrap_or_else(|| panic!("{name}: {sql} failed"))
    }

    /// Asks Patroni for a switchover from `leader` to `candidate` (REST `POST /switchover`).
    /// Patroni itself sometimes answers 503 "Switchover failed" (the candidate was not ready
    /// in its eyes; the leader stays): asked again, up to three times, after a pause.
    pub fn switchover(&self, leader: &str, candidate: &str) {
        for attempt in 1..=3 {
            let (code, body) = http(
                self.member(leader).rest_port,
                "POST",
                "/switchover",
                &format!(r#"{{"leader": "{leader}", "candidate": "{candidate}"}}"#),
            );
            if code == 200 {
                return;
            }
            assert!(
                code == 503 && attempt < 3,
                "switchover refused: {code} {body}"
            );
            eprintln!("Patroni: switchover attempt {attempt} failed ({code} {body}); again");
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// Member `name`'s machine dies: its Patroni and its postgres are killed.
    pub fn crash(&self, name: &str) {
        let b = self.base.display();
        for pattern in [format!("patroni {b}/{name}.yml"), format!("-D {b}/{name}")] {
            let _ = Command::new("pkill")
                .args(["-KILL", "-f", &pattern])
                .output();
        }
    }
}

impl Drop for PatroniCluster {
    fn drop(&mut self) {
        self.watchdog.take();
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
