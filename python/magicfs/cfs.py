"""CFS-Local's Python client, on MagicFS.

Programs written for CFS-Local's ``client.py`` run unchanged apart from the
import line::

    from magicfs.cfs import Session        # was: from client import Session

    with Session(mount="/mnt/m") as s:     # or CFS_MOUNT=/mnt/m
        r = s.send("Hello, who are you?")
        print(r.content)
        for chunk in s.stream("Tell me a short story"):
            print(chunk, end="", flush=True)
        print(s.read())

The same constructor keywords (``session_id``, ``mount``, ``sessions_dir``),
``send()`` returning a ``Response`` (``content``, ``history``,
``is_error``, ``session_id``, ``raw_content``), ``stream()`` yielding what
is appended to the file, ``read()`` returning the transcript text,
``read_response()``, ``from_file()``, ``delete()`` and ``CFS_MOUNT``.
Pydantic is not needed: ``Response`` is a plain class with the same fields
and ``model_dump()``.

MagicFS adds ``cancel()``: it stops a reply that is queued or being
written, and the turn then always ends with an ``Error: cancelled`` line;
the ``send()`` waiting for that reply returns a ``Response`` whose
``is_error`` is true. A turn the daemon could not answer (``Error: <kind>:
<message>``) reads as ``content == "[Error: <kind>: <message>]"``, the form
CFS-Local's daemon wrote.
"""

import os
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

from .session import PREFIXES, parse

__all__ = ["Session", "Response", "needs_response"]


def needs_response(content: str) -> bool:
    """True when the conversation's last turn is a ``User:`` turn (the
    daemon owes it a reply)."""
    for line in reversed(content.splitlines()):
        for p in PREFIXES:
            if line.startswith(p):
                return p == "User:"
    return False


class Response:
    """What ``send()`` returns: the session's whole text and views of it."""

    def __init__(self, *, session_id: str, raw_content: str):
        self.session_id = session_id
        self.raw_content = raw_content

    @property
    def history(self) -> List[str]:
        """All non-empty lines of the conversation."""
        return [line for line in self.raw_content.splitlines() if line.strip()]

    @property
    def content(self) -> str:
        """The last reply: the last ``Assistant:`` turn's text, or
        ``"[Error: …]"`` when the last answer was an ``Error:`` turn."""
        for turn in reversed(parse(self.raw_content)):
            if turn.role == "assistant":
                return turn.content
            if turn.role == "error":
                return "[Error: %s]" % turn.content
        return ""

    @property
    def is_error(self) -> bool:
        """Whether the last answer is an error."""
        return self.content.startswith("[Error:")

    def model_dump(self) -> Dict[str, Any]:
        return {"session_id": self.session_id, "raw_content": self.raw_content, "history": self.history,
                "content": self.content, "is_error": self.is_error}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Response) and (self.session_id, self.raw_content) == (
            other.session_id, other.raw_content)

    def __repr__(self) -> str:
        return "Response(session_id=%r, content=%r, is_error=%r)" % (self.session_id, self.content, self.is_error)


