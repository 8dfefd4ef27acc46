"""Building blocks: the algorithm table, strict base64, the untrusted-XML
parser, the error hierarchy and the public surface of the core package."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding

import slixmpp_objenc.core as core
from slixmpp_objenc.core import algorithms as algo
from slixmpp_objenc.core import constants
from slixmpp_objenc.core.errors import (
    CertificateError,
    EncryptionError,
    InvalidEnvelope,
    ObjEncError,
    StaleStanza,
)
from slixmpp_objenc.core.xmlsafe import b64decode_strict, b64encode, parse_untrusted

# --------------------------------------------------------------------------- algorithms


def test_wire_names():
    assert algo.RSA_OAEP_SHA256 == "RSAES-OAEP-SHA-256-MFG1"
    assert {"RSAES-OAEP-SHA-256-MFG1", "RSAES-OAEP-SHA-256-MGF1"} == algo.KEY_TRANSPORT_NAMES
    assert algo.HMAC_SHA256 == "HMACSHA256"
    assert set(algo.BLOCK_CIPHERS) == {"AES-128-CBC-PKCS5-WITH-IV", "AES-256-CBC-PKCS5-WITH-IV"}
    assert algo.BLOCK_CIPHERS["AES-128-CBC-PKCS5-WITH-IV"].key_length == 16
    assert algo.BLOCK_CIPHERS["AES-256-CBC-PKCS5-WITH-IV"].key_length == 32
    assert algo.DEFAULT_BLOCK_CIPHER is algo.AES_128_CBC
    assert algo.MIN_RSA_BITS == 2048
    assert not any("PKCS1" in n.upper() and "OAEP" not in n for n in algo.KEY_TRANSPORT_NAMES)


def test_oaep_padding_is_sha256_mgf1_sha256_empty_label(identity_2048):
    pub = identity_2048.private_key.public_key()
    ct = pub.encrypt(b"k" * 16, algo.oaep_padding())
    explicit = asym_padding.OAEP(asym_padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)
    assert identity_2048.private_key.decrypt(ct, explicit) == b"k" * 16
    for other in (
        asym_padding.OAEP(asym_padding.MGF1(hashes.SHA1()), hashes.SHA256(), None),
        asym_padding.OAEP(asym_padding.MGF1(hashes.SHA256()), hashes.SHA1(), None),
        asym_padding.OAEP(asym_padding.MGF1(hashes.SHA256()), hashes.SHA256(), b"x"),
    ):
        with pytest.raises(ValueError):
            identity_2048.private_key.decrypt(ct, other)
    # and the core decrypts what explicit parameters produce
    ct2 = pub.encrypt(b"r" * 32, explicit)
    assert identity_2048.private_key.decrypt(ct2, algo.oaep_padding()) == b"r" * 32


@pytest.mark.parametrize(("key", "msg"), [(b"T" * 48, b"R" * 16), (b"x" * 200, b""), (b"", b"m")])
def test_hmac_sha256_argument_order(key, msg):
    assert algo.hmac_sha256(key, msg) == hmac.new(key, msg, hashlib.sha256).digest()
    if key != msg:
        assert algo.hmac_sha256(key, msg) != hmac.new(msg, key, hashlib.sha256).digest()


def test_check_rsa_key_size(identity_2048):
    algo.check_rsa_key_size(identity_2048.private_key)
    algo.check_rsa_key_size(identity_2048.private_key.public_key())

    class Small:
        key_size = 2047

    with pytest.raises(ValueError):
        algo.check_rsa_key_size(Small())  # type: ignore[arg-type]


# --------------------------------------------------------------------------- base64


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("AAAA", b"\0\0\0"),
        ("aGVsbG8=", b"hello"),
        ("aGVs\nbG8=\n", b"hello"),
        ("  aGVs bG8=\t\r\n", b"hello"),
        ("+/+/", b"\xfb\xff\xbf"),
    ],
)
def test_b64decode_strict_accepts(text, value):
    assert b64decode_strict(text) == value


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "aGVsbG8",
        "aGVsbG8==",
        "aGVs!bG8=",
        "aGVs-bG8=",
        "aGVs_bG8=",
        "aGVsbG8=aGVs",
        "=aGVsbG8",
        "aGVs\u00e9bG8=",
        "aGVs\u00a0bG8=",
        "aGVs\fbG8=",
        "aGVs\vbG8=",
        "a",
    ],
)
def test_b64decode_strict_refuses(text):
    with pytest.raises(ValueError):
        b64decode_strict(text)


def test_b64encode_no_line_breaks():
    out = b64encode(bytes(range(256)) * 4)
    assert "\n" not in out and " " not in out
    assert b64decode_strict(out) == bytes(range(256)) * 4


# --------------------------------------------------------------------------- XML


def test_parse_untrusted_accepts_plain_xml():
    el = parse_untrusted("<a xmlns='urn:x' b='\u00e9'>t&amp;&#233;</a>".encode())
    assert el.tag == "{urn:x}a"
    assert el.get("b") == "\u00e9"
    assert el.text == "t&\u00e9"


BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b"]><lolz>&lol9;</lolz>"
)


@pytest.mark.parametrize(
    "data",
    [
        BOMB,
        b"<!DOCTYPE a><a/>",
        b'<!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]><a>&e;</a>',
        b'<!DOCTYPE a SYSTEM "http://127.0.0.1:9/x.dtd"><a/>',
        b"<a>&undefined;</a>",
        b"\xff<a/>",
        b"<a/><b/>",
        b"<a>",
        b"",
        b"text",
    ],
)
def test_parse_untrusted_refuses(data):
    start = time.perf_counter()
    with pytest.raises(ValueError):
        parse_untrusted(data)
    assert time.perf_counter() - start < 1.0


# --------------------------------------------------------------------------- errors and API


def test_error_hierarchy():
    for cls in (EncryptionError, CertificateError, InvalidEnvelope, StaleStanza):
        assert issubclass(cls, ObjEncError)
    assert not issubclass(InvalidEnvelope, (EncryptionError, CertificateError, StaleStanza))
    assert not issubclass(EncryptionError, CertificateError)
    assert str(InvalidEnvelope()) == "the <e2e/> element could not be opened"
    assert str(InvalidEnvelope()) == str(InvalidEnvelope())


def test_constants():
    assert constants.NS_OBJENC == "urn:ietf:params:xml:ns:xmpp-objenc:0"
    assert constants.NS_E2E_ERRORS == "urn:ietf:params:xml:xmpp-e2e"
    assert constants.NS_CLIENT == "jabber:client"
    assert {"message", "iq", "presence"} == constants.STANZA_KINDS
    assert constants.DEFAULT_MAX_ENVELOPE_SIZE == 256 * 1024
    assert constants.qname("urn:x", "y") == "{urn:x}y"
    assert core.KEY_ID_ATTRIBUTE == "cert-sha256"


def test_public_api_exports():
    for name in core.__all__:
        assert getattr(core, name) is not None
    assert {
        "seal",
        "open_envelope",
        "ReplayGuard",
        "TimestampSource",
        "generate_identity",
        "validate_peer_certificate",
        "InvalidEnvelope",
    } <= set(core.__all__)
