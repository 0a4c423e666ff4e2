#!/usr/bin/env bash
# Remote-data benchmark, one run, side by side: counteq over a blob locally
# (the baseline), over an http:// source (range requests to a `magicfs serve`),
# and split over two `magicfs serve` endpoints on loopback; the same file
# fetched whole by curl into /dev/null (what the socket alone carries, no
# compute); a push of a file
# to a peer and a pull back (throughput); one byte changed and the push again
# (transfer ratio); and, where openssl can make a test CA, the source and the
# push over https.
#
# MAGICFS_BENCH_BEFORE=BIN also runs every measurement with BIN (an older
# build, e.g. one of the main branch built into another target directory),
# on the same data in the same run, so the two columns compare.
# Sizes in MiB: MAGICFS_BENCH_MIB (compute blob, default 256) and
# MAGICFS_BENCH_PUSH_MIB (pushed file, default 100).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet -p magicfs --no-default-features
AFTER="${CARGO_TARGET_DIR:-$PWD/target}/release/magicfs"
BEFORE="${MAGICFS_BENCH_BEFORE:-}"
MIB="${MAGICFS_BENCH_MIB:-256}"
PUSH_MIB="${MAGICFS_BENCH_PUSH_MIB:-100}"
W=$(mktemp -d /dev/shm/magicfs-bench-remote.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$W"
}
trap cleanup EXIT
mkdir -p "$W/root"
head -c $((MIB << 20)) /dev/urandom > "$W/root/blob"
head -c $((PUSH_MIB << 20)) /dev/urandom > "$W/file.bin"
export MAGICFS_TOKEN=bench MAGICFS_SOURCE_TOKEN=bench

serve() { # BIN NAME ROOT [ARGS…]: starts a server; its URL is in $W/NAME.url
  local bin=$1 name=$2 root=$3
  shift 3
  "$bin" serve --listen 127.0.0.1:0 --root "$root" "$@" > /dev/null 2> "$W/serve.$name.log" &
  PIDS+=($!)
  for _ in $(seq 200); do
    grep -q "listening on" "$W/serve.$name.log" && break
    sleep 0.05
  done
  sed -n 's/.*listening on \(https\{0,1\}:\/\/[^ ]*\).*/\1/p' "$W/serve.$name.log" | head -1 > "$W/$name.url"
}

rate() { sed -n 's/.* \([0-9.]*\) GB\/s.*/\1/p' | tail -1; }
best() { # runs "$@" 3 times, prints the best GB/s of the last summary line
  local b=0 r
  for _ in 1 2 3; do
    r=$("$@" 2>&1 >/dev/null | grep -v "^magicfs compute: \(batch\|endpoint\|fetched\)" | rate)
    b=$(awk -v a="$b" -v c="$r" 'BEGIN { print (c > a) ? c : a }')
  done
  echo "$b"
}
wire() { # URL: the best GB/s of 3 plain GETs of the whole file into /dev/null (curl, no compute)
  local b=0 r
  for _ in 1 2 3; do
    r=$(curl -sf -o /dev/null -H "Authorization: Bearer bench" -w '%{speed_download}' "$1" | awk '{ print $1 / 1e9 }')
    b=$(awk -v a="$b" -v c="$r" 'BEGIN { print (c > a) ? c : a }')
  done
  echo "$b"
}
mbps() { # a transfer report (JSON) → MB/s of logical bytes
  python3 -c 'import json,sys; r=json.loads(sys.stdin.read()); print("%.0f" % (r["logical_bytes"] / r["elapsed_secs"] / 1e6))'
}
field() { python3 -c "import json,sys; print(json.loads(sys.stdin.read())[\"$1\"])"; }
OP=(--op counteq --imm 0 --window 1MiB)