class Session:
    """A conversation backed by ``<mount>/sessions/<session_id>``; the file
    is the only state."""

    DEFAULT_MOUNT = os.path.expanduser("~/magicfs")
    SESSIONS_SUBDIR = "sessions"
    POLL_INTERVAL = 0.05
    POLL_TIMEOUT = 120.0

    def __init__(self, session_id: Optional[str] = None, mount: Optional[str] = None,
                 sessions_dir: Optional[str] = None):
        self.session_id = session_id or str(uuid.uuid4())
        mount = mount or os.environ.get("CFS_MOUNT") or os.environ.get("MAGICFS_MOUNT") or self.DEFAULT_MOUNT
        if sessions_dir:
            self._sessions_dir = Path(sessions_dir)
        else:
            self._sessions_dir = Path(mount) / self.SESSIONS_SUBDIR
        self.session_path = self._sessions_dir / self.session_id
        self.sentinel_path = self._sessions_dir / (".generating." + self.session_id)
        self._cancelled = False

    # -- context manager --
    def __enter__(self) -> "Session":
        self._sessions_dir.mkdir(parents=True, exist_ok=True)
        self.session_path.touch(exist_ok=True)
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        pass  # the file stays for cat and grep

    # -- core operations --
    def send(self, message: str, timeout: Optional[float] = None) -> Response:
        """Appends ``User: message``, waits for the reply, returns the response."""
        self._append_user_message(message)
        self._wait_for_generation(timeout or self.POLL_TIMEOUT)
        return self.read_response()

    def read(self) -> str:
        """The whole conversation as text."""
        try:
            return self.session_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""

    def read_response(self) -> Response:
        return Response(session_id=self.session_id, raw_content=self.read())

    def stream(self, message: str, timeout: Optional[float] = None) -> Iterator[str]:
        """Appends ``User: message`` and yields the text appended to the file
        after it (``Assistant: …``) as it grows, until the reply is done."""
        start = self._append_user_message(message)
        deadline = time.monotonic() + (timeout or self.POLL_TIMEOUT)
        offset = start
        pending = b""
        while True:
            done = self._done()
            try:
                with open(self.session_path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                return
            if data:
                offset += len(data)
                pending += data
                try:
                    text, pending = pending.decode("utf-8"), b""
                except UnicodeDecodeError as e:
                    text, pending = pending[:e.start].decode("utf-8"), pending[e.start:]
                if text:
                    yield text
            elif done:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("Generation for session '%s' did not complete within %ss"
                                   % (self.session_id, timeout or self.POLL_TIMEOUT))
            time.sleep(self.POLL_INTERVAL)

    def cancel(self) -> bool:
        """Stops the reply being written (or waiting to be): the turn ends
        with ``Error: cancelled`` and a waiting ``send()`` returns a
        ``Response`` with ``is_error`` true. False when nothing was pending."""
        try:
            self.sentinel_path.unlink()
        except FileNotFoundError:
            return False
        self._cancelled = True
        return True

    def generating(self) -> bool:
        """True while a reply is queued or being written."""
        return self.sentinel_path.exists()

    def close(self) -> None:
        """Nothing to do: the file stays for inspection."""

    def delete(self) -> None:
        """Removes the session file."""
        try:
            self.session_path.unlink()
        except FileNotFoundError:
            pass

    @classmethod
    def from_file(cls, session_id: str, **kwargs: Any) -> "Session":
        """Opens an existing session by id."""
        s = cls(session_id=session_id, **kwargs)
        if not s.session_path.exists():
            raise FileNotFoundError("Session '%s' not found at %s" % (session_id, s.session_path))
        return s

    # -- helpers --
    def _append_user_message(self, message: str) -> int:
        """Appends ``User: message`` and closes the file (MagicFS queues the
        reply before ``close()`` returns). Returns the end of the turn."""
        self._cancelled = False
        turn = ("User: %s\n" % message).encode("utf-8")
        with open(self.session_path, "ab") as f:
            start = f.seek(0, os.SEEK_END)
            f.write(turn)
        return start + len(turn)

    def _last_role(self) -> Optional[str]:
        for line in reversed(self.read().splitlines()):
            for p in PREFIXES:
                if line.startswith(p):
                    return p[:-1].lower()
        return None

    def _done(self) -> bool:
        """No reply queued or streaming, and the last turn answered; after
        ``cancel()``, answered by its ``Error:`` turn."""
        if self.sentinel_path.exists():
            return False
        role = self._last_role()
        return role == "error" if self._cancelled else role not in ("user", None)

    def _wait_for_generation(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._done():
                return
            time.sleep(self.POLL_INTERVAL)
        raise TimeoutError("Generation for session '%s' did not complete within %ss" % (self.session_id, timeout))
