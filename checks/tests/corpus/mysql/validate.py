#!/usr/bin/env python3
"""Runs every statement of corpus.jsonl on a read-only MariaDB replica as the application user
and checks the outcome against its `kind`.

    python3 validate.py REPLICA_PORT [--host 127.0.0.1] [--user app] [--password pw]
                        [--db app] [--corpus corpus.jsonl] [--json out.json] [-v]

Each statement runs on its own fresh connection as three text-protocol queries,
`START TRANSACTION`, the statement, `ROLLBACK`, sent byte for byte (a tiny MySQL protocol
client in the standard library: no client-side comment stripping, no multi-statements, no
LOCAL INFILE capability). Outcomes: `accepted`, `refused:<code>` (read-only refusal: 1290,
1792, 1836) or `error:<code>`. Admin statements (OPTIMIZE/REPAIR/ANALYZE/CHECK TABLE) report
failures as result rows, so a row whose Msg_type is `error` counts as `rowerror:<text>`.

Rules checked: every `read` is accepted, every `write` is refused with 1290, no statement of
any kind ends with another error, and no statement makes the replica write its own binary log
(`@@gtid_binlog_pos` read on a second connection before and after, the statement's connection
closed: a GTID of the replica's own breaks GTID strict-mode replication with error 1950 at the
primary's next transaction). Exit status 1 when a rule is broken.
"""
import argparse
import collections
import hashlib
import json
import os
import socket
import struct
import sys
import time

REFUSALS = {1290, 1792, 1836}

CLIENT_LONG_PASSWORD = 0x1
CLIENT_LONG_FLAG = 0x4
CLIENT_CONNECT_WITH_DB = 0x8
CLIENT_PROTOCOL_41 = 0x200
CLIENT_TRANSACTIONS = 0x2000
CLIENT_SECURE_CONNECTION = 0x8000
CLIENT_MULTI_RESULTS = 0x20000
CLIENT_PS_MULTI_RESULTS = 0x40000
CLIENT_PLUGIN_AUTH = 0x80000
SERVER_MORE_RESULTS_EXISTS = 0x8


class DbError(Exception):
    def __init__(self, code, state, msg):
        super().__init__(f"{code} ({state}) {msg}")
        self.code, self.state, self.msg = code, state, msg


def lenenc(buf, i):
    b = buf[i]
    if b < 0xFB:
        return b, i + 1
    if b == 0xFB:
        return None, i + 1
    if b == 0xFC:
        return struct.unpack_from("<H", buf, i + 1)[0], i + 3
    if b == 0xFD:
        return int.from_bytes(buf[i + 1:i + 4], "little"), i + 4
    return struct.unpack_from("<Q", buf, i + 1)[0], i + 9


def lenenc_str(buf, i):
    n, i = lenenc(buf, i)
    if n is None:
        return None, i
    return buf[i:i + n], i + n


def native_password(password, scramble):
    if not password:
        return b""
    h1 = hashlib.sha1(password.encode()).digest()
    h2 = hashlib.sha1(h1).digest()
    h3 = hashlib.sha1(scramble + h2).digest()
    return bytes(a ^ b for a, b in zip(h1, h3))


