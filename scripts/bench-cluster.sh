#!/usr/bin/env bash
# MagicFS cluster volumes against JuiceFS, side by side in one run, on the
# same PostgreSQL and SeaweedFS (scripts/cluster-up.sh): each system gets its
# own database and bucket and is mounted twice (separate cache directories,
# standing for two machines). `magicfs bench-cluster` then measures on both:
# 4 KiB files written one after another (files/s, S3 objects made, PostgreSQL
# transactions per file), `ls -l` and `stat` of a 10,000-entry directory from
# the other mount, and a sequential write with a cold read on the other mount.
# Prints a Markdown table with ratios (MagicFS vs JuiceFS). Needs root
# (FUSE, dropping caches).
#   FILES=500 ENTRIES=10000 STATS=5000 MIB=1024 scripts/bench-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
FILES="${FILES:-500}"
ENTRIES="${ENTRIES:-10000}"
STATS="${STATS:-5000}"
MIB="${MIB:-1024}"
NAME=bench-cluster
. scripts/cluster-bench-env.sh
S3PY="$PWD/scripts/s3-objects.py"
W=$(mktemp -d /tmp/magicfs-bench-cluster.XXXXXX)
MDB="mfsbench_$ID" JDB="jfsbench_$ID"
MB="magicfs-cbench-$ID" JB="jfs-cbench-$ID"
MMETA=$(db_url "$MDB")
JMETA="$(db_url "$JDB")?sslmode=disable"
MPIDS=()
cleanup() {
  for d in "$W/m1" "$W/m2" "$W/j1" "$W/j2"; do
    if mountpoint -q "$d"; then
      case "$d" in
        "$W"/j*) "$JUICEFS" umount --force "$d" >/dev/null 2>&1 || umount -l "$d" || true ;;
        *) fusermount3 -u "$d" 2>/dev/null || umount -l "$d" || true ;;
      esac
    fi
  done
  for p in "${MPIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for db in "$MDB" "$JDB"; do "$PSQL" "$MAGICFS_TEST_PG" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true; done
  # A shared SeaweedFS has a bounded number of volumes: give them back.
  for b in "$MB" "$JB"; do "$PY" "$S3PY" drop "$b" >/dev/null 2>&1 || true; done
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W"/{m1,m2,j1,j2}
for db in "$MDB" "$JDB"; do "$PSQL" "$MAGICFS_TEST_PG" -qc "CREATE DATABASE $db" >/dev/null; done
xacts() { echo "'$PSQL' '$MAGICFS_TEST_PG' -Atc \"SELECT pg_stat_force_next_flush(); SELECT xact_commit FROM pg_stat_database WHERE datname = '$1'\" | tail -1"; }

# MagicFS: one volume, two mounts.
"$MAGICFS" format --meta "$MMETA" --store "s3://$MB/vol" >"$W/m.log" 2>&1
for i in 1 2; do
  MAGICFS_LOG=warn "$MAGICFS" mount "$W/m$i" --meta "$MMETA" --cache-dir "$W/mcache$i" --no-chat >>"$W/m.log" 2>&1 &
  MPIDS+=($!)
done
# JuiceFS: one volume, two mounts.
"$JUICEFS" format --storage s3 --bucket "$AWS_ENDPOINT_URL/$JB" \
  --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" "$JMETA" bench >"$W/j.log" 2>&1
for i in 1 2; do "$JUICEFS" mount -d --cache-dir "$W/jcache$i" "$JMETA" "$W/j$i" >>"$W/j.log" 2>&1; done
for d in "$W/m1" "$W/m2"; do
  for _ in $(seq 300); do mountpoint -q "$d" && break; sleep 0.1; done
  mountpoint -q "$d" || { cat "$W/m.log" >&2; exit 1; }
done

"$MAGICFS" bench-cluster --files "$FILES" --entries "$ENTRIES" --stats "$STATS" --size-mib "$MIB" \
  --count-objects "magicfs=$PY $S3PY count $MB" --count-objects "juicefs=$PY $S3PY count $JB" \
  --count-transactions "magicfs=$(xacts "$MDB")" --count-transactions "juicefs=$(xacts "$JDB")" \
  --settle-secs 11 --baseline juicefs "magicfs=$W/m1,$W/m2" "juicefs=$W/j1,$W/j2"