measure() { # LABEL BIN: one column of figures in $W/LABEL.*
  local label=$1 bin=$2
  serve "$bin" "$label-a" "$W/root"
  serve "$bin" "$label-b" "$W/root"
  mkdir -p "$W/$label-peer"
  serve "$bin" "$label-p" "$W/$label-peer"
  local a b p
  a=$(cat "$W/$label-a.url") b=$(cat "$W/$label-b.url") p=$(cat "$W/$label-p.url")
  export MAGICFS_ENDPOINTS="$W/$label-endpoints.json"
  "$bin" endpoints add a "$a" --concurrency 2 --token bench 2>/dev/null
  "$bin" endpoints add b "$b" --concurrency 2 --token bench 2>/dev/null
  "$bin" endpoints probe >/dev/null
  best "$bin" compute "$W/root/blob" "${OP[@]}" > "$W/$label.local"
  best "$bin" compute "$a/files/blob" "${OP[@]}" > "$W/$label.http"
  command -v curl >/dev/null && wire "$a/files/blob" > "$W/$label.wire"
  best "$bin" compute --on all "file://$W/root/blob" "${OP[@]}" --batch 16MiB > "$W/$label.on"
  cp "$W/file.bin" "$W/$label-file.bin"
  "$bin" push "$W/$label-file.bin" "$p/" --json 2>/dev/null > "$W/$label.push"
  "$bin" pull "$p" "$label-file.bin" "$W/$label-pulled.bin" --json 2>/dev/null > "$W/$label.pull"
  cmp "$W/file.bin" "$W/$label-pulled.bin"
  printf 'x' | dd of="$W/$label-file.bin" bs=1 seek=$((PUSH_MIB << 19)) conv=notrunc 2>/dev/null
  "$bin" push "$W/$label-file.bin" "$p/" --json 2>/dev/null > "$W/$label.repush"
  cmp "$W/$label-file.bin" "$W/$label-peer/$label-file.bin"
}

measure after "$AFTER"
[ -n "$BEFORE" ] && measure before "$BEFORE"

# https (this build): a CA and a certificate for 127.0.0.1 made here.
HTTPS=""
if command -v openssl >/dev/null; then
  (
    cd "$W"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=bench-ca \
      -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 \
      -keyout srv.key -out srv.csr 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1\n' > san.ext
    openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 -extfile san.ext -out srv.pem 2>/dev/null
  )
  export MAGICFS_CA_FILE="$W/ca.pem"
  serve "$AFTER" tls-a "$W/root" --tls-cert "$W/srv.pem" --tls-key "$W/srv.key"
  mkdir -p "$W/tls-peer"
  serve "$AFTER" tls-p "$W/tls-peer" --tls-cert "$W/srv.pem" --tls-key "$W/srv.key"
  best "$AFTER" compute "$(cat "$W/tls-a.url")/files/blob" "${OP[@]}" > "$W/tls.http"
  "$AFTER" push "$W/file.bin" "$(cat "$W/tls-p.url")/" --json 2>/dev/null > "$W/tls.push"
  "$AFTER" pull "$(cat "$W/tls-p.url")" file.bin "$W/tls-pulled.bin" --json 2>/dev/null > "$W/tls.pull"
  cmp "$W/file.bin" "$W/tls-pulled.bin"
  unset MAGICFS_CA_FILE
  HTTPS=1
fi

row() { # NAME FILE-SUFFIX: GB/s and ratio to local, per column
  local name=$1 s=$2 line
  line=$(printf '  %-44s' "$name")
  for label in after ${BEFORE:+before}; do
    line+=$(awk -v v="$(cat "$W/$label.$s")" -v l="$(cat "$W/$label.local")" 'BEGIN { printf "  %6.2f %5.2f", v, v / l }')
  done
  echo "$line"
}
echo "counteq over ${MIB} MiB in tmpfs, best of 3, GB/s and ratio to local (same build):"
echo "                                                 after ratio${BEFORE:+  before ratio}"
row "local (memory map)" local
row "http:// source, range requests" http
[ -s "$W/after.wire" ] && row "the socket alone: curl GET into /dev/null" wire
[ -n "$HTTPS" ] && awk -v v="$(cat "$W/tls.http")" -v l="$(cat "$W/after.local")" \
  'BEGIN { printf "  %-44s  %6.2f %5.2f\n", "https:// source, range requests", v, v / l }'
row "--on all (2 endpoints, loopback)" on
echo "transfers of a ${PUSH_MIB} MiB file of random bytes, MB/s of file bytes:"
echo "                                                 after${BEFORE:+  before}"
for what in push pull; do
  line=$(printf '  %-44s' "$what (peer has nothing / local has nothing)")
  for label in after ${BEFORE:+before}; do line+=$(printf '  %5s' "$(mbps < "$W/$label.$what")"); done
  echo "$line"
done
[ -n "$HTTPS" ] && for what in push pull; do
  printf '  %-44s  %5s\n' "$what over https" "$(mbps < "$W/tls.$what")"
done
echo "push after one byte changed: ratio of file bytes to wire bytes (chunks sent):"
for label in after ${BEFORE:+before}; do
  echo "  $label: $(field ratio < "$W/$label.repush") ($(field chunks_sent < "$W/$label.repush") of $(field chunks < "$W/$label.repush") chunks), first push $(field wire_bytes < "$W/$label.push") wire bytes"
done
