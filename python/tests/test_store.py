"""The store API against real stores (memory and on disk): names, data,
links, xattrs, file objects, memfds, snapshots, errors, threads, and a
store written here then mounted with FUSE."""

import errno
import io
import mmap
import os
import subprocess
import threading
import time

import pytest

import magicfs
from conftest import magicfs_bin


def test_names_data_and_attributes(store):
    store.mkdir("docs")
    store.mkdir("deep/er/still", parents=True)
    store.mkdir("deep/er", exist_ok=True)
    assert store.write("docs/a.txt", "hello, world\n") == 13
    assert store.write("/docs/b.bin", bytes(range(256)) * 1000) == 256000
    assert store.read("docs/a.txt") == b"hello, world\n"
    assert store.read("docs/a.txt", 5, 7) == b"world"
    assert store.read_text("docs/a.txt") == "hello, world\n"
    store.write("docs/a.txt", " again", append=True)
    assert store.read("docs/a.txt") == b"hello, world\n again"
    assert sorted(store.listdir("docs")) == ["a.txt", "b.bin"]
    assert sorted(store.listdir()) == ["deep", "docs"]
    st = store.stat("docs/b.bin")
    assert isinstance(st, os.stat_result)
    assert st.st_size == 256000 and (st.st_mode & 0o170000) == 0o100000 and st.st_nlink == 1
    assert st.st_mtime_ns > 0 and abs(st.st_mtime - time.time()) < 60
    assert store.is_dir("deep/er/still") and not store.is_dir("docs/a.txt")
    assert store.exists("docs/a.txt") and not store.exists("docs/nope")
    store.chmod("docs/a.txt", 0o600)
    assert store.stat("docs/a.txt").st_mode & 0o777 == 0o600
    store.truncate("docs/a.txt", 5)
    assert store.read("docs/a.txt") == b"hello"


def test_links_renames_and_xattrs(store):
    store.mkdir("d")
    store.write("d/f", b"content")
    store.symlink("d/f", "rel")
    store.symlink("/d/f", "abs")
    assert store.readlink("rel") == "d/f"
    assert store.read("rel") == store.read("abs") == b"content"
    assert (store.lstat("rel").st_mode & 0o170000) == 0o120000
    store.link("d/f", "hard")
    assert store.stat("d/f").st_nlink == 2
    store.rename("hard", "d/g")
    assert sorted(store.listdir("d")) == ["f", "g"]
    store.unlink("d/g")
    assert store.stat("d/f").st_nlink == 1
    store.setxattr("d/f", "user.color", "blue")
    store.setxattr("d/f", "user.bin", b"\x00\xff")
    assert store.getxattr("d/f", "user.color") == b"blue"
    assert sorted(store.listxattr("d/f")) == ["user.bin", "user.color"]
    assert store.getxattr("rel", "user.color") == b"blue"  # follows the link
    with pytest.raises(OSError) as e:
        store.getxattr("rel", "user.color", follow_symlinks=False)
    assert e.value.errno == errno.ENODATA
    with pytest.raises(FileExistsError):
        store.setxattr("d/f", "user.color", "red", os.XATTR_CREATE)
    store.removexattr("d/f", "user.bin")
    assert store.listxattr("d/f") == ["user.color"]
    store.unlink("d/f")
    store.rmdir("d")
    with pytest.raises(FileNotFoundError):
        store.read("rel")


