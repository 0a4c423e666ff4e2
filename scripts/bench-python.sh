#!/usr/bin/env bash
# Python file I/O through the magicfs package vs Python's own file I/O on
# tmpfs and through a MagicFS FUSE mount, in the same run (needs root for
# the mount). Builds the release binary and a release wheel into the
# cached venv of scripts/python-tests.sh, puts every store on tmpfs
# (/dev/shm), and prints a Markdown table (scripts/bench_python.py).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/build-env.sh
VENV="${MAGICFS_PY_VENV:-$HOME/.cache/magicfs/py-venv}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --quiet --release -p magicfs
wheels=$(mktemp -d)
scripts/wheel.sh release "$wheels"
"$VENV/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheels"/magicfs-*.whl
rm -rf "$wheels"
work=$(mktemp -d /dev/shm/magicfs-bench-python.XXXXXX)
mnt=$(mktemp -d)
# As scripts/bench.sh: the mount takes FUSE over io_uring where the kernel has it.
uring=/sys/module/fuse/parameters/enable_uring
uring_was=$(cat "$uring" 2>/dev/null || true)
cleanup() {
  if mountpoint -q "$mnt"; then fusermount3 -u "$mnt" || umount -l "$mnt"; fi
  wait 2>/dev/null || true
  rm -rf "$work" "$mnt"
  if [ -n "$uring_was" ]; then echo "$uring_was" >"$uring" || true; fi
}
trap cleanup EXIT
if [ -w "$uring" ] && echo Y >"$uring" 2>/dev/null; then
  echo "bench: FUSE over io_uring offered by the kernel for this run" >&2
fi
mkdir -p "$work/tmpfs"
"$target/release/magicfs" mount "$mnt" --data "$work/fuse-store" --no-chat --no-search 2>"$work/mount.log" &
for _ in $(seq 200); do mountpoint -q "$mnt" && break; sleep 0.05; done
mountpoint -q "$mnt" || { cat "$work/mount.log"; exit 1; }
echo "# $(date -u +%FT%TZ) $(nproc) CPUs, $(uname -r), $("$VENV/bin/python" --version), FUSE transport: $(grep -o '"transport": *"[a-z_]*"' "$mnt/.magic/status" || echo unknown)"
"$VENV/bin/python" scripts/bench_python.py --tmpfs "$work/tmpfs" --mount "$mnt" --store "$work/binding-store"
