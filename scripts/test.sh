#!/usr/bin/env bash
# Runs berth's whole test suite on a Debian 12 machine, installing first what the
# tests need: PostgreSQL, Redis and nginx from Debian (the tests run them for real).
#
#   scripts/test.sh            everything
#   scripts/test.sh -p berth-model   arguments go to `cargo test`
set -euo pipefail
cd "$(dirname "$0")/.."

# python3-venv: the per-user test builds its virtualenv with Debian's python3.
# openssh-server and openssh-client: backups to an SFTP target go to a throwaway sshd
# on 127.0.0.1, and fleet tests reach machines that are network namespaces (iproute2),
# each with an sshd of its own; zstd and tar: archives are checked with the standard tools too.
# gcc and libc6-dev: the build compiles the C of bundled SQLite and zstd; the NetBox
# example compiles psycopg's C extension (berth installs its libpq-dev itself).
# php8.2-cli: PHP reads back the values injected into a rendered LocalSettings.php; the
# MediaWiki example's other packages (PHP-FPM, mediawiki) berth installs itself.
# What to undo when the script ends, however it ends (one EXIT trap runs them all).
on_exit=()
run_on_exit() { local c; for c in "${on_exit[@]}"; do eval "$c"; done; }
trap run_on_exit EXIT

# lintian checks the .deb packages berth writes; mmdebstrap makes the clean Debian root
# they are installed into with apt-get (binutils: objcopy strips the berth it ships);
# rpm and rpmlint read back the .rpm packages, and dnf the yum repositories;
# diffoscope compares two builds that must be the same bytes.
# skopeo and umoci read back the OCI images berth-image writes (layout and archives);
# podman (with runc: crun fails on this kernel's rlimits) runs the images berth builds,
# and `podman kube play` the objects of `berth k8s render` (its pods' pause image is
# built from catatonit).
# etcd-server and etcd-client: the etcd berth runs on a fleet's consensus nodes, and
# etcdctl to ask it; patroni, pgbouncer and haproxy: the engines of a highly available
# fleet (the failover test).
# chromium and chromium-driver: the console's pages are tested in headless Chromium,
# driven by Selenium through Debian's chromedriver (never a browser downloaded by a tool).
packages=(postgresql-15 redis-server nginx-light python3-venv procps iproute2 curl
  openssh-server openssh-client zstd tar gcc libc6-dev php8.2-cli lintian mmdebstrap
  binutils rpm rpmlint dnf diffoscope-minimal skopeo umoci podman runc catatonit util-linux
  chromium chromium-driver etcd-server etcd-client patroni pgbouncer haproxy)