def test_errors_are_the_matching_exceptions(store):
    store.mkdir("dir")
    store.write("dir/file", b"x")
    cases = [
        (lambda: store.read("missing"), FileNotFoundError, "missing"),
        (lambda: store.read("dir"), IsADirectoryError, "dir"),
        (lambda: store.read("dir/file/x"), NotADirectoryError, "dir/file/x"),
        (lambda: store.mkdir("dir"), FileExistsError, "dir"),
        (lambda: store.rmdir("dir"), OSError, "dir"),
        (lambda: store.unlink("dir"), IsADirectoryError, "dir"),
        (lambda: store.listdir("dir/file"), NotADirectoryError, "dir/file"),
        (lambda: store.open("dir/file", "x"), FileExistsError, "dir/file"),
        (lambda: store.open("nodir/new", "w"), FileNotFoundError, "nodir/new"),
        (lambda: store.readlink("dir/file"), OSError, "dir/file"),
        (lambda: store.export_memfd("dir"), IsADirectoryError, "dir"),
    ]
    for call, kind, name in cases:
        with pytest.raises(kind) as e:
            call()
        assert e.value.filename == name, e.value
        assert e.value.strerror
    with pytest.raises(OSError) as e:
        store.rmdir("dir")
    assert e.value.errno == errno.ENOTEMPTY
    with pytest.raises(FileNotFoundError) as e:
        store.rename("missing", "elsewhere")
    assert (e.value.filename, e.value.filename2) == ("missing", "elsewhere")
    with pytest.raises(ValueError):
        store.open("dir/file", "rw")
    with pytest.raises(TypeError):
        store.write("dir/file", 42)
    with pytest.raises(ValueError):
        magicfs.open_store()
    with pytest.raises(ValueError):
        magicfs.open_store(memory=True, codec="lz4")
    store.close()
    with pytest.raises(ValueError):
        store.read("dir/file")
    assert store.closed


def test_file_objects(store):
    with store.open("f.bin", "wb") as f:
        assert isinstance(f, io.RawIOBase) and isinstance(f, magicfs.File)
        assert f.write(b"0123456789") == 10
        assert f.tell() == 10
        f.seek(2)
        f.write(memoryview(b"AB"))
    assert store.read("f.bin") == b"01AB456789"
    with store.open("f.bin", "rb") as f:
        buf = bytearray(4)
        assert f.readinto(buf) == 4 and buf == b"01AB"
        assert f.read(3) == b"456"
        assert f.seek(-2, os.SEEK_END) == 8
        assert f.read() == b"89"
        assert f.read() == b""
        with pytest.raises(OSError):
            f.write(b"no")
        with pytest.raises(io.UnsupportedOperation):
            f.fileno()
        assert f.stat().st_size == 10
    with pytest.raises(ValueError):
        f.read()
    with store.open("f.bin", "r+b") as f:
        f.seek(0, os.SEEK_END)
        f.write(b"!")
        f.truncate(4)
    assert store.read("f.bin") == b"01AB"
    with store.open("t.txt", "w", encoding="utf-8") as t:
        assert isinstance(t, io.TextIOWrapper)
        t.write("ünïcode line 1\nline 2\n")
    with store.open("t.txt") as t:
        assert t.readlines() == ["ünïcode line 1\n", "line 2\n"]
    with store.open("t.txt", "a") as t:
        t.write("line 3\n")
    assert store.read_text("t.txt").splitlines()[-1] == "line 3"
    with store.open("t.txt", "rb", buffering=8192) as b:
        assert isinstance(b, io.BufferedReader) and b.readline() == "ünïcode line 1\n".encode()
    big = os.urandom(3 << 20)
    with store.open("big", "wb") as f:
        f.write(big)
    with store.open("big", "rb") as f:
        assert f.read() == big
    with store.open("big", "rb") as src, io.BytesIO() as dst:
        import shutil

        shutil.copyfileobj(src, dst)
        assert dst.getvalue() == big


def test_export_memfd_reads_and_maps(store):
    data = b"exported through a sealed memfd\n" * 1000
    store.write("f", data)
    with store.open("f", "ab") as f:
        f.write(b"tail, not yet committed")
        fd = store.export_memfd("f")  # data still being written is included
    try:
        st = os.fstat(fd)
        assert st.st_size == len(data) + 23
        assert os.read(fd, 32) == data[:32]
        with mmap.mmap(fd, 0, prot=mmap.PROT_READ) as m:
            assert m[:len(data)] == data and m[-23:] == b"tail, not yet committed"
        with pytest.raises(OSError):
            os.write(fd, b"sealed")
        out = subprocess.run(["sha256sum", "/proc/self/fd/%d" % fd], pass_fds=[fd], capture_output=True, check=True)
        import hashlib

        assert out.stdout.split()[0].decode() == hashlib.sha256(data + b"tail, not yet committed").hexdigest()
    finally:
        os.close(fd)


