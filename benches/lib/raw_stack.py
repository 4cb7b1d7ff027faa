#!/usr/bin/env python3
"""Start the stack's services by hand, without berth, and time each step.

    raw_stack.py PREFIX WORKDIR OUT.json

Runs the exact commands of `PREFIX/state/supervision-plan.json` (argv, user, cwd,
environment) in dependency order, each followed by its readiness check polled every
10 ms, then stops everything again. For a service named `postgresql` it first runs
`initdb` on a fresh cluster in WORKDIR as the service's user (same options as the
ministack `initdb` hook), points the service at that cluster, checks readiness with
`pg_isready`, and creates the app's role and database with `psql` (what the
`createdb` hook does). berth's services must be stopped: the ports are the same.

Writes {"steps": [[name, seconds], ...]} to OUT.json. Every process it starts is
stopped (stop signal, then SIGKILL of its process group) before it exits.
"""
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

POLL = 0.010
TIMEOUT = 60.0
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def as_user(user):
    pw = pwd.getpwnam(user)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}, pw


def clean_env(pw, extra):
    env = {"PATH": CLEAN_PATH, "LANG": "C.UTF-8", "HOME": pw.pw_dir,
           "USER": pw.pw_name, "LOGNAME": pw.pw_name}
    env.update(extra or {})
    return env


def tcp_ok(address):
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=0.2):
            return True
    except OSError:
        return False


def http_ok(url, status):
    try:
        with urllib.request.urlopen(url, timeout=0.5) as r:
            code = r.status
    except urllib.error.HTTPError as e:
        code = e.code
    except (OSError, ValueError):
        return False
    return code == status if status is not None else code < 500


def wait(check, what, proc):
    deadline = time.monotonic() + TIMEOUT
    while not check():
        if proc.poll() is not None:
            raise SystemExit(f"raw_stack: {what} exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise SystemExit(f"raw_stack: {what} not ready after {TIMEOUT} s")
        time.sleep(POLL)


def topo(services):
    by_name = {s["name"]: s for s in services}
    done, order = set(), []

    def visit(name):
        if name in done:
            return
        done.add(name)
        for dep in by_name[name].get("depends_on", []):
            visit(dep)
        order.append(by_name[name])

    for name in sorted(by_name):
        visit(name)
    return order


def main():
    prefix, work, out = sys.argv[1:4]
    plan = json.load(open(os.path.join(prefix, "state", "supervision-plan.json")))
    started = []  # (Popen, stop signal)
    steps = []
    try:
        for svc in topo(plan["services"]):
            argv = list(svc["argv"])
            ids, pw = as_user(svc["user"])
            env = clean_env(pw, svc.get("env"))
            probe = svc.get("readiness", {}).get("probe", {})
            is_pg = svc["name"] == "postgresql" and "-D" in argv
            if is_pg:
                bindir = os.path.dirname(argv[0])
                pgdata = os.path.join(work, "pgdata")
                shutil.rmtree(pgdata, ignore_errors=True)
                os.mkdir(pgdata, 0o700)
                os.chown(pgdata, pw.pw_uid, pw.pw_gid)
                argv[argv.index("-D") + 1] = pgdata
                t = time.monotonic()
                subprocess.run(
                    [os.path.join(bindir, "initdb"), "-D", pgdata, "--auth-local=peer",
                     "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8"],
                    check=True, env=env, cwd=work, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, **ids)
                steps.append(["initdb", time.monotonic() - t])
            # owned by the service's user: nginx reopens /dev/stdout, as berth's pipes allow
            log = open(os.path.join(work, f"{svc['name']}.log"), "ab")
            os.fchown(log.fileno(), pw.pw_uid, pw.pw_gid)
            t = time.monotonic()
            p = subprocess.Popen(argv, env=env, cwd=svc.get("cwd") or "/", stdin=subprocess.DEVNULL,
                                 stdout=log, stderr=log, process_group=0, **ids)
            started.append((p, svc.get("stop_signal", "SIGTERM")))
            if is_pg:
                if "command" in probe:
                    # the manifest's own readiness command: pg_isready with `-p PORT`
                    isready = list(probe["command"]["argv"])
                    port = isready[isready.index("-p") + 1] if "-p" in isready else "5432"
                else:
                    port = probe["tcp"]["address"].rsplit(":", 1)[1] if "tcp" in probe else "5432"
                    isready = [os.path.join(bindir, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", port]
                wait(lambda: subprocess.run(isready).returncode == 0, "postgresql", p)
                steps.append(["postgresql start (pg_isready)", time.monotonic() - t])
                sock = None
                for i, a in enumerate(argv):
                    if a.startswith("config_file="):
                        for line in open(a.split("=", 1)[1]):
                            if line.strip().startswith("unix_socket_directories"):
                                sock = line.split("=", 1)[1].strip().strip("'").split(",")[0]
                t = time.monotonic()
                subprocess.run(
                    [os.path.join(bindir, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                     "-h", sock or "127.0.0.1", "-p", port, "-d", "postgres",
                     "-c", "CREATE ROLE app LOGIN PASSWORD 'bench'",
                     "-c", "CREATE DATABASE app OWNER app"],
                    check=True, env=env, cwd=work, stdout=subprocess.DEVNULL, **ids)
                steps.append(["createdb (psql)", time.monotonic() - t])
                continue
            if "tcp" in probe:
                wait(lambda: tcp_ok(probe["tcp"]["address"]), svc["name"], p)
                how = "tcp"
            elif "http" in probe:
                wait(lambda: http_ok(probe["http"]["url"], probe["http"].get("status")), svc["name"], p)
                how = "http"
            else:
                how = "no probe"
            steps.append([f"{svc['name']} start ({how})", time.monotonic() - t])
    finally:
        for p, sig in reversed(started):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, getattr(signal, sig, signal.SIGTERM))
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
                except ProcessLookupError:
                    pass
            try:  # whatever the service left in its group
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        json.dump({"steps": steps}, open(out, "w"))


if __name__ == "__main__":
    main()
