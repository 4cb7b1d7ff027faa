#!/usr/bin/env bash
# The supervisor's cost with the metrics endpoint off and on, and a scrape beside
# `berth status --json` (the same state over the control socket). See benches/README.md.
#
#   benches/metrics.sh            (as root)
#
# Brings benches/fixtures/crash-restart (one small web server) up with the release
# `berth` inside a network namespace made for the run, then measures the supervisor's
# resident memory (VmRSS, VmHWM) and CPU ticks over an idle window: with `metrics.listen`
# empty, then set (a reconfigure moves nothing else), then after BENCH_SCRAPES scrapes.
# Scrape latency (`curl` of /metrics) and `berth status --json` are timed by hyperfine in
# the same run. Writes benches/RESULTS-metrics.md (overwriting it); on any exit runs
# `berth down` and removes the namespace and the temporary directory.
#
# Environment:
#   BENCH_IDLE_SECS  idle window for CPU ticks              (60)
#   BENCH_SCRAPES    scrapes before the last memory reading (1000)
#   BENCH_BERTH      a berth binary to use instead of building the release one
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
COMMAND_LINE="benches/metrics.sh${*:+ $*}"
IDLE=${BENCH_IDLE_SECS:-60}
SCRAPES=${BENCH_SCRAPES:-1000}
MANIFEST=$ROOT/benches/fixtures/crash-restart
METRICS=127.0.0.1:18490
PY=/usr/bin/python3

[ "$(id -u)" -eq 0 ] || { echo "benches/metrics.sh: run as root" >&2; exit 1; }
say() { printf '\n== %s\n' "$*" >&2; }

command -v hyperfine >/dev/null || {
  say "installing hyperfine"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hyperfine >/dev/null
}
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

WORK=$(mktemp -d /tmp/berth-metrics.XXXXXX)
chmod 755 "$WORK"
P=$WORK/p
NS=berth-metrics-$$
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
b() { n "$BERTH" --prefix "$P" "$@"; }

say "berth up (metrics off)"
# The manifest's user names, shared: a per-instance user named after this throwaway
# prefix would be left behind by every run.
mkdir -p "$P" && chmod 755 "$P"
printf 'users = "shared"\n' >"$P/site.toml"
b --manifest "$MANIFEST" up >"$WORK/up.txt" 2>&1 || { cat "$WORK/up.txt" >&2; exit 1; }
SUP=$(cat "$P/run/supervisor.pid")

kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
idle() {  # prints "rss_kB hwm_kB anon_kB file_kB ticks" over the idle window
  local t0 t1
  t0=$(ticks "$SUP"); sleep "$IDLE"; t1=$(ticks "$SUP")
  echo "$(kb "$SUP" VmRSS) $(kb "$SUP" VmHWM) $(kb "$SUP" RssAnon) $(kb "$SUP" RssFile) $((t1 - t0))"
}

say "idle ${IDLE} s, metrics off"
read -r OFF_RSS OFF_HWM OFF_ANON OFF_FILE OFF_TICKS < <(idle)

say "metrics on ($METRICS), idle ${IDLE} s"
printf '[metrics]\nlisten = "%s"\n' "$METRICS" >>"$P/site.toml"
b reconfigure >"$WORK/reconfigure.txt" 2>&1 || { cat "$WORK/reconfigure.txt" >&2; exit 1; }
for _ in $(seq 50); do n curl -sf "http://$METRICS/metrics" >/dev/null && break; sleep 0.1; done
[ "$(cat "$P/run/supervisor.pid")" = "$SUP" ] || { echo "the supervisor was restarted" >&2; exit 1; }
read -r ON_RSS ON_HWM ON_ANON ON_FILE ON_TICKS < <(idle)
BYTES=$(n curl -s "http://$METRICS/metrics" | wc -c)
SERIES=$(n curl -s "http://$METRICS/metrics" | grep -vc '^#')

say "scrape and status timings"
n hyperfine -N --warmup 5 --runs 200 --export-json "$WORK/h.json" \
  "curl -s -o /dev/null http://$METRICS/metrics" \
  "$BERTH --prefix $P status --json" >"$WORK/hyperfine.txt" 2>&1
say "$SCRAPES scrapes"
n "$PY" - "$METRICS" "$SCRAPES" <<'EOF2'
import sys, urllib.request
for _ in range(int(sys.argv[2])):
    urllib.request.urlopen(f"http://{sys.argv[1]}/metrics").read()
EOF2
AFTER_RSS=$(kb "$SUP" VmRSS); AFTER_HWM=$(kb "$SUP" VmHWM); AFTER_ANON=$(kb "$SUP" RssAnon); AFTER_FILE=$(kb "$SUP" RssFile)

"$PY" - "$WORK/h.json" >"$WORK/timings.txt" <<'EOF2'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    ms = [t * 1000 for t in r["times"]]
    ms.sort()
    print(f'{r["median"]*1000:.2f}\t{ms[int(len(ms)*0.95)]:.2f}\t{r["command"].split()[0].rsplit("/",1)[-1]}')
EOF2
SCRAPE_MED=$(awk -F'\t' 'NR==1 {print $1}' "$WORK/timings.txt"); SCRAPE_P95=$(awk -F'\t' 'NR==1 {print $2}' "$WORK/timings.txt")
STATUS_MED=$(awk -F'\t' 'NR==2 {print $1}' "$WORK/timings.txt"); STATUS_P95=$(awk -F'\t' 'NR==2 {print $2}' "$WORK/timings.txt")
RATIO=$("$PY" -c "print(f'{$SCRAPE_MED/$STATUS_MED:.2f}')")
TICK_HZ=$(getconf CLK_TCK)

cat >benches/RESULTS-metrics.md <<EOF2
# Metrics endpoint: the supervisor's cost

Produced by \`$COMMAND_LINE\` on $(date -u +%Y-%m-%d) ($BUILD; $(nproc) CPUs, load average
$(cut -d' ' -f1-3 /proc/loadavg) at the end). The fixture is \`benches/fixtures/crash-restart\`
(one service); idle windows of $IDLE s; CPU in ticks of 1/$TICK_HZ s (utime + stime of the
supervisor, all threads).

| supervisor | VmRSS | of it anonymous | of it file-backed (the binary) | VmHWM | CPU ticks while idle |
| --- | --- | --- | --- | --- | --- |
| metrics off | $OFF_RSS kB | $OFF_ANON kB | $OFF_FILE kB | $OFF_HWM kB | $OFF_TICKS |
| metrics on, not scraped | $ON_RSS kB | $ON_ANON kB | $ON_FILE kB | $ON_HWM kB | $ON_TICKS |
| after $SCRAPES scrapes | $AFTER_RSS kB | $AFTER_ANON kB | $AFTER_FILE kB | $AFTER_HWM kB | |

One scrape: $BYTES bytes, $SERIES samples.

| request (hyperfine, 200 runs) | median | p95 |
| --- | --- | --- |
| \`curl\` of /metrics | $SCRAPE_MED ms | $SCRAPE_P95 ms |
| \`berth status --json\` (the same state over the control socket, a new process) | $STATUS_MED ms | $STATUS_P95 ms |

A scrape takes $RATIO× the time of \`berth status --json\`. The text is made at each scrape
from the supervisor's state; nothing runs between scrapes, so the idle figures are the
same with the endpoint on (the listener waits in the kernel).
EOF2
cat benches/RESULTS-metrics.md
