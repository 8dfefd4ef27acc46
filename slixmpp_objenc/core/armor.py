"""The text form of an object (:mod:`.objects`), which survives email and chat::

    -----BEGIN OBJENC OBJECT-----
    Format: objenc-object-1; Profile: auth-1
    {base64 of the object, RFC 4648 section 4: 64 characters a line, the last 4 to 64}
    ={base64 of the object's CRC-32 (zlib's), 4 bytes big-endian: 8 characters}
    -----END OBJENC OBJECT-----

The ``Profile`` is informative (the binary header says what counts). The
checksum only catches copy-and-paste damage early: it is no security (anyone
who changes the text can fix it); the object's AEAD and wraps are the
security. A reader skips lines before ``BEGIN`` (the text of an email),
strips trailing spaces, tabs and CR from every line, accepts data lines of
4 to 76 characters (a multiple of 4; padding only in the last one), decodes
strictly (any other character, a non-canonical last group, a missing or
wrong checksum, a missing ``END`` fail) and reads nothing after ``END``.
Every failure is the one :class:`~.errors.InvalidEnvelope`.
"""

from __future__ import annotations

import base64
import re
import zlib
from collections.abc import Iterable, Iterator
from itertools import chain
from typing import Final

from .errors import EncryptionError, InvalidEnvelope
from .objects import OBJECT_MAGIC, PROFILES

__all__ = ["ARMOR_BEGIN", "ARMOR_END", "ARMOR_FORMAT", "armor", "dearmor"]

ARMOR_BEGIN: Final = "-----BEGIN OBJENC OBJECT-----"
ARMOR_END: Final = "-----END OBJENC OBJECT-----"
ARMOR_FORMAT: Final = "objenc-object-1"
LINE_BYTES: Final = 48
"""64 characters of base64 a line."""
MAX_LINE: Final = 76
"""Longest data line a reader accepts (RFC 2045's limit)."""
_BATCH: Final = 1024
"""Data lines decoded (and yielded) at once: 48 KiB."""
_PROFILE_AT: Final = len(OBJECT_MAGIC) + 4
_HEADER_LINE: Final = re.compile(rf"Format: {ARMOR_FORMAT}(;.*)?")


def armor(data: Iterable[bytes]) -> Iterator[str]:
    """The text form of an object given in pieces (what
    :func:`~.objects.seal_object_stream` yields), as text made of whole lines,
    each ending in ``\\n``. :class:`EncryptionError` if it does not start as an
    object (it is the sender's own data)."""
    pieces, buffer = iter(data), bytearray()
    for piece in pieces:
        buffer += piece
        if len(buffer) > _PROFILE_AT and len(buffer) > _PROFILE_AT + buffer[_PROFILE_AT]:
            break
    end = _PROFILE_AT + 1 + (buffer[_PROFILE_AT] if len(buffer) > _PROFILE_AT else 0)
    profile = bytes(buffer[_PROFILE_AT + 1 : end]).decode("ascii", "replace")
    if not buffer.startswith(OBJECT_MAGIC) or profile not in PROFILES:
        raise EncryptionError("not an object: nothing to armor")
    yield f"{ARMOR_BEGIN}\nFormat: {ARMOR_FORMAT}; Profile: {profile}\n"
    crc = 0
    for piece in chain([b""], pieces):
        buffer += piece
        whole = len(buffer) // LINE_BYTES * LINE_BYTES
        if whole:
            block = bytes(buffer[:whole])
            del buffer[:whole]
            crc = zlib.crc32(block, crc)
            yield _lines(block)
    if buffer:
        crc = zlib.crc32(buffer, crc)
        yield _lines(bytes(buffer))
    checksum = base64.b64encode(crc.to_bytes(4, "big")).decode("ascii")
    yield f"={checksum}\n{ARMOR_END}\n"


def _lines(block: bytes) -> str:
    text = base64.b64encode(block).decode("ascii")
    return "".join(text[i : i + 64] + "\n" for i in range(0, len(text), 64))


def dearmor(lines: Iterable[str]) -> Iterator[bytes]:
    """The object's bytes from its text form, given line by line (with or
    without line ends), in pieces of up to 48 KiB, each yielded once its
    lines decoded; the checksum and ``END`` are checked at the end, so, as
    with :func:`~.objects.open_object_stream`, the output is complete only
    once the iterator ends without :class:`InvalidEnvelope`."""
    it = iter(lines)
    for line in it:
        if line.rstrip(" \t\r\n") == ARMOR_BEGIN:
            break
    else:
        raise InvalidEnvelope()
    if _HEADER_LINE.fullmatch(next(it, "").rstrip(" \t\r\n")) is None:
        raise InvalidEnvelope()
    crc, batch, held, checksum = 0, [], "", None
    for line in it:
        text = line.rstrip(" \t\r\n")
        if text.startswith("="):
            checksum = text
            break
        if held:
            if "=" in held:  # padding only in the last data line
                raise InvalidEnvelope()
            batch.append(held)
            if len(batch) >= _BATCH:
                crc, out = _decode(batch, crc)
                batch = []
                yield out
        if len(text) % 4 or not 4 <= len(text) <= MAX_LINE:  # the alphabet: at decoding
            raise InvalidEnvelope()
        held = text
    if checksum is None or not held:
        raise InvalidEnvelope()
    crc, out = _decode([*batch, held], crc)
    tail = base64.b64decode(held, validate=True)
    if base64.b64encode(tail).decode("ascii") != held:  # no stray bits in the last group
        raise InvalidEnvelope()
    expected = "=" + base64.b64encode(crc.to_bytes(4, "big")).decode("ascii")
    if checksum != expected or next(it, "").rstrip(" \t\r\n") != ARMOR_END:
        raise InvalidEnvelope()
    yield out


def _decode(lines: list[str], crc: int) -> tuple[int, bytes]:
    """Strict base64 of whole lines (each a multiple of 4 characters)."""
    data: bytes | None = None
    try:
        data = base64.b64decode("".join(lines), validate=True)
    except ValueError:  # binascii.Error
        data = None
    if data is None:
        raise InvalidEnvelope()
    return zlib.crc32(data, crc), data
