#!/usr/bin/env bash
# `berth image build` beside `podman build` of an equivalent Containerfile, in the same
# run, and a rebuild after an app-only change. See benches/README.md.
#
#   benches/image.sh [BUNDLE PUBLIC_KEY CHANGED_BUNDLE]
#
# Without arguments it builds two ministack bundles itself (1.0.0, and 1.0.1 whose
# only change is the app's template), signed by a throwaway key. Measured, for the
# services in BENCH_SERVICES (default `app postgresql`):
#   1. a cold build (the Debian base roots made by mmdebstrap);
#   2. a warm build into a new layout (base roots cached): the build itself;
#   3. podman build of a Containerfile that ADDs the same layer trees (FROM scratch,
#      one ADD per layer, the same USER, ENTRYPOINT, CMD) into a fresh storage, then
#      `podman save --format oci-archive`: the same content made into an image file by
#      the daemonless tool people use;
#   4. CHANGED_BUNDLE built into the layout of 2: which layers changed, and the time.
# Writes benches/RESULTS-image.md (overwriting it). As root (mmdebstrap), with podman
# and runc (scripts/test.sh installs them).
#
# Environment:
#   BENCH_BERTH     a berth binary to use instead of building the release one
#   BENCH_SERVICES  the services to build (default "app postgresql")
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
SERVICES=${BENCH_SERVICES:-app postgresql}

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

WORK=$(mktemp -d /var/tmp/berth-image-bench.XXXXXX)
PODMAN_CONF="$WORK/containers.conf"
printf '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\n' >"$PODMAN_CONF"
podman_() { CONTAINERS_CONF="$PODMAN_CONF" podman --root "$WORK/podman/root" --runroot "$WORK/podman/runroot" "$@"; }
cleanup() { podman_ system reset --force >/dev/null 2>&1 || true; rm -rf "$WORK"; }
trap cleanup EXIT
BENCH_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
export BENCH_LOAD

