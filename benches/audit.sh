#!/usr/bin/env bash
# `berth audit` of a bill of materials (or a release bundle) against a whole advisory
# snapshot (PyPA and RustSec), read as the databases publish it and from the index
# `berth audit --update-from` makes of it: time (hyperfine) and peak memory (GNU time).
# See benches/README.md.
#
#   benches/audit.sh ADVISORY_DIR TARGET [PUBLIC_KEY]
#
# ADVISORY_DIR holds `pypa/` and `rustsec/` as published; TARGET is a CycloneDX or
# SPDX file (`berth sbom` writes one) or a release bundle (then PUBLIC_KEY checks it).
# Writes benches/RESULTS-audit.md (overwriting it). No tool does the same work
# offline to compare with (pip-audit and osv-scanner ask an online service), so the
# figures stand alone; the target is well under a second, so an audit can run on
# every build.
#
# Environment:
#   BENCH_BERTH   a berth binary to use instead of building the release one
#   BENCH_RUNS    runs per command (default 10)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
# The report names the target by its file name only: no path of this machine.
COMMAND_LINE="benches/audit.sh ADVISORY_DIR $(basename "${2:-TARGET}")${3:+ PUBLIC_KEY}"
[ $# -ge 2 ] || { sed -n '2,12p' "$0" >&2; exit 2; }
DB=$(realpath "$1")
TARGET=$(realpath "$2")
KEY=${3:+$(realpath "$3")}
RUNS=${BENCH_RUNS:-10}

command -v hyperfine >/dev/null || {
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends hyperfine time
}
[ -x /usr/bin/time ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends time

if [ -n "${BENCH_BERTH:-}" ]; then
  BERTH=$(realpath "$BENCH_BERTH")
  BUILD="the binary BENCH_BERTH names"
else
  echo "== building the release binary" >&2
  cargo build --release --bin berth
  BERTH=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/berth
  BUILD="release build"
fi

WORK=$(mktemp -d /tmp/berth-audit.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
BENCH_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
export BENCH_LOAD

KEYARG=()
[ -n "$KEY" ] && KEYARG=(--public-key "$KEY")
"$BERTH" audit --update-from "$DB" --db "$WORK/advisories.idx" >"$WORK/update.txt"
INDEX_BYTES=$(stat -c %s "$WORK/advisories.idx")
# The audit's own exit status (1 when something fails) is not the benchmark's.
"$BERTH" audit "$TARGET" "${KEYARG[@]}" --db "$WORK/advisories.idx" --json >"$WORK/report.json" || true

run() { echo "$BERTH audit $TARGET ${KEYARG[*]} --db $1 --json >/dev/null || true"; }
hyperfine --runs "$RUNS" --warmup 1 --export-json "$WORK/times.json" -N \
  -n "berth audit --update-from (read the snapshot, write the index)" \
  "$BERTH audit --update-from $DB --db $WORK/again.idx" \
  -n "berth audit, the snapshot read as published" "bash -c '$(run "$DB")'" \
  -n "berth audit, the index" "bash -c '$(run "$WORK/advisories.idx")'" >&2

peak() { /usr/bin/time -f %M bash -c "$1" 2>&1 >/dev/null | tail -1; }
PEAK_SNAPSHOT=$(peak "$(run "$DB")")
PEAK_INDEX=$(peak "$(run "$WORK/advisories.idx")")

python3 - "$WORK" "$COMMAND_LINE" "$BUILD" "$RUNS" "$INDEX_BYTES" "$PEAK_SNAPSHOT" \
  "$PEAK_INDEX" >"$ROOT/benches/RESULTS-audit.md" <<'PY'
import json, os, subprocess, sys
work, command, build, runs, index_bytes, peak_snap, peak_idx = sys.argv[1:]
times = json.load(open(os.path.join(work, "times.json")))["results"]
report = json.load(open(os.path.join(work, "report.json")))
update = open(os.path.join(work, "update.txt")).read().strip().splitlines()[1:]
when = subprocess.run(["date", "-u", "+%Y-%m-%d %H:%M UTC"], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
v = report["verdict"]
print(f"""# Audit benchmark

Command: `{command}` ({build} of berth; {runs} runs per command, hyperfine means, one
warm-up run). {os.cpu_count()} CPUs ({cpu}); run on {when}, load average at the start
{os.environ.get("BENCH_LOAD", "?")}.

Target: {os.path.basename(report["target"].split(" (")[0])} ({report["target"].rsplit("(", 1)[-1].rstrip(")")}), {report["packages"]} packages. Advisory data:""")
for line in update:
    print(f"- {line.strip()}")
print(f"""
The index is {int(index_bytes) / 1e3:.0f} KB. Findings: {len(v["failing"])} failing,
{len(v["below_threshold"])} below the threshold, {len(v["informational"])} informational.

| command | time | peak memory |
| --- | --- | --- |""")
peaks = ["", f"{int(peak_snap) / 1024:.1f} MiB", f"{int(peak_idx) / 1024:.1f} MiB"]
for r, p in zip(times, peaks):
    print(f"| {r['command']} | {r['mean'] * 1000:.1f} ms ± {r['stddev'] * 1000:.1f} | {p} |")
print("""
An audit against the installed index reads one small file and matches in memory: it
can run on every build and every `berth status`. Reading the snapshot as published
parses every YAML and TOML file, which is what `--update-from` does once per new
snapshot.""")
PY
cat "$ROOT/benches/RESULTS-audit.md"