def test_save_and_load(tmp_path, store):
    store.mkdir("proj/src", parents=True)
    store.write("proj/src/main.py", "print('hi')\n")
    store.write("proj/blob", os.urandom(100_000))
    store.symlink("src/main.py", "proj/entry")
    store.link("proj/blob", "proj/blob2")
    store.setxattr("proj/src/main.py", "user.magic.prompt", "the entry point")
    summary = store.save(tmp_path / "tree.json")
    assert summary["files"] == 2 and summary["links"] == 1 and summary["bytes"] == 100_012
    for copy in (magicfs.load(tmp_path / "tree.json", model=None),
                 magicfs.Store.load(tmp_path / "tree.json", tmp_path / "copy", model=None)):
        with copy:
            assert copy.read("proj/src/main.py") == b"print('hi')\n"
            assert copy.read("proj/blob") == store.read("proj/blob")
            assert copy.readlink("proj/entry") == "src/main.py"
            assert copy.stat("proj/blob2").st_ino == copy.stat("proj/blob").st_ino
            assert copy.getxattr("proj/src/main.py", "user.magic.prompt") == b"the entry point"
    # The same document through the CLI: magicfs import reads what save wrote.
    out = subprocess.run([magicfs_bin(), "import", str(tmp_path / "tree.json"), "--new-store", str(tmp_path / "cli")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    (tmp_path / "bad.json").write_text('{"format":"magicfs-snapshot","version":1,"entries":[{"path":"x"}]}')
    with pytest.raises(ValueError):
        magicfs.load(tmp_path / "bad.json", model=None)
    with pytest.raises(FileNotFoundError):
        magicfs.load(tmp_path / "missing.json", model=None)


def test_disk_store_persists_and_is_locked(tmp_path):
    path = tmp_path / "store"
    with magicfs.open_store(path, model=None) as s:
        s.mkdir("keep")
        s.write("keep/me", b"persisted")
        with pytest.raises(OSError) as e:
            magicfs.open_store(path, model=None)
        assert e.value.errno == errno.EBUSY
    with magicfs.open_store(path, create=False, model=None) as s:
        assert s.read("keep/me") == b"persisted"
        assert s.path == path
    with pytest.raises(FileNotFoundError):
        magicfs.open_store(tmp_path / "none", create=False, model=None)
    out = subprocess.run([magicfs_bin(), "fsck", "--data", str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_threads_share_a_store_and_release_the_gil(store):
    errors = []

    def worker(n):
        try:
            for i in range(200):
                p = "t%d-%d" % (n, i % 10)
                store.write(p, ("%d:%d\n" % (n, i)).encode() * 50)
                assert store.read(p).startswith(("%d:%d\n" % (n, i)).encode())
                with store.open("shared.log", "ab") as f:
                    f.write(b"%02d:%03d\n" % (n, i))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    lines = store.read("shared.log").split(b"\n")[:-1]
    assert len(lines) == 8 * 200 and len(set(lines)) == 8 * 200

    # While one thread writes 256 MiB through the store, this one keeps running Python.
    big = b"x" * (256 << 20)
    done = threading.Event()
    spins = 0

    def writer():
        store.write("big", big)
        done.set()

    t = threading.Thread(target=writer)
    t.start()
    while not done.is_set():
        spins += 1
    t.join()
    assert spins > 10_000, "the GIL was held while the store wrote (%d loop turns)" % spins
    assert store.stat("big").st_size == len(big)


def test_a_store_written_here_mounts_with_the_same_tree(tmp_path, mount_of):
    path = tmp_path / "store"
    files = {"a.txt": b"alpha\n", "sub/b.bin": os.urandom(200_000), "sub/deeper/c": b""}
    with magicfs.open_store(path, model=None) as s:
        for name, data in files.items():
            if "/" in name:
                s.mkdir(name.rsplit("/", 1)[0], parents=True, exist_ok=True)
            s.write(name, data)
        s.symlink("sub/b.bin", "link")
        s.setxattr("a.txt", "user.k", "v")
    m = mount_of(path, "--no-chat", "--no-search")
    for name, data in files.items():
        assert (m.dir / name).read_bytes() == data
    assert os.readlink(m.dir / "link") == "sub/b.bin"
    assert os.getxattr(m.dir / "a.txt", "user.k") == b"v"
    (m.dir / "from-mount.txt").write_bytes(b"written through FUSE")
    m.stop()
    with magicfs.open_store(path, model=None) as s:
        assert s.read("from-mount.txt") == b"written through FUSE"
        assert sorted(s.listdir()) == ["a.txt", "from-mount.txt", "link", "sub"]
