# Sourced by the build and test scripts: caches the C/C++ objects of llama.cpp with
# ccache, so a changed dependency graph or a new target directory recompiles only
# what changed instead of the whole library (about 30 minutes on two cores).
if command -v ccache >/dev/null 2>&1; then
  export CMAKE_C_COMPILER_LAUNCHER=ccache CMAKE_CXX_COMPILER_LAUNCHER=ccache
  export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/magicfs/ccache}"
  export CCACHE_NOHASHDIR=1 CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-5G}"
  export CCACHE_BASEDIR="${CARGO_TARGET_DIR:-$PWD/target}"
fi

# llama-cpp-sys-2's build script hard-links its libraries' version symlinks
# (libllama.so -> libllama.so.0) into the target's profile directories,
# where they dangle; when the build script runs again (another feature set,
# a changed dependency) it finds them and fails with "File exists". Removing
# the dangling links before each cargo command keeps rebuilds working.
clean_stale_lib_links() {
  local t="${CARGO_TARGET_DIR:-$PWD/target}" d
  for d in "$t"/debug "$t"/debug/deps "$t"/debug/examples "$t"/release "$t"/release/deps "$t"/release/examples; do
    [ -d "$d" ] && find "$d" -maxdepth 1 -xtype l -name 'lib*.so*' -delete 2>/dev/null
  done
  return 0
}
clean_stale_lib_links
