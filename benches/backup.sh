#!/usr/bin/env bash
# Backup and restore throughput of berth beside the raw tools doing the same work, on
# the same data, in the same run. See the header of benches/RESULTS-backup.md.
#
#   SCALE=130 benches/backup.sh          (as root, Debian 12; about 30 min at SCALE=130)
#   SCALE=5 FILES=20 benches/backup.sh   (a quick check of the script itself)
#
# Builds the release binary, brings the ministack fixture up in a fresh prefix under
# /tmp (ports 47432, 47379, 47001, 47080 on 127.0.0.1), fills it with a pgbench database
# and a tree of files, then REPS times each, alternating raw tool / berth:
#
#   backup   raw:   pg_dump --format=directory --jobs=N --compress=0 --no-sync, then
#                   tar -c (dump + data/app) | zstd -3 -T0 > file, sync file, rm the dump
#            berth: berth backup create (its own pg_dump into staging, one zstd archive
#                   with the SHA-256 of every entry, encrypted secrets, fsync); its
#                   progress lines split the time into checks, dump and archive
#   restore  raw:   zstd -dc | tar -x, createdb, pg_restore --jobs=N (into the source
#                   instance's server, which is up)
#            berth: berth restore into a new prefix (the source instance is down): its
#                   "stage" (verify + extract) and "load-database" (pg_restore) steps
#                   are the comparable part; the whole restore is reported too
#   verify   raw:   zstd -t, then sha256sum of every extracted file; and, as a floor for
#                   the same CPU work, zstd -dc | openssl dgst -sha256 (coreutils'
#                   sha256sum has no SHA-NI code path on Debian 12; openssl has)
#            berth: berth backup verify
#
# Throughput = (size of the database + size of the files) / seconds; ratio = berth
# throughput / raw throughput = raw seconds / berth seconds (medians). Before every
# measured command: sync, and the page cache is dropped when the kernel allows it.
# Prints the report and writes benches/RESULTS-backup.md. Always runs `berth down` and
# removes its temporary directory on exit.
#
# Environment:
#   SCALE        pgbench scale factor (130 ≈ 2 GB)                 (130)
#   FILES        files written into the app's data directory       (300)
#   FILE_KB      size of each file in KiB; even-numbered files are random bytes,
#                odd-numbered ones generated text                  (1024)
#   REPS         repetitions of each measurement                   (5)
#   DROP_CACHES  1: drop the page cache before each measured command if allowed (1)
#   RESULTS      where to write the report                         (benches/RESULTS-backup.md)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SCALE=${SCALE:-130}
FILES=${FILES:-300}
FILE_KB=${FILE_KB:-1024}
REPS=${REPS:-5}
DROP_CACHES=${DROP_CACHES:-1}
RESULTS=${RESULTS:-$ROOT/benches/RESULTS-backup.md}
COMMAND_LINE=""
for v in SCALE FILES FILE_KB REPS DROP_CACHES; do
  if printenv "$v" >/dev/null; then COMMAND_LINE+="$v=${!v} "; fi
done
COMMAND_LINE+="benches/backup.sh"
MANIFEST=$ROOT/tests/fixtures/ministack
PG_PORT=47432 REDIS_PORT=47379 APP_PORT=47001 WEB_PORT=47080
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)

[ "$(id -u)" -eq 0 ] || { echo "benches/backup.sh: run as root (services run as their own users)" >&2; exit 1; }
exec 3>&2                      # progress, also while a measured command's stderr is redirected
say() { printf '\n== %s\n' "$*" >&3; }
die() { echo "benches/backup.sh: $*" >&2; exit 1; }

# --- what the manifest says ---------------------------------------------------------------
eval "$("$PY" - "$MANIFEST/berth.toml" <<'EOF'
import sys, tomllib, shlex
m = tomllib.load(open(sys.argv[1], "rb"))
db = m["backup"]["database"]
pg = m["components"][m["services"][db["service"]]["component"]]
vals = {
    "PG_USER": pg["user"],
    "APP_USER": m["components"]["app"]["user"],
    "DB_NAME": db["name"],
    "DB_OWNER": db["owner"],
    "PGBIN": db["bin_dir"],
    "DATA_DIR": m["backup"]["data_dirs"][0],
}
for k, v in vals.items():
    print(f"{k}={shlex.quote(v)}")
EOF
)"

# --- tools --------------------------------------------------------------------------------
if [ ! -x "$PGBIN/pgbench" ] || [ ! -x "$PGBIN/pg_dump" ]; then
  say "installing postgresql-15 (pgbench, pg_dump)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null 2>&1 || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15 >/dev/null
  }
fi
need_pkgs=()
command -v zstd >/dev/null || need_pkgs+=(zstd)
command -v openssl >/dev/null || need_pkgs+=(openssl)
[ -x /usr/bin/time ] || need_pkgs+=(time)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  say "installing ${need_pkgs[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null 2>&1 || {
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_pkgs[@]}" >/dev/null
  }
fi
for tool in tar sha256sum runuser "$PGBIN/pgbench" "$PGBIN/pg_dump" "$PGBIN/pg_restore" "$PGBIN/createdb"; do
  command -v "$tool" >/dev/null || die "missing: $tool"
