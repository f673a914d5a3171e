#!/bin/bash
# Backend.AI 23.09.10 "halfstack" on one Debian 12 host as root, no Docker Hub, everything on 127.0.0.1:
# PostgreSQL :8100, Redis :8110, etcd :8120, manager :8081, storage-proxy :6021/:6022, one Docker agent.
# Needs a running dockerd. About 3 minutes on a fresh machine; the kernel image is built with debootstrap.
# Ends with an SDK smoke test (vfolder + session + exec). stop.sh stops what this started, by PID.
# Vendored from ../shared/backendai-halfstack (jupyter-bai starts it from tests/backendai_cluster.py).
# Admin keypair of the example fixtures: AKIAIOSFODNN7EXAMPLE / wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY.
# The files under upstream/ are Backend.AI 23.09.10's own halfstack configs and example fixtures.
set -euo pipefail
KIT="$(cd "$(dirname "$(readlink -f "$0")")" && pwd)"
W=${BAI_HALFSTACK_DIR:-/tmp/bai-halfstack}; S=$W/run; V=$W/venv; B=$V/bin/backend.ai
PY=${BAI_HALFSTACK_PYTHON:-$(command -v python3.11 || command -v python3)}
ts() { echo "[$(date +%T)] +$(( $(date +%s) - T0 ))s $*"; }
T0=$(date +%s); mkdir -p $W/logs $S; cd $W

ts "apt"; DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
  postgresql redis-server etcd-server etcd-client debootstrap >$W/logs/apt.log 2>&1

ts "venv+pip"; "$PY" -m venv $V
# yarl<1.9.5: aiohttp 3.8.6 + new yarl -> 500 "Host '127.0.0.1:8081' cannot contain ':'"
# setuptools<70: agent imports pkg_resources
$V/bin/pip install -q --no-cache-dir backend.ai-manager==23.9.10 backend.ai-agent==23.9.10 \
  backend.ai-storage-proxy==23.9.10 backend.ai-client==23.9.10 'yarl==1.9.4' 'setuptools<70' >$W/logs/pip.log 2>&1
# sandbox lacks CAP_SYS_RESOURCE: docker cannot raise RLIMIT_NOFILE above 20000 / MEMLOCK above 8 MiB
sed -i -e 's/"Soft": 1048576, "Hard": 1048576/"Soft": 20000, "Hard": 20000/' \
       -e 's/{"Name": "memlock", "Soft": -1, "Hard": -1}/{"Name": "memlock", "Soft": 8388608, "Hard": 8388608}/' \
  $V/lib/python3.11/site-packages/ai/backend/agent/docker/agent.py

