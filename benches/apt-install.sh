#!/usr/bin/env bash
# The vendor's whole path for one app, timed: release bundle (with its seed), .deb,
# signed apt repository; then the administrator's: `apt-get install` into a clean
# Debian 12 root (mmdebstrap) in a network namespace with no route out, until the app
# answers its health path. See benches/README.md.
#
#   benches/apt-install.sh [MANIFEST_DIR]      (as root; default examples/netbox)
#
# The bundle build needs the package index (pip); the root is made from Debian's
# archive with the package's Depends and Recommends. Writes
# benches/RESULTS-apt-install.md (overwriting it); on any exit stops the instance and
# removes the namespace, the mounts and the temporary directory.
#
# Environment:
#   BENCH_BERTH   a berth binary to use instead of building the release one
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
COMMAND_LINE="benches/apt-install.sh${*:+ $*}"
MANIFEST=$(realpath "${1:-examples/netbox}")
[ "$(id -u)" -eq 0 ] || { echo "benches/apt-install.sh: run as root" >&2; exit 1; }
command -v mmdebstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap

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

APP=$(python3 -c 'import sys,tomllib; print(tomllib.load(open(sys.argv[1],"rb"))["app"]["name"])' "$MANIFEST/berth.toml")
URL=$(python3 -c 'import sys,tomllib; print(tomllib.load(open(sys.argv[1],"rb"))["app"]["default_external_url"])' "$MANIFEST/berth.toml")
HEALTH=$(python3 -c 'import sys,tomllib; print(tomllib.load(open(sys.argv[1],"rb"))["app"].get("health_path","/"))' "$MANIFEST/berth.toml")
WORK=$(mktemp -d /var/tmp/berth-apt-bench.XXXXXX)
NS=berth-apt-bench-$$
SERVER=""
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -x "$WORK/root/opt/$APP/bin/berth" ]; then
    ip netns exec "$NS" chroot "$WORK/root" "/opt/$APP/bin/berth" --prefix "/var/opt/berth/$APP" down >/dev/null 2>&1 || true
  fi
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
  for m in "$WORK/root/dev/shm" "$WORK/root/proc"; do umount -l "$m" 2>/dev/null || true; done
  ip netns delete "$NS" 2>/dev/null || true
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.1f}')"; }
export SOURCE_DATE_EPOCH=1700000000

echo "== vendor: keys, release bundle (components and seed), .deb, repository" >&2
objcopy --strip-debug "$BERTH" "$WORK/berth-shipped"
"$BERTH" release key --out "$WORK/vendor.key" >/dev/null
"$BERTH" repo key --out "$WORK/repo.key" --name "Bench Archive <bench@example.org>" >/dev/null
mkdir "$WORK/dist"
t0=$(now)
"$BERTH" --manifest "$MANIFEST" release build --key "$WORK/vendor.key" --out "$WORK/dist" \
  --berth "$WORK/berth-shipped" >/dev/null 2>"$WORK/build.log"
t1=$(now)
BUILD_SECS=$(secs "$t0" "$t1")
BUNDLE=$(ls "$WORK"/dist/*.berth-release.tar.zst)
"$BERTH" package deb "$BUNDLE" --public-key "$WORK/vendor.key.pub" \
  --maintainer "Bench <bench@example.org>" --out "$WORK/dist" >/dev/null
t2=$(now)
DEB_SECS=$(secs "$t1" "$t2")
DEB=$(ls "$WORK"/dist/*.deb)
"$BERTH" repo apt "$WORK/repo" "$DEB" --key "$WORK/repo.key" --origin Bench >/dev/null
t3=$(now)
REPO_SECS=$(secs "$t2" "$t3")

echo "== a clean Debian 12 root with the package's dependencies" >&2
INCLUDE=$(dpkg-deb -f "$DEB" Depends Recommends | sed 's/^[A-Za-z]*: //' | tr '\n' ',' | tr -d ' ' | sed 's/,*$//')
t0=$(now)
mmdebstrap --quiet --variant=minbase --include="$INCLUDE" bookworm "$WORK/root"
t1=$(now)
ROOT_SECS=$(secs "$t0" "$t1")
rm -f "$WORK/root/etc/apt/sources.list"
cp "$WORK/repo.key.gpg" "$WORK/root/usr/share/keyrings/bench-archive-keyring.gpg"
echo "deb [signed-by=/usr/share/keyrings/bench-archive-keyring.gpg] http://127.0.0.1:8099/ stable main" \
  >"$WORK/root/etc/apt/sources.list.d/bench.list"
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
mount -t proc proc "$WORK/root/proc"
mount -t tmpfs tmpfs "$WORK/root/dev/shm"
ip netns exec "$NS" python3 -m http.server 8099 --bind 127.0.0.1 --directory "$WORK/repo" >/dev/null 2>&1 &
SERVER=$!
for _ in $(seq 100); do ip netns exec "$NS" curl -sf -o /dev/null http://127.0.0.1:8099/dists/ && break; sleep 0.1; done
in_root() { ip netns exec "$NS" chroot "$WORK/root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 "$@"; }

echo "== administrator: apt-get update && apt-get install $APP (no network)" >&2
in_root apt-get -q update >"$WORK/update.log" 2>&1
t0=$(now)
in_root apt-get -q -y install "$APP" >"$WORK/install.log" 2>&1
t1=$(now)
INSTALL_SECS=$(secs "$t0" "$t1")
CODE=$(ip netns exec "$NS" curl -s -o /dev/null -w '%{http_code}' --max-time 30 "${URL%/}$HEALTH")
t2=$(now)
ANSWER_SECS=$(secs "$t0" "$t2")

cat >"$ROOT/benches/RESULTS-apt-install.md" <<EOF
# apt-get install benchmark

Command: \`$COMMAND_LINE\` ($BUILD of berth, stripped of debug info as shipped).
App: $APP from \`$(realpath --relative-to="$ROOT" "$MANIFEST")\`; $(nproc) CPUs; run on $(date -u '+%Y-%m-%d %H:%M UTC'), load average at the start $LOAD.

| step | seconds |
| --- | --- |
| vendor: \`berth release build\` (components from the package index, seed) | $BUILD_SECS |
| vendor: \`berth package deb\` | $DEB_SECS |
| vendor: \`berth repo apt\` (pool, indexes, signatures) | $REPO_SECS |
| a clean Debian 12 root with the package's dependencies (mmdebstrap) | $ROOT_SECS |
| **administrator: \`apt-get install $APP\`** (unpack, postinst: \`up --bundle\`, seed loaded) | **$INSTALL_SECS** |
| from \`apt-get install\` to $HEALTH answering (HTTP $CODE) | $ANSWER_SECS |

Bundle $(stat -c %s "$BUNDLE") bytes; package $(stat -c %s "$DEB") bytes. The install ran in a
network namespace with no route out: the package carries everything, the root holds
only Debian's packages its \`Depends\` and \`Recommends\` name.
EOF
cat "$ROOT/benches/RESULTS-apt-install.md"
[ "$CODE" = 200 ] || { echo "the app did not answer 200 ($CODE); see $WORK/install.log" >&2; tail -30 "$WORK/install.log" >&2; exit 1; }
