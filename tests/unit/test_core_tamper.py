"""Tampering with a sealed <e2e/>: every byte of K, T and M, the attributes,
the base64 text and the element structure. Every change must be refused with
InvalidEnvelope; the untouched envelope (positive control) must open."""

from __future__ import annotations

import base64
import copy
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from slixmpp_objenc.core import (
    AES_128_CBC,
    AES_256_CBC,
    InvalidEnvelope,
    Recipient,
    open_envelope,
    seal,
)

NS = "urn:ietf:params:xml:ns:xmpp-objenc:0"
E2E, KEY, DATA = f"{{{NS}}}e2e", f"{{{NS}}}key", f"{{{NS}}}data"
TS = datetime(2024, 5, 6, 7, 8, 9, 123_000, tzinfo=UTC)
STANZA = (
    b"<message xmlns='jabber:client' from='juliet@capulet.net/balcony' id='6410ed123' "
    b"to='romeo@example.net' type='chat'><thread>8996aef0-061d-012d-347a-549a200771aa</thread>"
    b"<body>Wherefore art thou, Romeo? Deny thy father and refuse thy name.</body></message>"
)


@pytest.fixture(scope="module", params=[AES_128_CBC, AES_256_CBC], ids=lambda c: c.name)
def sealed(request, identity_2048) -> ET.Element:
    e2e = seal(
        STANZA,
        [Recipient(identity_2048.certificate.public_key())],
        timestamp=TS,
        cipher=request.param,
    )
    assert open_envelope(e2e, identity_2048.private_key).stanza_bytes == STANZA
    return e2e


def _opens(e2e: ET.Element, key) -> bool:
    try:
        opened = open_envelope(e2e, key)
    except InvalidEnvelope:
        return False
    assert opened.stanza_bytes == STANZA  # if it ever opens, it must be the original
    return True


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


# --------------------------------------------------------------------------- every byte


def _flip_everywhere(
    sealed: ET.Element,
    key,
    get: Callable[[ET.Element], str],
    put: Callable[[ET.Element, str], None],
) -> list[tuple[int, int]]:
    original = base64.b64decode(get(sealed))
    opened = []
    for i in range(len(original)):
        for mask in (0x01, 0x80):
            e2e = copy.deepcopy(sealed)
            mutated = bytearray(original)
            mutated[i] ^= mask
            put(e2e, _b64(bytes(mutated)))
            if _opens(e2e, key):
                opened.append((i, mask))
    return opened


def _set_text(tag):
    return lambda e, v: setattr(e.find(tag), "text", v)


def test_every_byte_of_k(sealed, identity_2048):
    assert len(base64.b64decode(sealed.find(KEY).text)) == 256
    assert (
        _flip_everywhere(
            sealed, identity_2048.private_key, lambda e: e.find(KEY).text, _set_text(KEY)
        )
        == []
    )


def test_every_byte_of_t(sealed, identity_2048):
    assert len(base64.b64decode(sealed.find(DATA).text)) >= 400
    assert (
        _flip_everywhere(
            sealed, identity_2048.private_key, lambda e: e.find(DATA).text, _set_text(DATA)
        )
        == []
    )


def test_every_byte_of_m(sealed, identity_2048):
    def put(e, v):
        e.find(DATA).set("mac-hash", v)

    assert (
        _flip_everywhere(
            sealed, identity_2048.private_key, lambda e: e.find(DATA).get("mac-hash"), put
        )
        == []
    )


def test_every_byte_of_m_as_mac_data(sealed, identity_2048):
    base = copy.deepcopy(sealed)
    data = base.find(DATA)
    data.set("mac-data", data.attrib.pop("mac-hash"))
    assert _opens(base, identity_2048.private_key)

    def put(e, v):
        e.find(DATA).set("mac-data", v)

    assert (
        _flip_everywhere(
            base, identity_2048.private_key, lambda e: e.find(DATA).get("mac-data"), put
        )
        == []
    )


# --------------------------------------------------------------------------- named tampers


def _t(e2e: ET.Element) -> bytes:
    return base64.b64decode(e2e.find(DATA).text)