done

# --- nothing may listen on the ports --------------------------------------------------------
for port in $PG_PORT $REDIS_PORT $APP_PORT $WEB_PORT; do
  if "$PY" -c 'import socket,sys; s=socket.socket(); s.settimeout(0.5); sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)' "$port"; then
    die "something already listens on 127.0.0.1:$port"
  fi
done

# --- disk space -------------------------------------------------------------------------------
# The database (~15.5 MiB per scale unit), a raw dump and berth's staging dump, the raw
# extraction, the database restored by the raw tools and by berth, berth's staging
# extraction, WAL: about six times the data, plus 2 GiB.
EST_DATA=$(( SCALE * 15872 * 1024 + FILES * FILE_KB * 1024 ))
NEED=$(( 6 * EST_DATA + 2 * 1024 * 1024 * 1024 ))
AVAIL=$(( $(df --output=avail -k /tmp | tail -1) * 1024 ))
df -h /tmp >&2
echo "estimated data: $((EST_DATA >> 20)) MiB; space needed: about $((NEED >> 20)) MiB; available in /tmp: $((AVAIL >> 20)) MiB" >&2
[ "$AVAIL" -ge "$NEED" ] || die "not enough space in /tmp for SCALE=$SCALE FILES=$FILES (need about $((NEED >> 30)) GiB, have $((AVAIL >> 30)) GiB): lower SCALE or FILES"

# The code measured: the commit and any uncommitted changes outside benches/, as built.
COMMIT=$(git rev-parse HEAD 2>/dev/null || echo unknown)
DIRTY=$(git status --porcelain --untracked-files=no 2>/dev/null | grep -v '^.. benches/' | awk '{ print $2 }' | paste -sd' ' - || true)
say "building the release binary"
cargo build --release --locked -p berth-cli
BERTH=$(cargo metadata --format-version 1 --no-deps | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/berth
[ -x "$BERTH" ] || die "no binary at $BERTH"

# --- instance ---------------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/berth-backup-bench.XXXXXX)
chmod 755 "$WORK"              # service users must traverse it
P=$WORK/p
RAW=$WORK/raw
DATA=$WORK/results
CURRENT_Q=""
mkdir -p "$P" "$RAW/d" "$DATA"
chmod 755 "$RAW"
chown "$PG_USER" "$RAW/d" 2>/dev/null || true    # the user may exist only after `berth up`

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$CURRENT_Q" ] && [ -d "$CURRENT_Q" ]; then
    "$BERTH" --prefix "$CURRENT_Q" down >/dev/null 2>&1 || echo "warning: berth down ($CURRENT_Q) failed" >&2
  fi
  if [ -d "$P" ]; then
    "$BERTH" --prefix "$P" down >/dev/null 2>&1 || echo "warning: berth down ($P) failed" >&2
  fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

b() { "$BERTH" --prefix "$P" "$@"; }
# A PostgreSQL client tool as the database user, through the instance's socket.
pgtool() { local prog=$1; shift; (cd / && runuser -u "$PG_USER" -- "$PGBIN/$prog" -h "$P/run/postgresql" -p "$PG_PORT" "$@"); }
pgsql() { local db=$1; shift; pgtool psql -X -q -A -t -v ON_ERROR_STOP=1 -d "$db" -c "$*"; }

# Before every measured command: flush dirty pages (so earlier writes are not paid for
# by the next command) and, if allowed, drop the page cache.
CACHE_MODE=warm
if [ "$DROP_CACHES" = 1 ] && sync && { echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
  CACHE_MODE=cold
fi
settle() {
  sync
  if [ "$CACHE_MODE" = cold ]; then echo 3 >/proc/sys/vm/drop_caches; fi
}

# timed PHASE REP SIDE PART CMD... — runs CMD from /, appends to runs.tsv: wall seconds,
# user and system CPU seconds of CMD and its children (GNU time), 1-minute load average.
timed() {
  local phase=$1 rep=$2 side=$3 part=$4 load t0 t1 rc u s
  shift 4
  load=$(cut -d' ' -f1 /proc/loadavg)
  t0=$EPOCHREALTIME
  set +e
  (cd / && /usr/bin/time -f '%U %S' -o "$WORK/cpu" "$@")
  rc=$?
  set -e
  t1=$EPOCHREALTIME
  if [ "$rc" -ne 0 ]; then
    echo "failed (exit $rc): $*" >&2
    return "$rc"
  fi
  read -r u s <"$WORK/cpu"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$phase" "$rep" "$side" "$part" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" "$u" "$s" "$load" >>"$DATA/runs.tsv"
  printf '   %-8s %-5s %-12s %8.2f s\n' "$phase" "$side" "$part" \
    "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')" >&3
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

say "berth up"
cat >"$P/site.toml" <<EOF
external_url = "http://127.0.0.1:$WEB_PORT/"

[postgresql]
port = $PG_PORT

[redis]
port = $REDIS_PORT

[app]
port = $APP_PORT
EOF
b --manifest "$MANIFEST" up >"$DATA/up.txt" 2>&1 || { cat "$DATA/up.txt" >&2; die "berth up failed"; }
chown "$PG_USER" "$RAW/d"
# Both keys in one file: its signing key is what a new prefix trusts the archive by.
KEY=$WORK/backup.keys
b backup key --export "$KEY" >/dev/null
JOBS=$(b config show | awk '/^\[backup\]/ { s = 1; next } /^\[/ { s = 0 } s && $1 == "jobs" { print $3 }')
[ -n "$JOBS" ] || die "could not read backup.jobs from \`berth config show\`"

# --- dataset ----------------------------------------------------------------------------------
say "generating the dataset: pgbench -i -s $SCALE, $FILES files of $FILE_KB KiB"
t0=$EPOCHREALTIME
pgtool pgbench -i -q -s "$SCALE" "$DB_NAME" >"$DATA/pgbench.txt" 2>&1 || { cat "$DATA/pgbench.txt" >&2; die "pgbench -i failed"; }
pgsql "$DB_NAME" "CHECKPOINT" >/dev/null
t1=$EPOCHREALTIME
FILES_DIR=$P/data/$DATA_DIR/bench-files
mkdir -p "$FILES_DIR"
"$PY" - "$FILES_DIR" "$FILES" "$FILE_KB" <<'EOF'
import os, random, sys
out, count, kb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
size = kb * 1024
rng = random.Random(42)
words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 11)))
         for _ in range(5000)]
