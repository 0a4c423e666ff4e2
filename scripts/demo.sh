#!/usr/bin/env bash
# Builds MagicFS, mounts it with the embedded defaults (redb store in
# ~/.local/share/magicfs/default) on ~/magicfs, and shows it working.
set -euo pipefail
cd "$(dirname "$0")/.."
MNT="${1:-$HOME/magicfs}"
scripts/deps.sh --no-test-tools
cargo build --release --quiet
BIN="$PWD/target/release/magicfs"
[ -n "${CARGO_TARGET_DIR:-}" ] && BIN="$CARGO_TARGET_DIR/release/magicfs"
mkdir -p "$MNT"
if ! grep -q " $(realpath "$MNT") .* - fuse[^ ]* magicfs " /proc/self/mountinfo; then
  "$BIN" mount "$MNT" --daemon
fi
cd "$MNT"
echo "--- writing a few files"
mkdir -p demo && seq 1 200000 > demo/numbers.txt && cp demo/numbers.txt demo/copy.txt
echo "hello from MagicFS" > demo/hello.txt
ls -la demo
echo "--- reading back"
cat demo/hello.txt && tail -n 2 demo/copy.txt
echo "--- .magic/status (compression and dedup are counted)"
cat .magic/status
echo "--- magicfs stats"
"$BIN" stats "$MNT"
echo
echo "MagicFS is mounted on $MNT. Unmount with: fusermount3 -u $MNT"
