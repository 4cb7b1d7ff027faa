#!/usr/bin/env bash
# Crash → ready: berth's supervisor beside runit's runsv, supervising the same program
# in the same run. See benches/README.md.
#
#   benches/crash-restart.sh            (as root)
#
# Brings benches/fixtures/crash-restart (Python's http.server on 127.0.0.1:18481) up
# with the release `berth`, and runs the same command under `runsv` on a service
# directory of its own (127.0.0.1:18482, same user), both inside a network namespace
# made for the run. Each round waits until both servers have been up for longer than
# the supervisor's reset window, then, one after the other (the order alternates),
# kills the server's main pid with SIGKILL and polls its port every BENCH_POLL_MS until
# it answers HTTP again. Writes benches/RESULTS-crash-restart.md (overwriting it); on
# any exit stops runsv and berth and removes the namespace and the temporary directory.
#
# Environment:
#   BENCH_KILLS      kills of each server                        (7)
#   BENCH_UPTIME     seconds each server is up before a kill     (62; the reset window is 60)
#   BENCH_POLL_MS    polling interval                            (5)
#   BENCH_BERTH      a berth binary to use instead of building the release one
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
COMMAND_LINE="benches/crash-restart.sh${*:+ $*}"
KILLS=${BENCH_KILLS:-7}
UPTIME=${BENCH_UPTIME:-62}
POLL_MS=${BENCH_POLL_MS:-5}
MANIFEST=$ROOT/benches/fixtures/crash-restart
BERTH_PORT=18481
RUNIT_PORT=18482
PY=/usr/bin/python3

[ "$(id -u)" -eq 0 ] || { echo "benches/crash-restart.sh: run as root" >&2; exit 1; }
[ -x "$PY" ] || { echo "missing: $PY (Debian's python3)" >&2; exit 1; }
command -v ip >/dev/null || { echo "missing: ip (iproute2)" >&2; exit 1; }

say() { printf '\n== %s\n' "$*" >&2; }

# --- tools -----------------------------------------------------------------------------
if ! command -v runsv >/dev/null || ! command -v sv >/dev/null || ! command -v chpst >/dev/null; then
  say "installing runit"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runit >/dev/null 2>&1 || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq runit >/dev/null
  }
fi
if [ -n "${BENCH_BERTH:-}" ]; then
  BERTH=$(realpath "$BENCH_BERTH")
  BUILD="the binary BENCH_BERTH names"
else
  say "building the release binary"
  cargo build --release --bin berth
  TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  BERTH=$TARGET_DIR/release/berth
  BUILD="release build"
fi

# --- the two supervisors ---------------------------------------------------------------
WORK=$(mktemp -d /tmp/berth-crash.XXXXXX)
chmod 755 "$WORK"              # the service user must traverse it
P=$WORK/p
SV=$WORK/sv/web
NS=berth-crash-$$
RUNSV_PID=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$RUNSV_PID" ]; then
    sv -w 10 exit "$SV" >/dev/null 2>&1 || true
    kill "$RUNSV_PID" 2>/dev/null || true
    wait "$RUNSV_PID" 2>/dev/null || true
  fi
  if [ -d "$P" ]; then
    "$BERTH" --prefix "$P" down >/dev/null 2>&1 || echo "warning: berth down failed" >&2
  fi
  ip netns delete "$NS" 2>/dev/null || true
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$NS"
ip netns exec "$NS" ip link set lo up

say "berth up (in network namespace $NS)"
# The supervisor stays in the namespace it was started in; later commands reach it over
# its socket.
ip netns exec "$NS" "$BERTH" --prefix "$P" --manifest "$MANIFEST" up >"$WORK/up.txt" 2>&1 ||
  { cat "$WORK/up.txt" >&2; exit 1; }
b() { "$BERTH" --prefix "$P" "$@"; }

# Field of the web service in `berth status --json` (pid, state, restarts, uptime_secs).
berth_field() {
  { b status --json || true; } | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
print(next((s.get(sys.argv[1]) for s in d["services"] if s["name"] == "web"), ""))' "$1"
}

