#!/usr/bin/env bash
# Regenerates the offline query data in .sqlx/ that the `query!` macros in checks/tests/ build
# against (so a build needs no database): starts a throwaway PostgreSQL, applies
# checks/tests/schema.sql, and compiles the tests with DATABASE_URL set and SQLX_OFFLINE_DIR=.sqlx.
# Run it after changing a query! macro or tests/schema.sql, and commit .sqlx/.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${PARTYPOOL_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
dir=$(mktemp -d /tmp/partypool-sqlx.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg=()
if [ "$(id -u)" = 0 ]; then chown postgres: "$dir"; as_pg=(runuser -u postgres --); fi
cleanup() { (cd / && "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1) || true; rm -rf "$dir"; }
trap cleanup EXIT
(cd / && "${as_pg[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -N >/dev/null)
(cd / && "${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=''" start >/dev/null)
"$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -f checks/tests/schema.sql
rm -rf .sqlx && mkdir .sqlx
touch checks/tests/*.rs
SQLX_OFFLINE=false DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres" SQLX_OFFLINE_DIR="$PWD/.sqlx" \
  cargo test --all-features --no-run
echo "wrote $(ls .sqlx | wc -l) query files to .sqlx/"
