#!/usr/bin/env bash
# Runs every cargo fuzz target for a short time (CI) or as long as asked:
#   scripts/fuzz.sh [SECONDS] [TARGET...]      (default: 15 s each, every target)
# cargo-fuzz comes from crates.io (installed once under ~/.cache/magicfs/tools);
# the stable toolchain builds the targets with RUSTC_BOOTSTRAP=1 (cargo fuzz
# passes -Zsanitizer=address). Corpora grow under ~/.cache/magicfs/fuzz-corpus;
# a failing input is left in fuzz/artifacts/<target>/ and the run fails.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-15}
shift || true
TOOLS=${MAGICFS_TOOLS:-$HOME/.cache/magicfs/tools}
export PATH="$TOOLS/bin:$PATH"
if ! command -v cargo-fuzz >/dev/null; then
  echo "fuzz: installing cargo-fuzz into $TOOLS"
  cargo install --quiet --locked --root "$TOOLS" cargo-fuzz
fi
TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}-fuzz
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(transcript compute_json snapshot_import range_header tree_plan wal_records store_image search_names)
cd fuzz
# Two tree-sitter grammars linked into the same target each define a C global
# named `map`; ASan's one-definition check would stop every run at start-up on
# that C code, which is not what these targets test.
export ASAN_OPTIONS="detect_odr_violation=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
RUSTC_BOOTSTRAP=1 RUSTFLAGS="" cargo fuzz build --target-dir "$TARGET_DIR"
status=0
for t in "${TARGETS[@]}"; do
  corpus="$HOME/.cache/magicfs/fuzz-corpus/$t"
  mkdir -p "$corpus" "artifacts/$t"
  dirs=("$corpus" "seeds/$t")
  [ -d "regressions/$t" ] && dirs+=("regressions/$t")
  if out=$("$TARGET_DIR/x86_64-unknown-linux-gnu/release/$t" "${dirs[@]}" -max_total_time="$SECS" \
    -rss_limit_mb=2048 -artifact_prefix="artifacts/$t/" 2>&1); then
    echo "fuzz: $t: $(grep -a -Eo 'Done [0-9]+ runs in [0-9]+ second' <<<"$out" | tail -1), no failure"
  else
    echo "fuzz: $t FAILED; the input is in fuzz/artifacts/$t/"
    grep -a -E "panicked|ERROR" -A3 <<<"$out" | head -20
    status=1
  fi
done
exit "$status"
