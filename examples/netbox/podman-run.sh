#!/usr/bin/env bash
# NetBox's images under podman: PostgreSQL, Redis, the web and the worker images that
# `berth image build` made from a NetBox release bundle, on the host's network, with
# generated secrets mounted as files and settings given as BERTH_SET_* variables.
#
#   examples/netbox/podman-run.sh ARCHIVES_DIR WORK_DIR
#
# ARCHIVES_DIR holds the docker-archives (`berth image build … --docker-archives DIR`);
# WORK_DIR receives the secrets, the volumes and podman's own storage (nothing of the
# host's podman is used). Ports 56701 to 56703 on 127.0.0.1. As root. Ends with the
# four containers running; `podman --root WORK_DIR/pm/root --runroot WORK_DIR/pm/runroot
# stop --time 90 worker web redis pg` stops them.
set -euo pipefail
[ $# -eq 2 ] || { sed -n '2,12p' "$0" >&2; exit 2; }
ARCHIVES=$(realpath "$1")
mkdir -p "$2"
cd "$2"
export CONTAINERS_CONF=$PWD/containers.conf
# crun fails on some kernels' rlimits; runc with explicit limits works everywhere.
printf '[containers]\ndefault_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]\n[engine]\nruntime = "runc"\n' >containers.conf
p() { podman --root "$PWD/pm/root" --runroot "$PWD/pm/runroot" "$@"; }

mkdir -p secrets pgdata redisdata media
# Each secret in its alphabet (the manifest's), one file each, never printed.
python3 - <<'PY'
import os, secrets, string
def put(name, value):
    path = f"secrets/{name}"
    if not os.path.exists(path):
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "w") as f:
            f.write(value + "\n")
an = string.ascii_letters + string.digits
put("db_password", "".join(secrets.choice(an) for _ in range(32)))
put("redis_password", "".join(secrets.choice(an) for _ in range(32)))
put("secret_key", "".join(secrets.choice(an + "!#%&()*+,-./:;<=>?@[]^_{|}~") for _ in range(64)))
put("api_token_pepper", "".join(secrets.choice(an) for _ in range(64)))
put("admin_password", secrets.token_hex(16))
PY
# The images' service user owns the volumes.
chown 10001:10001 pgdata redisdata media
for s in postgresql redis web worker; do
  p load -q -i "$ARCHIVES/netbox-$s-4.7.3.docker.tar"
done

common=(--network host
  -e BERTH_SET_POSTGRESQL_PORT=56701 -e BERTH_SET_REDIS_PORT=56702
  -e BERTH_SET_WEB_PORT=56703 -e BERTH_SET_WEB_WORKERS=2
  -v "$PWD/secrets:/run/secrets:ro")
pg=(-v "$PWD/pgdata:/var/opt/berth/netbox/data/postgresql")
media=(-v "$PWD/media:/var/opt/berth/netbox/data/netbox/media")
healthy() { for _ in $(seq "$2"); do p healthcheck run "$1" >/dev/null 2>&1 && return 0; sleep 1; done; return 1; }

# The hooks in the manifest's order: the cluster, the server, the role and database
# (inside the server's container: it needs its socket), then the migrations.
p run --rm "${common[@]}" "${pg[@]}" localhost/netbox-postgresql:4.7.3 hook initdb
p run -d --name pg "${common[@]}" "${pg[@]}" localhost/netbox-postgresql:4.7.3
p run -d --name redis "${common[@]}" -v "$PWD/redisdata:/var/opt/berth/netbox/data/redis" \
  localhost/netbox-redis:4.7.3
healthy pg 60
p exec pg /usr/local/bin/berth container hook createdb
healthy redis 60
time p run --rm "${common[@]}" "${media[@]}" localhost/netbox-web:4.7.3 hook migrate
p run -d --name web "${common[@]}" "${media[@]}" localhost/netbox-web:4.7.3
p run -d --name worker "${common[@]}" "${media[@]}" localhost/netbox-worker:4.7.3
healthy web 240
healthy worker 120
curl -s -o /dev/null -w 'GET /login/: %{http_code}\n' http://127.0.0.1:56703/login/
p ps -a --format '{{.Names}} {{.Status}}'
