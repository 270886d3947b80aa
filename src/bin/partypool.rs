//! `partypool`: explain how partypool routes SQL.
//!
//! ```text
//! partypool route "SELECT * FROM users FOR UPDATE"
//! partypool route --dialect mysql "SELECT GET_LOCK('x', 1)"
//! partypool route --jsonl < statements.jsonl     # {"sql": "..."} per line
//! ```
//!
//! Install with `cargo install --path . --features cli`.

use std::io::{self, BufRead, BufWriter, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use partypool::{Dialect, Router};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
#[command(
    name = "partypool",
    version,
    about = "Explain how partypool routes SQL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print where a statement would run (primary or replica) and why.
    Route {
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
    },
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
    let Command::Route {
        dialect,
        jsonl,
        write_functions,
        strict,
        read_only_functions,
        sql,
    } = Cli::parse().command;
    let mut router = write_functions
        .iter()
        .fold(Router::new(dialect.into()), |r, f| r.write_function(f));
    if strict {
        router = router.strict_functions(&read_only_functions);
    }
    let result = match sql {
        Some(sql) if !jsonl => {
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
