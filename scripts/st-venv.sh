#!/usr/bin/env bash
# Creates (once) the Python venv with sentence-transformers that the search
# benchmark compares against, under ~/.cache/magicfs/st-venv, from PyPI.
# torch from PyPI is large; this is needed only for `magicfs bench-search`
# and for regenerating the embedder's reference vectors. Prints the python path.
set -euo pipefail
VENV="${MAGICFS_ST_VENV:-$HOME/.cache/magicfs/st-venv}"
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import sentence_transformers" 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet sentence-transformers >&2
fi
echo "$VENV/bin/python"