if [ $# -ge 3 ]; then
  BUNDLE=$(realpath "$1"); KEY=$(realpath "$2"); CHANGED=$(realpath "$3")
  COMMAND_LINE="benches/image.sh $(basename "$BUNDLE") PUBLIC_KEY $(basename "$CHANGED")"
else
  COMMAND_LINE="benches/image.sh"
  echo "== building two ministack bundles" >&2
  "$BERTH" release key --out "$WORK/vendor.key" >/dev/null
  strip -o "$WORK/berth" "$BERTH"
  for v in 1.0.0 1.0.1; do
    mkdir -p "$WORK/m-$v/templates" "$WORK/dist-$v"
    cp tests/fixtures/ministack/templates/* "$WORK/m-$v/templates/"
    sed "s/^version = \"1.0.0\"/version = \"$v\"/" tests/fixtures/ministack/berth.toml >"$WORK/m-$v/berth.toml"
    [ "$v" = 1.0.1 ] && sed -i 's/^"""A tiny web app/"""A tiny (changed) web app/' "$WORK/m-$v/templates/app.py.j2"
    SOURCE_DATE_EPOCH=1700000000 "$BERTH" --manifest "$WORK/m-$v" release build \
      --key "$WORK/vendor.key" --out "$WORK/dist-$v" --berth "$WORK/berth" >/dev/null
  done
  BUNDLE="$WORK/dist-1.0.0/ministack-1.0.0.berth-release.tar.zst"
  CHANGED="$WORK/dist-1.0.1/ministack-1.0.1.berth-release.tar.zst"
  KEY="$WORK/vendor.key.pub"
fi
svc_args=()
for s in $SERVICES; do svc_args+=(--service "$s"); done

secs() { python3 -c 'import sys,time; print(f"{time.time() - float(sys.argv[1]):.1f}")' "$1"; }
now() { python3 -c 'import time; print(time.time())'; }

echo "== 1. cold build (base roots made)" >&2
t=$(now)
"$BERTH" image build "$BUNDLE" --public-key "$KEY" --out "$WORK/cold" --cache "$WORK/cache" \
  "${svc_args[@]}" --json >"$WORK/cold.json"
COLD=$(secs "$t")

echo "== 2. warm build (base roots cached)" >&2
t=$(now)
"$BERTH" image build "$BUNDLE" --public-key "$KEY" --out "$WORK/warm" --cache "$WORK/cache" \
  "${svc_args[@]}" --oci-archive "$WORK/warm.oci.tar" --json >"$WORK/warm.json"
WARM=$(secs "$t")

echo "== 3. podman build of the same layers" >&2
python3 - "$WORK" <<'PY'
import json, os, sys
work = sys.argv[1]
layout = os.path.join(work, "warm")
report = json.load(open(os.path.join(work, "warm.json")))
for image in report["images"]:
    ctx = os.path.join(work, "ctx-" + image["service"])
    os.makedirs(ctx)
    blob = lambda d: os.path.join(layout, "blobs/sha256", d.split(":")[1])
    manifest = json.load(open(blob(image["manifest_digest"])))
    config = json.load(open(blob(manifest["config"]["digest"])))["config"]
    lines = ["FROM scratch"]
    for i, layer in enumerate(manifest["layers"]):
        os.link(blob(layer["digest"]), os.path.join(ctx, f"layer{i}.tar.gz"))
        lines.append(f"ADD layer{i}.tar.gz /")
    for e in config.get("Env", []):
        k, v = e.split("=", 1)
        lines.append(f"ENV {k}={json.dumps(v)}")
    lines.append(f"USER {config['User']}")
    lines.append(f"WORKDIR {config['WorkingDir']}")
    lines.append("ENTRYPOINT " + json.dumps(config["Entrypoint"]))
    lines.append("CMD " + json.dumps(config["Cmd"]))
    open(os.path.join(ctx, "Containerfile"), "w").write("\n".join(lines) + "\n")
PY
t=$(now)
tags=()
for s in $SERVICES; do
  podman_ build --quiet --format oci -t "bench-$s" "$WORK/ctx-$s" >/dev/null
  tags+=("bench-$s")
done
PODMAN_BUILD=$(secs "$t")
# podman saves one image per oci-archive: one file each, their sizes summed.
t=$(now)
for tag in "${tags[@]}"; do
  podman_ save --format oci-archive -o "$WORK/podman-$tag.oci.tar" "$tag"
done
PODMAN_SAVE=$(secs "$t")
PODMAN_BYTES=$(cat "$WORK"/podman-*.oci.tar | wc -c)

echo "== 4. app-only change, built into the warm layout" >&2
t=$(now)
"$BERTH" image build "$CHANGED" --public-key "$KEY" --out "$WORK/warm" --cache "$WORK/cache" \
  "${svc_args[@]}" --json >"$WORK/changed.json"
CHANGED_SECS=$(secs "$t")

python3 - "$WORK" "$COMMAND_LINE" "$BUILD" "$COLD" "$WARM" "$PODMAN_BUILD" "$PODMAN_SAVE" \
  "$CHANGED_SECS" "$(podman --version)" "$PODMAN_BYTES" "$("$BERTH" --version)" \
  >"$ROOT/benches/RESULTS-image.md" <<'PY'
import json, os, subprocess, sys
work, command, build, cold, warm, pbuild, psave, changed, podman, pbytes, version = sys.argv[1:]
w = json.load(open(os.path.join(work, "warm.json")))
c = json.load(open(os.path.join(work, "changed.json")))
when = subprocess.run(["date", "-u", "+%Y-%m-%d %H:%M UTC"], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mb = lambda n: f"{n / 1e6:.1f} MB"
size = lambda p: os.path.getsize(os.path.join(work, p))
print(f"""# Image build benchmark

Command: `{command}` ({build}: {version}; {podman}). {os.cpu_count()} CPUs ({cpu}); run on
{when}, load average at the start {os.environ.get("BENCH_LOAD", "?")}. One run each:
the builds take minutes.

{w["app"]} {w["version"]}, services: {", ".join(i["service"] for i in w["images"])}.

| what | time |
| --- | --- |
| 1. `berth image build`, cold (mmdebstrap makes the base roots) | {cold} s |
| 2. `berth image build`, base roots cached (layout + `--oci-archive`) | {warm} s |
| 3. `podman build` of the same layers (one `ADD` per layer), fresh storage | {pbuild} s |
| 3. then `podman save --format oci-archive`, one per image | {psave} s |
| 3. podman in all | {float(pbuild) + float(psave):.1f} s |
| 4. `berth image build` of the app-only change into the layout of 2 | {changed} s |

berth (2) against podman (3): {float(warm) / (float(pbuild) + float(psave)):.2f}x the time.
The archives: berth's one `oci-archive` of the layout (both images, shared blobs once,
and their bills of materials) {mb(size("warm.oci.tar"))}; podman's, one per image,
{mb(int(pbytes))} in all.

Images (2):

| service | layers (compressed) | total |
| --- | --- | --- |""")
for i in w["images"]:
    sizes = ", ".join(mb(l["size"]) for l in i["layers"])
    print(f"| {i['service']} | {sizes} | {mb(sum(l['size'] for l in i['layers']))} |")
print("""
After the app-only change (4), layers whose digest changed:
""")
for old, new in zip(w["images"], c["images"]):
    same = [a["digest"] == b["digest"] for a, b in zip(old["layers"], new["layers"])]
    changed = [l["created_by"] for l, s in zip(new["layers"], same) if not s]
    kept = sum(same)
    print(f"- {new['service']}: {kept} of {len(same)} kept; changed: {'; '.join(changed) or 'none'}")
print("""
podman builds from layer tars berth already made and compressed: it decompresses and
applies each, then compresses them again on save. berth streams each tree through tar,
SHA-256 and gzip once; in 4 the base and berth layers recorded in the cache are reused
(their SHA-256 checked), not compressed again (docs/images.md).""")
PY
cat "$ROOT/benches/RESULTS-image.md"
