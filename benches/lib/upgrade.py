"""The upgrade benchmark's driver (benches/upgrade.sh runs it inside a network namespace).

Sets up the ministack fixture at 1.0.0 with a table of --rows rows, makes 1.1.0 (an
offline hop: its migration adds a column and rewrites every row) and 1.2.0 (an online
hop, `online_from = "1.1"`: its migration adds an index), and upgrades through both
while a client thread requests / through nginx every --poll-ms, recording every answer
with its time. The migration's own time is what psql took inside the hook (the raw
tool doing the same work in the same run); berth's steps come from its JSON report.
"""

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time

PORTS = {"nginx": 19080, "postgresql": 19432, "redis": 19379, "app": 19001, "spare": 19002}


def args():
    p = argparse.ArgumentParser()
    for a in ("berth", "build", "work", "root", "command-line", "out"):
        p.add_argument("--" + a, required=True)
    p.add_argument("--rows", type=int, required=True)
    p.add_argument("--poll-ms", type=int, required=True)
    return p.parse_args()


MIGRATION = r'''
[hooks.migrate]
component = "postgresql"
description = "The release's database migration, timed by itself"
command = ["/bin/sh", "-c", """
start=$(date +%s.%N)
"$PSQL" -X -q -v ON_ERROR_STOP=1 -h "$PGHOST" -p "$PGPORT" -d app <<'SQL' || exit 1
__SQL__
SQL
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" 'BEGIN { printf "migration-seconds %.3f\\n", e - s }'
"""]
environment = { PSQL = "{{ components.postgresql.bin.psql }}", PGHOST = "{{ paths.run }}/postgresql", PGPORT = "{{ settings.postgresql.port }}" }
when = "release"
after = ["postgresql"]
before = ["app"]
timeout = "30m"
'''


def make_version(root, work, version, sql, upgrade=""):
    src = os.path.join(root, "tests/fixtures/ministack")
    dst = os.path.join(work, f"ministack-{version}")
    shutil.copytree(src, dst)
    path = os.path.join(dst, "berth.toml")
    text = open(path).read().replace('version = "1.0.0"', f'version = "{version}"')
    if sql:
        text += MIGRATION.replace("__SQL__", sql)
    text += upgrade
    open(path, "w").write(text)
    return dst


def psql(prefix, sql):
    plan = json.load(open(os.path.join(prefix, "state/supervision-plan.json")))
    user = next(s for s in plan["services"] if s["name"] == "postgresql")["user"]
    subprocess.run(
        ["runuser", "-u", user, "--", "/usr/lib/postgresql/15/bin/psql", "-X", "-q",
         "-v", "ON_ERROR_STOP=1", "-h", os.path.join(prefix, "run/postgresql"),
         "-p", str(PORTS["postgresql"]), "-d", "app", "-c", sql],
        check=True, cwd="/")


