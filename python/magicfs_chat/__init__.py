"""Talk to MagicFS chat sessions from Python, with the standard library only.

A session is the file ``sessions/<id>`` of a MagicFS mount. It holds turns
that start with ``System:``, ``User:`` or ``Assistant:`` (and ``Error:``, for
turns the daemon could not answer). Appending a ``User:`` turn and closing the
file makes the daemon write the reply; ``sessions/.generating.<id>`` exists
until the reply is complete.
"""

import os
import time
import uuid
from typing import Iterator, List, NamedTuple, Optional

__all__ = ["Session", "Reply", "Turn", "ChatError", "parse"]

PREFIXES = ("System:", "User:", "Assistant:", "Error:")


class Turn(NamedTuple):
    """One turn of a session: ``role`` is system, user, assistant or error."""

    role: str
    content: str


class Reply(str):
    """The assistant's reply; ``.content`` is the text (the object is the text too)."""

    @property
    def content(self) -> str:
        return str(self)

    @property
    def role(self) -> str:
        return "assistant"


class ChatError(RuntimeError):
    """The daemon answered with an ``Error: <kind>: <message>`` turn."""

    def __init__(self, kind: str, message: str, partial: str = ""):
        super().__init__("%s: %s" % (kind, message))
        self.kind = kind
        self.message = message
        self.partial = partial


def parse(text: str) -> List[Turn]:
    """Splits a session's text into turns (text before the first role line is ignored)."""
    turns = []  # type: List[List[str]]
    for line in text.splitlines(keepends=True):
        for p in PREFIXES:
            if line.startswith(p):
                rest = line[len(p):]
                if rest.startswith(" "):
                    rest = rest[1:]
                turns.append([p[:-1].lower(), rest])
                break
        else:
            if turns:
                turns[-1][1] += line
    return [Turn(r, c.rstrip()) for r, c in turns]


def _default_mount() -> str:
    return os.environ.get("MAGICFS_MOUNT") or os.path.expanduser("~/magicfs")


class Session:
    """A conversation in ``<mount>/sessions/<id>``.

    ``id=None`` picks a new random id. ``system`` writes a ``System:`` turn
    into a new or empty session. ``timeout`` bounds the wait for one reply.
    """

    def __init__(self, mount: Optional[str] = None, id: Optional[str] = None, system: Optional[str] = None,
                 timeout: float = 600.0, poll: float = 0.02):
        self.mount = os.fspath(mount) if mount is not None else _default_mount()
        self.id = id or "py-" + uuid.uuid4().hex[:12]
        if not self.id or self.id.startswith(".") or "/" in self.id:
            raise ValueError("session id %r: use a plain name (no '/', not starting with '.')" % self.id)
        self.dir = os.path.join(self.mount, "sessions")
        if not os.path.isdir(self.dir):
            raise FileNotFoundError("%s has no sessions/ directory: is MagicFS mounted there?" % self.mount)
        self.path = os.path.join(self.dir, self.id)
        self.sentinel = os.path.join(self.dir, ".generating." + self.id)
        self.timeout = timeout
        self.poll = poll
        if system is not None and self._size() == 0:
            with open(self.path, "w", encoding="utf-8") as f:
                f.write("System: %s\n" % system.strip())

    # -- context manager -------------------------------------------------
    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Waits for a reply still being written (at most ``timeout``)."""
        self._wait_done(time.monotonic() + self.timeout)

    # -- reading ---------------------------------------------------------
    def _size(self) -> int:
        try:
            return os.stat(self.path).st_size
        except FileNotFoundError:
            return 0

    def read(self) -> List[Turn]:
        """The whole history as turns."""
        try:
            with open(self.path, "r", encoding="utf-8", errors="replace") as f:
                return parse(f.read())
        except FileNotFoundError:
            return []

    def generating(self) -> bool:
        """True while the daemon is writing (or has queued) a reply."""
        return os.path.exists(self.sentinel)

    def _wait_done(self, deadline: float) -> None:
        while self.generating():
            if time.monotonic() > deadline:
                raise TimeoutError("session %s: no complete reply within %.0f s" % (self.id, self.timeout))
            time.sleep(self.poll)

    # -- writing ---------------------------------------------------------
    def _append_user(self, text: str) -> int:
        if "\0" in text:
            raise ValueError("a message cannot contain NUL bytes")
        lines = text.rstrip("\n").split("\n")
        # A line of the message that starts with a role prefix would open a new turn.
        safe = [(" " + l) if i and l.startswith(PREFIXES) else l for i, l in enumerate(lines)]
        turn = ("User: " + "\n".join(safe) + "\n").encode("utf-8")
        self._wait_done(time.monotonic() + self.timeout)
        with open(self.path, "ab") as f:
            start = f.seek(0, os.SEEK_END)
            f.write(turn)
        # close() returned: the daemon has queued the reply and created the sentinel.
        return start + len(turn)

    def stream(self, text: str) -> Iterator[str]:
        """Sends ``text`` as a User turn and yields the reply's text as it is written."""
        offset = self._append_user(text)
        deadline = time.monotonic() + self.timeout
        head = "Assistant: "
        pending = b""
        buf = ""
        emitted = 0
        while True:
            busy = self.generating()
            with open(self.path, "rb") as f:
                f.seek(offset)
                data = f.read()
            if data:
                offset += len(data)
                pending += data
                try:
                    buf += pending.decode("utf-8")
                    pending = b""
                except UnicodeDecodeError as e:
                    buf += pending[:e.start].decode("utf-8")
                    pending = pending[e.start:]
                if buf.startswith(head):
                    body = buf[len(head):]
                    cut = body.find("\nError: ")
                    visible = body if cut < 0 else body[:cut]
                    nl = visible.rfind("\n")
                    if nl >= 0 and "\nError: ".startswith(visible[nl:]):
                        visible = visible[:nl]  # might be the start of an error line
                    if len(visible) > emitted:
                        yield visible[emitted:]
                        emitted = len(visible)
            elif not busy:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("session %s: no complete reply within %.0f s" % (self.id, self.timeout))
            time.sleep(self.poll)
        turns = self.read()
        if turns and turns[-1].role == "error":
            kind, _, message = turns[-1].content.partition(": ")
            partial = turns[-2].content if len(turns) > 1 and turns[-2].role == "assistant" else ""
            raise ChatError(kind, message, partial)

    def send(self, text: str) -> Reply:
        """Sends ``text`` as a User turn and returns the whole reply."""
        for _ in self.stream(text):
            pass
        turns = self.read()
        if not turns or turns[-1].role != "assistant":
            raise ChatError("input", "no reply was written (is the session's last turn a User turn?)")
        return Reply(turns[-1].content)

    def reset(self, system: Optional[str] = None) -> None:
        """Starts the conversation over (optionally with a system prompt)."""
        with open(self.path, "w", encoding="utf-8") as f:
            if system is not None:
                f.write("System: %s\n" % system.strip())

    def cancel(self) -> None:
        """Stops a reply being written (it ends with an ``Error: cancelled`` turn)."""
        try:
            os.unlink(self.sentinel)
        except FileNotFoundError:
            pass

    def delete(self) -> None:
        """Removes the session file (a reply being written is cancelled)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
