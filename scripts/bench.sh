#!/usr/bin/env bash
# Filesystem benchmark, side by side in one run: tmpfs, bindfs over tmpfs
# (a FUSE passthrough), MagicFS in memory and MagicFS on its redb store.
# Needs root (tmpfs mounts, dropping caches). Extra arguments go to
# `magicfs bench` (e.g. --size-mib 256 --runs 1).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --no-test-tools
cargo build --release --quiet
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/magicfs"
W=$(mktemp -d /tmp/magicfs-bench.XXXXXX)
# Store directories: one on tmpfs (backing in RAM, like bindfs over tmpfs)
# and one on the disk under /var/tmp.
DATA_DISK="${MAGICFS_BENCH_DISK:-/var/tmp/magicfs-bench-data}"
cleanup() {
  for m in mfsdisk mfs mfsmem bindfs; do
    mountpoint -q "$W/$m" && fusermount3 -u "$W/$m"
  done
  sleep 2 # the daemons finish flushing their stores
  for m in bindsrc storeram tmpfs; do
    mountpoint -q "$W/$m" && umount "$W/$m"
  done
  rm -rf "$W" "$W".*.log "$DATA_DISK"
}
trap cleanup EXIT
mkdir -p "$W"/{tmpfs,bindsrc,bindfs,mfs,mfsmem,mfsdisk,storeram}
mount -t tmpfs tmpfs "$W/tmpfs"
mount -t tmpfs tmpfs "$W/bindsrc"
bindfs "$W/bindsrc" "$W/bindfs"
mount -t tmpfs tmpfs "$W/storeram"
rm -rf "$DATA_DISK"
"$BIN" mount "$W/mfsmem" --memory --daemon --log "$W.mem.log"
"$BIN" mount "$W/mfs" --data "$W/storeram/data" --daemon --log "$W.redb.log"
"$BIN" mount "$W/mfsdisk" --data "$DATA_DISK" --daemon --log "$W.disk.log"
# A real source tree: sources of some of MagicFS's dependencies (C and Rust).
REG=$(ls -d "$HOME"/.cargo/registry/src/*/ | head -n1)
TAR="$W.src.tar"
(cd "$REG" && tar -cf "$TAR" zstd-sys-* redb-* fuser-* clap_builder-* regex-syntax-* rayon-core-* blake3-* libc-0.2*)
echo "source tree: $(tar -tf "$TAR" | wc -l) entries, $(du -h "$TAR" | cut -f1)" >&2
"$BIN" bench tmpfs="$W/tmpfs" bindfs="$W/bindfs" magicfs-memory="$W/mfsmem" magicfs-redb="$W/mfs" \
  magicfs-redb-disk="$W/mfsdisk" \
  --baseline tmpfs --baseline bindfs --tarball "$TAR" --drop-caches "$@"
rm -f "$TAR"