def get(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.settimeout(10)
            s.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            raw = b""
            while chunk := s.recv(65536):
                raw += chunk
        head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        status = int(head.split()[1])
        retry = any(l.lower().startswith("retry-after:") for l in head.split("\r\n"))
        return status, retry, ""
    except (OSError, ValueError, IndexError) as e:
        return None, False, type(e).__name__


class Client:
    def __init__(self, port, interval):
        self.port, self.interval = port, interval
        self.answers, self.stop = [], threading.Event()
        self.t0 = time.monotonic()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            t = time.monotonic() - self.t0
            self.answers.append((t, *get(self.port)))
            time.sleep(self.interval)

    def finish(self):
        self.stop.set()
        self.thread.join()
        return self.answers


def spans(answers, bad):
    """Longest run of consecutive answers for which bad(a) holds, in seconds (from the
    first such answer to the next good one)."""
    longest, start = 0.0, None
    for i, a in enumerate(answers):
        if bad(a):
            start = a[0] if start is None else start
        elif start is not None:
            longest = max(longest, a[0] - start)
            start = None
    if start is not None:
        longest = max(longest, answers[-1][0] - start)
    return longest


def berth(a, prefix, *argv, check=True):
    r = subprocess.run([a.berth, "--prefix", prefix, *argv], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"berth {' '.join(argv)} failed:\n{r.stdout}\n{r.stderr}")
    return r


def hop(a, prefix, target, interval):
    client = Client(PORTS["nginx"], interval)
    time.sleep(1)
    t = time.monotonic()
    r = berth(a, prefix, "upgrade", "apply", "--json", "--to", target)
    wall = time.monotonic() - t
    time.sleep(1)
    answers = client.finish()
    report = json.loads(r.stdout)["hops"][0]
    log = open(os.path.join(prefix, "log/hooks/migrate.log")).read()
    migration = float(re.findall(r"migration-seconds ([0-9.]+)", log)[-1])
    ok = sum(1 for x in answers if x[1] == 200)
    pages = [x for x in answers if x[1] == 503 and x[2]]
    failed = [x for x in answers if x[1] not in (200,) and not (x[1] == 503 and x[2])]
    steps = dict(report["steps"])
    return {
        "hop": f"{report['from']} → {report['to']}",
        "offline": report["offline"],
        "wall": wall,
        "steps": report["steps"],
        "switch": steps.get("switch", 0.0),
        "migration": migration,
        "maintenance": report.get("maintenance_seconds"),
        "requests": len(answers),
        "ok": ok,
        "pages": len(pages),
        "page_span": (pages[-1][0] - pages[0][0]) if pages else 0.0,
        "failed": failed,
        "failed_span": spans(answers, lambda x: not (x[1] == 200 or (x[1] == 503 and x[2]))),
        "unavailable_span": spans(answers, lambda x: x[1] != 200),
    }


def main():
    a = args()
    work, prefix = a.work, os.path.join(a.work, "p")
    os.makedirs(prefix)
    open(os.path.join(prefix, "site.toml"), "w").write(
        'users = "shared"\n'
        f'external_url = "http://127.0.0.1:{PORTS["nginx"]}/"\n'
        f'[postgresql]\nport = {PORTS["postgresql"]}\n[redis]\nport = {PORTS["redis"]}\n'
        f'[app]\nport = {PORTS["app"]}\nspare_port = {PORTS["spare"]}\n')
    v100 = os.path.join(a.root, "tests/fixtures/ministack")
    v110 = make_version(a.root, work, "1.1.0",
                        "ALTER TABLE items ADD COLUMN note text;\n"
                        "UPDATE items SET note = md5(name);")
    v120 = make_version(a.root, work, "1.2.0", "CREATE INDEX items_note ON items (note);",
                        '\n[upgrade]\nonline_from = "1.1"\n')
    print("== berth up 1.0.0", flush=True)
    berth(a, prefix, "--manifest", v100, "up")
    psql(prefix, f"CREATE TABLE items (name text); INSERT INTO items SELECT 'item ' || n "
                 f"FROM generate_series(1, {a.rows}) n;")
    load = open("/proc/loadavg").read().split()[:3]
    results = []
    for target in (v110, v120):
        print(f"== upgrade apply --to {os.path.basename(target)}", flush=True)
        results.append(hop(a, prefix, target, a.poll_ms / 1000))
    releases = json.loads(berth(a, prefix, "releases", "--json").stdout)
    write(a, results, releases, load)


def write(a, results, releases, load):
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                if l.startswith("model name")), "?")
    out = [
        "# Upgrade benchmark",
        "",
        f"`{a.command_line}` on {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}; "
        f"{a.build}; {os.cpu_count()} CPUs ({cpu}); load average at the start "
        f"{' '.join(load)}.",
        "",
        f"The ministack fixture with a table of {a.rows:,} rows, upgraded 1.0.0 → 1.1.0 "
        "(offline: the migration adds a column and rewrites every row) → 1.2.0 (online: the "
        "migration adds an index while 1.1.0 serves, then the app's new release starts beside "
        "the old one on its spare port and nginx is reloaded to send traffic to it, and back "
        f"once the app restarted on its own port), while a client requested `/` through nginx every "
        f"{a.poll_ms} ms. \"Migration\" is the time psql took inside the hook, the raw "
        "tool doing the same work in the same run.",
        "",
        "| hop | kind | berth upgrade apply | migration (psql) | switch step without the migration | maintenance page up | requests | 200 | maintenance pages (503 + Retry-After) | failed | longest failed span | longest span without a 200 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        m = f"{r['maintenance']:.2f} s" if r["maintenance"] is not None else "—"
        out.append(
            f"| {r['hop']} | {'offline' if r['offline'] else 'online'} | {r['wall']:.2f} s | "
            f"{r['migration']:.2f} s | {r['switch'] - r['migration']:.2f} s | {m} | {r['requests']} | {r['ok']} | "
            f"{r['pages']} | {len(r['failed'])} | {r['failed_span']:.2f} s | "
            f"{r['unavailable_span']:.2f} s |")
    out += ["", "Steps of each hop (seconds):", ""]
    for r in results:
        out.append(f"- {r['hop']}: " + ", ".join(f"{n} {s:.2f}" for n, s in r["steps"]))
    out += ["", "Failed requests (time since the client started, status or error):", ""]
    for r in results:
        if r["failed"]:
            shown = ", ".join(f"{t:.2f} s {s or e}" for t, s, _, e in r["failed"][:20])
            out.append(f"- {r['hop']}: {shown}")
        else:
            out.append(f"- {r['hop']}: none")
    out += ["", "Releases afterwards: " + ", ".join(
        f"{r['version']}{' (current)' if r['current'] else ''}" for r in releases), ""]
    open(a.out, "w").write("\n".join(out))
    print("\n".join(out))


if __name__ == "__main__":
    main()