for i in range(count):
    path = os.path.join(out, f"file-{i:05d}.{'bin' if i % 2 == 0 else 'txt'}")
    if i % 2 == 0:
        data = os.urandom(size)
    else:
        parts, n = [], 0
        while n < size:
            line = " ".join(rng.choices(words, k=rng.randint(6, 16))) + ".\n"
            parts.append(line)
            n += len(line)
        data = "".join(parts).encode()[:size]
    with open(path, "wb") as f:
        f.write(data)
EOF
chown -R "$(stat -c %U:%G "$P/data/$DATA_DIR")" "$FILES_DIR"
t2=$EPOCHREALTIME
DB_BYTES=$(pgsql postgres "SELECT pg_database_size('$DB_NAME')")
FILES_BYTES=$(find "$P/data/$DATA_DIR" -type f -printf '%s\n' | awk '{ n += $1 } END { print n + 0 }')
ROWS=$(pgsql "$DB_NAME" "SELECT count(*) FROM pgbench_accounts")
{
  printf 'db_bytes\t%s\n' "$DB_BYTES"
  printf 'files_bytes\t%s\n' "$FILES_BYTES"
  printf 'rows\t%s\n' "$ROWS"
  printf 'pgbench_seconds\t%s\n' "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
  printf 'files_seconds\t%s\n' "$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.1f", b - a }')"
} >"$DATA/dataset.tsv"
echo "database: $((DB_BYTES >> 20)) MiB ($ROWS rows in pgbench_accounts), files: $((FILES_BYTES >> 20)) MiB" >&2

