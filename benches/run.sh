#!/usr/bin/env bash
# Whole-process benchmarks of berth against a real stack. See benches/README.md.
#
#   benches/run.sh [MANIFEST_DIR]      (default: tests/fixtures/ministack; as root)
#
# Builds the release binary, brings the stack up under a prefix in a fresh temporary
# directory, measures, always runs `berth down` and removes the directory at the end,
# and writes benches/RESULTS.md (overwriting it).
#
# Environment (defaults fit the ministack fixture):
#   BENCH_SERVICE   the service the changed setting restarts and that gets killed  (app)
#   BENCH_SITE_A    a site config (the defaults' values)      ('[app]\ngreeting = "hello"')
#   BENCH_SITE_B    the same with one setting changed         ('[app]\ngreeting = "hi there"')
#   BENCH_IDLE_SECS idle window for the supervisor's CPU use  (60)
#   BENCH_KILLS     crash-to-ready repetitions                (5)
#   BENCH_COLD_REPS cold `berth up` repetitions               (3)
#   BENCH_CHANGE_REPS one-changed-setting repetitions         (12)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
COMMAND_LINE="benches/run.sh${*:+ $*}"
MANIFEST=$(cd "${1:-tests/fixtures/ministack}" && pwd)
SERVICE=${BENCH_SERVICE:-app}
SITE_A=${BENCH_SITE_A:-$'[app]\ngreeting = "hello"'}
SITE_B=${BENCH_SITE_B:-$'[app]\ngreeting = "hi there"'}
IDLE_SECS=${BENCH_IDLE_SECS:-60}
KILLS=${BENCH_KILLS:-5}
COLD_REPS=${BENCH_COLD_REPS:-3}
CHANGE_REPS=${BENCH_CHANGE_REPS:-12}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)

[ "$(id -u)" -eq 0 ] || { echo "benches/run.sh: run as root (services run as their own users)" >&2; exit 1; }

say() { printf '\n== %s\n' "$*" >&2; }

# --- tools -----------------------------------------------------------------------------
if ! command -v hyperfine >/dev/null; then
  say "installing hyperfine"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null 2>&1 || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null
  }
fi
for tool in curl "$PY"; do command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }; done

say "building the release binary"
cargo build --release --bin berth
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
BERTH=$TARGET_DIR/release/berth

# --- instance --------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/berth-bench.XXXXXX)
chmod 755 "$WORK"              # service users must traverse it
P=$WORK/p
DATA=$WORK/results
mkdir -p "$DATA" "$WORK/raw"
chmod 755 "$WORK/raw"

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -d "$P" ]; then
    "$BERTH" --prefix "$P" down >/dev/null 2>&1 || echo "warning: berth down failed" >&2
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

b() { "$BERTH" --prefix "$P" "$@"; }

# "name=pid name=pid ..." of the services, sorted by name.
service_pids() {
  { b status --json || true; } | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
print(" ".join("%s=%s" % (s["name"], s["pid"]) for s in sorted(d["services"], key=lambda s: s["name"])))'
}

# Field of one service in `berth status --json` (pid, state, restarts, ready).
service_field() {
  { b status --json || true; } | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
print(next((s.get(sys.argv[2]) for s in d["services"] if s["name"] == sys.argv[1]), ""))' "$1" "$2"
}

# berth up with every output line timestamped; writes $1 (lines "epoch<TAB>line").
timed_up() {
  local out=$1 t0 t1 rc
  t0=$EPOCHREALTIME
  set +e
  "$BERTH" --prefix "$P" --manifest "$MANIFEST" up 2>&1 |
    while IFS= read -r line; do printf '%s\t%s\n' "$EPOCHREALTIME" "$line"; done >"$out.lines"
  rc=${PIPESTATUS[0]}
  set -e
  t1=$EPOCHREALTIME
  { printf '%s\t#start\n' "$t0"; cat "$out.lines"; printf '%s\t#end rc=%s\n' "$t1" "$rc"; } >"$out"
  rm -f "$out.lines"
  if [ "$rc" -ne 0 ]; then
    cat "$out" >&2
    echo "berth up failed" >&2
    # kept for the report: a failed `up` is a finding, not something to hide
    { echo "### $(basename "$out")"; cut -f2- "$out" | sed "s#$WORK/p#<prefix>#g"; } >>"$DATA/up-failures.txt"
    return 1
  fi
}

