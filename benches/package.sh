#!/usr/bin/env bash
# `berth package deb` beside `dpkg-deb --build` making the same package from the same
# tree, and `berth repo apt` beside `apt-ftparchive` (Packages and Release) plus
# `gpg --clearsign` indexing and signing the same repository. See benches/README.md.
#
#   benches/package.sh [MANIFEST_DIR]      (default tests/fixtures/ministack)
#
# Builds the manifest's release bundle once (pip, no seed for ministack), then times
# each tool BENCH_RUNS times (default 5) with hyperfine. Writes
# benches/RESULTS-package.md (overwriting it) and removes its temporary directory on
# any exit. Installs hyperfine and apt-utils with apt-get if they are missing.
#
# Environment:
#   BENCH_BERTH   a berth binary to use instead of building the release one
#   BENCH_RUNS    runs per command (default 5)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
COMMAND_LINE="benches/package.sh${*:+ $*}"
MANIFEST=$(realpath "${1:-tests/fixtures/ministack}")
RUNS=${BENCH_RUNS:-5}

missing=()
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v apt-ftparchive >/dev/null || missing+=(apt-utils)
command -v gpg >/dev/null || missing+=(gnupg)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

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

WORK=$(mktemp -d /tmp/berth-package.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export SOURCE_DATE_EPOCH=1700000000

BENCH_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
export BENCH_LOAD
echo "== release bundle" >&2
objcopy --strip-debug "$BERTH" "$WORK/berth-shipped"
"$BERTH" release key --out "$WORK/vendor.key" >/dev/null
mkdir "$WORK/dist"
"$BERTH" --manifest "$MANIFEST" release build --key "$WORK/vendor.key" --out "$WORK/dist" \
  --berth "$WORK/berth-shipped" >/dev/null 2>"$WORK/build.log"
BUNDLE=$(ls "$WORK"/dist/*.berth-release.tar.zst)
BUNDLE_BYTES=$(stat -c %s "$BUNDLE")

# One package made by berth, unpacked into the tree dpkg-deb builds from: the same
# files, control data and scripts.
mkdir "$WORK/once"
"$BERTH" package deb "$BUNDLE" --public-key "$WORK/vendor.key.pub" \
  --maintainer "Vendor <vendor@example.org>" --out "$WORK/once" >/dev/null
DEB=$(ls "$WORK"/once/*.deb)
DEB_BYTES=$(stat -c %s "$DEB")
dpkg-deb -R "$DEB" "$WORK/tree"

echo "== package: berth package deb vs dpkg-deb --build" >&2
hyperfine --runs "$RUNS" --export-json "$WORK/deb.json" \
  --prepare "rm -rf $WORK/out && mkdir $WORK/out" \
  -n "berth package deb" \
  "$BERTH package deb $BUNDLE --public-key $WORK/vendor.key.pub --maintainer 'Vendor <vendor@example.org>' --out $WORK/out" \
  -n "dpkg-deb --build -Zgzip (the same compression)" \
  "dpkg-deb --root-owner-group -Zgzip --build $WORK/tree $WORK/out/x.deb" \
  -n "dpkg-deb --build (its default, xz)" \
  "dpkg-deb --root-owner-group --build $WORK/tree $WORK/out/x.deb" >&2
dpkg-deb --root-owner-group -Zgzip --build "$WORK/tree" "$WORK/dpkg-gzip.deb" >/dev/null
dpkg-deb --root-owner-group --build "$WORK/tree" "$WORK/dpkg-xz.deb" >/dev/null
DPKG_GZIP_BYTES=$(stat -c %s "$WORK/dpkg-gzip.deb")
DPKG_XZ_BYTES=$(stat -c %s "$WORK/dpkg-xz.deb")

echo "== repository: berth repo apt vs apt-ftparchive + gpg --clearsign" >&2
"$BERTH" repo key --out "$WORK/repo.key" --name "Bench <bench@example.org>" >/dev/null
export GNUPGHOME="$WORK/gnupg"
mkdir -m 700 "$GNUPGHOME"
gpg --batch --quiet --import "$WORK/repo.key"
# apt-ftparchive needs the pool laid out already; berth copies the package in itself.
cat >"$WORK/ftparchive.sh" <<EOF
set -e
rm -rf "$WORK/ftp" && mkdir -p "$WORK/ftp/pool/main/m/ministack" "$WORK/ftp/dists/stable/main/binary-amd64"
cp "$DEB" "$WORK/ftp/pool/main/m/ministack/"
cd "$WORK/ftp"
apt-ftparchive packages pool > dists/stable/main/binary-amd64/Packages
gzip -9nk dists/stable/main/binary-amd64/Packages
apt-ftparchive -o APT::FTPArchive::Release::Suite=stable release dists/stable > "$WORK/Release"
mv "$WORK/Release" dists/stable/Release
gpg --batch --yes --clearsign -o dists/stable/InRelease dists/stable/Release
gpg --batch --yes -abs -o dists/stable/Release.gpg dists/stable/Release
EOF
hyperfine --runs "$RUNS" --export-json "$WORK/repo.json" \
  --prepare "rm -rf $WORK/repo" \
  -n "berth repo apt" \
  "$BERTH repo apt $WORK/repo $DEB --key $WORK/repo.key" \
  -n "apt-ftparchive + gpg" \
  "bash $WORK/ftparchive.sh" >&2

python3 - "$WORK" "$COMMAND_LINE" "$BUILD" "$BUNDLE_BYTES" "$DEB_BYTES" "$DPKG_GZIP_BYTES" \
  "$DPKG_XZ_BYTES" "$MANIFEST" "$RUNS" >"$ROOT/benches/RESULTS-package.md" <<'EOF'
import json, os, subprocess, sys
work, command, build, bundle, deb, dpkg_gz, dpkg_xz, manifest, runs = sys.argv[1:]
def rows(name):
    return json.load(open(os.path.join(work, name)))["results"]
def mean(r):
    return f"{r['mean']:.3f} s ± {r['stddev']:.3f}"
deb_r, repo_r = rows("deb.json"), rows("repo.json")
mb = lambda n: f"{int(n) / 1e6:.1f} MB"
when = subprocess.run(["date", "-u", "+%Y-%m-%d %H:%M UTC"], capture_output=True, text=True).stdout.strip()
load = os.environ.get("BENCH_LOAD", "?")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print(f"""# Packaging benchmark

Command: `{command}` ({build} of berth; {runs} runs per command, hyperfine means).
Manifest: `{os.path.relpath(manifest)}`; {os.cpu_count()} CPUs ({cpu}); run on {when}, load average at the start {load}.

The release bundle is {mb(bundle)}. `berth package deb` checks its signature and every
byte, unpacks the manifest, berth and the payload, finds the libraries' packages, and
writes the package. `dpkg-deb --build` only packs the tree of that same package
(unpacked from berth's with `dpkg-deb -R`).

| command | time |
| --- | --- |""")
for r in deb_r:
    print(f"| {r['command']} | {mean(r)} |")
base = next(r for r in deb_r if "same compression" in r["command"])["mean"]
ours = deb_r[0]["mean"]
print(f"""
berth / dpkg-deb with gzip: **{ours / base:.2f}×**. Sizes: berth {mb(deb)}, dpkg-deb gzip
{mb(dpkg_gz)}, dpkg-deb xz {mb(dpkg_xz)}.

## Repository

Adding that one package to an empty repository: berth copies it into the pool, hashes
it, writes the indexes (and by hash), `Release` and both signatures. The raw tools:
`cp` into the pool, `apt-ftparchive packages` and `release`, `gzip`, and `gpg
--clearsign` and `-abs` with the same key.

| command | time |
| --- | --- |""")
for r in repo_r:
    print(f"| {r['command']} | {mean(r)} |")
print(f"\nberth / the raw tools: **{repo_r[0]['mean'] / repo_r[1]['mean']:.2f}×**.")
EOF
cat "$ROOT/benches/RESULTS-package.md"
