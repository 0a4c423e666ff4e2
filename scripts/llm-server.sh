#!/usr/bin/env bash
# Sets up (once, cached) a virtual environment with llama-cpp-python's
# OpenAI-compatible server, used to test MagicFS's OpenAI backend against a
# real server on loopback. llama-cpp-python builds llama.cpp from source
# (~13 minutes on an idle 2-core machine), so the venv lives in the cache
# directory and is reused by later runs. Prints the venv's python.
#
#   scripts/llm-server.sh            # build if missing, print python path
#   MAGICFS_LLM_SERVER_VENV=dir ...  # another location
set -euo pipefail
VENV="${MAGICFS_LLM_SERVER_VENV:-$HOME/.cache/magicfs/llm-server-venv}"
VERSION="${MAGICFS_LLAMA_CPP_PYTHON_VERSION:-0.3.16}"
if [ -f "$VENV/.complete-$VERSION" ]; then
  echo "$VENV/bin/python"
  exit 0
fi
echo "llm-server: building llama-cpp-python[server]==$VERSION into $VENV (once, ~13 min)" >&2
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
# No OpenMP: its spin-waiting collapses throughput on a busy machine; one
# build job per core.
CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_OPENMP=OFF -DGGML_NATIVE=ON" \
CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
  nice -n 10 "$VENV/bin/python" -m pip install --quiet --no-cache-dir "llama-cpp-python[server]==$VERSION" >&2
"$VENV/bin/python" -c 'import llama_cpp.server' >&2
touch "$VENV/.complete-$VERSION"
echo "$VENV/bin/python"
