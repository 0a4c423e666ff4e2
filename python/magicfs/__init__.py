"""MagicFS inside Python.

- ``open_store(path)`` / ``open_store(memory=True)``: a MagicFS store in
  this process, no mount needed — files, directories, links, extended
  attributes, file objects, sealed memfds, ``save``/``load`` (the
  ``magicfs export`` JSON), semantic ``search``, ``generate_structure``
  and generation on first read.
- ``Session``: chat sessions of a MagicFS mount (files under
  ``sessions/`` that answer).
- ``magicfs.cfs``: CFS-Local's client API on MagicFS
  (``from magicfs.cfs import Session``).
"""

from ._magicfs import GenerationError, __version__
from ._store import File, SearchHit, Store, load, open_store
from .session import ChatError, Reply, Session, Turn, parse

__all__ = [
    "open_store",
    "load",
    "Store",
    "File",
    "SearchHit",
    "GenerationError",
    "Session",
    "Reply",
    "Turn",
    "ChatError",
    "parse",
    "__version__",
]
