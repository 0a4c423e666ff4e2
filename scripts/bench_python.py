"""Python file I/O through the `magicfs` package against Python's own file
I/O on tmpfs and through a MagicFS FUSE mount, in one run (called by
scripts/bench-python.sh, which builds, mounts and cleans up).

Each workload writes N whole files (create, write, close) then reads them
back whole, with 4 KiB and 1 MiB files of incompressible bytes; every
target runs each workload three times, interleaved, and the best run
counts. Prints a Markdown table with operations per second, MiB/s and the
ratios to the FUSE mount and to tmpfs.
"""

import argparse
import os
import time

import magicfs

SIZES = [("4 KiB", 4 << 10, 2000), ("1 MiB", 1 << 20, 64)]
ROUNDS = 3


def os_write(root, names, data):
    for n in names:
        with open(os.path.join(root, n), "wb") as f:
            f.write(data)


def os_read(root, names, size):
    for n in names:
        with open(os.path.join(root, n), "rb") as f:
            assert len(f.read()) == size


def store_write(fs, names, data):
    for n in names:
        fs.write(n, data)


def store_read(fs, names, size):
    for n in names:
        assert len(fs.read(n)) == size


def fileobj_write(fs, names, data):
    for n in names:
        with fs.open(n, "wb") as f:
            f.write(data)


def fileobj_read(fs, names, size):
    for n in names:
        with fs.open(n, "rb") as f:
            assert len(f.read()) == size


def timed(fn, *args):
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tmpfs", required=True, help="a directory on tmpfs")
    ap.add_argument("--mount", required=True, help="a MagicFS FUSE mount")
    ap.add_argument("--store", required=True, help="a new store directory (on tmpfs) for the binding")
    a = ap.parse_args()
    fs = magicfs.open_store(a.store, model=None)
    targets = {
        "Python on tmpfs": (lambda names, data: os_write(a.tmpfs, names, data),
                            lambda names, size: os_read(a.tmpfs, names, size)),
        "Python through the FUSE mount": (lambda names, data: os_write(a.mount, names, data),
                                          lambda names, size: os_read(a.mount, names, size)),
        "magicfs binding, Store.write/read": (lambda names, data: store_write(fs, names, data),
                                              lambda names, size: store_read(fs, names, size)),
        "magicfs binding, Store.open (file objects)": (lambda names, data: fileobj_write(fs, names, data),
                                                       lambda names, size: fileobj_read(fs, names, size)),
    }
    rows = []
    for label, size, count in SIZES:
        data = os.urandom(size)
        best = {t: [float("inf"), float("inf")] for t in targets}
        for r in range(ROUNDS):
            for t, (write, read) in targets.items():
                names = ["%s-%d-%05d" % (label.replace(" ", ""), r, i) for i in range(count)]
                best[t][0] = min(best[t][0], timed(write, names, data))
                best[t][1] = min(best[t][1], timed(read, names, size))
        for op, k in (("write", 0), ("read", 1)):
            fuse = best["Python through the FUSE mount"][k]
            tmpfs = best["Python on tmpfs"][k]
            for t in targets:
                s = best[t][k]
                rows.append((label, op, t, count / s, count * size / s / (1 << 20), fuse / s, tmpfs / s))
    fs.close()
    print("| size | op | target | files/s | MiB/s | vs FUSE mount | vs tmpfs |")
    print("|---|---|---|---:|---:|---:|---:|")
    for label, op, t, ops, mib, vf, vt in rows:
        print("| %s | %s | %s | %.0f | %.1f | %.2fx | %.2fx |" % (label, op, t, ops, mib, vf, vt))


if __name__ == "__main__":
    main()
