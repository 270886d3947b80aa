//! `partypool`: explain how partypool routes SQL, and show a deployment's topology.
//!
//! ```text
//! partypool route "SELECT * FROM users FOR UPDATE"
//! partypool route --dialect mysql "SELECT GET_LOCK('x', 1)"
//! partypool route --jsonl < statements.jsonl     # {"sql": "..."} per line
//! partypool status --primary postgres://… --replica postgres://… --replica postgres://…
//! partypool status --nodes postgres://app@db-1,db-2,db-3/app
//! PARTYPOOL_PRIMARY_URL=… PARTYPOOL_REPLICA_URLS=…,… partypool status
//! ```
//!
//! Install with `cargo install --path . --features cli`.

use std::io::{self, BufRead, BufWriter, Write};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use partypool::{Dialect, Router};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(
    name = "partypool",
    version,
    about = "Explain how partypool routes SQL, and show a deployment's topology"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print where a statement would run (primary or replica) and why.
    Route(RouteArgs),
    /// Connect to a PostgreSQL deployment, probe every node, print the topology table. Exits 0
    /// when the primary (or, with --nodes only, any node) is reachable, 2 otherwise.
    Status {
        /// The primary's URL.
        #[arg(long, env = "PARTYPOOL_PRIMARY_URL", required_unless_present = "nodes")]
        primary: Option<String>,
        /// Nodes whose roles the probes discover: a URL, or a libpq multi-host URL
        /// (`postgres://u@h1:5432,h2:5433/db`); repeatable.
        #[arg(long = "nodes", env = "PARTYPOOL_NODE_URLS", value_delimiter = ' ')]
        nodes: Vec<String>,
        /// A replica's URL (repeatable; the environment variable is comma-separated).
        #[arg(
            long = "replica",
            env = "PARTYPOOL_REPLICA_URLS",
            value_delimiter = ','
        )]
        replicas: Vec<String>,
        /// How long to wait for each node.
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
    },
}

#[derive(Args)]
struct RouteArgs {
    /// The SQL dialect.
    #[arg(long, value_enum, default_value = "postgres")]
    dialect: DialectArg,
    /// Read JSON lines `{"sql": "..."}` from stdin and write one
    /// `{"target": ..., "reason": ...}` line per input line, in order.
    #[arg(long, conflicts_with = "sql")]
    jsonl: bool,
    /// A function of yours that writes (repeatable), like `Config::write_functions`.
    #[arg(long = "write-function", value_name = "NAME")]
    write_functions: Vec<String>,
    /// Strict mode: calls of functions not known to be read-only go to the primary.
    #[arg(long)]
    strict: bool,
    /// A read-only function of yours, for strict mode (repeatable).
    #[arg(long = "read-only-function", value_name = "NAME")]
    read_only_functions: Vec<String>,
    /// The SQL text to classify.
    #[arg(required_unless_present = "jsonl")]
    sql: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum DialectArg {
    Postgres,
    Mysql,
    Sqlite,
}

impl From<DialectArg> for Dialect {
    fn from(d: DialectArg) -> Self {
        match d {
            DialectArg::Postgres => Dialect::Postgres,
            DialectArg::Mysql => Dialect::MySql,
            DialectArg::Sqlite => Dialect::Sqlite,
        }
    }
}

#[derive(Deserialize)]
struct Input {
    sql: String,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Output {
    Route {
        target: partypool::Target,
        reason: &'static str,
    },
    Error {
        error: String,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Status {
            primary,
            nodes,
            replicas,
            timeout,
        } => status(primary.as_deref(), &nodes, &replicas, timeout),
        Command::Route(args) => route(args),
    }
}

/// `partypool route`: one statement, or JSON lines from stdin.
fn route(args: RouteArgs) -> ExitCode {
    let mut router = args
        .write_functions
        .iter()
        .fold(Router::new(args.dialect.into()), |r, f| r.write_function(f));
    if args.strict {
        router = router.strict_functions(&args.read_only_functions);
    }
    let result = match args.sql {
        Some(sql) if !args.jsonl => {
            let r = router.route(&sql);
            println!("{}\t{}", r.target, r.reason);
            Ok(())
        }
        _ => route_lines(&router, io::stdin().lock(), io::stdout().lock()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (e.g. `| head`) is not an error worth reporting.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("partypool: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Connects, lets every node answer one probe, prints the table.
fn status(
    primary: Option<&str>,
    nodes: &[String],
    replicas: &[String],
    timeout: std::time::Duration,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("partypool: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let config = partypool::Config::default()
        .acquire_timeout(timeout)
        .health_check_timeout(timeout)
        .max_connections(2);
    let mut builder = partypool::PgReplicaPool::builder().config(config);
    if let Some(primary) = primary {
        builder = builder.primary(primary);
    }
    for url in nodes.iter().filter(|u| !u.is_empty()) {
        builder = builder.nodes(url);
    }
    for url in replicas.iter().filter(|r| !r.is_empty()) {
        builder = builder.replica(url);
    }
    runtime.block_on(async {
        match builder.connect().await {
            Ok(pool) => {
                print!("{}", pool.status());
                pool.close().await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("partypool: {e}");
                ExitCode::from(2)
            }
        }
    })
}

/// One output line per input line; a line that is not `{"sql": "..."}` gets an error object.
fn route_lines(router: &Router, input: impl BufRead, output: impl Write) -> io::Result<()> {
    let mut out = BufWriter::new(output);
    for line in input.lines() {
        let line = line?;
        let answer = match serde_json::from_str::<Input>(&line) {
            Ok(input) => {
                let r = router.route(&input.sql);
                Output::Route {
                    target: r.target,
                    reason: r.reason,
                }
            }
            Err(e) => Output::Error {
                error: format!("expected {{\"sql\": \"...\"}}: {e}"),
            },
        };
        serde_json::to_writer(&mut out, &answer)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}
