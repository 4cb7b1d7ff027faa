"""A client of benches/failover.sh: writes rows 1, 2, ... through host:port, one new
connection per INSERT, until a kill file appears and a write has been acknowledged
after it; then reads back what it wrote and prints, as JSON, the seconds from the
kill to that write, the writes refused in between and the acknowledged ones missing.

    writer.py HOST PORT USER PASSWORD KILL_FILE
"""
import json
import os
import sys
import time

import psycopg2

host, port, user, password, kill_file = sys.argv[1:6]


def connect():
    return psycopg2.connect(host=host, port=int(port), user=user, password=password,
                            dbname="app", connect_timeout=1)


acked, refused, n, kill_at, first = [], 0, 0, None, None
deadline = time.time() + 300
while time.time() < deadline:
    if kill_at is None and os.path.exists(kill_file):
        kill_at = float(open(kill_file).read())
    n += 1
    started = time.time()
    try:
        conn = connect()
        with conn, conn.cursor() as cur:
            cur.execute("INSERT INTO acked (v) VALUES (%s)", (n,))
        conn.close()
        now = time.time()
        acked.append(n)
        # Only a write begun after the kill tells the new leader took over.
        if kill_at is not None and started > kill_at:
            first = now - kill_at
            break
    except psycopg2.Error:
        if kill_at is not None:
            refused += 1
        time.sleep(0.1)

# The new leader has every acknowledged row, or some are lost.
stored = set()
for _ in range(60):
    try:
        conn = connect()
        with conn, conn.cursor() as cur:
            cur.execute("SELECT v FROM acked")
            stored = {r[0] for r in cur.fetchall()}
        conn.close()
        break
    except psycopg2.Error:
        time.sleep(1)
print(json.dumps({
    "failover": first if first is not None else float("nan"),
    "refused": refused,
    "acked": len(acked),
    "lost": len(set(acked) - stored),
}))