# kubectl builds the kustomize trees `berth k8s render` writes (tests/k8s.rs): Debian's
# kubernetes-client, unless the machine has a kubectl already.
command -v kubectl >/dev/null || packages+=(kubernetes-client)
missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = installed ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing test dependencies: ${missing[*]}"
  $sudo apt-get update -qq
  # The tests start the daemons they need on 127.0.0.1 themselves: packages must not
  # start theirs (sshd on port 22, a system PostgreSQL) where no init system decides.
  if [ ! -e /usr/sbin/policy-rc.d ] && [ ! -d /run/systemd/system ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod 755 /usr/sbin/policy-rc.d
    on_exit+=('$sudo rm -f /usr/sbin/policy-rc.d')
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The bills of materials berth writes are checked by the formats' own validators
# (CycloneDX's Python library with its JSON schemas, SPDX's tools), and the metrics
# by Prometheus' own text-format parser (prometheus-client), the console is driven in
# the browser by Selenium, and the Kubernetes objects are checked against the OpenAPI
# schemas of each version (kubernetes-validate), all from PyPI, in a virtualenv of
# their own under target/.
tools="$PWD/target/test-tools"
if ! "$tools/bin/python" -c 'import cyclonedx.validation.json, spdx_tools, prometheus_client.parser, selenium, kubernetes_validate' 2>/dev/null; then
  echo "Installing the SBOM validators, the metrics parser, Selenium and the Kubernetes schemas into $tools"
  rm -rf "$tools"
  python3 -m venv "$tools"
  "$tools/bin/pip" install -q --disable-pip-version-check \
    'cyclonedx-python-lib[json-validation]==11.12.0' 'spdx-tools==0.8.5' \
    'prometheus-client==0.21.1' 'selenium==4.51.0' 'kubernetes-validate==1.37.0'
fi
export BERTH_TEST_TOOLS="$tools/bin"

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Fault points (`BERTH_FAULT`) let the tests kill berth at exact moments; only test
# builds have them.
features=(--features berth-cli/fault-injection)
# Modules inside a crate stay layered like the crates (docs/architecture.md).
python3 scripts/module-cycles.py
cargo build --workspace --all-targets --locked "${features[@]}"
# The tests listen on fixed ports between 33000 and 58500, inside Linux's ephemeral
# range (32768-60999): an outgoing connection may get one of them as its local port
# for a while, and a test's `up` then finds its port taken. Reserve them for the run
# (as root; the setting is put back when the run ends).
reserved=/proc/sys/net/ipv4/ip_local_reserved_ports
if [ "$(id -u)" -eq 0 ] && [ -w "$reserved" ]; then
  reserved_before=$(cat "$reserved")
  on_exit+=('echo "$reserved_before" > "$reserved"')
  echo "33000-33500,35000-39500,41000-49500,51000-51500,55000-58500${reserved_before:+,$reserved_before}" > "$reserved"
fi
# With arguments, `cargo test` with them and nothing beside it (set -e: its status is
# the script's).
case " $* " in
  # One package: the binary built above (with fault points) is the one its tests run.
  *" -p "* | *" --package "*) cargo test --locked --no-fail-fast "$@"; exit ;;
esac
if [ $# -gt 0 ]; then
  cargo test --workspace --locked --no-fail-fast "${features[@]}" "$@"
  exit
fi

# The whole suite. Two test binaries take 24 and 17 minutes alone (NetBox on a host
# and in pods; NetBox on seven machines) where every other one takes at most four, and
# one after the other they leave much of two cores idle (most tests wait on services):
# the whole run took over 90 minutes that way, 70 with the lanes. Each of the two runs
# in a lane of its own, started here, beside `cargo test` running the others, which
# skips their tests; their output is shown, and their status counts, once all have
# ended.
lanes=(netbox netbox_fleet)
# The integration tests of the berth-tests package (tests/), by name.
executables=$(cargo test --workspace --locked "${features[@]}" --no-run --message-format=json |
  python3 -c 'import json, os, sys
mine = os.path.realpath("tests/Cargo.toml")
for line in sys.stdin:
    m = json.loads(line)
    if (m.get("reason") == "compiler-artifact" and m.get("executable")
            and m["target"]["kind"] == ["test"] and os.path.realpath(m["manifest_path"]) == mine):
        print(m["target"]["name"], m["executable"])')
skip=(--exact)
pids=()
logs=()
for lane in "${lanes[@]}"; do
  bin=$(awk -v name="$lane" '$1 == name { print $2 }' <<<"$executables")
  [ -n "$bin" ] || { echo "test binary $lane not found among those cargo built" >&2; exit 1; }
  # Its tests, by exact name, are those `cargo test` leaves out.
  while IFS= read -r test; do
    skip+=(--skip "$test")
  done < <("$bin" --list --format terse | sed -n 's/: test$//p')
  log=$(mktemp)
  on_exit+=("rm -f '$log'")
  # As cargo runs a test binary: from its package's directory.
  (cd tests && exec "$bin") >"$log" 2>&1 &
  pids+=($!)
  logs+=("$log")
  echo "     Running $lane ($bin) in a lane of its own; its output comes at the end"
done
status=0
cargo test --workspace --locked --no-fail-fast "${features[@]}" -- "${skip[@]}" || status=$?
for i in "${!lanes[@]}"; do
  lane_status=0
  wait "${pids[$i]}" || lane_status=$?
  echo "     Ran ${lanes[$i]} in a lane of its own (exit $lane_status):"
  cat "${logs[$i]}"
  [ "$lane_status" -eq 0 ] || status=$lane_status
done
exit "$status"