# === 1. backup ================================================================================
say "1. backup (x$REPS, raw then berth; $JOBS pg_dump jobs; page cache: $CACHE_MODE)"
for i in $(seq 1 "$REPS"); do
  rm -rf "$RAW/d/db" "$RAW/raw.tar.zst"
  settle
  timed backup "$i" raw pg_dump runuser -u "$PG_USER" -- "$PGBIN/pg_dump" -h "$P/run/postgresql" -p "$PG_PORT" \
    --format=directory --jobs="$JOBS" --compress=0 --no-sync -f "$RAW/d/db" "$DB_NAME"
  [ "$i" -eq 1 ] && printf 'dump_bytes\t%s\n' "$(find "$RAW/d/db" -type f -printf '%s\n' | awk '{ n += $1 } END { print n + 0 }')" >>"$DATA/dataset.tsv"
  timed backup "$i" raw tar_zstd bash -c 'set -o pipefail; tar -cf - -C "$1" db -C "$2" "$3" | zstd -3 -T0 -q >"$4"' \
    _ "$RAW/d" "$P/data" "$DATA_DIR" "$RAW/raw.tar.zst"
  timed backup "$i" raw fsync sync "$RAW/raw.tar.zst"
  timed backup "$i" raw cleanup rm -rf "$RAW/d/db"
  printf 'raw_archive_bytes\t%s\n' "$(stat -c %s "$RAW/raw.tar.zst")" >>"$DATA/dataset.tsv"

  rm -f "$P"/backups/*.berth.tar.zst     # only the newest archive is kept
  settle
  # Without --json, so that berth prints its steps with their durations.
  timed backup "$i" berth create "$BERTH" --prefix "$P" backup create >"$DATA/backup-$i.out" 2>"$DATA/backup-$i.err"
  printf 'berth_archive_bytes\t%s\n' "$(stat -c %s "$P"/backups/*.berth.tar.zst)" >>"$DATA/dataset.tsv"
done
ARCHIVE=$(ls "$P"/backups/*.berth.tar.zst)

# === 2. restore ===============================================================================
say "2. restore (x$REPS, raw then berth)"
EXPECTED_FILES=$(find "$FILES_DIR" -type f | wc -l)
for i in $(seq 1 "$REPS"); do
  # raw: into the source instance's server, which is up
  rm -rf "$RAW/x"
  mkdir -m 755 "$RAW/x"
  settle
  timed restore "$i" raw untar bash -c 'set -o pipefail; zstd -dc -q "$1" | tar -x -C "$2"' _ "$RAW/raw.tar.zst" "$RAW/x"
  timed restore "$i" raw createdb runuser -u "$PG_USER" -- "$PGBIN/createdb" -h "$P/run/postgresql" -p "$PG_PORT" \
    -O "$DB_OWNER" -T template0 -E UTF8 "${DB_NAME}_raw"
  timed restore "$i" raw pg_restore runuser -u "$PG_USER" -- "$PGBIN/pg_restore" -h "$P/run/postgresql" -p "$PG_PORT" \
    --jobs="$JOBS" --exit-on-error --no-owner --role="$DB_OWNER" -d "${DB_NAME}_raw" "$RAW/x/db"
  [ "$(pgsql "${DB_NAME}_raw" "SELECT count(*) FROM pgbench_accounts")" = "$ROWS" ] || die "raw restore $i: wrong row count"
  [ "$(find "$RAW/x/$DATA_DIR/bench-files" -type f | wc -l)" = "$EXPECTED_FILES" ] || die "raw restore $i: files missing"
  pgtool dropdb "${DB_NAME}_raw"

  # berth: into a new prefix, the source instance stopped (same ports)
  b down >/dev/null
  CURRENT_Q=$WORK/q$i
  settle
  timed restore "$i" berth restore "$BERTH" --prefix "$CURRENT_Q" --manifest "$MANIFEST" restore "$ARCHIVE" --key "$KEY" --json \
    >"$DATA/restore-$i.json" 2>"$DATA/restore-$i.err" || { cat "$DATA/restore-$i.err" >&2; die "berth restore $i failed"; }
  q_rows=$(cd / && runuser -u "$PG_USER" -- "$PGBIN/psql" -X -A -t -h "$CURRENT_Q/run/postgresql" -p "$PG_PORT" -d "$DB_NAME" -c "SELECT count(*) FROM pgbench_accounts")
  [ "$q_rows" = "$ROWS" ] || die "berth restore $i: wrong row count ($q_rows)"
  [ "$(find "$CURRENT_Q/data/$DATA_DIR/bench-files" -type f | wc -l)" = "$EXPECTED_FILES" ] || die "berth restore $i: files missing"
  "$BERTH" --prefix "$CURRENT_Q" down >/dev/null
  rm -rf "$CURRENT_Q"
  CURRENT_Q=""
  if [ "$i" -lt "$REPS" ]; then
    b up >/dev/null 2>&1 || die "berth up of the source instance failed"
  fi
done

# === 3. verify ================================================================================
say "3. verify (x$REPS, raw then berth)"
for i in $(seq 1 "$REPS"); do
  settle
  timed verify "$i" raw zstd_t zstd -t -q "$RAW/raw.tar.zst"
  timed verify "$i" raw sha256sum bash -c 'cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum >/dev/null' _ "$RAW/x"
  settle
  timed verify "$i" raw stream bash -c 'set -o pipefail; zstd -dc -q "$1" | openssl dgst -sha256 >/dev/null' _ "$RAW/raw.tar.zst"
  settle
  timed verify "$i" berth verify "$BERTH" --prefix "$P" backup verify "$ARCHIVE" --json >"$DATA/verify-$i.json" 2>"$DATA/verify-$i.err"
done

# === report ===================================================================================
say "writing $RESULTS"
{
  printf 'date\t%s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  printf 'commit\t%s\n' "$COMMIT"
  printf 'dirty\t%s\n' "$DIRTY"
  printf 'command\t%s\n' "$COMMAND_LINE"
  printf 'scale\t%s\n' "$SCALE"
  printf 'files\t%s\n' "$FILES"
  printf 'file_kb\t%s\n' "$FILE_KB"
  printf 'reps\t%s\n' "$REPS"
  printf 'jobs\t%s\n' "$JOBS"
  printf 'cache\t%s\n' "$CACHE_MODE"
  printf 'nproc\t%s\n' "$(nproc)"
  printf 'cpu\t%s\n' "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  printf 'memory\t%s\n' "$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
  src=$(findmnt -no SOURCE,FSTYPE -T "$WORK" | head -1)
  dev=$(basename "${src%% *}")
  printf 'disk\t%s\n' "$src, $(case "$dev" in vd*) echo "virtio block device";; nvme*) echo NVMe;; *) [ "$(cat /sys/block/"$dev"/queue/rotational 2>/dev/null)" = 0 ] && echo SSD || echo "rotational or unknown";; esac)"
  printf 'kernel\t%s\n' "$(uname -sr)"
  printf 'os\t%s\n' "$(. /etc/os-release && echo "$PRETTY_NAME")"
  printf 'berth\t%s\n' "$("$BERTH" --version 2>/dev/null || echo '?')"
  printf 'postgresql\t%s\n' "$("$PGBIN/postgres" --version | awk '{ print $3 }')"
  printf 'zstd\t%s\n' "$(zstd --version | sed 's/^\*\*\* //; s/ \*\*\*$//; s/, by .*//')"
  printf 'tar\t%s\n' "$(tar --version | head -1)"
  printf 'openssl\t%s\n' "$(openssl version | awk '{ print $1, $2 }')"
  printf 'load_start\t%s\n' "$LOAD_START"
  printf 'load_end\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$DATA/meta.tsv"

