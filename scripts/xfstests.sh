#!/usr/bin/env bash
# Runs xfstests against MagicFS (FSTYP=fuse, FUSE_SUBTYP=.magicfs) and, for
# comparison, against tmpfs on the same machine, then prints pass / fail /
# not-run counts for both.
#
#   scripts/xfstests.sh XFSTESTS_DIR [CHECK_ARGS...]     (as root)
#
# XFSTESTS_DIR is a built xfstests source tree (the public kdave/xfstests
# repository: `make` in it; its build dependencies are Debian packages, see
# RELIABILITY.md). It is never part of this repository. CHECK_ARGS go to
# xfstests' ./check (default: -g generic/quick); for example `-g generic` for
# the whole generic group or `generic/035 generic/471` for single tests.
# Set ONLY=magicfs or ONLY=tmpfs to run one side. Results land in
# $OUT (default /var/tmp/magicfs-xfstests), one directory per side.
set -euo pipefail
XFS=${1:?usage: scripts/xfstests.sh XFSTESTS_DIR [CHECK_ARGS...]}
shift
XFS=$(realpath "$XFS")
[ -x "$XFS/check" ] && [ -e "$XFS/ltp/fsstress" ] || {
  echo "xfstests: $XFS is not a built xfstests tree (run make in it)" >&2
  exit 2
}
[ "$(id -u)" = 0 ] || { echo "xfstests: run as root (it mounts filesystems)" >&2; exit 2; }
ARGS=("$@")
[ ${#ARGS[@]} -gt 0 ] || ARGS=(-g generic/quick)
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=${OUT:-/var/tmp/magicfs-xfstests}
mkdir -p "$OUT"

# xfstests runs tests as the users fsgqa and 123456-fsgqa and the group fsgqa.
getent group fsgqa >/dev/null || groupadd fsgqa
id fsgqa >/dev/null 2>&1 || useradd -m -g fsgqa fsgqa
id 123456-fsgqa >/dev/null 2>&1 || useradd -m -g fsgqa 123456-fsgqa

if [ -z "${MAGICFS_BIN:-}" ]; then
  . scripts/build-env.sh
  cargo build --release -p magicfs
  MAGICFS_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/magicfs"
fi
# mount(8) finds FUSE filesystems of type fuse.magicfs by this helper; the
# mount source is the data directory, as a disk is for other filesystems.
install -m 755 scripts/mount.magicfs /sbin/mount.fuse.magicfs
install -m 755 "$MAGICFS_BIN" /usr/local/bin/magicfs
# umount(8) takes an existing directory for a mount point, never for a
# source: xfstests unmounts by device (the data directory), so its umount
# looks the source up in the mount table first.
UMOUNT="$OUT/umount-by-source"
cat >"$UMOUNT" <<'SH'
#!/bin/sh
for a in "$@"; do last=$a; done
mp=$(awk -v s="$last" '$0 ~ / - / { split($0, t, " - "); split(t[2], r, " "); split(t[1], l, " "); if (r[2] == s) print l[5] }' /proc/self/mountinfo | tail -1)
if [ -n "$mp" ] && ! mountpoint -q "$last"; then
  set -- $(printf '%s\n' "$@" | sed '$d') "$mp"
fi
exec umount "$@"
SH
chmod 755 "$UMOUNT"

run_side() { # NAME CONFIG-LINES
  local name=$1 config=$2 dir="$OUT/$1"
  rm -rf "$dir" && mkdir -p "$dir/test" "$dir/scratch" "$dir/results"
  printf '%s\n' "$config" >"$dir/local.config"
  echo "xfstests: $name: ./check ${ARGS[*]} (log in $dir/check.log)"
  (cd "$XFS" && HOST_OPTIONS="$dir/local.config" RESULT_BASE="$dir/results" \
    ./check "${ARGS[@]}" >"$dir/check.log" 2>&1) || true
  for mp in "$dir/test" "$dir/scratch"; do umount "$mp" 2>/dev/null || true; done
}

counts() { # NAME: "ran N, passed N, failed N, not run N"
  local log="$OUT/$1/check.log"
  local ran failed notrun
  ran=$(sed -n 's/^Ran: //p' "$log" | tail -1 | wc -w)
  failed=$(sed -n 's/^Failures: //p' "$log" | tail -1 | wc -w)
  notrun=$(sed -n 's/^Not run: //p' "$log" | tail -1 | wc -w)
  # ./check's "Ran:" line also names the tests that did not run.
  echo "$1: passed $((ran - failed - notrun)), failed $failed, not run $notrun (of $ran)"
  [ "$failed" = 0 ] || echo "  failed: $(sed -n 's/^Failures: //p' "$log" | tail -1)"
}

if [ "${ONLY:-magicfs}" = magicfs ] || [ -z "${ONLY:-}" ]; then
  mkdir -p "$OUT/magicfs-data"
  rm -rf "$OUT/magicfs-data/test" "$OUT/magicfs-data/scratch"
  run_side magicfs "export FSTYP=fuse
export FUSE_SUBTYP=.magicfs
export TEST_DEV=$OUT/magicfs-data/test
export TEST_DIR=$OUT/magicfs/test
export SCRATCH_DEV=$OUT/magicfs-data/scratch
export SCRATCH_MNT=$OUT/magicfs/scratch
export FUSE_MOUNT_OPTIONS=-oallow_other,nosearch,nochat,suid,dev
export TEST_FS_MOUNT_OPTS=-oallow_other,nosearch,nochat,suid,dev
export MOUNT_OPTIONS=-oallow_other,nosearch,nochat,suid,dev
export UMOUNT_PROG=$UMOUNT"
fi
if [ "${ONLY:-tmpfs}" = tmpfs ] || [ -z "${ONLY:-}" ]; then
  run_side tmpfs "export FSTYP=tmpfs
export TEST_DEV=tmpfs_test
export TEST_DIR=$OUT/tmpfs/test
export SCRATCH_DEV=tmpfs_scratch
export SCRATCH_MNT=$OUT/tmpfs/scratch"
fi
echo
for side in magicfs tmpfs; do
  [ -f "$OUT/$side/check.log" ] && counts "$side"
done
