"""Parsing of untrusted XML and strict base64, shared by the core."""

from __future__ import annotations

import base64
import binascii
import xml.etree.ElementTree as ET
from typing import Final

from defusedxml.ElementTree import DefusedXMLParser

__all__ = [
    "MAX_XML_DEPTH",
    "MAX_XML_ELEMENTS",
    "b64decode_strict",
    "b64encode",
    "parse_untrusted",
]

MAX_XML_DEPTH: Final = 64
"""Deepest nesting accepted, the root being depth 1. XMPP payloads nest about ten
deep (a data form in a command, XHTML-IM, a forwarded message); every recursive
consumer of a delivered stanza (ElementTree's serializer, slixmpp's ``tostring``
and plugins, ``copy.deepcopy``) stays far below Python's recursion limit."""

MAX_XML_ELEMENTS: Final = 10_000
"""Most elements accepted in one document. A 256 KiB envelope could carry some
45,000; no stanza encrypted end to end (a message, an iq payload between two
clients) comes near 10,000, and the bound caps the work of building, copying and
serializing it (slixmpp wraps every element)."""

_WHITESPACE = str.maketrans("", "", " \t\r\n")


class _BoundedTreeBuilder(ET.TreeBuilder):
    """Builds the tree, refusing it as soon as it nests or grows past the bounds
    (so a hostile document costs at most the bounds, never a deep recursion)."""

    def __init__(self, max_depth: int, max_elements: int) -> None:
        super().__init__()
        self._max_depth = max_depth
        self._max_elements = max_elements
        self._depth = 0
        self._elements = 0

    def start(self, tag: str, attrs: dict[str, str], /) -> ET.Element:
        self._depth += 1
        self._elements += 1
        if self._depth > self._max_depth:
            raise ValueError("XML nested too deep")
        if self._elements > self._max_elements:
            raise ValueError("too many XML elements")
        return super().start(tag, attrs)

    def end(self, tag: str, /) -> ET.Element:
        self._depth -= 1
        return super().end(tag)


def parse_untrusted(
    data: bytes, *, max_depth: int = MAX_XML_DEPTH, max_elements: int = MAX_XML_ELEMENTS
) -> ET.Element:
    """Parse attacker-controlled bytes: no DTDs, no entity expansion, no external refs,
    at most ``max_depth`` levels of nesting and ``max_elements`` elements.

    Raises ``ValueError`` (or a subclass) for anything that is not one
    well-formed UTF-8 XML element within those bounds.
    """
    try:
        text = data.decode("utf-8")
        parser = DefusedXMLParser(
            target=_BoundedTreeBuilder(max_depth, max_elements),
            forbid_dtd=True,
            forbid_entities=True,
            forbid_external=True,
        )
        parser.feed(text)
        element: ET.Element = parser.close()
    except ValueError:
        raise
    except Exception as exc:  # ParseError, DefusedXmlException, ...
        raise ValueError("unparseable XML") from exc
    return element


def b64decode_strict(text: str | None) -> bytes:
    """RFC 4648 base64, whitespace ignored, any other stray character refused."""
    compact = (text or "").translate(_WHITESPACE)
    if not compact:
        raise ValueError("empty base64")
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("bad base64") from exc


def b64encode(data: bytes) -> str:
    """RFC 4648 base64 without line breaks."""
    return base64.b64encode(data).decode("ascii")
