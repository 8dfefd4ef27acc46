"""Malformed decrypted content. Each envelope here is built by a test helper
(``build_envelope``, conftest) that encrypts arbitrary E' bytes with a correct
K and MAC, so a refusal can only come from the content: E' and S' parsing,
DTDs and entity bombs, base64 inside <plain/>, the timestamp, the inner
stanza's name and namespace, and nested <e2e/>."""

from __future__ import annotations

import base64
import time

import pytest

from slixmpp_objenc.core import InvalidEnvelope, open_envelope

NS = "urn:ietf:params:xml:ns:xmpp-objenc:0"
TS = "2010-06-29T02:15:21.012Z"
GOOD_STANZA = b"<message xmlns='jabber:client' to='romeo@example.net'><body>hi</body></message>"

BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'
        for i in range(1, 10)
    )
    + "]>\n"
)
QUADRATIC = '<!DOCTYPE x [<!ENTITY a "' + "A" * 50_000 + '">]>\n'
XXE = '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>\n'
XXE_PARAM = '<!DOCTYPE x [<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;]>\n'
EXTERNAL_DTD = '<!DOCTYPE message SYSTEM "http://127.0.0.1:9/x.dtd">\n'
HARMLESS_DTD = "<!DOCTYPE x>\n"
INTERNAL_ENTITY = '<!DOCTYPE x [<!ENTITY hi "hello">]>\n'


def plain(stanza: bytes, timestamp: str = TS) -> bytes:
    return (
        f"<plain xmlns='{NS}' timestamp='{timestamp}'>".encode()
        + base64.b64encode(stanza)
        + b"</plain>"
    )


@pytest.fixture
def opens(identity_2048, build_envelope):
    """opens(e_prime, **kw) -> stanza bytes, or raises InvalidEnvelope."""

    def run(e_prime: bytes, **kw) -> bytes:
        e2e = build_envelope(e_prime, identity_2048.private_key.public_key(), **kw)
        return open_envelope(e2e, identity_2048.private_key).stanza_bytes

    return run


def test_helper_positive_control(opens):
    assert opens(plain(GOOD_STANZA)) == GOOD_STANZA
    assert opens(plain(GOOD_STANZA), cipher="AES-256-CBC-PKCS5-WITH-IV") == GOOD_STANZA
    # insignificant variations of E' that are still a valid <plain/>
    assert opens(plain(GOOD_STANZA).replace(b"'", b'"')) == GOOD_STANZA
    assert opens(b"<?xml version='1.0' encoding='UTF-8'?>" + plain(GOOD_STANZA)) == GOOD_STANZA
    b64 = base64.b64encode(GOOD_STANZA)
    wrapped = b"\n  ".join(b64[i : i + 40] for i in range(0, len(b64), 40))
    assert (
        opens(f"<plain xmlns='{NS}' timestamp='{TS}'>\n  ".encode() + wrapped + b"\n</plain>")
        == GOOD_STANZA
    )


# --------------------------------------------------------------------------- E' itself

