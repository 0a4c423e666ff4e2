#!/usr/bin/env bash
# Installs MagicFS on this machine: the binary, the mount(8) helper (so that
# fstab lines of type fuse.magicfs or magicfs, and `mount -a`, work), the
# systemd unit magicfs@.service, shell completions (bash, zsh, fish) and
# man pages. Run as root for the system locations.
#
#   scripts/install.sh [--prefix /usr/local] [--destdir DIR] [--bin FILE]
#
# --bin installs an already built binary instead of building one (release).
# --destdir stages everything under DIR (for packaging).
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=/usr/local
DESTDIR=
BIN=
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX=$2; shift 2 ;;
    --destdir) DESTDIR=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    *) echo "usage: scripts/install.sh [--prefix DIR] [--destdir DIR] [--bin FILE]" >&2; exit 2 ;;
  esac
done
if [ -z "$BIN" ]; then
  . scripts/build-env.sh
  echo "install: building magicfs (release; the first build compiles llama.cpp and takes minutes)" >&2
  cargo build --release -p magicfs
  BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/magicfs"
fi
bin_dir="$DESTDIR$PREFIX/bin"
install -Dm755 "$BIN" "$bin_dir/magicfs"
# llama.cpp's shared libraries and its per-CPU-level libraries go to
# PREFIX/lib/magicfs, where the program looks first ($ORIGIN/../lib/magicfs),
# so the installed program does not depend on the build directory.
lib_dir="$DESTDIR$PREFIX/lib/magicfs"
libs=$(ldd "$BIN" | awk '$1 ~ /^lib(ggml|llama)/ && $3 ~ /^\// {print $3}')
if [ -n "$libs" ]; then
  mkdir -p "$lib_dir/backends"
  for l in $libs; do cp -L "$l" "$lib_dir/$(basename "$l")"; done
  backends="$(dirname "$(echo "$libs" | head -1)")/../backends"
  if compgen -G "$backends/libggml-cpu-*.so" >/dev/null; then
    cp -L "$backends"/libggml-cpu-*.so "$lib_dir/backends/"
  fi
fi
# mount(8) looks for helpers in /sbin: mount.magicfs for type magicfs,
# mount.fuse.magicfs for type fuse.magicfs.
sbin="$DESTDIR/sbin"
mkdir -p "$sbin"
sed "s|\${MAGICFS_BIN:-magicfs}|\${MAGICFS_BIN:-$PREFIX/bin/magicfs}|" scripts/mount.magicfs >"$sbin/mount.magicfs"
chmod 755 "$sbin/mount.magicfs"
ln -sf mount.magicfs "$sbin/mount.fuse.magicfs"
unit_dir="$DESTDIR/etc/systemd/system"
mkdir -p "$unit_dir"
sed "s|/usr/local/bin/magicfs|$PREFIX/bin/magicfs|" packaging/systemd/magicfs@.service >"$unit_dir/magicfs@.service"
share="$DESTDIR$PREFIX/share"
mkdir -p "$share/bash-completion/completions" "$share/zsh/site-functions" "$share/fish/vendor_completions.d"
"$bin_dir/magicfs" completions bash >"$share/bash-completion/completions/magicfs"
"$bin_dir/magicfs" completions zsh >"$share/zsh/site-functions/_magicfs"
"$bin_dir/magicfs" completions fish >"$share/fish/vendor_completions.d/magicfs.fish"
"$bin_dir/magicfs" man --dir "$share/man/man1"
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
echo "install: magicfs in $bin_dir, its libraries in $lib_dir, mount helpers in $sbin, unit $unit_dir/magicfs@.service," \
  "completions and man pages under $share" >&2
