"""Reading what is sealed and writing what is opened, for :mod:`slixmpp_objenc.objects`:
sources of several shapes read in pieces, and an output file that appears only
when everything went well."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

__all__ = ["ObjectSource", "atomic_output", "pieces"]

ObjectSource = (
    IO[bytes] | IO[str] | bytes | bytearray | memoryview | str | os.PathLike[str] | Iterable[bytes]
)
"""What is sealed or opened: a file (binary or text) read in pieces, bytes or
text already in memory (text is UTF-8), or pieces of bytes."""


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary file that becomes ``path`` (mode 0600) only if the block ends
    without an exception: a temporary file in the same directory, flushed to
    disk and renamed over ``path``; deleted on any exception."""
    target = Path(path)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def pieces(source: ObjectSource, size: int) -> Iterator[bytes]:
    """``source`` as pieces of bytes, read ``size`` at a time from a file (an
    ``os.PathLike`` is a file's path; a ``str`` is text, not a path)."""
    if isinstance(source, os.PathLike):
        with open(source, "rb") as file:
            while piece := file.read(size):
                yield piece
        return
    if isinstance(source, str):
        source = source.encode("utf-8")
    if isinstance(source, bytes | bytearray | memoryview):
        view = memoryview(source).cast("B")
        for start in range(0, len(view), size):
            yield bytes(view[start : start + size])
        return
    read = getattr(source, "read", None)
    if callable(read):
        while piece := read(size):
            yield piece.encode("utf-8") if isinstance(piece, str) else bytes(piece)
        return
    for item in source:
        yield item.encode("utf-8") if isinstance(item, str) else item
