#!/usr/bin/env bash
# Where the CPU of a sequential write goes on a cluster volume, against
# JuiceFS on the same services: one mount each (MagicFS and JuiceFS 1.4.2, a
# database and a bucket each on scripts/cluster-up.sh's PostgreSQL and
# SeaweedFS), RUNS writes of MIB MiB of random bytes with `dd bs=1M`
# (closed, so both have uploaded everything), each reported as wall time and
# the CPU time (from /proc/PID/stat) of the filesystem's daemon and of
# SeaweedFS (`weed`) during the write. Needs root (FUSE).
#   MAGICFS=target/release/magicfs MIB=1024 RUNS=2 scripts/bench-cluster-cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MIB="${MIB:-1024}"
RUNS="${RUNS:-2}"
NAME=bench-cluster-cpu
. scripts/cluster-bench-env.sh
RUN="${MAGICFS_CLUSTER_RUN:-/var/tmp/magicfs-cluster}"
WEED=$(cat "$RUN/weed.pid" 2>/dev/null || true)
[ -n "$WEED" ] && [ -d "/proc/$WEED" ] || { echo "bench-cluster-cpu: SeaweedFS is not running ($RUN/weed.pid)" >&2; exit 1; }
W=$(mktemp -d /tmp/magicfs-bench-cpu.XXXXXX)
MDB="mfscpu_$ID" JDB="jfscpu_$ID" MB="magicfs-cpu-$ID" JB="jfs-cpu-$ID"
MMETA=$(db_url "$MDB")
JMETA="$(db_url "$JDB")?sslmode=disable"
MPID=""
cleanup() {
  mountpoint -q "$W/m" && { fusermount3 -u "$W/m" 2>/dev/null || umount -l "$W/m" || true; }
  mountpoint -q "$W/j" && { "$JUICEFS" umount --force "$W/j" >/dev/null 2>&1 || umount -l "$W/j" || true; }
  [ -n "$MPID" ] && { wait "$MPID" 2>/dev/null || true; }
  for db in "$MDB" "$JDB"; do "$PSQL" "$MAGICFS_TEST_PG" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; done
  for b in "$MB" "$JB"; do "$PY" scripts/s3-objects.py drop "$b" >/dev/null 2>&1 || true; done
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W"/{m,j}
head -c $((MIB << 20)) /dev/urandom > "$W/data"
for db in "$MDB" "$JDB"; do "$PSQL" "$MAGICFS_TEST_PG" -qc "CREATE DATABASE $db" >/dev/null; done
"$MAGICFS" format --meta "$MMETA" --store "s3://$MB/vol" >"$W/m.log" 2>&1
MAGICFS_LOG=warn "$MAGICFS" mount "$W/m" --meta "$MMETA" --cache-dir "$W/mcache" --no-chat --no-search >>"$W/m.log" 2>&1 &
MPID=$!
"$JUICEFS" format --storage s3 --bucket "$AWS_ENDPOINT_URL/$JB" \
  --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" "$JMETA" bench >"$W/j.log" 2>&1
"$JUICEFS" mount -d --cache-dir "$W/jcache" "$JMETA" "$W/j" >>"$W/j.log" 2>&1
for _ in $(seq 300); do mountpoint -q "$W/m" && break; sleep 0.1; done
mountpoint -q "$W/m" || { cat "$W/m.log" >&2; exit 1; }
JPID=$(pgrep -f "juicefs mount.*$W/j" | tail -1)

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
write() { # NAME DIR PID: one write, one line
  local c0 w0 t0 t1
  sync
  c0=$(ticks "$3") w0=$(ticks "$WEED") t0=$(date +%s.%N)
  dd if="$W/data" of="$2/big" bs=1M 2>/dev/null
  t1=$(date +%s.%N)
  awk -v n="$1" -v t0="$t0" -v t1="$t1" -v c="$(($(ticks "$3") - c0))" -v w="$(($(ticks "$WEED") - w0))" \
    -v hz="$HZ" -v mib="$MIB" 'BEGIN {
      printf "| %s | %.1f | %.1f | %.2f | %.2f |\n", n, t1 - t0, mib / (t1 - t0), c / hz, w / hz }'
  rm -f "$2/big"
  sleep 2
}
echo "| ${MIB} MiB written with dd bs=1M | wall s | MiB/s | daemon CPU s | SeaweedFS CPU s |"
echo "|---|---:|---:|---:|---:|"
for _ in $(seq "$RUNS"); do
  write juicefs "$W/j" "$JPID"
  write magicfs "$W/m" "$MPID"
done
