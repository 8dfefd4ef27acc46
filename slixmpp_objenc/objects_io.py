"""Reading what is sealed and writing what is opened, for :mod:`slixmpp_objenc.objects`:
sources of several shapes read in pieces, and an output file that appears only
when everything went well."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from itertools import chain
from pathlib import Path
from typing import IO, Final

from .core.armor import dearmor
from .core.errors import EncryptionError
from .core.objects import OBJECT_MAGIC

__all__ = ["ObjectSource", "atomic_output", "object_bytes", "pieces"]

ObjectSource = (
    IO[bytes] | IO[str] | bytes | bytearray | memoryview | str | os.PathLike[str] | Iterable[bytes]
)
"""What is sealed or opened: a file (binary or text) read in pieces, bytes or
text already in memory (text is UTF-8), or pieces of bytes."""


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary file that becomes ``path`` (mode 0600) only if the block ends
    without an exception; nothing is left otherwise, even if the process is
    killed. Linux: a nameless ``O_TMPFILE`` in the same directory, named only
    once complete (linked under a fresh random name, checked to be that very
    file, renamed over ``path``). Elsewhere: a temporary file, checked to be
    the file written before the rename. A directory others may write to (group
    or world writable and not sticky) is refused: they could swap the file.
    :class:`~slixmpp_objenc.core.EncryptionError` for those."""
    target = Path(path)
    parent = target.parent
    mode = os.stat(parent).st_mode
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
        raise EncryptionError(f"{parent}: others may write to it: choose a private directory")
    fd = -1
    if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # a file system without O_TMPFILE
            fd = os.open(parent, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o600)
    named: str | None = None
    if fd < 0:
        fd, named = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
            written = os.fstat(out.fileno())
            if named is None:
                named = str(parent / f".{target.name}.{os.urandom(8).hex()}.part")
                directory = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
                try:  # linkat(AT_SYMLINK_FOLLOW): the directory fd makes CPython use linkat
                    os.link(
                        f"/proc/self/fd/{out.fileno()}",
                        os.path.basename(named),
                        dst_dir_fd=directory,
                        follow_symlinks=True,
                    )
                finally:
                    os.close(directory)
            now = os.stat(named, follow_symlinks=False)
            if (now.st_dev, now.st_ino) != (written.st_dev, written.st_ino):
                named = None  # not ours any more: whatever is there is left alone
                raise EncryptionError(f"{parent}: the temporary file was replaced")
            os.replace(named, target)
    except BaseException:
        if named is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(named)
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


LONGEST_LINE: Final = 4096
"""Text lines before an armored object's ``BEGIN`` are read in pieces this long."""


def object_bytes(source: ObjectSource, size: int) -> Iterator[bytes]:
    """The object's bytes: as they are if they start as a binary object does,
    else from its armor (lines before ``BEGIN`` skipped)."""
    chunks = pieces(source, size)
    head = b""
    for piece in chunks:
        head += piece
        if len(head) >= len(OBJECT_MAGIC):
            break
    rest = chain([head], chunks)
    if head.startswith(OBJECT_MAGIC):
        yield from rest
    else:
        yield from dearmor(_lines(rest))


def _lines(pieces: Iterable[bytes]) -> Iterator[str]:
    """Text lines (Latin-1: any byte is one character, anything not base64
    fails in :func:`dearmor`), a line over :data:`LONGEST_LINE` in pieces."""
    pending = ""
    for piece in pieces:
        lines = (pending + piece.decode("latin-1")).split("\n")
        *whole, pending = _cut(lines.pop())
        lines += whole
        if max(map(len, lines), default=0) <= LONGEST_LINE:
            yield from lines  # the usual case: one test for the whole piece
        else:
            yield from (part for line in lines for part in _cut(line))
    if pending:
        yield pending


def _cut(line: str) -> list[str]:
    return [line[i : i + LONGEST_LINE] for i in range(0, len(line), LONGEST_LINE)] or [""]
