#!/usr/bin/env bash
# The console's page render time beside `berth status` (the same state from a new
# process), and what serving it costs the idle instance. See benches/README.md.
#
#   benches/console.sh            (as root)
#
# Brings benches/fixtures/crash-restart up with the release `berth` in a network
# namespace of its own, then sets `console.listen` so the supervisor runs the console
# (the service `berth-console`, under `/berth/`), signs in with curl, and times with
# hyperfine: the status, history and backups pages, GET /api/status, and `berth status
# --json`. Reads the supervisor's VmRSS and CPU ticks over an idle window before and
# while the console runs (it is a process of its own), and the console's. Writes
# benches/RESULTS-console.md (overwriting it).
#
# Environment:
#   BENCH_IDLE_SECS  idle window                               (60)
#   BENCH_BERTH      a berth binary to use instead of building the release one
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
COMMAND_LINE="benches/console.sh${*:+ $*}"
IDLE=${BENCH_IDLE_SECS:-60}
MANIFEST=$ROOT/benches/fixtures/crash-restart
CONSOLE=127.0.0.1:18495
PY=/usr/bin/python3

[ "$(id -u)" -eq 0 ] || { echo "benches/console.sh: run as root" >&2; exit 1; }
say() { printf '\n== %s\n' "$*" >&2; }
command -v hyperfine >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null
. "$ROOT/benches/lib/berth.sh"
find_berth

WORK=$(mktemp -d /tmp/berth-console.XXXXXX)
chmod 755 "$WORK"
P=$WORK/p
NS=berth-console-$$
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  [ -d "$P" ] && { "$BERTH" --prefix "$P" down >/dev/null 2>&1 || echo "warning: berth down failed" >&2; }
  ip netns delete "$NS" 2>/dev/null || true
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
n() { ip netns exec "$NS" "$@"; }

say "berth up"
mkdir -p "$P" && chmod 755 "$P"
printf 'users = "shared"\n' >"$P/site.toml"   # no per-prefix user left behind
n "$BERTH" --prefix "$P" --manifest "$MANIFEST" up >"$WORK/up.txt" 2>&1 || { cat "$WORK/up.txt" >&2; exit 1; }
SUP=$(cat "$P/run/supervisor.pid")
kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

say "idle ${IDLE} s without the console"
t0=$(ticks "$SUP"); sleep "$IDLE"; t1=$(ticks "$SUP")
SUP_RSS=$(kb "$SUP" VmRSS); SUP_TICKS=$((t1 - t0))

say "console as a service (console.listen)"
printf '[console]\nlisten = "%s"\n' "$CONSOLE" >>"$P/site.toml"
n "$BERTH" --prefix "$P" reconfigure >"$WORK/reconfigure.txt" 2>&1 || { cat "$WORK/reconfigure.txt" >&2; exit 1; }
URL=http://$CONSOLE/berth
for _ in $(seq 100); do n curl -sf -o /dev/null "$URL/login" && break; sleep 0.1; done
PASSWORD=$(cat "$P/secrets/berth-console-password")
JAR=$WORK/jar
n curl -s -c "$JAR" -o "$WORK/login.html" "$URL/login"
CSRF=$(grep -o 'name="csrf" value="[^"]*"' "$WORK/login.html" | head -1 | sed 's/.*value="//; s/"$//')
n curl -s -b "$JAR" -c "$JAR" -o /dev/null --data-urlencode "password=$PASSWORD" --data-urlencode "csrf=$CSRF" "$URL/login"
SESSION=$(awk '$6 == "berth_session" { print $7 }' "$JAR")
[ -n "$SESSION" ] || { echo "could not sign in" >&2; exit 1; }
CPID=$(n pgrep -f "console --listen $CONSOLE" | head -1)

say "idle ${IDLE} s with the console running"
t0=$(ticks "$SUP"); c0=$(ticks "$CPID"); sleep "$IDLE"; t1=$(ticks "$SUP"); c1=$(ticks "$CPID")
SUP_TICKS_ON=$((t1 - t0)); CON_TICKS=$((c1 - c0))
CON_RSS=$(kb "$CPID" VmRSS)

say "hyperfine"
H="Cookie: berth_session=$SESSION"
n hyperfine -N --warmup 5 --runs 200 --export-json "$WORK/h.json" \
  "curl -s -o /dev/null -H '$H' $URL/" \
  "curl -s -o /dev/null -H '$H' $URL/history" \
  "curl -s -o /dev/null -H '$H' $URL/backups" \
  "curl -s -o /dev/null -H '$H' $URL/api/status" \
  "$BERTH --prefix $P status --json" >"$WORK/hyperfine.txt" 2>&1
"$PY" - "$WORK/h.json" >"$WORK/rows.md" <<'EOF2'
import json, sys
names = ["status page `GET /berth/`", "history page `GET /berth/history`", "backups page `GET /berth/backups` (lists the target)", "`GET /berth/api/status` (the live refresh)", "`berth status --json` (a new process, the control socket)"]
res = json.load(open(sys.argv[1]))["results"]
base = res[-1]["median"]
for name, r in zip(names, res):
    t = sorted(x * 1000 for x in r["times"])
    print(f"| {name} | {r['median']*1000:.2f} ms | {t[int(len(t)*0.95)]:.2f} ms | {r['median']/base:.2f}x |")
EOF2
TICK_HZ=$(getconf CLK_TCK)
cat >benches/RESULTS-console.md <<EOF2
# The console: page render time and what it costs the idle instance

Produced by \`$COMMAND_LINE\` on $(date -u +%Y-%m-%d) ($BUILD; $(nproc) CPUs, load average
$(cut -d' ' -f1-3 /proc/loadavg) at the end). Fixture \`benches/fixtures/crash-restart\`;
requests by \`curl\` (its own start included) with a signed-in session; 200 runs each.

| request | median | p95 | × \`berth status --json\` |
| --- | --- | --- | --- |
$(cat "$WORK/rows.md")

| idle ${IDLE} s | supervisor CPU ticks (1/$TICK_HZ s) | supervisor VmRSS | console CPU ticks | console VmRSS |
| --- | --- | --- | --- | --- |
| console not running | $SUP_TICKS | $SUP_RSS kB | | |
| console running (supervised), no browser | $SUP_TICKS_ON | $(kb "$SUP" VmRSS) kB | $CON_TICKS | $CON_RSS kB |

The console is a process of its own, the supervisor's service \`berth-console\`: the
supervisor gains one more child to watch and nothing else. A browser on the status page
asks \`/api/status\` every two seconds; with none open the console waits in the kernel.
EOF2
cat benches/RESULTS-console.md