E_PRIME_CASES = {
    "invalid utf-8": plain(GOOD_STANZA).replace(b"</plain>", b"\xff\xfe</plain>"),
    "invalid utf-8 in attribute": plain(GOOD_STANZA, TS).replace(b"timestamp=", b"x='\xc3' t="),
    "overlong utf-8": plain(GOOD_STANZA).replace(b"<plain", b"<plain a='\xc0\xbc'"),
    "utf-16": plain(GOOD_STANZA).decode().encode("utf-16"),
    "not xml": b"hello world",
    "empty": b"",
    "truncated": plain(GOOD_STANZA)[:-3],
    "two roots": plain(GOOD_STANZA) + plain(GOOD_STANZA),
    "trailing garbage": plain(GOOD_STANZA) + b"garbage",
    "wrong tag": plain(GOOD_STANZA)
    .replace(b"<plain", b"<plaintext")
    .replace(b"</plain>", b"</plaintext>"),
    "no namespace": plain(GOOD_STANZA).replace(f" xmlns='{NS}'".encode(), b""),
    "other namespace": plain(GOOD_STANZA).replace(NS.encode(), b"urn:ietf:params:xml:ns:xmpp-e2e"),
    "child element": plain(GOOD_STANZA).replace(b"</plain>", b"<x/></plain>"),
    "nested e2e child": plain(GOOD_STANZA).replace(b"</plain>", b"<e2e/></plain>"),
    "nested plain child": plain(GOOD_STANZA).replace(b"</plain>", plain(GOOD_STANZA) + b"</plain>"),
    "timestamp +02:00": plain(GOOD_STANZA, "2010-06-29T04:15:21.012+02:00"),
    "timestamp +00:00": plain(GOOD_STANZA, "2010-06-29T02:15:21.012+00:00"),
    "timestamp -00:00": plain(GOOD_STANZA, "2010-06-29T02:15:21.012-00:00"),
    "timestamp no zone": plain(GOOD_STANZA, "2010-06-29T02:15:21.012"),
    "timestamp date only": plain(GOOD_STANZA, "2010-06-29"),
    "timestamp garbage": plain(GOOD_STANZA, "yesterday"),
    "timestamp empty": plain(GOOD_STANZA, ""),
    "timestamp impossible date": plain(GOOD_STANZA, "2010-02-30T02:15:21.012Z"),
    "timestamp missing": plain(GOOD_STANZA).replace(f" timestamp='{TS}'".encode(), b""),
    "bad base64 stray": f"<plain xmlns='{NS}' timestamp='{TS}'>!!!!</plain>".encode(),
    "bad base64 missing padding": f"<plain xmlns='{NS}' timestamp='{TS}'>".encode()
    + base64.b64encode(GOOD_STANZA).rstrip(b"=")
    + b"</plain>",
    "bad base64 excess padding": f"<plain xmlns='{NS}' timestamp='{TS}'>".encode()
    + base64.b64encode(GOOD_STANZA)
    + b"==</plain>",
    "bad base64 url-safe": f"<plain xmlns='{NS}' timestamp='{TS}'>".encode()
    + base64.urlsafe_b64encode(b"<message xmlns='jabber:client'>\xfb\xff</message>")
    + b"</plain>",
    "empty plain": f"<plain xmlns='{NS}' timestamp='{TS}'></plain>".encode(),
    "self-closing plain": f"<plain xmlns='{NS}' timestamp='{TS}'/>".encode(),
    "DTD harmless": HARMLESS_DTD.encode() + plain(GOOD_STANZA),
    "DTD internal entity": INTERNAL_ENTITY.encode() + plain(GOOD_STANZA),
    "DTD billion laughs": BILLION_LAUGHS.encode()
    + plain(GOOD_STANZA).replace(b"timestamp=", b"a='&lol9;' timestamp="),
    "DTD quadratic": QUADRATIC.encode()
    + plain(GOOD_STANZA).replace(b"timestamp=", b"a='" + b"&a;" * 1000 + b"' timestamp="),
    "DTD external entity": XXE.encode() + plain(GOOD_STANZA).replace(b"</plain>", b"&e;</plain>"),
    "DTD external parameter entity": XXE_PARAM.encode() + plain(GOOD_STANZA),
    "DTD external subset": EXTERNAL_DTD.encode() + plain(GOOD_STANZA),
    "undefined entity": plain(GOOD_STANZA).replace(b"</plain>", b"&nbsp;</plain>"),
}


@pytest.mark.parametrize("name", list(E_PRIME_CASES))
def test_malformed_e_prime_refused(opens, name):
    assert len(GOOD_STANZA) % 3  # so that its base64 ends in padding
    start = time.perf_counter()
    with pytest.raises(InvalidEnvelope):
        opens(E_PRIME_CASES[name])
    assert time.perf_counter() - start < 2.0


def test_bad_pkcs7_padding_with_correct_mac_refused(opens):
    e_prime = plain(GOOD_STANZA)
    body = e_prime + b" " * (-len(e_prime) % 16)  # block aligned, but not PKCS#7
    assert len(body) % 16 == 0
    for last in (b"\x00", b"\x11", b"\x20", b"\xff"):
        with pytest.raises(InvalidEnvelope):
            opens(body[:-1] + last, pad=False)
    # inconsistent padding bytes
    with pytest.raises(InvalidEnvelope):
        opens(
            e_prime + b"\x01\x02\x03" + b"\x04" * (-len(e_prime + b"\x01\x02\x03") % 16 or 16),
            pad=False,
        )
    # positive control: correct padding, applied by hand
    n = 16 - len(e_prime) % 16
    assert opens(e_prime + bytes([n]) * n, pad=False) == GOOD_STANZA


# --------------------------------------------------------------------------- S' inside <plain/>


