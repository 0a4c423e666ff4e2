#!/usr/bin/env bash
# Sequential write and cold read of one large file (1 GiB by default), side
# by side in one run on the same PostgreSQL and SeaweedFS: MagicFS's object
# chunk store through the core (crates/magicfs-objects/examples/seq_bench.rs)
# against JuiceFS through its mount (dd, bs=1M). Cold read: JuiceFS is
# remounted with an empty cache and the page cache dropped; MagicFS reads
# with its block cache emptied. Needs root (dropping caches). Prints one
# line per system and the ratios.
#   MIB=1024 scripts/bench-objects.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MIB="${MIB:-1024}"
NAME=bench-objects NO_MAGICFS=1
. scripts/cluster-bench-env.sh
# SEQ_BENCH names an already built seq_bench (skips the release build).
if [ -z "${SEQ_BENCH:-}" ]; then
  cargo build --release --quiet -p magicfs-objects --example seq_bench
fi
BENCH="${SEQ_BENCH:-${CARGO_TARGET_DIR:-$PWD/target}/release/examples/seq_bench}"
W=$(mktemp -d /tmp/magicfs-bench-objects.XXXXXX)
JDB="jfsbench_$ID"
MB="magicfs-bench-$ID"
# S3 calls from the shell through boto3 (moto's dependency, in the services' venv).
s3py() { "$PY" scripts/s3-objects.py "$@"; }
cleanup() {
  if mountpoint -q "$W/jfs"; then "$JUICEFS" umount --force "$W/jfs" >/dev/null 2>&1 || umount -l "$W/jfs" || true; fi
  "$PSQL" "$MAGICFS_TEST_PG" -qc "DROP DATABASE IF EXISTS $JDB" >/dev/null 2>&1 || true
  # A shared SeaweedFS has a bounded number of volumes: give them back.
  s3py drop "jfsbench-$ID" >/dev/null 2>&1 || true
  s3py drop "$MB" >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/jfs"
head -c "$((MIB << 20))" /dev/urandom >"$W/data"
drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }

# JuiceFS on the same PostgreSQL (its own database) and SeaweedFS (its own bucket).
"$PSQL" "$MAGICFS_TEST_PG" -qc "CREATE DATABASE $JDB" >/dev/null
JMETA="$(echo "$MAGICFS_TEST_PG" | sed -E "s#/[^/?]*(\?.*)?\$#/$JDB#")?sslmode=disable"
"$JUICEFS" format --storage s3 --bucket "$AWS_ENDPOINT_URL/jfsbench-$ID" \
  --access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY" \
  "$JMETA" bench >"$W/jfs.log" 2>&1
jmount() { "$JUICEFS" mount -d --cache-dir "$W/jcache.$1" "$JMETA" "$W/jfs" >>"$W/jfs.log" 2>&1; }
jmount 1
# A warm-up file so the first request's set-up is not timed.
dd if="$W/data" of="$W/jfs/warm" bs=1M count=1 conv=fsync status=none
drop
t0=$(date +%s.%N)
dd if="$W/data" of="$W/jfs/big" bs=1M conv=fsync status=none
t1=$(date +%s.%N)
"$JUICEFS" umount "$W/jfs"
drop
jmount 2
t2=$(date +%s.%N)
dd if="$W/jfs/big" of=/dev/null bs=1M status=none
t3=$(date +%s.%N)
JW=$(echo "$MIB / ($t1 - $t0)" | bc -l)
JR=$(echo "$MIB / ($t3 - $t2)" | bc -l)
printf 'juicefs  write %.1f MiB/s  cold read %.1f MiB/s\n' "$JW" "$JR"

# MagicFS: the same bytes through the core into segments on SeaweedFS.
drop
OUT=$("$BENCH" "s3://$MB/seq" "$W/data")
MW=$(echo "$OUT" | sed -E 's/.*"write_mib_s":([0-9.]+).*/\1/')
MR=$(echo "$OUT" | sed -E 's/.*"cold_read_mib_s":([0-9.]+).*/\1/')
printf 'magicfs  write %.1f MiB/s  cold read %.1f MiB/s  %s\n' "$MW" "$MR" "$OUT"
printf 'ratio (magicfs / juicefs): write %.2fx  cold read %.2fx\n' \
  "$(echo "$MW / $JW" | bc -l)" "$(echo "$MR / $JR" | bc -l)"

# Objects for 500 files of 4 KiB (create, write, close), counted in the bucket.
before=$(s3py count "jfsbench-$ID")
for i in $(seq 1 500); do head -c 4096 /dev/urandom >"$W/jfs/small$i"; done
sleep 2
JOBJ=$(($(s3py count "jfsbench-$ID") - before))
MOUT=$("$BENCH" "s3://$MB/small" --small 500)
MOBJ=$(s3py count "$MB" small/)
echo "juicefs  500 small files: $JOBJ objects"
echo "magicfs  500 small files: $MOBJ objects  $MOUT"
