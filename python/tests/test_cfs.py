"""magicfs.cfs: CFS-Local's client API on MagicFS. The API against a
stand-in daemon in a plain directory (constructor keywords, Response,
send, stream, read, read_response, from_file, delete, CFS_MOUNT); the cases
of CFS-Local's own client tests, against that stand-in and against a real
mount with the real model; CFS-Local's
README example, unchanged apart from its import line, against a real mount
with the real model; and cancellation on that mount, including a cancel
that lands before the reply starts."""

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest
from conftest import wait_until

from magicfs import parse
from magicfs.cfs import Response, Session, needs_response


class Answerer(threading.Thread):
    """A stand-in daemon: answers every session whose last turn is User."""

    def __init__(self, sessions_dir, reply=None):
        super().__init__(daemon=True)
        self.dir = sessions_dir
        self.reply = reply
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            for name in os.listdir(self.dir):
                path = os.path.join(self.dir, name)
                if name.startswith(".") or not os.path.isfile(path):
                    continue
                with open(path, encoding="utf-8") as f:
                    text = f.read()
                if needs_response(text):
                    sentinel = os.path.join(self.dir, ".generating." + name)
                    open(sentinel, "w").close()
                    time.sleep(0.05)
                    with open(path, "a", encoding="utf-8") as f:
                        f.write("Assistant: %s\n" % (self.reply or "Answer %d." % text.count("User:")))
                    os.unlink(sentinel)
            time.sleep(0.02)


@pytest.fixture
def answered(tmp_path):
    d = tmp_path / "sessions"
    d.mkdir()
    a = Answerer(str(d))
    a.start()
    yield str(d)
    a.stop.set()
    a.join(2)


def test_response_fields():
    r = Response(session_id="s", raw_content="User: hi\nAssistant: hello there\n\nUser: more\nAssistant: a\nb\n")
    assert r.session_id == "s" and r.content == "a\nb" and len(r.history) == 5 and r.is_error is False
    r = Response(session_id="s", raw_content="User: hi\nAssistant: [Error: model failed]\n")
    assert r.is_error and "model failed" in r.content
    r = Response(session_id="s", raw_content="User: hi\nError: cancelled: the sentinel was removed\n")
    assert r.is_error and r.content == "[Error: cancelled: the sentinel was removed]"
    assert Response(session_id="s", raw_content="").content == "" and Response(session_id="s", raw_content="").history == []
    assert r.model_dump()["is_error"] is True
    assert needs_response("User: a\nAssistant: b\nUser: c\n") and not needs_response("User: a\nAssistant: b\n")


def test_send_read_stream_and_files(answered):
    s = Session(session_id="one", sessions_dir=answered)
    with s:
        r = s.send("Hello", timeout=5.0)
        assert r.content == "Answer 1." and len(r.history) == 2 and r.session_id == "one"
        assert "User: Hello" in s.read() and "Assistant: Answer 1." in s.read()
        r2 = s.send("Again", timeout=5.0)
        assert len(r2.history) == 4 and r2.content == "Answer 2."
        chunks = list(s.stream("Tell me something", timeout=5.0))
        assert "".join(chunks) == "Assistant: Answer 3.\n"
    again = Session.from_file("one", sessions_dir=answered)
    assert len(again.read_response().history) == 6
    with pytest.raises(FileNotFoundError):
        Session.from_file("nobody", sessions_dir=answered)
    again.delete()
    assert not again.session_path.exists()
    assert not again.cancel(), "nothing pending"


def test_mount_keyword_and_cfs_mount(tmp_path, monkeypatch):
    monkeypatch.setenv("CFS_MOUNT", str(tmp_path))
    s = Session()
    assert s.session_path.parent == tmp_path / "sessions" and len(s.session_id) == 36
    s = Session(session_id="x", mount=str(tmp_path / "elsewhere"))
    assert s.session_path == tmp_path / "elsewhere" / "sessions" / "x"
    with pytest.raises(TimeoutError):
        with Session(session_id="silent", mount=str(tmp_path)) as quiet:
            quiet.send("anyone?", timeout=0.3)