def _nested(depth: int) -> bytes:
    return (
        b"<message xmlns='jabber:client'>"
        + b"<x xmlns='urn:ext'>" * depth
        + f"<e2e xmlns='{NS}'/>".encode()
        + b"</x>" * depth
        + b"</message>"
    )


STANZA_CASES = {
    "invalid utf-8": b"<message xmlns='jabber:client'><body>\xff</body></message>",
    "lone surrogate utf-8": b"<message xmlns='jabber:client'><body>\xed\xa0\x80</body></message>",
    "not xml": b"just some text",
    "truncated": GOOD_STANZA[:-5],
    "two roots": GOOD_STANZA + GOOD_STANZA,
    "not a stanza": b"<body xmlns='jabber:client'>hi</body>",
    "stream element": b"<stream xmlns='jabber:client'/>",
    "wrong ns jabber:server": b"<message xmlns='jabber:server'><body>hi</body></message>",
    "wrong ns jabber:iq (draft example)": b'<iq xmlns="jabber:iq" type="result" id="1"/>',
    "no namespace message": b"<message><body>hi</body></message>",
    "no namespace iq": b"<iq type='get' id='1'/>",
    "objenc namespace": f"<message xmlns='{NS}'/>".encode(),
    "capitalised": b"<Message xmlns='jabber:client'/>",
    "nested e2e": _nested(0),
    "nested e2e deep": _nested(20),
    "nested e2e in iq": f"<iq xmlns='jabber:client' type='set' id='1'><e2e xmlns='{NS}'>"
    "<key/><data/></e2e></iq>".encode(),
    "nested e2e in presence": f"<presence xmlns='jabber:client'><e2e xmlns='{NS}'/>"
    "</presence>".encode(),
    "DTD harmless": HARMLESS_DTD.encode() + GOOD_STANZA,
    "DTD internal entity": INTERNAL_ENTITY.encode()
    + b"<message xmlns='jabber:client'><body>&hi;</body></message>",
    "DTD billion laughs": BILLION_LAUGHS.encode()
    + b"<message xmlns='jabber:client'><body>&lol9;</body></message>",
    "DTD quadratic": QUADRATIC.encode()
    + b"<message xmlns='jabber:client'><body>"
    + b"&a;" * 1000
    + b"</body></message>",
    "DTD external entity": XXE.encode()
    + b"<message xmlns='jabber:client'><body>&e;</body></message>",
    "DTD external parameter entity": XXE_PARAM.encode() + GOOD_STANZA,
    "DTD external subset": b'<!DOCTYPE message SYSTEM "file:///etc/passwd">' + GOOD_STANZA,
    "undefined entity": b"<message xmlns='jabber:client'><body>&nbsp;</body></message>",
    "empty": b"",
}


@pytest.mark.parametrize("name", list(STANZA_CASES))
def test_malformed_inner_stanza_refused(opens, name):
    start = time.perf_counter()
    with pytest.raises(InvalidEnvelope):
        opens(plain(STANZA_CASES[name]))
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize(
    "stanza",
    [
        b"<message xmlns='jabber:client'><body>&amp;&lt;&#233;&#x1F339;</body></message>",
        b"<iq xmlns='jabber:client' type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>",
        b"<presence xmlns='jabber:client'><e2e xmlns='urn:other'/></presence>",
        f"<message xmlns='jabber:client'><plain xmlns='{NS}'/></message>".encode(),
        b"<message xmlns='jabber:client'><!-- comment --><?pi x?><body>x</body></message>",
    ],
    ids=["char-refs", "iq-query", "foreign-e2e", "plain-inside", "comment-pi"],
)
def test_unusual_but_valid_inner_stanzas_open(opens, stanza):
    """Positive controls next to the refusals: predefined entities, character
    references, an <e2e/> in another namespace are fine."""
    assert opens(plain(stanza)) == stanza


def test_billion_laughs_refused_quickly_with_3072_key(identity_3072, build_envelope):
    e_prime = plain(
        BILLION_LAUGHS.encode() + b"<message xmlns='jabber:client'><body>&lol9;</body></message>"
    )
    e2e = build_envelope(e_prime, identity_3072.private_key.public_key())
    start = time.perf_counter()
    with pytest.raises(InvalidEnvelope):
        open_envelope(e2e, identity_3072.private_key)
    assert time.perf_counter() - start < 1.0


def test_non_ascii_digit_timestamp_refused(opens):
    with pytest.raises(InvalidEnvelope):
        opens(plain(GOOD_STANZA, "\u0662\u0660\u0661\u0660-06-29T02:15:21.012Z"))