class Conn:
    def __init__(self, host, port, user, password, db, timeout=30):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.seq = 0
        pkt = self.read()
        if pkt[0] == 0xFF:
            raise self.err(pkt)
        i = 1
        i = pkt.index(b"\0", i) + 1  # server version
        i += 4  # thread id
        scramble = pkt[i:i + 8]
        i += 9
        i += 2 + 1 + 2 + 2  # caps low, charset, status, caps high
        auth_len = pkt[i]
        i += 1 + 6 + 4  # auth len, filler, mariadb caps
        rest = max(13, auth_len - 8)
        scramble += pkt[i:i + rest].rstrip(b"\0")[:12]
        i += rest
        plugin = pkt[i:].split(b"\0")[0].decode() or "mysql_native_password"
        caps = (CLIENT_LONG_PASSWORD | CLIENT_LONG_FLAG | CLIENT_CONNECT_WITH_DB | CLIENT_PROTOCOL_41
                | CLIENT_TRANSACTIONS | CLIENT_SECURE_CONNECTION | CLIENT_MULTI_RESULTS
                | CLIENT_PS_MULTI_RESULTS | CLIENT_PLUGIN_AUTH)
        token = native_password(password, scramble)
        resp = struct.pack("<IIB23x", caps, 1 << 24, 45)  # utf8mb4_general_ci
        resp += user.encode() + b"\0" + bytes([len(token)]) + token + db.encode() + b"\0"
        resp += b"mysql_native_password\0"
        self.write(resp)
        pkt = self.read()
        if pkt[0] == 0xFE:  # auth switch
            name, _, data = pkt[1:].partition(b"\0")
            if name != b"mysql_native_password":
                raise RuntimeError(f"unsupported auth plugin {name!r}")
            self.write(native_password(password, data.rstrip(b"\0")))
            pkt = self.read()
        if pkt[0] == 0xFF:
            raise self.err(pkt)

    def read(self):
        head = self.recv(4)
        n = head[0] | head[1] << 8 | head[2] << 16
        self.seq = (head[3] + 1) & 0xFF
        data = self.recv(n)
        if n == 0xFFFFFF:
            data += self.read()
        return data

    def recv(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("server closed the connection")
            out += chunk
        return out

    def write(self, data):
        self.sock.sendall(struct.pack("<I", len(data))[:3] + bytes([self.seq]) + data)
        self.seq = (self.seq + 1) & 0xFF

    @staticmethod
    def err(pkt):
        code = struct.unpack_from("<H", pkt, 1)[0]
        if pkt[3:4] == b"#":
            return DbError(code, pkt[4:9].decode(), pkt[9:].decode("utf8", "replace"))
        return DbError(code, "", pkt[3:].decode("utf8", "replace"))

    def query(self, sql):
        """Returns a list of result sets (columns, rows); raises DbError."""
        self.seq = 0
        self.write(b"\x03" + sql.encode())
        results = []
        while True:
            pkt = self.read()
            if pkt[0] == 0xFF:
                raise self.err(pkt)
            if pkt[0] == 0x00:
                _, i = lenenc(pkt, 1)
                _, i = lenenc(pkt, i)
                status = struct.unpack_from("<H", pkt, i)[0]
                results.append(([], []))
            elif pkt[0] == 0xFB:  # LOCAL INFILE request: send nothing
                self.write(b"")
                continue
            else:
                ncols, _ = lenenc(pkt, 0)
                cols = []
                for _ in range(ncols):
                    c = self.read()
                    i = 0
                    parts = []
                    for _ in range(6):
                        s, i = lenenc_str(c, i)
                        parts.append(s)
                    cols.append(parts[4].decode())
                pkt = self.read()  # EOF after columns
                rows = []
                while True:
                    pkt = self.read()
                    if pkt[0] == 0xFF:
                        raise self.err(pkt)
                    if pkt[0] == 0xFE and len(pkt) < 9:
                        status = struct.unpack_from("<H", pkt, 3)[0]
                        break
                    i, row = 0, []
                    while i < len(pkt):
                        s, i = lenenc_str(pkt, i)
                        row.append(None if s is None else s.decode("utf8", "replace"))
                    rows.append(row)
                results.append((cols, rows))
            if not status & SERVER_MORE_RESULTS_EXISTS:
                return results

    def close(self):
        try:
            self.seq = 0
            self.write(b"\x01")
        except OSError:
            pass
        self.sock.close()


def run(args, sql):
    conn = Conn(args.host, args.port, args.user, args.password, args.db)
    try:
        conn.query("START TRANSACTION")
        try:
            results = conn.query(sql)
        except DbError as e:
            if e.code in REFUSALS:
                return f"refused:{e.code}", e.msg
            return f"error:{e.code}", e.msg
        for cols, rows in results:
            if "Msg_type" in cols:
                k = cols.index("Msg_type")
                for row in rows:
                    if (row[k] or "").lower() == "error":
                        if "read-only" in (row[k + 1] or ""):
                            return "rowrefused", row[k + 1]
                        return "rowerror", row[k + 1]
        try:
            conn.query("ROLLBACK")
        except DbError as e:
            return f"error:{e.code}", "at ROLLBACK: " + e.msg
        return "accepted", ""
    finally:
        conn.close()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--user", default="app")
    p.add_argument("--password", default="pw")
    p.add_argument("--db", default="app")
    p.add_argument("--corpus", default=os.path.join(here, "corpus.jsonl"))
    p.add_argument("--json", help="write every outcome to this file")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()

    entries = []
    with open(args.corpus) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                e = json.loads(line)
                assert set(e) == {"sql", "kind", "note"}, f"line {n}: keys {sorted(e)}"
                assert e["kind"] in ("read", "write", "session", "primary_only"), f"line {n}"
                entries.append((n, e))

    table = collections.Counter()
    problems = []
    outcomes = []
    monitor = Conn(args.host, args.port, args.user, args.password, args.db)

    def binlog_pos():
        return monitor.query("SELECT @@gtid_binlog_pos")[0][1][0][0]

    last = binlog_pos()
    for n, e in entries:
        before = binlog_pos()
        if before != last and outcomes:  # logged late, at the previous one's disconnect
            outcomes[-1]["binlogged"] = True
            problems.append(f"line {outcomes[-1]['line']}: the replica logged {last} -> {before}")
        outcome, msg = run(args, e["sql"])
        time.sleep(0.02)
        last = binlog_pos()
        if last != before:
            problems.append(f"line {n}: the replica logged {before} -> {last}\n    {e['sql']!r}")
        table[(e["kind"], outcome)] += 1
        outcomes.append({"line": n, **e, "outcome": outcome, "message": msg,
                         "binlogged": last != before})
        bad = None
        if outcome.startswith("error") or outcome == "rowerror":
            bad = "unexpected error"
        elif e["kind"] == "read" and outcome != "accepted":
            bad = "read not accepted"
        elif e["kind"] == "write" and outcome != "refused:1290":
            bad = "write not refused with 1290"
        if bad:
            problems.append(f"line {n} [{e['kind']}] {bad}: {outcome} {msg}\n    {e['sql']!r}")
        if args.verbose:
            print(f"{n:4} {e['kind']:12} {outcome:14} {e['sql'][:90]!r}")

    kinds = collections.Counter(e["kind"] for _, e in entries)
    print(f"{len(entries)} statements")
    for kind in ("read", "write", "session", "primary_only"):
        parts = ", ".join(f"{o}={c}" for (k, o), c in sorted(table.items()) if k == kind)
        print(f"  {kind:12} {kinds[kind]:4}  {parts}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(outcomes, f, indent=1)
    for line in problems:
        print(line)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