# Cold start: down, delete everything but releases/, up. Retries (at most twice) when
# `berth up` fails; the failures are listed in the report.
cold_up() {
  local out=$1 attempt
  for attempt in 1 2 3; do
    b down >/dev/null 2>&1 || true
    find "$P" -mindepth 1 -maxdepth 1 ! -name releases -exec rm -rf {} +
    if timed_up "$out"; then return 0; fi
    [ "$attempt" -lt 3 ] && echo "retrying the cold start" >&2
  done
  return 1
}

health_url() {
  "$PY" -c '
import json, sys
plan = json.load(open(sys.argv[1]))
s = next(s for s in plan["services"] if s["name"] == sys.argv[2])
print(s["readiness"]["probe"]["http"]["url"])' "$P/state/supervision-plan.json" "$SERVICE"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# --- first up (builds the bundled release if needed) ------------------------------------
say "berth up (first, builds the release)"
timed_up "$DATA/first-up.tsv" || { echo "retrying berth up" >&2; timed_up "$DATA/first-up-retry.tsv"; }

# === 1. no-op reconfigure ===============================================================
say "1. no-op reconfigure"
mapfile -t RENDERED < <(find "$P/etc" -type f | sort; echo "$P/state/supervision-plan.json")
printf '%s\n' "${RENDERED[@]}" >"$DATA/noop-files.txt"
stat -c '%n %Y %s' "${RENDERED[@]}" | sort >"$DATA/noop-mtimes-before.txt"
service_pids >"$DATA/noop-pids-before.txt"
b reconfigure >"$DATA/noop-output.txt" 2>&1
hyperfine -N --warmup 3 --runs 50 --style basic \
  --export-json "$DATA/noop.json" \
  -n "berth reconfigure" "$BERTH --prefix $P reconfigure" \
  -n "sha256sum" "sha256sum ${RENDERED[*]}" >&2
service_pids >"$DATA/noop-pids-after.txt"
stat -c '%n %Y %s' "${RENDERED[@]}" | sort >"$DATA/noop-mtimes-after.txt"
b history -n 1 >"$DATA/noop-history.txt" 2>&1 || true

# === 2. one changed setting =============================================================
say "2. one changed setting"
printf '%s\n' "$SITE_A" >"$WORK/site-a.toml"
printf '%s\n' "$SITE_B" >"$WORK/site-b.toml"
cp "$WORK/site-a.toml" "$P/site.toml"
b reconfigure >/dev/null 2>&1          # applied state = A (a no-op for the defaults)
PIDS_BEFORE_CHANGE=$(service_pids)
RESTARTS_BEFORE=$(service_field "$SERVICE" restarts)
cp "$WORK/site-b.toml" "$P/site.toml"
b reconfigure --dry-run >"$DATA/change-dryrun-output.txt" 2>&1
: >"$DATA/change.tsv"
# dry-run: the file differs from what is applied, nothing is written or restarted
for i in $(seq 1 "$CHANGE_REPS"); do
  t0=$EPOCHREALTIME; b reconfigure --dry-run >/dev/null 2>&1; t1=$EPOCHREALTIME
  printf 'dry\t%s\t%s\n' "$i" "$("$PY" -c "print(round(($t1-$t0)*1000,2))")" >>"$DATA/change.tsv"
done
# full: alternate B, A, B, ... so every run changes the setting and restarts the service
cp "$WORK/site-a.toml" "$P/site.toml"
for i in $(seq 1 "$CHANGE_REPS"); do
  if cmp -s "$P/site.toml" "$WORK/site-a.toml"; then cp "$WORK/site-b.toml" "$P/site.toml"
  else cp "$WORK/site-a.toml" "$P/site.toml"; fi
  t0=$EPOCHREALTIME; b reconfigure >"$DATA/change-full-$i.txt" 2>&1; t1=$EPOCHREALTIME
  printf 'full\t%s\t%s\n' "$i" "$("$PY" -c "print(round(($t1-$t0)*1000,2))")" >>"$DATA/change.tsv"
done
# berth's journal: the "apply to supervisor" step of each of these runs
"$PY" - "$P/state/berth.db" "$CHANGE_REPS" >"$DATA/change-journal.tsv" <<'EOF'
import sqlite3, sys, datetime
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
def ts(s):
    s = s.rstrip("Z"); base, frac = (s.split(".") + ["0"])[:2]
    return datetime.datetime.fromisoformat(base).timestamp() + float("0." + frac)
runs = db.execute("SELECT id, started_at, finished_at FROM runs WHERE kind='reconfigure' ORDER BY id DESC LIMIT ?",
                  (int(sys.argv[2]),)).fetchall()[::-1]
for rid, rs, rf in runs:
    steps = {n: ts(f) - ts(s) for n, s, f in db.execute(
        "SELECT name, started_at, finished_at FROM steps WHERE run_id=?", (rid,))}
    print(f"{rid}\t{(ts(rf)-ts(rs))*1000:.2f}\t{steps.get('converge', 0)*1000:.2f}\t{steps.get('apply to supervisor', 0)*1000:.2f}")
EOF
PIDS_AFTER_CHANGE=$(service_pids)
RESTARTS_AFTER=$(service_field "$SERVICE" restarts)
printf 'pids_before\t%s\npids_after\t%s\nrestarts_before\t%s\nrestarts_after\t%s\n' \
  "$PIDS_BEFORE_CHANGE" "$PIDS_AFTER_CHANGE" "$RESTARTS_BEFORE" "$RESTARTS_AFTER" >"$DATA/change-check.tsv"
cp "$WORK/site-a.toml" "$P/site.toml"
b reconfigure >/dev/null 2>&1

# === 3. cold berth up ===================================================================
say "3. cold berth up (x$COLD_REPS)"
for i in $(seq 1 "$COLD_REPS"); do
  cold_up "$DATA/cold-$i.tsv"
  b status >"$DATA/cold-$i-status.txt" 2>&1 || echo "warning: not every service is ready after cold up $i" >&2
  cp "$P/state/berth.db" "$DATA/cold-$i.db"
  # the same work by hand, with berth's services stopped (same ports)
  b down >/dev/null
  "$PY" "$ROOT/benches/lib/raw_stack.py" "$P" "$WORK/raw" "$DATA/raw-$i.json"
done
b up >/dev/null 2>&1

# === 4. supervisor ======================================================================
say "4. supervisor: memory, idle CPU (${IDLE_SECS} s), crash-to-ready (x$KILLS)"
SUP=$({ b status --json || true; } | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["supervisor_pid"])')
CLK=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
ctx_switches() { cat /proc/"$1"/task/*/status | awk '/ctxt_switches/ { n += $2 } END { print n }'; }
{
  printf 'pid\t%s\n' "$SUP"
  grep -E '^(VmRSS|VmHWM|RssAnon|RssFile|Threads):' "/proc/$SUP/status" | sed 's/:[[:space:]]*/\t/; s/[[:space:]]*kB$/ kB/'
  printf 'clk_tck\t%s\n' "$CLK"
  printf 'idle_secs\t%s\n' "$IDLE_SECS"
  c0=$(cpu_ticks "$SUP"); x0=$(ctx_switches "$SUP"); t0=$EPOCHREALTIME
  sleep "$IDLE_SECS"
  c1=$(cpu_ticks "$SUP"); x1=$(ctx_switches "$SUP"); t1=$EPOCHREALTIME
  printf 'idle_raw\tticks %s → %s, context switches %s → %s\n' "$c0" "$c1" "$x0" "$x1"
  printf 'idle_ticks\t%s\n' "$((c1 - c0))"
  printf 'idle_ctxsw\t%s\n' "$((x1 - x0))"
  printf 'idle_wall\t%s\n' "$("$PY" -c "print($t1-$t0)")"
} >"$DATA/supervisor.tsv"

URL=$(health_url)
: >"$DATA/kills.tsv"
for k in $(seq 1 "$KILLS"); do
  old=$(service_field "$SERVICE" pid)
  uptime=$({ b status --json || true; } | "$PY" -c '
import json,sys; print(next(s["uptime_secs"] for s in json.load(sys.stdin)["services"] if s["name"]==sys.argv[1]))' "$SERVICE")
  logoff=$(stat -c %s "$P/log/supervisor.log")
  children=" $(pgrep -P "$SUP" | grep -vx "$old" | tr '\n' ' ') "
  t0=$EPOCHREALTIME
  kill -9 "$old"
  # the service's own health URL, every 20 ms, until it answers 200 again; on the way,
  # when the supervisor has spawned a new child (a pid not among its children before)
  ts=""
  until [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$URL" || true)" = 200 ]; do
    if [ -z "$ts" ]; then
      for c in $(pgrep -P "$SUP" || true); do
        case " $children " in *" $c "*) ;; *) ts=$EPOCHREALTIME ;; esac
      done
    fi
    sleep 0.02
    "$PY" -c "import sys; sys.exit(0 if $EPOCHREALTIME-$t0 < 180 else 1)" || { echo "no restart after 180 s" >&2; exit 1; }
  done
  t1=$EPOCHREALTIME
  # the supervisor's view: a new pid in state ready
  until [ "$(service_field "$SERVICE" state)" = ready ] && new=$(service_field "$SERVICE" pid) && [ "$new" != "$old" ]; do
    sleep 0.02
  done
  t2=$EPOCHREALTIME
  backoff=$(tail -c +"$((logoff + 1))" "$P/log/supervisor.log" | sed -n "s/.*service \`$SERVICE\`: restarting in \(.*\)$/\1/p" | head -1)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$k" "$uptime" "$old" "$new" "${backoff:-?}" \
    "$("$PY" -c "print(round(($t1-$t0)*1000,1))")" "$("$PY" -c "print(round(($t2-$t0)*1000,1))")" \
    "$([ -n "$ts" ] && "$PY" -c "print(round(($ts-$t0)*1000,1))" || echo "")" >>"$DATA/kills.tsv"
  sleep 0.5
