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

import os as _os

# A wheel from scripts/wheel.sh carries llama.cpp's CPU libraries.
_cpu = _os.path.join(_os.path.dirname(_os.path.dirname(__file__)), "magicfs.libs", "backends")
if _os.path.isdir(_cpu):
    _os.environ.setdefault("MAGICFS_GGML_BACKENDS", _cpu)

from ._magicfs import GenerationError, __version__  # noqa: E402
from ._store import File, SearchHit, Store, load, open_store  # noqa: E402
from .session import ChatError, Reply, Session, Turn, parse  # noqa: E402

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
