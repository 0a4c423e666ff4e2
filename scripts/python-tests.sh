#!/usr/bin/env bash
# Builds the Python package `magicfs` (python/ and crates/magicfs-py) with
# maturin (scripts/wheel.sh) into a cached virtual environment and runs its pytest suite
# against real stores and real FUSE mounts (root, /dev/fuse). The wheel is
# built with the dev profile, sharing the compiled workspace with
# `cargo test`; the mounts use the `magicfs` binary of that build
# (MAGICFS_BIN, default target/debug/magicfs). Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${MAGICFS_PY_VENV:-$HOME/.cache/magicfs/py-venv}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
export MAGICFS_BIN="${MAGICFS_BIN:-$target/debug/magicfs}"
[ -x "$MAGICFS_BIN" ] || cargo build --quiet -p magicfs
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
scripts/wheel.sh dev "$wheels"
# The wheel stands alone: it installs offline into a fresh environment
# (nothing else from PyPI) and works there.
python3 -m venv "$wheels/fresh"
"$wheels/fresh/bin/pip" install --quiet --disable-pip-version-check --no-index "$wheels"/magicfs-*.whl
"$wheels/fresh/bin/python" - <<'PY'
import os, magicfs
with magicfs.open_store(memory=True, model=None) as fs:
    fs.write("/a.txt", "fresh venv\n")
    fd = fs.export_memfd("/a.txt")
    assert fs.read("/a.txt") == b"fresh venv\n" and os.read(fd, 64) == b"fresh venv\n"
    os.close(fd)
    assert os.path.isfile(os.path.join(os.path.dirname(magicfs.__file__), "py.typed"))
print("python-tests: the wheel installs offline into a fresh venv and works there")
PY
"$VENV/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheels"/magicfs-*.whl
rm -rf "$wheels"
# From tests/, so that `import magicfs` is the installed wheel, not the sources.
cd python/tests
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -q -ra "$@"