def _mutations(cipher_name: str) -> dict[str, Callable[[ET.Element], None]]:
    other = (
        "AES-256-CBC-PKCS5-WITH-IV"
        if cipher_name.startswith("AES-128")
        else "AES-128-CBC-PKCS5-WITH-IV"
    )

    def attr(tag, name, value):
        def f(e):
            if value is None:
                e.find(tag).attrib.pop(name, None)
            else:
                e.find(tag).set(name, value)

        return f

    def text(tag, fn):
        def f(e):
            e.find(tag).text = fn(e.find(tag).text)

        return f

    def set_t(fn):
        return lambda e: setattr(e.find(DATA), "text", _b64(fn(_t(e))))

    def remove(tag):
        return lambda e: e.remove(e.find(tag))

    def duplicate(tag):
        return lambda e: e.append(copy.deepcopy(e.find(tag)))

    def retag(tag, new):
        return lambda e: setattr(e.find(tag), "tag", new)

    def wrong_mac_data(e):
        e.find(DATA).set("mac-data", _b64(b"\x00" * 32))

    def wrong_mac_hash_right_mac_data(e):
        d = e.find(DATA)
        d.set("mac-data", d.get("mac-hash"))
        d.set("mac-hash", _b64(b"\x00" * 32))

    def stray_in_mac(e):
        d = e.find(DATA)
        d.set("mac-hash", "*" + d.get("mac-hash")[1:])

    def swap_texts(e):
        k, d = e.find(KEY), e.find(DATA)
        k.text, d.text = d.text, k.text

    def move(child_tag, parent_tag):
        def f(e):
            child = e.find(child_tag)
            e.remove(child)
            e.find(parent_tag).append(child)

        return f

    return {
        "cipher-algo other AES": attr(DATA, "cipher-algo", other),
        "cipher-algo AES-192": attr(DATA, "cipher-algo", "AES-192-CBC-PKCS5-WITH-IV"),
        "cipher-algo lower case": attr(DATA, "cipher-algo", cipher_name.lower()),
        "cipher-algo empty": attr(DATA, "cipher-algo", ""),
        "cipher-algo missing": attr(DATA, "cipher-algo", None),
        "cipher-algo GCM": attr(DATA, "cipher-algo", "AES-128-GCM"),
        "mac-algo HMACSHA1": attr(DATA, "mac-algo", "HMACSHA1"),
        "mac-algo lower": attr(DATA, "mac-algo", "hmacsha256"),
        "mac-algo HMAC-SHA256": attr(DATA, "mac-algo", "HMAC-SHA256"),
        "mac-algo missing": attr(DATA, "mac-algo", None),
        "mac-hash missing": attr(DATA, "mac-hash", None),
        "mac-hash empty": attr(DATA, "mac-hash", ""),
        "mac-hash short": attr(DATA, "mac-hash", _b64(b"\x01" * 16)),
        "mac-hash long": attr(DATA, "mac-hash", _b64(b"\x01" * 64)),
        "mac-hash stray char": stray_in_mac,
        "mac-hash and mac-data disagree": wrong_mac_data,
        "mac-hash wrong, mac-data right": wrong_mac_hash_right_mac_data,
        "key cipher-algo PKCS1": attr(KEY, "cipher-algo", "RSAES-PKCS1-v1_5"),
        "key cipher-algo SHA-1": attr(KEY, "cipher-algo", "RSAES-OAEP-SHA-1-MGF1"),
        "key cipher-algo empty": attr(KEY, "cipher-algo", ""),
        "key cipher-algo missing": attr(KEY, "cipher-algo", None),
        "key cipher-algo lower": attr(KEY, "cipher-algo", "rsaes-oaep-sha-256-mgf1"),
        "key text stray char": text(KEY, lambda s: s[:10] + "!" + s[10:]),
        "key text dash": text(KEY, lambda s: s[:10] + "-" + s[11:]),
        "key text url-safe char": text(KEY, lambda s: "_" + s[1:]),
        "key text truncated": text(KEY, lambda s: s[:-4]),
        "key text one char short": text(KEY, lambda s: s[:-1]),
        "key text empty": text(KEY, lambda s: ""),
        "key text missing": text(KEY, lambda s: None),
        "data text stray char": text(DATA, lambda s: s[:40] + "*" + s[40:]),
        "data text percent": text(DATA, lambda s: s[:40] + "%" + s[41:]),
        "data text non-ascii": text(DATA, lambda s: s[:40] + "\u00e9" + s[41:]),
        "data text nbsp": text(DATA, lambda s: s[:40] + "\u00a0" + s[40:]),
        "data text padding inside": text(DATA, lambda s: s[:40] + "==" + s[40:]),
        "data text one char short": text(DATA, lambda s: s[:-1]),
        "data text empty": text(DATA, lambda s: ""),
        "data text missing": text(DATA, lambda s: None),
        "data text whitespace only": text(DATA, lambda s: " \n\t "),
        "key text whitespace only": text(KEY, lambda s: "\n  \n"),
        "mac-hash whitespace only": attr(DATA, "mac-hash", "   "),
        "T truncated by a block": set_t(lambda t: t[:-16]),
        "T truncated by a byte": set_t(lambda t: t[:-1]),
        "T not multiple of 16": set_t(lambda t: t + b"\x00" * 5),
        "T extended by a block": set_t(lambda t: t + b"\x00" * 16),
        "T only IV": set_t(lambda t: t[:16]),
        "T 31 bytes": set_t(lambda t: t[:31]),
        "T empty-ish": set_t(lambda t: t[:1]),
        "T IV dropped": set_t(lambda t: t[16:]),
        "T blocks swapped": set_t(lambda t: t[:16] + t[32:48] + t[16:32] + t[48:]),
        "T zero IV": set_t(lambda t: b"\x00" * 16 + t[16:]),
        "missing data": remove(DATA),
        "two data": duplicate(DATA),
        "missing key": remove(KEY),
        "e2e other namespace": lambda e: setattr(e, "tag", "{urn:ietf:params:xml:ns:xmpp-e2e}e2e"),
        "e2e no namespace": lambda e: setattr(e, "tag", "e2e"),
        "e2e renamed": lambda e: setattr(e, "tag", f"{{{NS}}}e2ee"),
        "e2e jabber:client": lambda e: setattr(e, "tag", "{jabber:client}e2e"),
        "data other namespace": retag(DATA, "{urn:other}data"),
        "data no namespace": retag(DATA, "data"),
        "key other namespace": retag(KEY, "{urn:other}key"),
        "key no namespace": retag(KEY, "key"),
        "data renamed": retag(DATA, f"{{{NS}}}plain"),
        "key nested in data": move(KEY, DATA),
        "data nested in key": move(DATA, KEY),
        "key and data texts swapped": swap_texts,
    }