done
tail -n 40 "$P/log/supervisor.log" >"$DATA/supervisor-log-tail.txt"

# === report =============================================================================
say "writing benches/RESULTS.md"
{
  printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  printf 'commit\t%s\n' "$(git rev-parse HEAD 2>/dev/null || echo unknown)"
  printf 'dirty\t%s\n' "$(git status --porcelain --untracked-files=no 2>/dev/null | grep -qv '^.. benches/' && echo yes || echo no)"
  printf 'command\t%s\n' "$COMMAND_LINE"
  printf 'manifest\t%s\n' "${MANIFEST#"$ROOT"/}"
  printf 'nproc\t%s\n' "$(nproc)"
  printf 'cpu\t%s\n' "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  printf 'memory\t%s\n' "$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  printf 'kernel\t%s\n' "$(uname -sr)"
  printf 'os\t%s\n' "$(. /etc/os-release && echo "$PRETTY_NAME")"
  printf 'berth_version\t%s\n' "$("$BERTH" --version 2>/dev/null || echo '?')"
  printf 'hyperfine\t%s\n' "$(hyperfine --version)"
  printf 'site_a\t%s\n' "${SITE_A//$'\n'/ ⏎ }"
  printf 'site_b\t%s\n' "${SITE_B//$'\n'/ ⏎ }"
  printf 'service\t%s\n' "$SERVICE"
  printf 'health_url\t%s\n' "$URL"
  printf 'load_start\t%s\n' "$LOAD_START"
  printf 'load_end\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$DATA/meta.tsv"
"$PY" "$ROOT/benches/lib/report.py" "$DATA" "$P" >"$ROOT/benches/RESULTS.md"
say "done: benches/RESULTS.md"
