#!/usr/bin/env bash
# Availability during `berth upgrade apply`: a client requests the app every 50 ms
# through nginx while berth takes the ministack fixture 1.0.0 → 1.1.0 (an offline hop
# whose migration rewrites a table) → 1.2.0 (an online hop). See benches/README.md.
#
#   benches/upgrade.sh            (as root)
#
# Writes benches/RESULTS-upgrade.md (overwriting it); on any exit runs `berth down`
# and removes the network namespace and the temporary directory.
#
# Environment:
#   BENCH_ROWS       rows in the table the offline migration rewrites   (300000)
#   BENCH_POLL_MS    the client's interval                              (50)
#   BENCH_BERTH      a berth binary to use instead of building the release one
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
COMMAND_LINE="benches/upgrade.sh${*:+ $*}"
PY=/usr/bin/python3

[ "$(id -u)" -eq 0 ] || { echo "benches/upgrade.sh: run as root" >&2; exit 1; }
command -v ip >/dev/null || { echo "missing: ip (iproute2)" >&2; exit 1; }

if [ -n "${BENCH_BERTH:-}" ]; then
  BERTH=$(realpath "$BENCH_BERTH")
  BUILD="the binary BENCH_BERTH names"
else
  echo "== building the release binary" >&2
  cargo build --release --bin berth
  TARGET_DIR=$(cargo metadata --format-version 1 --no-deps | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  BERTH=$TARGET_DIR/release/berth
  BUILD="release build"
fi

WORK=$(mktemp -d /tmp/berth-upgrade.XXXXXX)
chmod 755 "$WORK"
NS=berth-upgrade-$$
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -d "$WORK/p" ]; then
    "$BERTH" --prefix "$WORK/p" down >/dev/null 2>&1 || echo "warning: berth down failed" >&2
  fi
  ip netns delete "$NS" 2>/dev/null || true
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up

ip netns exec "$NS" "$PY" benches/lib/upgrade.py \
  --berth "$BERTH" --build "$BUILD" --work "$WORK" --root "$ROOT" \
  --rows "${BENCH_ROWS:-300000}" --poll-ms "${BENCH_POLL_MS:-50}" \
  --command-line "$COMMAND_LINE" --out benches/RESULTS-upgrade.md
