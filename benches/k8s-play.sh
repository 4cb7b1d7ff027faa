#!/usr/bin/env bash
# NetBox from `berth k8s render`'s objects under `podman kube play`, from nothing to its
# login page answering through nginx, beside the same images started by hand with
# `podman run` (examples/netbox/podman-run.sh), in the same run. See benches/README.md.
#
#   benches/k8s-play.sh [ARCHIVES_DIR]
#
# As root. ARCHIVES_DIR holds the docker-archives `berth image build --docker-archives`
# writes; by default the ones the test suite built (target/test-cache/bundles/*/images). Writes benches/RESULTS-k8s-play.md (overwriting it).
#
# Both sides start from an empty podman storage of their own: the four images loaded,
# then PostgreSQL's initdb, PostgreSQL and Redis, createdb, the migrations, gunicorn and
# nginx, the worker; the clock stops at the first `GET /login/` answered with 200
# (through nginx when played; `podman-run.sh` runs no nginx: from gunicorn).
# The play side is played as tests/k8s_play.rs plays it (one file at a time, in the
# order the Services let the pods through, a StatefulSet as its first pod, a Job as its
# pod, the Secret's files written as the kubelet writes them), in a network namespace of
# its own; the podman run side on the host's network, ports 56701 to 56703.
#
# Environment:
#   BENCH_BERTH   a berth binary to use instead of building the release one
#   BENCH_RUNS    runs of each side, alternating (default 2; each brings NetBox up)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
RUNS=${BENCH_RUNS:-2}
PORT=38380
PY=/usr/bin/python3
say() { printf '\n== %s\n' "$*" >&2; }
[ "$(id -u)" -eq 0 ] || { echo "benches/k8s-play.sh runs as root (network namespaces, podman storage)" >&2; exit 2; }
missing=()
command -v podman >/dev/null || missing+=(podman runc catatonit)
command -v kubectl >/dev/null || missing+=(kubernetes-client)
"$PY" -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)
[ ${#missing[@]} -eq 0 ] ||
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
. "$ROOT/benches/lib/berth.sh"
find_berth

ARCHIVES=${1:-$(ls -d "$ROOT"/target/test-cache/bundles/*/images 2>/dev/null | head -1)}
[ -n "$ARCHIVES" ] && [ -f "$ARCHIVES/netbox-web-4.7.3.docker.tar" ] || {
  echo "no NetBox images: run the test suite (it builds them) or pass the directory of \`berth image build --docker-archives\`" >&2
  exit 2
}
ARCHIVES=$(realpath "$ARCHIVES")

WORK=$(mktemp -d /tmp/berth-k8s-play.XXXXXX)
NS=berth-bench-k8s-$$
HOLDER=""
PODMAN_DIRS=()
RUN_DIRS=()
cleanup() {
  set +e
  for d in "${PODMAN_DIRS[@]}"; do
    podman --root "$d/root" --runroot "$d/runroot" --tmpdir "$d/tmp" rm -af -t 5 >/dev/null 2>&1
    podman --root "$d/root" --runroot "$d/runroot" --tmpdir "$d/tmp" system reset -f >/dev/null 2>&1
  done
  for d in "${RUN_DIRS[@]}"; do
    podman --root "$d/root" --runroot "$d/runroot" rm -af -t 5 >/dev/null 2>&1
    podman --root "$d/root" --runroot "$d/runroot" system reset -f >/dev/null 2>&1
  done
  [ -n "$HOLDER" ] && kill "$HOLDER" 2>/dev/null
  ip netns pids "$NS" 2>/dev/null | xargs -r kill -9
  ip netns del "$NS" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
BENCH_LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
export BENCH_LOAD
printf '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\n' >"$WORK/containers.conf"
export CONTAINERS_CONF=$WORK/containers.conf

# The objects, once (the render itself is benches/k8s.sh's), and the files to play.
printf 'external_url = "http://127.0.0.1:%s/"\n' "$PORT" >"$WORK/site.toml"
"$BERTH" --manifest "$ROOT/examples/netbox" --config "$WORK/site.toml" k8s render \
  --out "$WORK/deploy" --env bench >/dev/null
kubectl kustomize "$WORK/deploy/overlays/bench" >"$WORK/built.yaml"
"$PY" - "$WORK" <<'PY'
import json, sys, yaml
work = sys.argv[1]
docs = [d for d in yaml.safe_load_all(open(f"{work}/built.yaml")) if d]
of = lambda kind: [d for d in docs if d["kind"] == kind]
def for_podman(spec):
    spec.setdefault("restartPolicy", "OnFailure")
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        c.pop("ports", None)
        for e in c.get("env", []):
            if e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "status.podIP":
                e.pop("valueFrom"); e["value"] = "127.0.0.1"
    for v in spec.get("volumes", []):
        if "secret" in v:
            v["persistentVolumeClaim"] = {"claimName": v.pop("secret")["secretName"]}
def write(name, objects):
    with open(f"{work}/play-{name}.yaml", "w") as f:
        f.write("\n---\n".join(json.dumps(o) for o in objects))
maps = of("ConfigMap")
(sts,) = of("StatefulSet")
spec = sts["spec"]["template"]["spec"]
objects = maps + of("PersistentVolumeClaim")
for t in sts["spec"].get("volumeClaimTemplates", []):
    claim = f'{t["metadata"]["name"]}-{sts["metadata"]["name"]}-0'
    objects.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim}, "spec": t["spec"]})
    spec["volumes"].append({"name": t["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim}})
for_podman(spec)
objects.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": sts["metadata"]["name"] + "-0"}, "spec": spec})
write("1-database", objects)
(job,) = of("Job")
spec = job["spec"]["template"]["spec"]; for_podman(spec)
write("2-migrate", maps + [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": job["metadata"]["name"]}, "spec": spec}])
for i, d in enumerate(sorted(of("Deployment"), key=lambda d: d["metadata"]["name"])):
    for_podman(d["spec"]["template"]["spec"])
    write(f"{3 + i}-{d['metadata']['name']}", maps + [d])
# Each Secret: its volume's name, each key and the file it is made of.
with open(f"{work}/secrets.txt", "w") as f:
    for s in of("Secret"):
        name = s["metadata"]["name"]
        for key in s["data"]:
            f.write(f"{name} {key} {'backup-key' if name.endswith('-backup-key') else key}\n")
PY

# The pods' network namespace: Services' names at its 127.0.0.1, as in tests/k8s_play.rs.
ip netns add "$NS"
ip -n "$NS" link set lo up
printf '127.0.0.1 localhost netbox-database netbox-web netbox-worker\n::1 localhost\n' >"$WORK/hosts"
nsenter --net="/run/netns/$NS" unshare -m --propagation private sh -c \
  'mount --bind "$0" /etc/hosts && exec sleep infinity' "$WORK/hosts" &
HOLDER=$!
sleep 1

now() { date +%s.%N; }
# Until `GET /login/` answers 200 (run by `$@` in the right network), at most 20 minutes.
login() {
  for _ in $(seq 1200); do
    [ "$("$@" curl -s -o /dev/null -w '%{http_code}' "$URL")" = 200 ] && return 0
    sleep 1
  done
  echo "NetBox did not answer $URL within 20 minutes" >&2
  return 1
}

play_run() {
  local d=$WORK/play-$1
  PODMAN_DIRS+=("$d")
  mkdir -p "$d/root" "$d/runroot" "$d/tmp"
  p() { nsenter -t "$HOLDER" -m -n podman --root "$d/root" --runroot "$d/runroot" --tmpdir "$d/tmp" "$@"; }
  ready() { p exec "$1" berth container ready "$2" >/dev/null 2>&1; }
  wait_ready() { for _ in $(seq 600); do ready "$1" "$2" && return 0; sleep 1; done; echo "$1 not ready" >&2; return 1; }
  local t0; t0=$(now)
  for a in "$ARCHIVES"/*.docker.tar; do p load -q -i "$a" >/dev/null; done
  while read -r secret key from; do
    p volume exists "$secret" || p volume create "$secret" >/dev/null
    local at; at=$(p volume inspect "$secret" --format '{{.Mountpoint}}')
    install -m 0440 -o 0 -g 10001 "$WORK/deploy/base/secrets/$from" "$at/$key"
  done <"$WORK/secrets.txt"
  local t1; t1=$(now)
  p kube play --network host "$WORK/play-1-database.yaml" >/dev/null
  wait_ready netbox-database-0-postgresql postgresql
  wait_ready netbox-database-0-redis redis
  p kube play --network host "$WORK/play-2-migrate.yaml" >/dev/null
  local f
  for f in "$WORK"/play-[3-9]-*.yaml; do
    # podman 4.3, loaded, may fail to start a pod's containers after a long init
    # container ("already exists"): played once more, as the test does.
    p kube play --network host "$f" >/dev/null 2>"$WORK/play.err" ||
      { grep -q "already exists" "$WORK/play.err" && p kube down "$f" >/dev/null && p kube play --network host "$f" >/dev/null; }
  done
  URL="http://127.0.0.1:$PORT/login/" login nsenter -t "$HOLDER" -n
  local t2; t2=$(now)
  echo "$1 play $t0 $t1 $t2" >>"$WORK/times.txt"
  for f in "$WORK"/play-[1-9]-*.yaml; do p kube down "$f" >/dev/null 2>&1 || true; done
  p rm -af -t 5 >/dev/null 2>&1 || true
  p system reset -f >/dev/null 2>&1 || true
}

run_run() {
  local d=$WORK/run-$1
  RUN_DIRS+=("$d/pm")
  local t0; t0=$(now)
  examples/netbox/podman-run.sh "$ARCHIVES" "$d" >"$d.log" 2>&1
  URL="http://127.0.0.1:56703/login/" login env
  local t2; t2=$(now)
  echo "$1 run $t0 - $t2" >>"$WORK/times.txt"
  podman --root "$d/pm/root" --runroot "$d/pm/runroot" stop --time 90 worker web redis pg >/dev/null 2>&1 || true
  podman --root "$d/pm/root" --runroot "$d/pm/runroot" rm -af >/dev/null 2>&1 || true
  podman --root "$d/pm/root" --runroot "$d/pm/runroot" system reset -f >/dev/null 2>&1 || true
}

for i in $(seq "$RUNS"); do
  if [ $((i % 2)) -eq 1 ]; then
    say "run $i: podman kube play"; play_run "$i"
    say "run $i: podman run"; run_run "$i"
  else
    say "run $i: podman run"; run_run "$i"
    say "run $i: podman kube play"; play_run "$i"
  fi
done

"$PY" - "$WORK/times.txt" "$BUILD" "$RUNS" "$(podman --version)" >"$ROOT/benches/RESULTS-k8s-play.md" <<'PY'
import os, subprocess, sys
path, build, runs, podman = sys.argv[1:]
rows = [l.split() for l in open(path)]
when = subprocess.run(["date", "-u", "+%Y-%m-%d %H:%M UTC"], capture_output=True, text=True).stdout.strip()
commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal")) // 1024 // 1024
print(f"""# NetBox under `podman kube play` beside `podman run`

Generated by `benches/k8s-play.sh` ({build} of berth; {runs} runs of each side,
alternating which goes first). {os.cpu_count()} CPUs ({cpu}), {mem} GiB; run on {when}
at commit `{commit}`, load average at the start {os.environ.get("BENCH_LOAD", "?")}.
{podman}.

From an empty podman storage to NetBox's login page answering 200: the four images
loaded, PostgreSQL initialised and started, Redis, `createdb`, the migrations,
gunicorn, the worker (and, played, nginx in the web pod, which answers the page;
`podman-run.sh` runs no nginx, so gunicorn answers it there). *play* is `berth k8s render`'s objects
(`kubectl kustomize` of an overlay) played by `podman kube play` one workload at a
time, in the order the Services let them through, as `tests/k8s_play.rs` plays them;
*run* is `examples/netbox/podman-run.sh`, the same images started by hand.

| run | side | images loaded | to the login page |
| ---: | --- | ---: | ---: |""")
totals = {"play": [], "run": []}
for run, side, t0, t1, t2 in rows:
    t0, t2 = float(t0), float(t2)
    loaded = f"{float(t1) - t0:.1f} s" if t1 != "-" else "(inside)"
    totals[side].append(t2 - t0)
    print(f"| {run} | {side} | {loaded} | {t2 - t0:.1f} s |")
play = sum(totals["play"]) / len(totals["play"])
run = sum(totals["run"]) / len(totals["run"])
print(f"""
Mean: **{play:.0f} s** played from the rendered objects, {run:.0f} s by hand; the
rendered deployment takes {play / run:.2f} times as long. Most of both is NetBox's
own start (the migrations on an empty database, `collectstatic`, gunicorn's workers);
the play side also waits for each pod's readiness probe before playing the next
workload, where `podman-run.sh` starts the web and the worker together.""")
PY
cat "$ROOT/benches/RESULTS-k8s-play.md"