"$PY" - "$DATA" "$RESULTS" <<'EOF'
import json, re, statistics, sys
data, out_path = sys.argv[1], sys.argv[2]
meta = dict(l.rstrip("\n").split("\t", 1) for l in open(f"{data}/meta.tsv"))
ds = dict(l.rstrip("\n").split("\t", 1) for l in open(f"{data}/dataset.tsv"))  # the last value of each
reps = int(meta["reps"])
R = range(1, reps + 1)
runs = {}   # (phase, side, part) -> {rep: (wall, cpu, load)}
for l in open(f"{data}/runs.tsv"):
    phase, rep, side, part, wall, u, s, load = l.rstrip("\n").split("\t")
    runs.setdefault((phase, side, part), {})[int(rep)] = (float(wall), float(u) + float(s), load)
def W(phase, side, part, i): return runs[(phase, side, part)][i][0]
def C(phase, side, part, i): return runs[(phase, side, part)][i][1]
def L(phase, side, part, i): return runs[(phase, side, part)][i][2]
med = statistics.median
def M(f): return med(f(i) for i in R)
MiB = 1 << 20
db_b, files_b = int(ds["db_bytes"]), int(ds["files_bytes"])
inp = db_b + files_b
def rate(sec, n=inp): return n / MiB / sec
def human(n):
    n = float(n)
    for unit in ["B", "KiB", "MiB", "GiB", "TiB"]:
        if n < 1024 or unit == "TiB":
            return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
def pct(x): return f"{100 * x:.0f} %"
def verdict(x): return "met" if x >= 0.8 else "**NOT met**"

# berth backup create: its progress lines (stderr) and summary (stdout)
def backup_steps(i):
    st = {"check": 0.0, "dump": 0.0, "write": 0.0}
    for line in open(f"{data}/backup-{i}.err", encoding="utf-8"):
        m = re.match(r"✓ (.*) \(([0-9.]+) s\)\s*$", line.strip())
        if not m:
            continue
        name, secs = m.group(1), float(m.group(2))
        key = "check" if name.startswith("Checking") else "dump" if name.startswith("Dumping") else \
              "write" if name.startswith("Writing") else "other_steps"
        st[key] = st.get(key, 0.0) + secs
    out = open(f"{data}/backup-{i}.out", encoding="utf-8").read()
    m = re.search(r"\(([0-9.]+ \w+) of data.*\) in ([0-9.]+) s", out)
    st["content"] = m.group(1) if m else "?"
    st["wall"] = W("backup", "berth", "create", i)
    st["other"] = st["wall"] - st["check"] - st["dump"] - st["write"] - st.get("other_steps", 0.0)
    return st
BK = {i: backup_steps(i) for i in R}
RS = {i: json.load(open(f"{data}/restore-{i}.json")) for i in R}
VF = {i: json.load(open(f"{data}/verify-{i}.json")) for i in R}

def rsteps(i):
    st = dict((n, s) for n, s in RS[i]["steps"])
    if "stage" not in st:   # not in berth's JSON: the rest of the whole restore's time
        st["stage"] = RS[i]["seconds"] - sum(st.values())
    return st
S = {i: rsteps(i) for i in R}

raw_parts = ["pg_dump", "tar_zstd", "fsync", "cleanup"]
raw_b = lambda i: sum(W("backup", "raw", p, i) for p in raw_parts)
raw_b_core = lambda i: W("backup", "raw", "pg_dump", i) + W("backup", "raw", "tar_zstd", i)
raw_b_tail = lambda i: sum(W("backup", "raw", p, i) for p in raw_parts[1:])
ber_b = lambda i: BK[i]["wall"]
ber_b_tail = lambda i: BK[i]["write"] + BK[i]["other"] + BK[i]["check"]
raw_r = lambda i: sum(W("restore", "raw", p, i) for p in ["untar", "createdb", "pg_restore"])
raw_load = lambda i: W("restore", "raw", "createdb", i) + W("restore", "raw", "pg_restore", i)
ber_cmp = lambda i: S[i]["stage"] + S[i]["load-database"]
ber_whole = lambda i: W("restore", "berth", "restore", i)
ber_other = lambda i: sum(S[i].get(k, 0.0) for k in ["stop", "files", "swap-database", "start", "commit"])
raw_v = lambda i: W("verify", "raw", "zstd_t", i) + W("verify", "raw", "sha256sum", i)
floor_v = lambda i: W("verify", "raw", "stream", i)
ber_v = lambda i: W("verify", "berth", "verify", i)
content = VF[reps]["bytes"]

b_ratio = M(raw_b) / M(ber_b)
r_ratio = M(raw_r) / M(ber_cmp)
v_ratio = M(raw_v) / M(ber_v)

