"""Chat sessions of a MagicFS mount, with the standard library only.

A session is the file ``sessions/<id>`` of a mount. It holds turns that
start with ``System:``, ``User:`` or ``Assistant:`` (and ``Error:``, for
turns the daemon could not answer). Appending a ``User:`` turn and closing
the file makes the daemon write the reply; ``sessions/.generating.<id>``
exists from before ``close()`` returns until the reply is complete.
Removing that file cancels the reply, and the turn then always ends with an
``Error: cancelled`` line, whether the reply had started or not.
"""

import os
import time
import uuid
from typing import Iterator, List, NamedTuple, Optional

__all__ = ["Session", "Reply", "Turn", "ChatError", "parse", "PREFIXES", "default_mount"]

PREFIXES = ("System:", "User:", "Assistant:", "Error:")
# Bytes of the end of a session read to find its last turn.
_TAIL = 64 << 10


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
    """The daemon answered with an ``Error: <kind>: <message>`` turn
    (``kind``: input, request, model, backend or cancelled)."""

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


def default_mount() -> str:
    """``$MAGICFS_MOUNT``, else ``$CFS_MOUNT``, else ``~/magicfs``."""
    return os.environ.get("MAGICFS_MOUNT") or os.environ.get("CFS_MOUNT") or os.path.expanduser("~/magicfs")


class Session:
    """A conversation in ``<mount>/sessions/<id>``.

    ``id`` (or ``session_id``) ``None`` picks a new random id. ``system``
    writes a ``System:`` turn into a new or empty session. ``timeout``
    bounds the wait for one reply. ``sessions_dir`` names the sessions
    directory directly instead of ``<mount>/sessions``.
    """

    def __init__(self, mount: Optional[str] = None, id: Optional[str] = None, system: Optional[str] = None,
                 timeout: float = 600.0, poll: float = 0.02, *, session_id: Optional[str] = None,
                 sessions_dir: Optional[str] = None):
        if id is not None and session_id is not None and id != session_id:
            raise ValueError("give id or session_id, not both")
        self.mount = os.fspath(mount) if mount is not None else default_mount()
        self.id = id or session_id or "py-" + uuid.uuid4().hex[:12]
        if self.id.startswith(".") or "/" in self.id or "\0" in self.id:
            raise ValueError("session id %r: use a plain name (no '/', not starting with '.')" % self.id)
        self.dir = os.fspath(sessions_dir) if sessions_dir is not None else os.path.join(self.mount, "sessions")
        if not os.path.isdir(self.dir):
            raise FileNotFoundError("%s is not a directory: is MagicFS mounted at %s?" % (self.dir, self.mount))
        self.path = os.path.join(self.dir, self.id)
        self.sentinel = os.path.join(self.dir, ".generating." + self.id)
        self.timeout = timeout
        self.poll = poll
        self._cancelled = False
        if system is not None and self._size() == 0:
            with open(self.path, "w", encoding="utf-8") as f:
                f.write("System: %s\n" % system.strip())

    @property
    def session_id(self) -> str:
        return self.id

    # -- context manager -------------------------------------------------
    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Waits for a reply still being written (at most ``timeout``)."""
        self._wait_settled(time.monotonic() + self.timeout)

    # -- reading ---------------------------------------------------------
    def _size(self) -> int:
        try:
            return os.stat(self.path).st_size
        except FileNotFoundError:
            return 0

    def text(self) -> str:
        """The whole session as text."""
        try:
            with open(self.path, "r", encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def read(self) -> List[Turn]:
        """The whole history as turns."""
        return parse(self.text())

    def last_role(self) -> Optional[str]:
        """The role of the last turn (``None`` for an empty session)."""
        try:
            with open(self.path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(0, size - _TAIL))
                tail = f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return None
        for line in reversed(tail.splitlines()):
            for p in PREFIXES:
                if line.startswith(p):
                    return p[:-1].lower()
        return None

    def generating(self) -> bool:
        """True while the daemon is writing (or has queued) a reply."""
        return os.path.exists(self.sentinel)

    def settled(self) -> bool:
        """True when no reply is queued or being written and the last turn
        was answered (or the session has no User turn to answer)."""
        return not self.generating() and self.last_role() != "user"

    def _wait_settled(self, deadline: float) -> None:
        while self.generating() or (self._cancelled and self.last_role() == "user"):
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
        self._wait_settled(time.monotonic() + self.timeout)
        self._cancelled = False
        with open(self.path, "ab") as f:
            start = f.seek(0, os.SEEK_END)
            f.write(turn)
        # close() returned: the daemon has queued the reply and created the sentinel.
        return start + len(turn)

    def stream(self, text: str) -> Iterator[str]:
        """Sends ``text`` as a User turn and yields the reply's text as it
        is written. Raises ``ChatError`` when the turn ends with an
        ``Error:`` line (``kind`` ``cancelled`` after ``cancel()``)."""
        offset = self._append_user(text)
        deadline = time.monotonic() + self.timeout
        head = "Assistant: "
        pending = b""
        buf = ""
        emitted = 0
        quiet_since = time.monotonic()
        while True:
            busy = self.generating()
            with open(self.path, "rb") as f:
                f.seek(offset)
                data = f.read()
            if data:
                quiet_since = time.monotonic()
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
                role = self.last_role()
                if role != "user":
                    break
                if not self._cancelled and time.monotonic() - quiet_since > 2.0:
                    raise ChatError("input", "the mount queued no reply (is chat on? it is off with --no-chat)")
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

    def cancel(self) -> bool:
        """Stops the reply being written or waiting to be written: the turn
        then ends with ``Error: cancelled``, and a ``send`` or ``stream``
        waiting for it raises ``ChatError`` with kind ``cancelled``. Returns
        False when no reply was pending."""
        try:
            os.unlink(self.sentinel)
        except FileNotFoundError:
            return False
        self._cancelled = True
        return True

    def delete(self) -> None:
        """Removes the session file (a reply being written is cancelled)."""
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
