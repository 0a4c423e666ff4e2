#!/usr/bin/env python3
"""Puts llama.cpp's shared libraries into a built magicfs wheel.

    wheel_bundle.py WHEEL PATCHELF

The native module links llama.cpp's libraries (libllama, libllama-common,
libggml, libggml-base) and loads one CPU library (libggml-cpu-<level>.so)
at run time. The build leaves them in its target directory, which the
module names in its run path. This copies them into the wheel, under
magicfs.libs/ (CPU libraries in magicfs.libs/backends/), keeping their
names: a CPU library finds the libggml-base the module already loaded by
that name. The module's run path becomes $ORIGIN/../magicfs.libs, and
RECORD is written again. The package's __init__ points the module at the
CPU libraries (MAGICFS_GGML_BACKENDS).

maturin's auditwheel repair is not used: it renames the libraries it
copies, and the CPU libraries, which it does not see, could then no
longer find libggml-base.
"""

import base64
import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

LINKED = ("libllama", "libllama-common", "libggml", "libggml-base")


def run(*args):
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def record_line(root, rel):
    data = open(os.path.join(root, rel), "rb").read()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return [rel, f"sha256={digest}", str(len(data))]


def main():
    wheel, patchelf = sys.argv[1], sys.argv[2]
    work = tempfile.mkdtemp()
    try:
        with zipfile.ZipFile(wheel) as z:
            z.extractall(work)
        module = next(
            os.path.join(work, "magicfs", n)
            for n in os.listdir(os.path.join(work, "magicfs"))
            if n.startswith("_magicfs") and n.endswith(".so")
        )
        needed = set(run(patchelf, "--print-needed", module).split())
        source = None
        for d in run(patchelf, "--print-rpath", module).split(":"):
            if d and os.path.exists(os.path.join(d, "libggml-base.so.0")):
                source = d
        if source is None:
            sys.exit(f"wheel_bundle: the module's run path names no directory with llama.cpp's libraries")
        libs = os.path.join(work, "magicfs.libs")
        backends = os.path.join(libs, "backends")
        os.makedirs(backends, exist_ok=True)
        for name in sorted(os.listdir(source)):
            if name.split(".so")[0] in LINKED and name.endswith(".so.0"):
                dst = os.path.join(libs, name)
                shutil.copyfile(os.path.join(source, name), dst)  # follows the version link
                run(patchelf, "--set-rpath", "$ORIGIN", dst)
        missing = sorted(n for n in needed if n.split(".so")[0] in LINKED and not os.path.exists(os.path.join(libs, n)))
        if missing:
            sys.exit(f"wheel_bundle: {source} lacks {', '.join(missing)}")
        cpu = os.path.join(os.path.dirname(source), "backends")
        copied = 0
        for name in sorted(os.listdir(cpu)) if os.path.isdir(cpu) else []:
            if name.startswith("libggml-cpu-") and name.endswith(".so"):
                dst = os.path.join(backends, name)
                shutil.copyfile(os.path.join(cpu, name), dst)
                run(patchelf, "--set-rpath", "$ORIGIN/..", dst)
                copied += 1
        if copied == 0:
            sys.exit(f"wheel_bundle: no llama.cpp CPU library in {cpu}")
        run(patchelf, "--set-rpath", "$ORIGIN/../magicfs.libs", module)
        dist = next(n for n in os.listdir(work) if n.endswith(".dist-info"))
        record = f"{dist}/RECORD"
        rows = []
        for dirpath, _, files in os.walk(work):
            for f in files:
                rel = os.path.relpath(os.path.join(dirpath, f), work)
                if rel != record:
                    rows.append(record_line(work, rel))
        rows.sort()
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(rows + [[record, "", ""]])
        with open(os.path.join(work, record), "w") as f:
            f.write(out.getvalue())
        tmp = wheel + ".new"
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            for rel, *_ in rows + [[record]]:
                z.write(os.path.join(work, rel), rel)
        os.replace(tmp, wheel)
        print(f"wheel_bundle: {os.path.basename(wheel)} carries llama.cpp's libraries and {copied} CPU libraries")
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