_NAMES = list(_mutations(AES_128_CBC.name))


@pytest.mark.parametrize("name", _NAMES)
def test_named_tamper_refused(sealed, identity_2048, name):
    e2e = copy.deepcopy(sealed)
    _mutations(e2e.find(DATA).get("cipher-algo"))[name](e2e)
    assert ET.tostring(e2e) != ET.tostring(sealed)
    with pytest.raises(InvalidEnvelope):
        open_envelope(e2e, identity_2048.private_key)


def test_two_identical_data_elements_refused_but_one_opens(sealed, identity_2048):
    e2e = copy.deepcopy(sealed)
    assert _opens(e2e, identity_2048.private_key)
    e2e.append(copy.deepcopy(e2e.find(DATA)))
    assert not _opens(e2e, identity_2048.private_key)


def test_t_with_valid_mac_but_only_iv_refused(identity_2048, build_envelope):
    """T shorter than 32 bytes is refused even when the MAC over it is right."""
    e2e = build_envelope(b"", identity_2048.private_key.public_key(), pad=False)
    assert len(_t(e2e)) == 16
    with pytest.raises(InvalidEnvelope):
        open_envelope(e2e, identity_2048.private_key)


def test_whitespace_in_base64_is_not_tampering(sealed, identity_2048):
    """Line breaks and spaces in base64 text are allowed (the draft wraps lines)."""
    e2e = copy.deepcopy(sealed)
    for el in (e2e.find(KEY), e2e.find(DATA)):
        el.text = (
            "\n  " + "\n  ".join(el.text[i : i + 60] for i in range(0, len(el.text), 60)) + "\n"
        )
    assert _opens(e2e, identity_2048.private_key)


def test_extra_unknown_attribute_and_child_are_ignored(sealed, identity_2048):
    """Extension points the core does not interpret do not affect the result."""
    e2e = copy.deepcopy(sealed)
    e2e.set("id", "x")
    ET.SubElement(e2e, "{urn:example:ext}hint").text = "hello"
    assert _opens(e2e, identity_2048.private_key)


def test_replaced_t_from_another_envelope_refused(sealed, identity_2048):
    """Mix-and-match: K of one envelope, T and M of another (same key, same cipher)."""
    other = seal(
        STANZA,
        [Recipient(identity_2048.private_key.public_key())],
        timestamp=TS,
        cipher=AES_128_CBC if "128" in sealed.find(DATA).get("cipher-algo") else AES_256_CBC,
    )
    for swap in ("key", "data", "mac"):
        e2e = copy.deepcopy(sealed)
        if swap == "key":
            e2e.find(KEY).text = other.find(KEY).text
        elif swap == "data":
            e2e.find(DATA).text = other.find(DATA).text
        else:
            e2e.find(DATA).set("mac-hash", other.find(DATA).get("mac-hash"))
        assert not _opens(e2e, identity_2048.private_key), swap