class Daemon:
    """Where a test's sessions live and what answers them: a plain directory
    with the stand-in daemon, or the real mount with the real model."""

    def __init__(self, sessions_dir, reply=None):
        self.sessions_dir = sessions_dir
        self.reply = reply  # the stand-in's fixed reply; None for the model

    def check_reply(self, r):
        assert not r.is_error, r.raw_content
        if self.reply is None:
            assert r.content.strip(), r.raw_content
        else:
            assert r.content == self.reply

    def turns(self, r):
        """The number of turns in a response (the model's replies may span lines)."""
        return len(parse(r.raw_content))


@pytest.fixture(params=["stand-in", "mount"])
def daemon(request, tmp_path):
    if request.param == "mount":
        yield Daemon(str(request.getfixturevalue("chat_mount").dir / "sessions"))
        return
    d = tmp_path / "sessions"
    d.mkdir()
    a = Answerer(str(d), reply="Mock response.")
    a.start()
    yield Daemon(str(d), reply="Mock response.")
    a.stop.set()
    a.join(2)


class TestOriginResponse:
    """CFS-Local's Response cases (cfs/tests/test_client.py), same inputs, same assertions."""

    def test_content_parsing(self):
        r = Response(session_id="test", raw_content="User: hi\nAssistant: hello there\n")
        assert r.content == "hello there"
        assert len(r.history) == 2
        assert r.is_error is False

    def test_error_detection(self):
        r = Response(session_id="test", raw_content="User: hi\nAssistant: [Error: model failed]\n")
        assert r.is_error is True
        assert "model failed" in r.content

    def test_empty_content(self):
        r = Response(session_id="test", raw_content="")
        assert r.content == ""
        assert r.history == []

    def test_multi_turn_content(self):
        r = Response(session_id="test", raw_content="User: a\nAssistant: b\nUser: c\nAssistant: d\n")
        assert r.content == "d"
        assert len(r.history) == 4


def _sid(name):
    return "%s-%s" % (name, uuid.uuid4().hex[:8])


class TestOriginSession:
    """CFS-Local's Session cases (cfs/tests/test_client.py), each against its
    stand-in daemon in a directory and against a real mount with the model.
    On the mount, replies are the model's: any non-error text, counted in
    turns rather than lines."""

    def test_send_basic(self, daemon):
        s = Session(session_id=_sid("test_send"), sessions_dir=daemon.sessions_dir)
        with s:
            r = s.send("Hello", timeout=300)
        daemon.check_reply(r)
        assert daemon.turns(r) == 2

    def test_read_raw(self, daemon):
        s = Session(session_id=_sid("test_read"), sessions_dir=daemon.sessions_dir)
        with s:
            s.send("Hello", timeout=300)
            raw = s.read()
        assert "User: Hello" in raw
        assert "Assistant: " + (daemon.reply or "") in raw

    def test_multi_turn(self, daemon):
        s = Session(session_id=_sid("test_multi"), sessions_dir=daemon.sessions_dir)
        with s:
            r1 = s.send("First", timeout=300)
            assert daemon.turns(r1) == 2
            r2 = s.send("Second", timeout=300)
            assert daemon.turns(r2) == 4
            daemon.check_reply(r2)

    def test_session_from_file(self, daemon):
        sid = _sid("test_from_file")
        s = Session(session_id=sid, sessions_dir=daemon.sessions_dir)
        with s:
            s.send("Hello", timeout=300)
        s2 = Session.from_file(sid, sessions_dir=daemon.sessions_dir)
        r = s2.read_response()
        assert daemon.turns(r) == 2
        daemon.check_reply(r)

    def test_delete(self, daemon):
        s = Session(session_id=_sid("test_delete"), sessions_dir=daemon.sessions_dir)
        with s:
            s.send("Hello", timeout=300)
        s.delete()
        assert not s.session_path.exists()

    def test_stream(self, daemon):
        s = Session(session_id=_sid("test_stream"), sessions_dir=daemon.sessions_dir)
        with s:
            chunks = list(s.stream("Tell me something", timeout=300))
        combined = "".join(chunks)
        assert combined.startswith("Assistant: ") and combined.endswith("\n"), combined
        assert s.read().endswith(combined)
        daemon.check_reply(s.read_response())