ts "kernel image rootfs (debootstrap) in background"
( debootstrap --variant=minbase --include=python3 bookworm $W/rootfs \
  && chroot $W/rootfs env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-ipykernel \
  && chroot $W/rootfs apt-get clean && rm -rf $W/rootfs/var/lib/apt/lists/* ) >$W/logs/debootstrap.log 2>&1 &
DBS=$!

ts "postgres/redis/etcd"
mkdir -p $W/pgdata $W/pgsock $W/etcd-data; chown postgres $W/pgdata $W/pgsock; echo develove >$W/pgpw; chmod 644 $W/pgpw
su postgres -c "/usr/lib/postgresql/15/bin/initdb -D $W/pgdata -U postgres --pwfile=$W/pgpw --auth-host=scram-sha-256 --auth-local=trust" >$W/logs/initdb.log 2>&1
setsid su postgres -c "exec /usr/lib/postgresql/15/bin/postgres -D $W/pgdata -h 127.0.0.1 -p 8100 -k $W/pgsock" >$W/logs/pg.log 2>&1 & echo $! >$W/pg.pid
setsid redis-server --port 8110 --bind 127.0.0.1 --save '' --appendonly no >$W/logs/redis.log 2>&1 & echo $! >$W/redis.pid
setsid etcd --name bai --data-dir $W/etcd-data --listen-client-urls http://127.0.0.1:8120 --advertise-client-urls http://127.0.0.1:8120 \
  --listen-peer-urls http://127.0.0.1:8121 --initial-advertise-peer-urls http://127.0.0.1:8121 --initial-cluster bai=http://127.0.0.1:8121 >$W/logs/etcd.log 2>&1 & echo $! >$W/etcd.pid
for i in $(seq 30); do PGPASSWORD=develove psql -h 127.0.0.1 -p 8100 -U postgres -c 'create database backend' >/dev/null 2>&1 && break; sleep 1; done

ts "configs"; cd $S
g() { cat "$KIT/upstream/$1"; }
mkdir -p fixtures/manager ipc var/lib/backend.ai vfroot/local scratches commit logs; echo 3 > vfroot/local/version.txt
for f in manager.key manager.key_secret example-users.json example-keypairs.json example-set-user-main-access-keys.json example-resource-presets.json; do g fixtures/manager/$f > fixtures/manager/$f; done
SECRET=$(python3 -c 'import secrets;print(secrets.token_hex(32))')
g configs/manager/halfstack.toml | sed -e 's/num-proc = .*/num-proc = 1/' -e 's/"0.0.0.0", port = 8081/"127.0.0.1", port = 8081/' \
  -e 's/"localhost", port = 8100/"127.0.0.1", port = 8100/' -e "s@# ipc-base-path = .*@ipc-base-path = \"$S/ipc\"@" \
  -e "s@pid-file = .*@pid-file = \"$S/manager.pid\"@" -e 's/colored = true/colored = false/' > manager.toml
g configs/manager/halfstack.alembic.ini | sed 's/localhost:8100/127.0.0.1:8100/' > alembic.ini
g configs/agent/halfstack.toml | sed -e "s@# ipc-base-path = .*@ipc-base-path = \"$S/ipc\"@" -e "s@var-base-path = .*@var-base-path = \"$S/var/lib/backend.ai\"@" \
  -e "s@mount-path = .*@mount-path = \"$S/vfroot/local\"@" -e "s@scratch-root = .*@scratch-root = \"$S/scratches\"@" \
  -e "s@image-commit-path = .*@image-commit-path = \"$S/commit/\"@" -e "s@pid-file = .*@pid-file = \"$S/agent.pid\"@" \
  -e 's/# allow-compute-plugins =.*/allow-compute-plugins = []/' -e 's/colored = true/colored = false/' -e 's/reserved-disk = "8G"/reserved-disk = "1G"/' -e 's/^reserved-cpu = 1/reserved-cpu = 0/' \
  -e 's/^agent-sock-port = 6007/agent-sock-port = 6007\nmetadata-server-bind-host = "127.0.0.1"/' > agent.toml
g configs/storage-proxy/halfstack.toml | sed -e 's/port = 2379/port = 8120/' -e 's/num-proc = 4/num-proc = 1/' -e 's/"0.0.0.0", port = 6021/"127.0.0.1", port = 6021/' \
  -e "s/some-secret-shared-with-manager/$SECRET/" -e "s@# ipc-base-path = .*@ipc-base-path = \"$S/ipc\"@" \
  -e "s@path = \"vfolder/local/volume1\"@path = \"$S/vfroot/local\"@" -e 's/colored = true/colored = false/' > storage-proxy.toml
g configs/manager/sample.etcd.volumes.json | sed -e "s/some-secret-shared-with-storage-proxy/$SECRET/" -e 's@https://127.0.0.1:6022@http://127.0.0.1:6022@' > volumes.json
g configs/manager/sample.etcd.redis-helper.json > redis-helper.json

ts "etcd keys + schema + fixtures"
M="$B mgr -f manager.toml"
$M etcd put config/redis/addr 127.0.0.1:8110 >>logs/setup.log 2>&1
$M etcd put-json config/redis/redis_helper_config redis-helper.json >>logs/setup.log 2>&1
$M etcd put-json volumes volumes.json >>logs/setup.log 2>&1
$M schema oneshot >>logs/setup.log 2>&1
for f in users keypairs set-user-main-access-keys resource-presets; do $M fixture populate fixtures/manager/example-$f.json >>logs/setup.log 2>&1; done
P='["create-vfolder","modify-vfolder","delete-vfolder","mount-in-session","upload-file","download-file","invite-others","set-user-specific-permission"]'
for t in domains groups keypair_resource_policies; do PGPASSWORD=develove psql -q -h 127.0.0.1 -p 8100 -U postgres backend -c "update $t set allowed_vfolder_hosts = '{\"local:volume1\": $P}'"; done

ts "start manager + storage-proxy"
setsid $M start-server >logs/manager.log 2>&1 & echo $! >manager.launch.pid
setsid $B storage start-server -f storage-proxy.toml >logs/storage.log 2>&1 & echo $! >storage.launch.pid
for i in $(seq 60); do curl -sf http://127.0.0.1:8081/ && break; sleep 1; done; echo

ts "wait debootstrap + docker import"; wait $DBS
# Backend.AI's kernel runner starts a model service only when the image has this directory
# (ai/backend/kernel/base.py: service_parser), as Backend.AI's own images do.
mkdir -p $W/rootfs/etc/backend.ai/service-defs
tar -C $W/rootfs -c . | docker import \
  --change 'LABEL ai.backend.kernelspec="1"' --change 'LABEL ai.backend.features="batch query uid-match user-input"' \
  --change 'LABEL ai.backend.base-distro="ubuntu22.04"' --change 'LABEL ai.backend.runtime-type="python"' \
  --change 'LABEL ai.backend.runtime-path="/usr/bin/python3"' --change 'LABEL ai.backend.service-ports=""' \
  --change 'LABEL ai.backend.accelerators=""' --change 'LABEL ai.backend.envs.corecount="OPENBLAS_NUM_THREADS,OMP_NUM_THREADS,NPROC"' \
  --change 'LABEL ai.backend.resource.min.cpu="1"' --change 'LABEL ai.backend.resource.min.mem="256m"' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' \
  - lablup/python:3.11-debian12
$M image rescan --local 2>&1 | grep -E 'Updated|Skipped'
$M image alias python index.docker.io/lablup/python:3.11-debian12 x86_64 >>logs/setup.log 2>&1

ts "start agent"
setsid $B ag start-server -f agent.toml >logs/agent.log 2>&1 & echo $! >agent.launch.pid
for i in $(seq 120); do grep -q 'started handling RPC' logs/agent.log && break; sleep 1; done
sleep 5  # first heartbeat
ts "SDK test"; $V/bin/python "$KIT/sdk_smoke.py" 2>&1 | grep -v -e Deprecat -e '^logs:'
ts "done"
