"""Unbounded work from one stanza (issue 9, kind 10), at the core.

Decrypted XML is parsed with bounds on nesting depth (``MAX_XML_DEPTH``, 64) and
element count (``MAX_XML_ELEMENTS``, 10,000); beyond them the envelope does not
open, with the one opaque ``InvalidEnvelope`` of every other failure (case 4,
``undecryptable``). Old code: an inner stanza nested 15,000 deep opened, and
serializing it (``str(msg)`` in the application) raised ``RecursionError``.
"""

from __future__ import annotations

import copy
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from slixmpp_objenc.core import Identity, InvalidEnvelope, Recipient, open_envelope, seal
from slixmpp_objenc.core.constants import DEFAULT_MAX_ENVELOPE_SIZE
from slixmpp_objenc.core.envelope import envelope_size
from slixmpp_objenc.core.xmlsafe import MAX_XML_DEPTH, MAX_XML_ELEMENTS, parse_untrusted

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
HEAD = "<message xmlns='jabber:client' from='romeo@example.net/a' to='juliet@capulet.net/b'>"


def nested(depth: int) -> bytes:
    """A message whose innermost element is at ``depth`` (the message is depth 1)."""
    inner = depth - 1
    return (HEAD + "<x>" * inner + "</x>" * inner + "</message>").encode()


def wide(elements: int) -> bytes:
    """A message of ``elements`` elements in all (itself included)."""
    return (HEAD + "<body>hi</body>" + "<x/>" * (elements - 2) + "</message>").encode()


def depth_of(element: ET.Element) -> int:
    depth, level = 1, [element]
    while True:
        level = [child for parent in level for child in parent]
        if not level:
            return depth
        depth += 1


def test_the_bounds() -> None:
    assert MAX_XML_DEPTH == 64
    assert MAX_XML_ELEMENTS == 10_000


def test_nesting_up_to_the_bound_is_parsed() -> None:
    element = parse_untrusted(nested(MAX_XML_DEPTH))
    assert depth_of(element) == MAX_XML_DEPTH
    ET.tostring(element)
    copy.deepcopy(element)


@pytest.mark.parametrize("depth", [MAX_XML_DEPTH + 1, 1000, 15_000, 200_000])
def test_nesting_past_the_bound_is_refused_at_once(depth: int) -> None:
    started = time.perf_counter()
    with pytest.raises(ValueError, match="nested too deep"):
        parse_untrusted(nested(depth))
    assert time.perf_counter() - started < 0.5


def test_elements_up_to_the_bound_are_parsed() -> None:
    element = parse_untrusted(wide(MAX_XML_ELEMENTS))
    assert sum(1 for _ in element.iter()) == MAX_XML_ELEMENTS


@pytest.mark.parametrize("elements", [MAX_XML_ELEMENTS + 1, 50_000])
def test_elements_past_the_bound_are_refused(elements: int) -> None:
    with pytest.raises(ValueError, match="too many XML elements"):
        parse_untrusted(wide(elements))


def test_siblings_do_not_add_up_to_depth() -> None:
    """Depth is nesting, not a running count: closing an element gives its level back."""
    flat = HEAD + ("<a xmlns='urn:x'>" * 40 + "</a>" * 40) * 100 + "</message>"
    element = parse_untrusted(flat.encode())
    assert depth_of(element) == 41


def test_the_bounds_are_parameters() -> None:
    with pytest.raises(ValueError):
        parse_untrusted(nested(4), max_depth=3)
    assert parse_untrusted(nested(3), max_depth=3) is not None
    with pytest.raises(ValueError):
        parse_untrusted(wide(5), max_elements=4)
    assert parse_untrusted(wide(4), max_elements=4) is not None


def test_everything_else_still_holds() -> None:
    """The bounded parser keeps what the parser refused before."""
    for bad in (b"<!DOCTYPE a><a/>", b"<a>&undefined;</a>", b"<a/><b/>", b"<a>", b"\xff<a/>"):
        with pytest.raises(ValueError):
            parse_untrusted(bad)
    element = parse_untrusted("<a xmlns='urn:x' b='\u00e9'>t&amp;<c/>tail</a>".encode())
    assert (element.tag, element.get("b"), element.text, element[0].tail) == (
        "{urn:x}a",
        "\u00e9",
        "t&",
        "tail",
    )


Sealer = Callable[[bytes], ET.Element]


@pytest.fixture
def sealed_for(identity_2048: Identity) -> Sealer:
    def sealed(stanza: bytes) -> ET.Element:
        recipient = Recipient(identity_2048.certificate.public_key())
        return seal(stanza, [recipient], timestamp=NOW, pad_to=64)

    return sealed


def test_an_envelope_nested_too_deep_does_not_open(
    identity_2048: Identity, sealed_for: Sealer
) -> None:
    """The issue's example; the error is the one of every failure (no oracle)."""
    e2e = sealed_for(nested(15_000))
    assert envelope_size(e2e) < DEFAULT_MAX_ENVELOPE_SIZE  # refused for its depth alone
    started = time.perf_counter()
    with pytest.raises(InvalidEnvelope) as deep:
        open_envelope(e2e, identity_2048.private_key)
    assert time.perf_counter() - started < 0.5
    tampered = sealed_for(nested(2))
    data = tampered.find("{urn:ietf:params:xml:ns:xmpp-objenc:0}data")
    assert data is not None and data.text
    data.text = ("A" if data.text[0] != "A" else "B") + data.text[1:]
    with pytest.raises(InvalidEnvelope) as mac:
        open_envelope(tampered, identity_2048.private_key)
    assert type(deep.value) is type(mac.value)
    assert str(deep.value) == str(mac.value) and deep.value.args == mac.value.args
    assert deep.value.__cause__ is None and deep.value.__context__ is None


@pytest.mark.parametrize("stanza", [nested(MAX_XML_DEPTH + 1), wide(MAX_XML_ELEMENTS + 1)])
def test_an_envelope_past_a_bound_does_not_open(
    identity_2048: Identity, sealed_for: Sealer, stanza: bytes
) -> None:
    with pytest.raises(InvalidEnvelope):
        open_envelope(sealed_for(stanza), identity_2048.private_key)


@pytest.mark.parametrize("stanza", [nested(MAX_XML_DEPTH), wide(MAX_XML_ELEMENTS)])
def test_an_envelope_within_the_bounds_opens(
    identity_2048: Identity, sealed_for: Sealer, stanza: bytes
) -> None:
    opened = open_envelope(sealed_for(stanza), identity_2048.private_key)
    assert ET.tostring(opened.stanza)
