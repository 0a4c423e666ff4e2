#!/usr/bin/env bash
# Installs what MagicFS needs to build, mount and test: Debian packages
# (FUSE 3, bindfs, SQLite, git, attr, Chromium) and the POSIX suite pjdfstest.
# Safe to run again: it installs only what is missing.
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
TOOLS="${MAGICFS_TOOLS:-$HOME/.cache/magicfs/tools}"

missing=()
for pair in fuse3:fusermount3 bindfs:bindfs sqlite3:sqlite3 git:git attr:setfattr pkg-config:pkg-config cmake:cmake ccache:ccache \
            util-linux:setpriv tar:tar libcap2-bin:setcap; do
  pkg=${pair%%:*} cmd=${pair##*:}
  command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
# llama.cpp (chat sessions, generated files) is compiled with cmake and bound with libclang.
dpkg -s libclang-dev >/dev/null 2>&1 || missing+=(libclang-dev)
# The console tests drive Debian's Chromium headless (through playwright, scripts/client-venv.sh).
[ -x /usr/bin/chromium ] || missing+=(chromium)
# The generated-content tests check tree answers with an independent JSON Schema validator.
python3 -c 'import jsonschema' >/dev/null 2>&1 || missing+=(python3-jsonschema)
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ -e /dev/fuse ] || { echo "deps: /dev/fuse is missing: this machine cannot mount FUSE filesystems" >&2; exit 1; }

if [ "${1:-}" != "--no-test-tools" ] && [ ! -x "$TOOLS/bin/pjdfstest" ]; then
  echo "deps: building pjdfstest into $TOOLS (once)"
  cargo install --quiet --locked pjdfstest --version 0.2.2 --root "$TOOLS"
fi
