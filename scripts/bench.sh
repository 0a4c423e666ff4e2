#!/usr/bin/env bash
# Filesystem benchmark, side by side in one run: tmpfs, bindfs over tmpfs
# (a FUSE passthrough), MagicFS in memory and MagicFS on its redb store.
# Where the fuse module has FUSE over io_uring, the kernel offers it for the
# run (restored afterwards): the MagicFS mounts use it, bindfs (libfuse)
# does not, and one more MagicFS mount (memory, --no-io-uring) shows the
# same filesystem over /dev/fuse.
# MAGICFS_BENCH_BEFORE=BIN adds two mounts of an older build (memory and
# redb on tmpfs: before-memory, before-redb) to the same run, so a change
# is compared with what it replaced on the same machine at the same time;
# MAGICFS_BENCH_BEFORE_FIRST=1 measures them before this build's mounts
# instead of after (run both orders: the targets are measured one after
# another, and the load of the machine drifts).
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
URING=/sys/module/fuse/parameters/enable_uring
URING_WAS=$(cat "$URING" 2>/dev/null || true)
cleanup() {
  for m in mfsdisk mfs mfsmem mfsdev bfmem bfredb bindfs; do
    mountpoint -q "$W/$m" && fusermount3 -u "$W/$m"
  done
  sleep 2 # the daemons finish flushing their stores
  for m in bindsrc storeram tmpfs; do
    mountpoint -q "$W/$m" && umount "$W/$m"
  done
  rm -rf "$W" "$W".*.log "$DATA_DISK"
  if [ -n "$URING_WAS" ]; then echo "$URING_WAS" >"$URING" || true; fi
}
trap cleanup EXIT
mkdir -p "$W"/{tmpfs,bindsrc,bindfs,mfs,mfsmem,mfsdev,mfsdisk,bfmem,bfredb,storeram}
if [ -w "$URING" ] && echo Y >"$URING" 2>/dev/null; then
  echo "bench: FUSE over io_uring offered by the kernel for this run" >&2
fi
mount -t tmpfs tmpfs "$W/tmpfs"
mount -t tmpfs tmpfs "$W/bindsrc"
bindfs "$W/bindsrc" "$W/bindfs"
mount -t tmpfs tmpfs "$W/storeram"
rm -rf "$DATA_DISK"
"$BIN" mount "$W/mfsmem" --memory --daemon --log "$W.mem.log"
"$BIN" mount "$W/mfsdev" --memory --no-io-uring --daemon --log "$W.dev.log"
"$BIN" mount "$W/mfs" --data "$W/storeram/data" --daemon --log "$W.redb.log"
"$BIN" mount "$W/mfsdisk" --data "$DATA_DISK" --daemon --log "$W.disk.log"
BEFORE_TARGETS=()
if [ -n "${MAGICFS_BENCH_BEFORE:-}" ]; then
  "$MAGICFS_BENCH_BEFORE" mount "$W/bfmem" --memory --daemon --log "$W.bfmem.log"
  "$MAGICFS_BENCH_BEFORE" mount "$W/bfredb" --data "$W/storeram/before" --daemon --log "$W.bfredb.log"
  BEFORE_TARGETS=(before-memory="$W/bfmem" before-redb="$W/bfredb")
fi
# A real source tree: sources of some of MagicFS's dependencies (C and Rust).
REG=$(ls -d "$HOME"/.cargo/registry/src/*/ | head -n1)
REPO=$PWD
TAR="$W.src.tar"
# fuser is the copy vendored in this repository.
(cd "$REG" && tar -cf "$TAR" zstd-sys-* redb-* clap_builder-* regex-syntax-* rayon-core-* blake3-* libc-0.2* \
  -C "$REPO/vendor" fuser)
echo "source tree: $(tar -tf "$TAR" | wc -l) entries, $(du -h "$TAR" | cut -f1)" >&2
OURS=(magicfs-memory="$W/mfsmem" magicfs-redb="$W/mfs" magicfs-redb-disk="$W/mfsdisk" magicfs-memory-devfuse="$W/mfsdev")
if [ -n "${MAGICFS_BENCH_BEFORE_FIRST:-}" ]; then
  TARGETS=("${BEFORE_TARGETS[@]}" "${OURS[@]}")
else
  TARGETS=("${OURS[@]}" "${BEFORE_TARGETS[@]}")
fi
"$BIN" bench tmpfs="$W/tmpfs" bindfs="$W/bindfs" "${TARGETS[@]}" \
  --baseline tmpfs --baseline bindfs --tarball "$TAR" --drop-caches "$@"
rm -f "$TAR"
