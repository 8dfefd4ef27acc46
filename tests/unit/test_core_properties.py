"""Property tests: for random stanza bodies and a random single mutation of the
serialized <e2e/>, open_envelope either raises InvalidEnvelope or, when the
mutation changed nothing that matters, returns the original stanza bytes. It
never raises anything else."""

from __future__ import annotations

import base64
import copy
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from xml.sax.saxutils import escape

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from slixmpp_objenc.core import (
    AES_128_CBC,
    AES_256_CBC,
    InvalidEnvelope,
    Recipient,
    open_envelope,
    seal,
)

NS = "urn:ietf:params:xml:ns:xmpp-objenc:0"
KEY, DATA = f"{{{NS}}}key", f"{{{NS}}}data"
TS = datetime(2024, 5, 6, 7, 8, 9, 123_000, tzinfo=UTC)
B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

xml_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Cn"), blacklist_characters="\ufffe\uffff"),
    max_size=120,
)


@st.composite
def stanzas(draw) -> bytes:
    kind = draw(st.sampled_from(["message", "iq", "presence"]))
    body = escape(draw(xml_text), {"'": "&apos;"})
    attr = escape(draw(xml_text), {"'": "&apos;"})
    quote = draw(st.sampled_from(["'", '"']))
    attr = attr.replace('"', "&quot;")
    return (
        f"<{kind} xmlns={quote}jabber:client{quote} id={quote}{attr}{quote}>"
        f"<body>{body}</body></{kind}>"
    ).encode()


# --------------------------------------------------------------------------- mutations

TARGETS = [
    ("text", KEY),
    ("text", DATA),
    ("attr", (DATA, "mac-hash")),
    ("attr", (DATA, "cipher-algo")),
    ("attr", (DATA, "mac-algo")),
    ("attr", (KEY, "cipher-algo")),
]
REPLACEMENTS = B64 + "=!*-_.~ \n\t%\u00e9"
ATTR_VALUES = [
    "AES-128-CBC-PKCS5-WITH-IV",
    "AES-256-CBC-PKCS5-WITH-IV",
    "AES-192-CBC-PKCS5-WITH-IV",
    "HMACSHA256",
    "HMACSHA1",
    "RSAES-OAEP-SHA-256-MFG1",
    "RSAES-OAEP-SHA-256-MGF1",
    "RSAES-PKCS1-v1_5",
    "",
    " ",
    "0" * 64,
]


def _get(e2e: ET.Element, target) -> str | None:
    kind, where = target
    if kind == "text":
        return e2e.find(where).text
    tag, name = where
    return e2e.find(tag).get(name)


def _put(e2e: ET.Element, target, value: str) -> None:
    kind, where = target
    if kind == "text":
        e2e.find(where).text = value
    else:
        tag, name = where
        e2e.find(tag).set(name, value)


@st.composite
def mutations(draw):
    """A function (e2e element -> mutated e2e element or None if unparseable)."""
    choice = draw(
        st.sampled_from(
            [
                "flip-char",
                "flip-decoded-byte",
                "set-attr",
                "random-attr",
                "del-attr",
                "add-attr",
                "drop",
                "duplicate",
                "whitespace",
                "retag",
                "raw-flip",
            ]
        )
    )
    target = draw(st.sampled_from(TARGETS))
    pos = draw(st.integers(min_value=0, max_value=10_000))
    char = draw(st.sampled_from(REPLACEMENTS))
    value = draw(st.sampled_from(ATTR_VALUES))
    rand_text = draw(xml_text)
    tag = draw(st.sampled_from([KEY, DATA]))
    bit = draw(st.integers(min_value=0, max_value=7))
    raw_char = draw(st.characters(min_codepoint=0x20, max_codepoint=0x7E))

    def apply(e2e: ET.Element) -> ET.Element | None:
        e2e = copy.deepcopy(e2e)
        if choice == "flip-char":
            text = _get(e2e, target)
            i = pos % len(text)
            _put(e2e, target, text[:i] + char + text[i + 1 :])
        elif choice == "flip-decoded-byte":
            text = _get(e2e, target)
            try:
                raw = bytearray(base64.b64decode(text, validate=True))
            except ValueError:
                return e2e  # not base64 (an algorithm name): leave it alone
            raw[pos % len(raw)] ^= 1 << bit
            _put(e2e, target, base64.b64encode(bytes(raw)).decode())
        elif choice == "set-attr":
            _put(e2e, ("attr", target[1]) if target[0] == "attr" else ("attr", (tag, "x")), value)
        elif choice == "random-attr":
            where = target[1] if target[0] == "attr" else (DATA, "mac-hash")
            _put(e2e, ("attr", where), rand_text)
        elif choice == "del-attr":
            where = target[1] if target[0] == "attr" else (KEY, "cipher-algo")
            e2e.find(where[0]).attrib.pop(where[1], None)
        elif choice == "add-attr":
            name = ["mac-data", "cert-sha256", "mac-hash"][pos % 3]
            e2e.find(DATA if name.startswith("mac") else KEY).set(name, rand_text or value)
        elif choice == "drop":
            e2e.remove(e2e.find(tag))
        elif choice == "duplicate":
            e2e.insert(pos % (len(e2e) + 1), copy.deepcopy(e2e.find(tag)))
        elif choice == "whitespace":
            kind, where = target
            if kind == "text":
                text = _get(e2e, target)
                i = pos % (len(text) + 1)
                _put(e2e, target, text[:i] + " \n\t"[pos % 3] + text[i:])
            else:
                e2e.text = "\n  "  # insignificant whitespace between elements
                e2e.find(tag).tail = "\n"
        elif choice == "retag":
            e2e.find(tag).tag = ["{urn:other}x", "data", "key", f"{{{NS}}}plain", f"{{{NS}}}e2e"][
                pos % 5
            ]
        elif choice == "raw-flip":
            raw = ET.tostring(e2e, encoding="unicode")
            i = pos % len(raw)
            try:
                return ET.fromstring(raw[:i] + raw_char + raw[i + 1 :])
            except ET.ParseError:
                return None  # would never reach the core as an element
        return e2e

    return choice, apply


