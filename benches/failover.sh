#!/usr/bin/env bash
# Failover: the PostgreSQL leader's machine is killed (every process of its network
# namespace, SIGKILL) while a client writes through the load balancer, one connection
# per write. Measured: kill → the first write acknowledged again, how many writes the
# client saw refused meanwhile, and acknowledged writes missing afterwards.
#
# berth's fleet (the test stack: three database nodes with etcd and PgBouncer, a load
# balancer, a web node, brought up by `berth fleet up` over SSH) beside the same engines
# set up by hand as their documentation's examples have them (Patroni's default
# timings and asynchronous replication, HAProxy's example checks from Patroni's
# repository), on the same machines, in the same run. See benches/README.md.
#
#   benches/failover.sh            (as root)
#
# Environment:
#   BENCH_RUNS    failovers of each setup, each on a fresh cluster   (3)
#   BENCH_BERTH   a berth binary to use instead of building the release one
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
COMMAND_LINE="benches/failover.sh${*:+ $*}"
RUNS=${BENCH_RUNS:-3}
PY=/usr/bin/python3
NET=10.82.0
TAG=bfo$$

[ "$(id -u)" -eq 0 ] || { echo "benches/failover.sh: run as root" >&2; exit 1; }
say() { printf '\n== %s\n' "$*" >&2; }
. "$ROOT/benches/lib/berth.sh"
find_berth

