#!/usr/bin/env bash
# Remote-data benchmark, one run, side by side: counteq over a blob locally
# (the baseline), over an http:// source (range requests to a `magicfs serve`),
# and split over two `magicfs serve` endpoints on loopback; then a recipe push
# of a file, one byte changed, and the push again (transfer ratio).
# Sizes in MiB: MAGICFS_BENCH_MIB (compute blob, default 256) and
# MAGICFS_BENCH_PUSH_MIB (pushed file, default 100).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p magicfs
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/magicfs"
MIB="${MAGICFS_BENCH_MIB:-256}"
PUSH_MIB="${MAGICFS_BENCH_PUSH_MIB:-100}"
W=$(mktemp -d /dev/shm/magicfs-bench-remote.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/root" "$W/peer"
head -c $((MIB << 20)) /dev/urandom > "$W/root/blob"
head -c $((PUSH_MIB << 20)) /dev/urandom > "$W/file.bin"

serve() { # NAME ROOT: starts a server; its address is in $W/NAME.addr
  "$BIN" serve --listen 127.0.0.1:0 --root "$2" > /dev/null 2> "$W/serve.$1.log" &
  PIDS+=($!)
  for _ in $(seq 200); do
    grep -q "listening on" "$W/serve.$1.log" && break
    sleep 0.05
  done
  sed -n 's/.*listening on http:\/\///p' "$W/serve.$1.log" | head -1 > "$W/$1.addr"
}
serve a "$W/root"
serve b "$W/root"
serve p "$W/peer"
A=$(cat "$W/a.addr")
B=$(cat "$W/b.addr")
P=$(cat "$W/p.addr")
export MAGICFS_ENDPOINTS="$W/endpoints.json"
"$BIN" endpoints add a "http://$A" --concurrency 2 2>/dev/null
"$BIN" endpoints add b "http://$B" --concurrency 2 2>/dev/null
"$BIN" endpoints probe >/dev/null

rate() { sed -n 's/.* \([0-9.]*\) GB\/s.*/\1/p' | tail -1; }
best() { # runs "$@" 3 times, prints the best GB/s of the last summary line
  local b=0 r
  for _ in 1 2 3; do
    r=$("$@" 2>&1 >/dev/null | grep -v "^magicfs compute: \(batch\|endpoint\|fetched\)" | rate)
    b=$(awk -v a="$b" -v c="$r" 'BEGIN { print (c > a) ? c : a }')
  done
  echo "$b"
}
OP=(--op counteq --imm 0 --window 1MiB)
LOCAL=$(best "$BIN" compute "$W/root/blob" "${OP[@]}")
HTTP=$(best "$BIN" compute "http://$A/files/blob" "${OP[@]}")
ON=$(best "$BIN" compute --on all "file://$W/root/blob" "${OP[@]}" --batch 16MiB)
echo "counteq over ${MIB} MiB in tmpfs, best of 3, GB/s (ratio to local):"
awk -v l="$LOCAL" -v h="$HTTP" -v o="$ON" 'BEGIN {
  printf "  local (memory map)                 %6.2f  1.00\n", l
  printf "  http:// source, range requests     %6.2f  %.2f\n", h, h / l
  printf "  --on all (2 endpoints, loopback)   %6.2f  %.2f\n", o, o / l
}'
"$BIN" compute --on all "file://$W/root/blob" "${OP[@]}" --batch 16MiB 2>&1 >/dev/null | grep "endpoint "

FIRST=$("$BIN" push "$W/file.bin" "http://$P/" --json 2>/dev/null)
printf 'x' | dd of="$W/file.bin" bs=1 seek=$((PUSH_MIB << 19)) conv=notrunc 2>/dev/null
SECOND=$("$BIN" push "$W/file.bin" "http://$P/" --json 2>/dev/null)
cmp "$W/file.bin" "$W/peer/file.bin"
echo "push of ${PUSH_MIB} MiB (random bytes), then one byte changed and pushed again:"
echo "  first:  $FIRST"
echo "  second: $SECOND"
