#!/usr/bin/env bash
# Runs every MagicFS test: formatting and lints, unit tests, and the
# integration tests that mount real filesystems (needs root for FUSE,
# tmpfs and user switches in pjdfstest).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
export PJDFSTEST="${PJDFSTEST:-${MAGICFS_TOOLS:-$HOME/.cache/magicfs/tools}/bin/pjdfstest}"
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace "$@"
