"""The store API: ``open_store``, ``load``, ``Store`` and its file objects."""

import io
import os
from typing import Any, List, NamedTuple, Optional, Tuple, Union

from ._magicfs import Handle as _Handle
from ._magicfs import Store as _NativeStore

PathArg = Union[str, "os.PathLike[str]"]

__all__ = ["Store", "File", "SearchHit", "open_store", "load"]


def _stat_result(t: Tuple[Tuple[int, ...], Tuple[int, ...]]) -> os.stat_result:
    (mode, ino, dev, nlink, uid, gid, size), (a, m, c, blksize, blocks, rdev) = t
    s = 1_000_000_000
    return os.stat_result((mode, ino, dev, nlink, uid, gid, size, a // s, m // s, c // s,
                           a / s, m / s, c / s, a, m, c, blksize, blocks, rdev))


class SearchHit(NamedTuple):
    """One result of ``Store.search``: the file, its cosine score (-1 to 1)
    and its best-matching passage."""

    path: str
    score: float
    passage: str


class File(io.RawIOBase):
    """A file of a store, opened by ``Store.open``: an ``io.RawIOBase``
    (``read``, ``readinto``, ``write``, ``seek``, ``tell``, ``truncate``),
    so ``io.BufferedReader``, ``io.TextIOWrapper`` and ``shutil.copyfileobj``
    work with it. Written data is committed when it is closed. It has no
    kernel descriptor (``fileno()`` raises); use ``Store.export_memfd`` to
    hand a file to ``mmap`` or another process."""

    def __init__(self, handle: _Handle, mode: str):
        super().__init__()
        self._h = handle
        self.name = handle.name
        self.mode = mode

    def readable(self) -> bool:
        return self._h.readable()

    def writable(self) -> bool:
        return self._h.writable()

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        return self._h.readinto(buffer)

    def read(self, size: Optional[int] = -1) -> bytes:
        return self._h.read(-1 if size is None else size)

    def readall(self) -> bytes:
        return self._h.read(-1)

    def write(self, data: Any) -> int:
        return self._h.write(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._h.seek(offset, whence)

    def tell(self) -> int:
        return self._h.tell()

    def truncate(self, size: Optional[int] = None) -> int:
        return self._h.truncate(self._h.tell() if size is None else size)

    def fileno(self) -> int:
        raise io.UnsupportedOperation("a MagicFS file has no kernel descriptor; use Store.export_memfd(path)")

    def isatty(self) -> bool:
        return False

    def fsync(self) -> None:
        """Commits what was written and makes the store durable."""
        self._h.sync()

    def stat(self) -> os.stat_result:
        return _stat_result(self._h._fstat())

    def close(self) -> None:
        if not self.closed:
            try:
                self._h.close()
            finally:
                super().close()

    def __repr__(self) -> str:
        return "<magicfs.File name=%r mode=%r%s>" % (self.name, self.mode, " closed" if self.closed else "")


def _flags(mode: str) -> Tuple[int, bool]:
    """``open()``'s mode as ``os.open`` flags, and whether it is binary."""
    kinds = [c for c in mode if c in "rwax"]
    if len(kinds) != 1 or len(set(mode)) != len(mode) or not set(mode) <= set("rwaxbt+"):
        raise ValueError("invalid mode: %r" % mode)
    if "b" in mode and "t" in mode:
        raise ValueError("can't have text and binary mode at once")
    plus = "+" in mode
    flags = {
        "r": os.O_RDWR if plus else os.O_RDONLY,
        "w": (os.O_RDWR if plus else os.O_WRONLY) | os.O_CREAT | os.O_TRUNC,
        "a": (os.O_RDWR if plus else os.O_WRONLY) | os.O_CREAT | os.O_APPEND,
        "x": (os.O_RDWR if plus else os.O_WRONLY) | os.O_CREAT | os.O_EXCL,
    }[kinds[0]]
    return flags, "b" in mode


class Store(_NativeStore):
    """A MagicFS store in this process, with the mount's semantics and no
    mount: paths are relative to the store's root (``"/a/b"`` and ``"a/b"``
    are the same), symbolic links are followed as the kernel does, errors
    are the matching ``OSError`` subclasses. Safe to use from several
    threads; every call releases the GIL while it works.

    ``Store(path)`` opens (and by default creates) the store in directory
    ``path`` — the same directory ``magicfs mount --data`` uses, but not
    while it is mounted; ``Store(memory=True)`` makes one in memory.
    ``model`` names the language model for ``generate_structure`` and for
    generating empty files that have a prompt on first read: ``"default"``
    (SmolLM2 from ``scripts/models.sh``, or ``MAGICFS_MODEL_PATH``), a
    ``.gguf`` path, or ``None``; ``llm_url`` uses an OpenAI-compatible
    server instead. The model loads on first use.
    """

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def stat(self, path: PathArg, *, follow_symlinks: bool = True) -> os.stat_result:
        """The attributes of ``path`` as ``os.stat_result``."""
        return _stat_result(self._stat(path, follow_symlinks))

    def lstat(self, path: PathArg) -> os.stat_result:
        """``stat`` of a symbolic link itself."""
        return _stat_result(self._stat(path, False))

    def is_dir(self, path: PathArg) -> bool:
        try:
            return (self.stat(path).st_mode & 0o170000) == 0o040000
        except (FileNotFoundError, NotADirectoryError):
            return False

    def read_text(self, path: PathArg, encoding: str = "utf-8", errors: str = "strict") -> str:
        """The content of ``path`` decoded as text."""
        return self.read(path).decode(encoding, errors)

    def open(self, path: PathArg, mode: str = "r", buffering: int = -1, encoding: Optional[str] = None,
             errors: Optional[str] = None, newline: Optional[str] = None) -> Any:
        """Opens ``path`` like the built-in ``open``. Binary modes return a
        ``magicfs.File`` (an ``io.RawIOBase``; calls go straight to the
        store, so no buffer is needed), or a buffered object when
        ``buffering`` is above 1; text modes return an ``io.TextIOWrapper``.
        """
        flags, binary = _flags(mode)
        if binary and (encoding is not None or errors is not None or newline is not None):
            raise ValueError("binary mode doesn't take an encoding, errors or newline argument")
        if not binary and buffering == 0:
            raise ValueError("can't have unbuffered text I/O")
        raw = File(self._open(path, flags), mode)
        if binary and buffering in (-1, 0, 1):
            return raw
        try:
            size = buffering if buffering > 1 else io.DEFAULT_BUFFER_SIZE
            if raw.readable() and raw.writable():
                buffered: Any = io.BufferedRandom(raw, size)
            elif raw.writable():
                buffered = io.BufferedWriter(raw, size)
            else:
                buffered = io.BufferedReader(raw, size)
            if binary:
                return buffered
            text = io.TextIOWrapper(buffered, encoding or "utf-8", errors, newline,
                                    line_buffering=buffering == 1)
            text.mode = mode  # type: ignore[misc]
            return text
        except BaseException:
            raw.close()
            raise

    def search(self, query: str, top_k: int = 10, min_score: float = 0.2,  # type: ignore[override]
               timeout: float = 300.0) -> List[SearchHit]:
        """The files whose text means what ``query`` asks, best first (the
        index is built on the first search and kept current)."""
        return [SearchHit(*h) for h in super().search(query, top_k, min_score, timeout)]

    @classmethod
    def load(cls, json_path: PathArg, path: Optional[PathArg] = None, **options: Any) -> "Store":
        """A new store holding the tree of ``json_path`` (written by
        ``Store.save`` or ``magicfs export``): in memory, or in the new or
        empty directory ``path``."""
        if path is None:
            return cls(memory=True, import_from=json_path, **options)
        return cls(path, import_from=json_path, **options)


def open_store(path: Optional[PathArg] = None, *, memory: bool = False, **options: Any) -> Store:
    """Opens the store in directory ``path`` (created when missing or
    empty), or a new store in memory with ``memory=True``. Options:
    ``create``, ``codec`` ("zstd", "gzip", "none"), ``model``,
    ``llm_url``, ``llm_model``, ``max_tokens``, ``temperature``,
    ``threads``."""
    if path is None:
        return Store(memory=memory, **options)
    return Store(path, memory=memory, **options)


def load(json_path: PathArg, path: Optional[PathArg] = None, **options: Any) -> Store:
    """``Store.load``: a new store holding the tree of a saved document."""
    return Store.load(json_path, path, **options)