EXAMPLE = '''
from magicfs.cfs import Session

with Session(mount="/mnt/kvbfs") as s:
    # Blocking call
    r = s.send("Hello, who are you?")
    print(r.content)

    # Streaming
    for chunk in s.stream("Tell me a short story"):
        print(chunk, end="", flush=True)
    print()

    # Read full history
    print(s.read())
'''


def test_cfs_readme_example_runs_unchanged_on_a_real_mount(chat_mount, tmp_path):
    """The example mounts nothing itself and names /mnt/kvbfs: it runs in a
    private mount namespace where the test's mount is bound there."""
    script = tmp_path / "example.py"
    script.write_text(EXAMPLE)
    shell = textwrap.dedent("""
        set -e
        mount -t tmpfs example /mnt
        mkdir /mnt/kvbfs
        mount --bind "$MOUNT" /mnt/kvbfs
        exec "$PYTHON" "$SCRIPT"
    """)
    env = dict(os.environ, MOUNT=str(chat_mount.dir), PYTHON=sys.executable, SCRIPT=str(script))
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", shell],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    assert lines and lines[0].strip(), "no first reply:\n" + out.stdout
    assert "User: Hello, who are you?" in out.stdout and "User: Tell me a short story" in out.stdout
    transcript = out.stdout[out.stdout.index("User: Hello, who are you?"):]
    assert transcript.count("Assistant: ") == 2, out.stdout
    assert "Error:" not in transcript


def test_cancel_race_on_a_real_mount(chat_mount):
    mount = str(chat_mount.dir)
    busy = Session(mount=mount)
    with busy:
        os.setxattr(busy.session_path, "user.magic.max_tokens", b"300")
    got = {}

    def send(name, s, text):
        got[name] = s.send(text, timeout=300)

    t_busy = threading.Thread(target=send, args=("busy", busy, "Count from one to two hundred in words, one per line."))
    t_busy.start()
    wait_until(lambda: busy._last_role() == "assistant", "the long reply did not start")

    # Cancel lands while the reply waits in the queue (the model is busy): before it starts.
    waiting = Session(mount=mount)
    with waiting:
        t = threading.Thread(target=send, args=("waiting", waiting, "Say hello."))
        t.start()
        wait_until(lambda: waiting.generating(), "no reply was queued")
        assert waiting.cancel()
        t.join(30)
    assert not t.is_alive(), "send() kept waiting after the cancel"
    r = got["waiting"]
    assert r.is_error and r.content.startswith("[Error: cancelled"), r
    assert waiting.read().rstrip().endswith("before the reply started")
    assert not waiting.generating()

    # Cancel right after sending, while nothing else is queued: it lands
    # before the first token or during the reply; either way send() returns
    # the error the file ends with.
    assert busy.cancel()
    t_busy.join(60)
    assert got["busy"].is_error
    quick = Session(mount=mount)
    with quick:
        t = threading.Thread(target=send, args=("quick", quick, "Name three colors."))
        t.start()
        wait_until(lambda: quick.generating() or quick.read().count("Assistant:"), "no reply was queued")
        cancelled = quick.cancel()
        t.join(60)
    r = got["quick"]
    if cancelled:
        assert r.is_error and r.content.startswith("[Error: cancelled"), r
        assert quick.read().rstrip().splitlines()[-1].startswith("Error: cancelled")
    else:
        assert not r.is_error and r.content.strip()
    # The session goes on normally afterwards.
    after = waiting.send("Say hello again.", timeout=300)
    assert not after.is_error and after.content.strip()
