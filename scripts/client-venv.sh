#!/usr/bin/env bash
# Sets up (once, cached) a virtual environment with the independent clients
# the MCP and console tests drive MagicFS with: PyPI's `mcp` (the reference
# MCP client) and `playwright` (which drives Debian's /usr/bin/chromium;
# `playwright install` is never run: no browser is downloaded). Prints the
# venv's python.
#
#   scripts/client-venv.sh                 # build if missing, print python path
#   MAGICFS_CLIENT_VENV=dir scripts/...    # another location
set -euo pipefail
VENV="${MAGICFS_CLIENT_VENV:-$HOME/.cache/magicfs/client-venv}"
PACKAGES=("mcp==2.3.0" "playwright==1.65.2")
STAMP="$VENV/.complete-$(echo "${PACKAGES[*]}" | tr ' =' '_-')"
if [ -f "$STAMP" ]; then
  echo "$VENV/bin/python"
  exit 0
fi
echo "client-venv: installing ${PACKAGES[*]} into $VENV (once)" >&2
rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet "${PACKAGES[@]}" >&2
"$VENV/bin/python" -c 'import mcp, playwright.sync_api' >&2
touch "$STAMP"
echo "$VENV/bin/python"
