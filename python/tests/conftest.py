"""Fixtures of the magicfs package's tests: stores in memory and on disk,
and real FUSE mounts of the `magicfs` binary (root and /dev/fuse needed;
scripts/test.sh runs these tests with MAGICFS_BIN set)."""

import os
import pathlib
import signal
import subprocess
import time

import pytest

import magicfs

REPO = pathlib.Path(__file__).resolve().parents[2]
MODELS = pathlib.Path(os.environ.get("MAGICFS_MODELS") or os.path.expanduser("~/.cache/magicfs/models"))
GGUF = MODELS / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM = MODELS / "minilm" / "model.safetensors"


def magicfs_bin() -> str:
    """The `magicfs` binary under test: $MAGICFS_BIN, else the debug build."""
    env = os.environ.get("MAGICFS_BIN")
    if env:
        return env
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    return str(target / "debug" / "magicfs")


def need(path: pathlib.Path) -> None:
    assert path.is_file(), "%s is missing: run scripts/models.sh" % path


def wait_until(cond, what: str, timeout: float = 120) -> None:
    """Polls `cond` until it is true; fails with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def is_mounted(path: pathlib.Path) -> bool:
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split(" ")[4] == real for line in f)


class Mount:
    """A running `magicfs mount` of a store (or memory)."""

    def __init__(self, where: pathlib.Path, data=None, args=()):
        self.dir = where
        self.data = data
        self.args = list(args)
        self.log = where.with_suffix(".log")
        self.proc = None

    def start(self) -> "Mount":
        self.dir.mkdir(parents=True, exist_ok=True)
        cmd = [magicfs_bin(), "mount", str(self.dir)]
        cmd += ["--data", str(self.data)] if self.data else ["--memory"]
        cmd += self.args
        env = dict(os.environ, MAGICFS_LOG="info")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + 60
        while not is_mounted(self.dir):
            if self.proc.poll() is not None:
                raise RuntimeError("magicfs mount exited (%s):\n%s" % (self.proc.returncode, self.log.read_text()))
            assert time.monotonic() < deadline, "the mount did not come up"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            subprocess.run(["fusermount3", "-uz", str(self.dir)], check=False)
            raise
        finally:
            self.proc = None
        assert rc == 0, "magicfs exited with %s:\n%s" % (rc, self.log.read_text())
        assert not is_mounted(self.dir)


@pytest.fixture
def store():
    with magicfs.open_store(memory=True, model=None) as s:
        yield s


@pytest.fixture
def disk_store(tmp_path):
    with magicfs.open_store(tmp_path / "store", model=None) as s:
        yield s


@pytest.fixture
def mount_of(tmp_path):
    """Mounts a store directory: `mount_of(data, *args)`; unmounted after the test."""
    mounts = []

    def make(data=None, *args):
        m = Mount(tmp_path / ("m%d" % len(mounts)), data, args).start()
        mounts.append(m)
        return m

    yield make
    for m in mounts:
        m.stop()


@pytest.fixture(scope="session")
def chat_mount(tmp_path_factory):
    """One mount answering chat sessions with the real model (SmolLM2), shared by the chat tests."""
    need(GGUF)
    m = Mount(tmp_path_factory.mktemp("chat") / "m", None, ["--max-tokens", "48", "--no-search"]).start()
    yield m
    m.stop()
