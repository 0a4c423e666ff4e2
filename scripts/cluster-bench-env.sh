# Sourced by the cluster benchmarks (bench-cluster.sh, bench-cluster-cpu.sh,
# bench-objects.sh): the services (started by cluster-up.sh when the
# environment names none), the JuiceFS binary, psql, the magicfs binary
# (MAGICFS names an already built one and skips the build; NO_MAGICFS=1:
# not needed) and the cluster venv's python. NAME is the calling script's
# name, for messages.
if [ -z "${MAGICFS_TEST_PG:-}" ] || [ -z "${AWS_ENDPOINT_URL:-}" ]; then
  eval "$(bash scripts/cluster-up.sh)"
fi
JUICEFS="${MAGICFS_JUICEFS:-$(command -v juicefs || true)}"
[ -x "$JUICEFS" ] || { echo "$NAME: no juicefs binary (MAGICFS_JUICEFS)" >&2; exit 1; }
PSQL="${MAGICFS_PG_BIN:+$MAGICFS_PG_BIN/}psql"
if [ -z "${NO_MAGICFS:-}" ]; then
  if [ -z "${MAGICFS:-}" ]; then
    cargo build --quiet -p magicfs
  fi
  MAGICFS="${MAGICFS:-${CARGO_TARGET_DIR:-$PWD/target}/debug/magicfs}"
fi
PY="${MAGICFS_CLUSTER_VENV:-$HOME/.cache/magicfs/cluster/venv}/bin/python"
ID="$$$(date +%s)"
# A database URL on the same server as MAGICFS_TEST_PG.
db_url() { echo "$MAGICFS_TEST_PG" | sed -E "s#/[^/?]*(\?.*)?\$#/$1#"; }
