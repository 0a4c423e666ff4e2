# Sourced by the build and test scripts: caches the C/C++ objects of llama.cpp with
# ccache, so a changed dependency graph or a new target directory recompiles only
# what changed instead of the whole library (about 30 minutes on two cores).
if command -v ccache >/dev/null 2>&1; then
  export CMAKE_C_COMPILER_LAUNCHER=ccache CMAKE_CXX_COMPILER_LAUNCHER=ccache
  export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/magicfs/ccache}"
  export CCACHE_NOHASHDIR=1 CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-5G}"
  export CCACHE_BASEDIR="${CARGO_TARGET_DIR:-$PWD/target}"
fi