# The same program, as the same user, under runsv.
USER_NAME=$("$PY" -c '
import json, sys
plan = json.load(open(sys.argv[1]))
print(next(s for s in plan["services"] if s["name"] == "web")["user"])' "$P/state/supervision-plan.json")
mkdir -p "$SV" "$WORK/www"
cat >"$SV/run" <<EOF
#!/bin/sh
exec 2>&1
exec chpst -u $USER_NAME $PY -m http.server --bind 127.0.0.1 --directory $WORK/www $RUNIT_PORT
EOF
chmod 755 "$SV/run"
say "runsv (in the same namespace)"
ip netns exec "$NS" runsv "$SV" </dev/null >"$WORK/runsv.log" 2>&1 &
RUNSV_PID=$!

# Kill → HTTP answer, measured in the namespace: kills $1 with SIGKILL, waits for it to
# be gone, then connects to 127.0.0.1:$2 every $3 ms until a status line comes back.
# Prints "ms<TAB>polls".
cat >"$WORK/poll.py" <<'EOF'
import os, signal, socket, sys, time

pid, port, interval = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000


def gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):
        return True


def answers():
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            return s.recv(12).startswith(b"HTTP/1.")
    except OSError:
        return False


t0 = time.monotonic()
os.kill(pid, signal.SIGKILL)
while not gone(pid):
    time.sleep(0.0005)
polls = 1
while not answers():
    if time.monotonic() - t0 > 180:
        sys.exit("no answer within 180 s")
    time.sleep(interval)
    polls += 1
print(f"{(time.monotonic() - t0) * 1000:.1f}\t{polls}")
EOF
poll() { ip netns exec "$NS" "$PY" "$WORK/poll.py" "$1" "$2" "$POLL_MS"; }
answering() { ip netns exec "$NS" curl -s -o /dev/null -m 1 "http://127.0.0.1:$1/"; }

runit_pid() { cat "$SV/supervise/pid" 2>/dev/null || true; }
# seconds the runsv service has been up ("run: <dir>: (pid 123) 65s")
runit_uptime() { sv status "$SV" | sed -n 's/^run: .*) \([0-9]*\)s.*/\1/p'; }

for _ in $(seq 1 200); do
  answering "$RUNIT_PORT" && answering "$BERTH_PORT" && break
  sleep 0.05
done
answering "$RUNIT_PORT" || { cat "$WORK/runsv.log" >&2; echo "the server under runsv does not answer" >&2; exit 1; }

kill_berth() {
  local k=$1 old uptime logoff out backoff new restarts
  old=$(berth_field pid)
  uptime=$(berth_field uptime_secs)
  logoff=$(stat -c %s "$P/log/supervisor.log")
  out=$(poll "$old" "$BERTH_PORT")
  until [ "$(berth_field state)" = ready ] && new=$(berth_field pid) && [ "$new" != "$old" ]; do
    sleep 0.02
  done
  restarts=$(berth_field restarts)
  backoff=$(tail -c +"$((logoff + 1))" "$P/log/supervisor.log" |
    sed -n 's/.*service `web`: restarting in \(.*\)$/\1/p' | head -1)
  printf '%s\tberth\t%s\t%s\t%s\t%s\t%s\t%s\n' "$k" "$uptime" "$old" "$new" "$out" "${backoff:-?}" "$restarts" >>"$WORK/kills.tsv"
}