WORK=$(mktemp -d /tmp/berth-failover-bench.XXXXXX)
chmod 755 "$WORK"
NODES="1 2 3 4 5"
# Every process of a node's namespace but its sshd, SIGKILL: the machine dies.
crash() {
  local pid
  for pid in $(ip netns pids "${TAG}n$1"); do
    [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = sshd ] || kill -9 "$pid" 2>/dev/null || true
  done
}
stop_all() {
  local n p
  for n in $NODES; do
    for p in "$WORK"/n$n/berth*; do [ -e "$p/site.toml" ] && "$BERTH" --prefix "$p" down >/dev/null 2>&1 || true; done
    crash "$n" 2>/dev/null || true
  done
}
cleanup() {
  stop_all
  for n in $NODES; do [ -f "$WORK/n$n/sshd.pid" ] && kill "$(cat "$WORK/n$n/sshd.pid")" 2>/dev/null || true; done
  for n in $NODES; do ip netns del "${TAG}n$n" 2>/dev/null || true; done
  ip netns del ${TAG}a 2>/dev/null || true; ip netns del ${TAG}s 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

say "five machines and an admin's on a private bridge"
ip netns add ${TAG}s; ip -n ${TAG}s link set lo up
ip -n ${TAG}s link add br0 type bridge; ip -n ${TAG}s link set br0 up
plug() { # namespace host-number port-name
  ip netns add "$1"; ip -n "$1" link set lo up
  ip link add "$3" netns ${TAG}s type veth peer name eth0 netns "$1"
  ip -n ${TAG}s link set "$3" master br0; ip -n ${TAG}s link set "$3" up
  ip -n "$1" addr add "$NET.$2/24" dev eth0; ip -n "$1" link set eth0 up
}
plug ${TAG}a 250 p-a
ssh-keygen -q -t ed25519 -N '' -f "$WORK/id_ed25519"
mkdir -p /run/sshd
: > "$WORK/known_hosts"
for n in $NODES; do
  plug ${TAG}n$n $n p-n$n
  d=$WORK/n$n; mkdir -p "$d"
  ssh-keygen -q -t ed25519 -N '' -f "$d/host_key"
  cp "$WORK/id_ed25519.pub" "$d/authorized_keys"
  printf 'ListenAddress %s\nHostKey %s\nPidFile %s\nPermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\nAuthorizedKeysFile %s\nStrictModes no\nLogLevel ERROR\n' \
    "$NET.$n" "$d/host_key" "$d/sshd.pid" "$d/authorized_keys" > "$d/sshd_config"
  ip netns exec ${TAG}n$n /usr/sbin/sshd -f "$d/sshd_config"
  echo "$NET.$n $(cut -d' ' -f1,2 "$d/host_key.pub")" >> "$WORK/known_hosts"
done
printf 'users = "shared"\nexternal_url = "http://%s.4:18080/"\n' "$NET" > "$WORK/site.toml"

# The leader's node number, asked of Patroni's REST API on the database nodes.
leader() {
  local n
  for n in 1 2 3; do
    ip netns exec ${TAG}a curl -s -m 2 "http://$NET.$n:8008/cluster" 2>/dev/null \
      | "$PY" -c 'import json,sys
c = json.load(sys.stdin)
l = [m["host"] for m in c["members"] if m["role"] == "leader"]
ok = [m for m in c["members"] if m["role"] != "leader" and m["state"] == "running"]
print(l[0].rsplit(".", 1)[1] if l and len(ok) == 2 else "")' 2>/dev/null && return 0
  done
  return 1
}
wait_healthy() {
  local l="" i
  for i in $(seq 240); do
    l=$(leader || true)
    [ -n "$l" ] && { echo "$l"; return 0; }
    sleep 0.5
  done
  echo "no healthy cluster" >&2; return 1
}

# One failover: the client writes through host:port, the leader's node dies, the
# client goes on until it has written again, then what it wrote is read back.
failover() { # name run host port user password
  local name=$1 run=$2 out="$WORK/$1-$2.json" l
  l=$(wait_healthy)
  ip netns exec ${TAG}a "$PY" "$ROOT/benches/lib/writer.py" "$3" "$4" "$5" "$6" "$WORK/$name-$run.kill" > "$out" &
  local writer=$!
  sleep 5
  date +%s.%N > "$WORK/$name-$run.kill.tmp"
  crash "$l"
  mv "$WORK/$name-$run.kill.tmp" "$WORK/$name-$run.kill"
  wait "$writer"
  say "$name run $run: $(cat "$out")"
}

for run in $(seq "$RUNS"); do
  say "berth: fleet up, run $run"
  {
    printf '[fleet]\nname = "bench"\nidentity = "id_ed25519"\nknown_hosts = "known_hosts"\nsite = "site.toml"\nberth = "%s"\n' "$BERTH"
    roles=('"database", "consensus", "pooler", "cache"' '"database", "consensus", "pooler"' '"database", "consensus", "pooler"' '"load-balancer"' '"web"')
    names=(db-1 db-2 db-3 lb web)
    for n in $NODES; do
      printf '\n[nodes.%s]\naddress = "%s.%s"\nroles = [%s]\nprefix = "%s"\n' "${names[$((n-1))]}" "$NET" "$n" "${roles[$((n-1))]}" "$WORK/n$n/berth$run"
    done
  } > "$WORK/fleet.toml"
  rm -rf "$WORK/secrets"
  ip netns exec ${TAG}a "$BERTH" --manifest "$ROOT/tests/fixtures/ministack" fleet up --fleet "$WORK/fleet.toml" >&2
  ip netns exec ${TAG}a env PGPASSWORD="$(cat "$WORK/secrets/db_password")" \
    /usr/lib/postgresql/15/bin/psql -X -q -h $NET.4 -p 15432 -U app -d app -c 'CREATE TABLE acked (v bigint PRIMARY KEY)'
  failover berth "$run" "$NET.4" 15432 app "$(cat "$WORK/secrets/db_password")"
  stop_all

  say "by hand: etcd, Patroni and HAProxy as their examples have them, run $run"
  cluster=$NET.1:2379,$NET.2:2379,$NET.3:2379
  peers=n1=http://$NET.1:2380,n2=http://$NET.2:2380,n3=http://$NET.3:2380
  for n in 1 2 3; do
    d=$WORK/n$n/hand$run; mkdir -p "$d/etcd"; install -d -o postgres -g postgres -m 0700 "$d/pg"
    ip netns exec ${TAG}n$n setsid etcd --name n$n --data-dir "$d/etcd/data" --enable-v2 \
      --listen-peer-urls http://$NET.$n:2380 --initial-advertise-peer-urls http://$NET.$n:2380 \
      --listen-client-urls http://$NET.$n:2379 --advertise-client-urls http://$NET.$n:2379 \
      --initial-cluster "$peers" --initial-cluster-token hand$run --initial-cluster-state new \
      > "$d/etcd.log" 2>&1 < /dev/null &
    cat > "$d/patroni.yml" <<EOF
scope: hand$run
namespace: /service/
name: n$n
restapi:
  listen: $NET.$n:8008
  connect_address: $NET.$n:8008
etcd:
  hosts: $cluster
bootstrap:
  dcs:
    ttl: 30
    loop_wait: 10
    retry_timeout: 10
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
  initdb:
  - encoding: UTF8
  - data-checksums
postgresql:
  listen: 127.0.0.1,$NET.$n:5432
  connect_address: $NET.$n:5432
  data_dir: $d/pg/data
  bin_dir: /usr/lib/postgresql/15/bin
  pgpass: $d/pg/pgpass
  authentication:
    replication: {username: replicator, password: rep-pass}
    superuser: {username: postgres, password: su-pass}
    rewind: {username: rewind_user, password: rewind-pass}
  parameters:
    unix_socket_directories: '$d/pg'
  pg_hba:
  - local all all trust
  - host replication replicator $NET.0/24 md5
  - host replication replicator 127.0.0.1/32 md5
  - host all all 0.0.0.0/0 md5
EOF
    chown postgres "$d/patroni.yml"
    ip netns exec ${TAG}n$n setsid runuser -u postgres -- sh -c "cd '$d/pg' && exec patroni '$d/patroni.yml'" \
      > "$d/patroni.log" 2>&1 < /dev/null &
  done
  d=$WORK/n4/hand$run; mkdir -p "$d"
  cat > "$d/haproxy.cfg" <<EOF
global
    maxconn 100
defaults
    log global
    mode tcp
    retries 2
    timeout client 30m
    timeout connect 4s
    timeout server 30m
    timeout check 5s
listen primary
    bind $NET.4:5000
    option httpchk OPTIONS /primary
    http-check expect status 200
    default-server inter 3s fall 3 rise 2 on-marked-down shutdown-sessions
    server n1 $NET.1:5432 maxconn 100 check port 8008
    server n2 $NET.2:5432 maxconn 100 check port 8008
    server n3 $NET.3:5432 maxconn 100 check port 8008
EOF
  ip netns exec ${TAG}n4 setsid haproxy -W -db -f "$d/haproxy.cfg" > "$d/haproxy.log" 2>&1 < /dev/null &
  l=$(wait_healthy)
  ip netns exec ${TAG}a env PGPASSWORD=su-pass /usr/lib/postgresql/15/bin/psql -X -q -h $NET.$l -p 5432 -U postgres -d postgres \
    -c "CREATE ROLE app LOGIN PASSWORD 'app-pass'" -c 'CREATE DATABASE app OWNER app'
  ip netns exec ${TAG}a env PGPASSWORD=app-pass /usr/lib/postgresql/15/bin/psql -X -q -h $NET.$l -p 5432 -U app -d app \
    -c 'CREATE TABLE acked (v bigint PRIMARY KEY)'
  sleep 7 # HAProxy's example marks a server up after two checks 3 s apart
  failover hand "$run" "$NET.4" 5000 app app-pass
  stop_all
done

"$PY" - "$WORK" "$RUNS" "$COMMAND_LINE" "$BUILD" > benches/RESULTS-failover.md <<'PYEOF'
import json, os, statistics, subprocess, sys, datetime
work, runs, command, build = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
data = {k: [json.load(open(f"{work}/{k}-{i}.json")) for i in range(1, runs + 1)] for k in ("berth", "hand")}
commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
mem = open("/proc/meminfo").read().split("\n")[0].split()[1]
print("# Failover: the PostgreSQL leader's machine killed, berth's fleet beside the same engines set up by hand\n")
print("Generated by `%s` (%s); see `benches/README.md`.\n" % (command, build))
print("| | |\n| --- | --- |")
print(f"| date | {datetime.datetime.utcnow():%Y-%m-%d %H:%M:%S} UTC |")
print(f"| commit | `{commit}` |")
print(f"| machine | {os.cpu_count()} CPUs, {int(mem) / 1048576:.1f} GiB, {os.uname().release} |")
print("| berth | `berth fleet up` of the test stack: 3 database nodes (Patroni, etcd, PgBouncer), a load balancer (HAProxy), a web node; Patroni `ttl` 15 s, `loop_wait` 5 s, `retry_timeout` 5 s, synchronous replication; HAProxy checks every 1 s, down after 2 |")
print("| by hand | the same engines from the same packages as their examples have them: Patroni's defaults (`ttl` 30 s, `loop_wait` 10 s, `retry_timeout` 10 s, asynchronous replication), HAProxy's example from Patroni's repository (checks every 3 s, down after 3, up after 2); etcd's v2 API on both sides |")
print("| client | one new connection per `INSERT`, through the load balancer, 1 s connect timeout |\n")
print("Seconds from the kill to the first acknowledged write; writes refused in between; acknowledged writes missing afterwards.\n")
print("| run | berth: failover | refused | lost | by hand: failover | refused | lost | by hand / berth |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for i in range(runs):
    b, h = data["berth"][i], data["hand"][i]
    print(f"| {i + 1} | {b['failover']:.1f} | {b['refused']} | {b['lost']} | {h['failover']:.1f} | {h['refused']} | {h['lost']} | {h['failover'] / b['failover']:.2f} |")
mb = statistics.median(d["failover"] for d in data["berth"]); mh = statistics.median(d["failover"] for d in data["hand"])
lb = sum(d["lost"] for d in data["berth"]); lh = sum(d["lost"] for d in data["hand"])
print(f"\nMedian: berth's fleet takes writes again **{mb:.1f} s** after the leader's machine dies, the hand setup **{mh:.1f} s** (ratio {mh / mb:.2f}); acknowledged writes lost over all runs: berth {lb}, by hand {lh}.")
PYEOF
say "wrote benches/RESULTS-failover.md"
cat benches/RESULTS-failover.md