o = []
w = o.append
w("# Backup and restore throughput: berth beside the raw tools\n")
w("Generated by `benches/backup.sh` — do not edit by hand; the script's header says what each "
  "side runs. Wall-clock seconds unless noted. Every figure comes from one run of the script, "
  "berth and the raw tools alternating (raw first, then berth, each repetition) on the same data.\n")
w("| | |\n| --- | --- |")
w(f"| date | {meta['date']} |")
dirty = f" (uncommitted changes in: {meta['dirty']})" if meta.get("dirty") else ""
w(f"| commit | `{meta['commit']}`{dirty} |")
w(f"| command | `{meta['command']}` |")
w(f"| machine | {meta['nproc']} CPUs ({meta['cpu']}), {meta['memory']} RAM |")
w(f"| disk | {meta['disk']} |")
w(f"| kernel / OS | {meta['kernel']} / {meta['os']} |")
w(f"| tools | {meta['berth']} (release build), PostgreSQL {meta['postgresql']}, {meta['zstd']}, {meta['tar']}, {meta['openssl']} |")
w(f"| load average (1/5/15 min) at start / at end | {meta['load_start']} / {meta['load_end']} |")
cache = ("dropped before every measured command (`sync; echo 3 > /proc/sys/vm/drop_caches`)"
         if meta["cache"] == "cold" else
         "warm: dropping it was not allowed, so both sides run with whatever is cached (`sync` before each command)")
w(f"| page cache | {cache} |")
w(f"| parallelism | pg_dump / pg_restore `--jobs={meta['jobs']}` on both sides (berth's `backup.jobs`); "
  f"zstd: berth {meta['nproc']} worker threads, raw `-T0` ({meta['nproc']}) |")
w(f"| repetitions | {reps} of each; the figures compared are medians |")
w("")
w("## Summary\n")
w("Throughput = (database + files) / seconds, "
  f"{human(inp)} here; berth / raw = raw seconds / berth seconds (medians). Target: berth at 80 % of the raw throughput or more.\n")
w("| | raw (s) | berth (s) | raw MiB/s | berth MiB/s | berth / raw |")
w("| --- | ---: | ---: | ---: | ---: | ---: |")
w(f"| backup: pg_dump + tar \\| zstd (+ sync, rm) vs `berth backup create` | {M(raw_b):.2f} | {M(ber_b):.2f} | {rate(M(raw_b)):.1f} | {rate(M(ber_b)):.1f} | **{pct(b_ratio)}** ({verdict(b_ratio)}) |")
w(f"| restore: zstd -dc \\| tar -x + createdb + pg_restore vs berth's stage + load-database | {M(raw_r):.2f} | {M(ber_cmp):.2f} | {rate(M(raw_r)):.1f} | {rate(M(ber_cmp)):.1f} | **{pct(r_ratio)}** ({verdict(r_ratio)}) |")
w(f"| restore: the same raw work vs berth's whole restore (a running instance from nothing) | {M(raw_r):.2f} | {M(ber_whole):.2f} | {rate(M(raw_r)):.1f} | {rate(M(ber_whole)):.1f} | {pct(M(raw_r) / M(ber_whole))} |")
w(f"| verify: zstd -t + sha256sum of the files vs `berth backup verify` | {M(raw_v):.2f} | {M(ber_v):.2f} | {rate(M(raw_v), content):.1f} | {rate(M(ber_v), content):.1f} | {pct(v_ratio)} |")
w("")
w(f"(Verify throughput is over the archive's content, {human(content)}: the dump is smaller than the database.)\n")

w("## Dataset\n")
w("| | |\n| --- | ---: |")
w(f"| database `app`: `pgbench -i -s {meta['scale']}` ({int(ds['rows']):,} rows in `pgbench_accounts`), `pg_database_size` | {human(db_b)} |")
w(f"| files in `data/app`: {meta['files']} × {meta['file_kb']} KiB, half random bytes, half generated text | {human(files_b)} |")
w(f"| **input** (the throughput numerator) | **{human(inp)}** |")
w(f"| pg_dump directory (`--compress=0`) | {human(int(ds['dump_bytes']))} |")
w(f"| raw archive (`tar \\| zstd -3`) | {human(int(ds['raw_archive_bytes']))} |")
w(f"| berth archive (content {BK[reps]['content']}; {VF[reps]['entries']} entries, each with its SHA-256) | {human(int(ds['berth_archive_bytes']))} |")
w(f"| time to generate: pgbench -i + CHECKPOINT / files | {ds['pgbench_seconds']} s / {ds['files_seconds']} s |")
w("")

w("## Backup\n")
w("Raw: `pg_dump --format=directory --jobs=N --compress=0 --no-sync` (berth's options) as the "
  "PostgreSQL user through the socket; `tar -c` of the dump and `data/app` piped into "
  "`zstd -3 -T0`; `sync` of the archive file (berth fsyncs its archive); `rm -rf` of the dump "
  "(berth removes its staging). berth: `berth backup create`; its progress lines give the checks "
  "(service state, database size, free space), the dump and the archive (read, SHA-256 and "
  "compress every entry, encrypt the secrets, fsync); *other* is the rest of the wall time: "
  "loading the manifest and site config, rendering, removing the staging, exiting.\n")
