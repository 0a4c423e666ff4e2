# Installs the MagicFS binary, the C library (libmagicfs.so + magicfs.h, with
# a pkg-config file) and the LD_PRELOAD shim (libmagicfs_preload.so).
#   make install                      # into /usr/local
#   make install PREFIX=$HOME/.local  # or anywhere (DESTDIR for packaging)
# The Python package installs with `pip install ./python`.

PREFIX ?= /usr/local
DESTDIR ?=
CARGO ?= cargo
TARGET_DIR ?= $(or $(CARGO_TARGET_DIR),target)
RELEASE := $(TARGET_DIR)/release
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
LIBDIR := $(DESTDIR)$(PREFIX)/lib
INCDIR := $(DESTDIR)$(PREFIX)/include
BINDIR := $(DESTDIR)$(PREFIX)/bin

.PHONY: all install uninstall

all:
	$(CARGO) build --release -p magicfs -p magicfs-capi -p magicfs-preload

install: all
	install -Dm755 $(RELEASE)/magicfs $(BINDIR)/magicfs
	install -Dm755 $(RELEASE)/libmagicfs.so $(LIBDIR)/libmagicfs.so
	install -Dm755 $(RELEASE)/libmagicfs_preload.so $(LIBDIR)/libmagicfs_preload.so
	install -Dm644 crates/magicfs-capi/include/magicfs.h $(INCDIR)/magicfs.h
	mkdir -p $(LIBDIR)/pkgconfig
	printf 'prefix=%s\nlibdir=$${prefix}/lib\nincludedir=$${prefix}/include\n\nName: magicfs\nDescription: MagicFS stores inside C programs, without a mount\nVersion: %s\nLibs: -L$${libdir} -lmagicfs\nCflags: -I$${includedir}\n' \
		'$(PREFIX)' '$(VERSION)' > $(LIBDIR)/pkgconfig/magicfs.pc
	if [ -z '$(DESTDIR)' ] && command -v ldconfig >/dev/null; then ldconfig; fi

uninstall:
	rm -f $(BINDIR)/magicfs $(LIBDIR)/libmagicfs.so $(LIBDIR)/libmagicfs_preload.so \
		$(INCDIR)/magicfs.h $(LIBDIR)/pkgconfig/magicfs.pc