kill_runit() {
  local k=$1 old uptime out new
  old=$(runit_pid)
  uptime=$(runit_uptime)
  out=$(poll "$old" "$RUNIT_PORT")
  new=$(runit_pid)
  printf '%s\trunit\t%s\t%s\t%s\t%s\t\t\n' "$k" "$uptime" "$old" "$new" "$out" >>"$WORK/kills.tsv"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
DATE=$(date -u '+%Y-%m-%d %H:%M:%S UTC')
: >"$WORK/kills.tsv"
say "crash → ready, $KILLS kills each, each after $UPTIME s up (about $(( (UPTIME + 2) * KILLS / 60 + 1 )) min)"
for k in $(seq 1 "$KILLS"); do
  # until both have been up for UPTIME seconds
  while :; do
    ub=$(berth_field uptime_secs); ur=$(runit_uptime)
    least=$(( ${ub%.*} < ${ur:-0} ? ${ub%.*} : ${ur:-0} ))
    [ "$least" -ge "$UPTIME" ] && break
    sleep $(( UPTIME - least > 1 ? UPTIME - least : 1 ))
  done
  if [ $((k % 2)) -eq 1 ]; then kill_berth "$k"; kill_runit "$k"; else kill_runit "$k"; kill_berth "$k"; fi
  tail -n 2 "$WORK/kills.tsv" >&2
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
grep 'service `web`' "$P/log/supervisor.log" | tail -n 12 | sed "s#$WORK#<work>#g" >"$WORK/log-tail.txt"

# === report =============================================================================
say "writing benches/RESULTS-crash-restart.md"
RUNIT_VERSION=$(dpkg-query -W -f '${Version}' runit 2>/dev/null || echo '?')
PY_VERSION=$("$PY" -c 'import platform; print(platform.python_version())')
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')
"$PY" - "$WORK/kills.tsv" "$WORK/log-tail.txt" >"$ROOT/benches/RESULTS-crash-restart.md" <<EOF
import statistics, sys

rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
ms = {"berth": [], "runit": []}
for r in rows:
    ms[r[1]].append(float(r[5]))
med = {k: statistics.median(v) for k, v in ms.items()}
print("# Crash → ready: berth's supervisor and runit")
print()
print("- date: $DATE")
print("- command: \`$COMMAND_LINE\` (BENCH_KILLS=$KILLS, BENCH_UPTIME=$UPTIME, BENCH_POLL_MS=$POLL_MS)")
print("- berth: commit $COMMIT, $BUILD; runit $RUNIT_VERSION (\`runsv\` on a service directory of its own); Python $PY_VERSION")
print("- machine: $(nproc) CPUs; load average at the start $LOAD_START, at the end $LOAD_END")
print()
print("The program: \`python3 -m http.server\` on 127.0.0.1 (berth: port $BERTH_PORT from")
print("\`benches/fixtures/crash-restart\`; runit: port $RUNIT_PORT, the same command as the same")
print("user through \`chpst -u\`), both in one network namespace made for the run. Each")
print("round waits until both have been up for $UPTIME s (berth's reset window is 60 s, runit's 1 s),")
print("then kills one main pid with SIGKILL, waits for it to be gone, and connects to its")
print("port every $POLL_MS ms until it answers an HTTP request; then the other (the order")
print("alternates). Kill → answer is timed in one Python process (monotonic clock).")
print()
print("| | kills | median (ms) | min | max |")
print("| --- | ---: | ---: | ---: | ---: |")
for k in ("berth", "runit"):
    v = ms[k]
    print(f"| {k} | {len(v)} | {med[k]:.1f} | {min(v):.1f} | {max(v):.1f} |")
print()
print(f"**Ratio of the medians, berth / runit: {med['berth'] / med['runit']:.2f}**")
print()
print("Every kill (berth's backoff is the delay its supervisor logged, \`restarting in …\`;")
print("restarts is its restart counter afterwards):")
print()
print("| round | supervisor | up (s) | old pid | new pid | kill → answer (ms) | polls | backoff | restarts |")
print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
for r in rows:
    print("| " + " | ".join(r[:5] + [r[5], r[6], r[7] or "–", r[8] or "–"]) + " |")
print()
print("The supervisor's log about the service, last lines:")
print()
print("\`\`\`text")
print(open(sys.argv[2]).read().rstrip())
print("\`\`\`")
EOF
cat "$ROOT/benches/RESULTS-crash-restart.md"