w("| run | raw pg_dump | raw tar \\| zstd | raw sync | raw rm | **raw total** | berth checks | berth pg_dump | berth archive | berth other | **berth total** | load at start (raw / berth) |")
w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for i in R:
    w(f"| {i} | {W('backup','raw','pg_dump',i):.2f} | {W('backup','raw','tar_zstd',i):.2f} | {W('backup','raw','fsync',i):.2f} | "
      f"{W('backup','raw','cleanup',i):.2f} | **{raw_b(i):.2f}** | {BK[i]['check']:.1f} | {BK[i]['dump']:.1f} | {BK[i]['write']:.1f} | "
      f"{BK[i]['other']:.2f} | **{ber_b(i):.2f}** | {L('backup','raw','pg_dump',i)} / {L('backup','berth','create',i)} |")
w(f"| **median** | {M(lambda i: W('backup','raw','pg_dump',i)):.2f} | {M(lambda i: W('backup','raw','tar_zstd',i)):.2f} | "
  f"{M(lambda i: W('backup','raw','fsync',i)):.2f} | {M(lambda i: W('backup','raw','cleanup',i)):.2f} | **{M(raw_b):.2f}** | "
  f"{M(lambda i: BK[i]['check']):.1f} | {M(lambda i: BK[i]['dump']):.1f} | {M(lambda i: BK[i]['write']):.1f} | "
  f"{M(lambda i: BK[i]['other']):.2f} | **{M(ber_b):.2f}** | |")
w("")
w(f"Throughput: raw **{rate(M(raw_b)):.1f} MiB/s**, berth **{rate(M(ber_b)):.1f} MiB/s**: berth at **{pct(b_ratio)}**. "
  f"Against pg_dump + tar | zstd alone (no sync, no rm, {M(raw_b_core):.2f} s): {pct(M(raw_b_core) / M(ber_b))}.\n")
w("CPU seconds (user + system, median; the PostgreSQL server's work is in neither): raw pg_dump client "
  f"{M(lambda i: C('backup','raw','pg_dump',i)):.2f}, tar + zstd {M(lambda i: C('backup','raw','tar_zstd',i)):.2f}; "
  f"berth, the whole process with its pg_dump client, {M(lambda i: C('backup','berth','create',i)):.2f}.\n")

w("## Restore\n")
w("Raw: `zstd -dc | tar -x`, then `createdb` and `pg_restore --jobs=N --exit-on-error --no-owner "
  "--role=app` into a new database of the source instance's running server (dropped afterwards). "
  "berth: `berth restore ARCHIVE --key KEY --json` into a new prefix, the source instance stopped "
  "(same ports). The comparable part is **stage** (verify every checksum while extracting, "
  "`pg_restore --list`, decrypt the secrets) + **load-database** (create the database, `pg_restore "
  "--jobs=N`), both from berth's JSON (a build whose JSON leaves out `stage` gets it as its "
  "`seconds` − the listed steps). Outside the comparable part: *prepare-database* (configuration, the app's virtualenv, "
  "initdb, PostgreSQL start, the `createdb` hook) and *swap + start + commit* (rename the database "
  "into place, start the stack until its health URL answers, drop the staging).\n")
w("| run | raw zstd -dc \\| tar -x | raw createdb | raw pg_restore | **raw total** | berth stage | berth load-database | **berth stage + load** | berth prepare-database | berth swap + start + commit | berth whole restore | load at start (raw / berth) |")
w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for i in R:
    w(f"| {i} | {W('restore','raw','untar',i):.2f} | {W('restore','raw','createdb',i):.2f} | {W('restore','raw','pg_restore',i):.2f} | "
      f"**{raw_r(i):.2f}** | {S[i]['stage']:.2f} | {S[i]['load-database']:.2f} | **{ber_cmp(i):.2f}** | "
      f"{S[i]['prepare-database']:.2f} | {ber_other(i):.2f} | {ber_whole(i):.2f} | {L('restore','raw','untar',i)} / {L('restore','berth','restore',i)} |")
w(f"| **median** | {M(lambda i: W('restore','raw','untar',i)):.2f} | {M(lambda i: W('restore','raw','createdb',i)):.2f} | "
  f"{M(lambda i: W('restore','raw','pg_restore',i)):.2f} | **{M(raw_r):.2f}** | {M(lambda i: S[i]['stage']):.2f} | "
  f"{M(lambda i: S[i]['load-database']):.2f} | **{M(ber_cmp):.2f}** | {M(lambda i: S[i]['prepare-database']):.2f} | "
  f"{M(ber_other):.2f} | {M(ber_whole):.2f} | |")
