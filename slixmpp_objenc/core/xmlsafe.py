"""Parsing of untrusted XML and strict base64, shared by the core."""

from __future__ import annotations

import base64
import binascii
import xml.etree.ElementTree as ET

import defusedxml.ElementTree as SafeET

__all__ = ["b64decode_strict", "b64encode", "parse_untrusted"]

_WHITESPACE = str.maketrans("", "", " \t\r\n")


def parse_untrusted(data: bytes) -> ET.Element:
    """Parse attacker-controlled bytes: no DTDs, no entity expansion, no external refs.

    Raises ``ValueError`` (or a subclass) for anything that is not one
    well-formed UTF-8 XML element.
    """
    try:
        text = data.decode("utf-8")
        element: ET.Element = SafeET.fromstring(
            text, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
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