@SETTINGS
@given(
    stanza=stanzas(),
    cipher=st.sampled_from([AES_128_CBC, AES_256_CBC]),
    named=st.booleans(),
    mutation=mutations(),
)
def test_mutations_never_raise_anything_else(identity_2048, stanza, cipher, named, mutation):
    key_id = identity_2048.fingerprint if named else None
    e2e = seal(
        stanza,
        [Recipient(identity_2048.certificate.public_key(), key_id)],
        timestamp=TS,
        cipher=cipher,
    )
    e2e = ET.fromstring(ET.tostring(e2e))
    original = open_envelope(e2e, identity_2048.private_key, key_id=key_id)
    assert original.stanza_bytes == stanza

    name, apply = mutation
    mutated = apply(e2e)
    if mutated is None:
        event(f"{name}: unparseable")
        return
    try:
        opened = open_envelope(mutated, identity_2048.private_key, key_id=key_id)
    except InvalidEnvelope as exc:
        event(f"{name}: refused")
        assert str(exc) == "the <e2e/> element could not be opened"
        assert exc.__cause__ is None
        return
    event(f"{name}: opened")
    # it opened: the mutation must have been harmless, and the result is the original
    assert opened.stanza_bytes == stanza
    assert opened.timestamp == TS
    assert name != "flip-decoded-byte" or _decoded_unchanged(e2e, mutated)


def _decoded_unchanged(a: ET.Element, b: ET.Element) -> bool:
    def decoded(e):
        out = []
        for target in TARGETS:
            text = _get(e, target)
            try:
                out.append(base64.b64decode(text, validate=True))
            except (ValueError, TypeError):
                out.append(text)
        return out

    return decoded(a) == decoded(b)


@SETTINGS
@given(stanza=stanzas(), data=st.data())
def test_decoded_byte_changes_always_refused(identity_2048, stanza, data):
    """Any change to the bytes of K, T or M (not just their text) is refused."""
    e2e = seal(stanza, [Recipient(identity_2048.certificate.public_key())], timestamp=TS)
    target = data.draw(st.sampled_from(TARGETS[:3]))
    raw = bytearray(base64.b64decode(_get(e2e, target)))
    i = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    raw[i] ^= data.draw(st.integers(min_value=1, max_value=255))
    _put(e2e, target, base64.b64encode(bytes(raw)).decode())
    try:
        open_envelope(e2e, identity_2048.private_key)
    except InvalidEnvelope:
        return
    raise AssertionError(f"tampered {target} at {i} opened")


@settings(max_examples=50, deadline=None, database=None)
@given(stanza=stanzas(), cipher=st.sampled_from([AES_128_CBC, AES_256_CBC]))
def test_round_trip_any_body(identity_2048, stanza, cipher):
    e2e = seal(
        stanza, [Recipient(identity_2048.certificate.public_key())], timestamp=TS, cipher=cipher
    )
    opened = open_envelope(ET.fromstring(ET.tostring(e2e)), identity_2048.private_key)
    assert opened.stanza_bytes == stanza
    assert opened.cipher == cipher.name