w("")
ru, bs = M(lambda i: W('restore','raw','untar',i)), M(lambda i: S[i]['stage'])
rl, bl = M(raw_load), M(lambda i: S[i]['load-database'])
w(f"Throughput of the comparable part: raw **{rate(M(raw_r)):.1f} MiB/s**, berth **{rate(M(ber_cmp)):.1f} MiB/s**: "
  f"berth at **{pct(r_ratio)}**. Unpacking alone: raw {ru:.2f} s, berth's stage {bs:.2f} s ({pct(ru / bs)}); "
  f"loading the database: raw createdb + pg_restore {rl:.2f} s, berth {bl:.2f} s ({pct(rl / bl)}). "
  f"berth's whole restore: {M(ber_whole):.1f} s ({rate(M(ber_whole)):.1f} MiB/s).\n")
w("CPU seconds (median, client side): raw zstd + tar "
  f"{M(lambda i: C('restore','raw','untar',i)):.2f}, pg_restore {M(lambda i: C('restore','raw','pg_restore',i)):.2f}; "
  f"berth's whole restore, with every tool it ran (the virtualenv build included), {M(lambda i: C('restore','berth','restore',i)):.2f}.\n")

w("## Verify\n")
w("berth: `berth backup verify ARCHIVE` (decompress everything, check the SHA-256 of every entry "
  "against the manifest, `pg_restore --list` of the dump). Raw: `zstd -t` of the archive (page "
  "cache dropped first), then `sha256sum` of every file the raw restore extracted. Floor: "
  "`zstd -dc | openssl dgst -sha256`, the same decompression and hashing as berth with a SHA-NI "
  "hash (coreutils' `sha256sum` on Debian 12 has none, which is most of the raw figure).\n")
w("| run | raw zstd -t | raw sha256sum of the files | **raw total** | floor: zstd -dc \\| openssl | **berth backup verify** |")
w("| --- | ---: | ---: | ---: | ---: | ---: |")
for i in R:
    w(f"| {i} | {W('verify','raw','zstd_t',i):.2f} | {W('verify','raw','sha256sum',i):.2f} | **{raw_v(i):.2f}** | "
      f"{floor_v(i):.2f} | **{ber_v(i):.2f}** |")
w(f"| **median** | {M(lambda i: W('verify','raw','zstd_t',i)):.2f} | {M(lambda i: W('verify','raw','sha256sum',i)):.2f} | "
  f"**{M(raw_v):.2f}** | {M(floor_v):.2f} | **{M(ber_v):.2f}** |")
w("")
w(f"Over the {human(content)} of content: raw {rate(M(raw_v), content):.1f} MiB/s, floor {rate(M(floor_v), content):.1f} MiB/s, "
  f"berth {rate(M(ber_v), content):.1f} MiB/s: berth at {pct(v_ratio)} of the raw verification and "
  f"{pct(M(floor_v) / M(ber_v))} of the floor.\n")

w("## Where berth's time goes\n")
rd, bd = M(lambda i: W('backup','raw','pg_dump',i)), M(lambda i: BK[i]['dump'])
rt, bt = M(raw_b_tail), M(ber_b_tail)
rz, bw = M(lambda i: W('backup','raw','tar_zstd',i)), M(lambda i: BK[i]['write'])
w(f"- **Backup** ({pct(b_ratio)}): the dump takes {bd:.1f} s in berth and {rd:.2f} s raw — the same pg_dump "
  f"with the same options and jobs, so a difference is run-to-run variation. Writing the archive (read, hash, "
  f"compress, fsync) takes {bw:.1f} s against {rz:.2f} s for tar | zstd ({pct(rz / bw)}); with berth's checks and "
  f"the rest (start, staging removal) it is {bt:.2f} s against {rt:.2f} s for tar | zstd + sync + rm ({bt - rt:+.2f} s).")
w(f"- **Restore** ({pct(r_ratio)}): berth's stage (one pass that decompresses, hashes and writes every entry, then "
  f"lists the dump and decrypts the secrets) takes {bs:.2f} s against {ru:.2f} s for zstd -dc | tar -x "
  f"({bs - ru:+.2f} s); loading the database takes {bl:.2f} s against {rl:.2f} s for createdb + pg_restore "
  f"({bl - rl:+.2f} s), the same pg_restore into a server on the same disk. Outside the comparable part, berth "
  f"spends {M(lambda i: S[i]['prepare-database']):.1f} s preparing the new instance and {M(ber_other):.1f} s "
  f"swapping, starting the stack and committing.")
w(f"- **Verify** ({pct(v_ratio)}): {M(ber_v):.2f} s against {M(raw_v):.2f} s for zstd -t + sha256sum and "
  f"{M(floor_v):.2f} s for zstd -dc | openssl.")
def span(f): return f"{min(f(i) for i in R):.1f}–{max(f(i) for i in R):.1f} s"
w(f"- pg_dump and pg_restore are most of both sides' time, and they vary from run to run on this machine: "
  f"pg_dump {span(lambda i: W('backup','raw','pg_dump',i))} raw and {span(lambda i: BK[i]['dump'])} in berth, "
  f"pg_restore {span(lambda i: W('restore','raw','pg_restore',i))} raw and {span(lambda i: S[i]['load-database'])} in berth "
  f"(the load average at the start of each run is in the tables).")
w("")
text = "\n".join(o) + "\n"
open(out_path, "w").write(text)
sys.stdout.write(text)
EOF
say "done: ${RESULTS#"$ROOT"/}"
