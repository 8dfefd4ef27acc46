"""Shared fixtures for the sans-I/O core tests.

The RSA identities are session-scoped: key generation is the slow part of the
suite. ``build_envelope`` assembles an ``<e2e/>`` around *arbitrary* E' bytes
using ``cryptography`` directly (never the core), with a correct MAC, so tests
can make the content malformed while everything cryptographic is right.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from slixmpp_objenc.core import Identity, generate_identity

NS = "urn:ietf:params:xml:ns:xmpp-objenc:0"
AES128 = "AES-128-CBC-PKCS5-WITH-IV"
AES256 = "AES-256-CBC-PKCS5-WITH-IV"
OAEP_NAME = "RSAES-OAEP-SHA-256-MFG1"
FIXED_TS = datetime(2010, 6, 29, 2, 15, 21, 12_000, tzinfo=UTC)

OAEP_SHA256 = asym_padding.OAEP(
    mgf=asym_padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
)


@pytest.fixture(scope="session")
def identity_2048() -> Identity:
    return generate_identity("romeo@example.net", key_size=2048)


@pytest.fixture(scope="session")
def identity_3072() -> Identity:
    identity = generate_identity("juliet@capulet.net")  # the default size
    assert identity.private_key.key_size == 3072
    return identity


@pytest.fixture(scope="session")
def identities_2048(identity_2048: Identity) -> list[Identity]:
    """Four distinct 2048-bit identities (the first is ``identity_2048``)."""
    others = [
        generate_identity(jid, key_size=2048)
        for jid in ("mercutio@example.net", "benvolio@example.net", "tybalt@capulet.net")
    ]
    return [identity_2048, *others]


@pytest.fixture(scope="session")
def outsider_2048() -> Identity:
    """An identity no envelope in the suite is addressed to."""
    return generate_identity("paris@example.org", key_size=2048)


@pytest.fixture(scope="session")
def fixed_ts() -> datetime:
    return FIXED_TS


def plain_bytes(stanza: bytes, timestamp: str = "2010-06-29T02:15:21.012Z") -> bytes:
    """E' for a stanza, written out by hand (not by the core)."""
    return (
        f"<plain xmlns='{NS}' timestamp='{timestamp}'>".encode()
        + base64.b64encode(stanza)
        + b"</plain>"
    )


BuildEnvelope = Callable[..., ET.Element]


def _build_envelope(
    e_prime: bytes,
    public_key: rsa.RSAPublicKey,
    *,
    cipher: str = AES128,
    key_id: str | None = None,
    mac_attr: str = "mac-hash",
    key_algo: str = OAEP_NAME,
    key_padding: asym_padding.AsymmetricPadding = OAEP_SHA256,
    pad: bool = True,
    session_key: bytes | None = None,
    iv: bytes | None = None,
) -> ET.Element:
    key_len = 32 if cipher == AES256 else 16
    r = session_key if session_key is not None else os.urandom(key_len)
    iv = iv if iv is not None else os.urandom(16)
    if pad:
        padder = sym_padding.PKCS7(128).padder()
        body = padder.update(e_prime) + padder.finalize()
    else:
        body = e_prime
    enc = Cipher(algorithms.AES(r), modes.CBC(iv)).encryptor()
    t = iv + enc.update(body) + enc.finalize()
    m = hmac.new(t, r, hashlib.sha256).digest()
    k = public_key.encrypt(r, key_padding)
    e2e = ET.Element(f"{{{NS}}}e2e")
    key = ET.SubElement(e2e, f"{{{NS}}}key", {"cipher-algo": key_algo})
    if key_id is not None:
        key.set("cert-sha256", key_id)
    key.text = base64.b64encode(k).decode()
    data = ET.SubElement(
        e2e,
        f"{{{NS}}}data",
        {"cipher-algo": cipher, "mac-algo": "HMACSHA256", mac_attr: base64.b64encode(m).decode()},
    )
    data.text = base64.b64encode(t).decode()
    return e2e


@pytest.fixture(scope="session")
def build_envelope() -> BuildEnvelope:
    """``build_envelope(e_prime, public_key, *, cipher=..., key_id=..., mac_attr=...,
    key_algo=..., key_padding=..., pad=True, session_key=None, iv=None)``."""
    return _build_envelope


@pytest.fixture(scope="session")
def make_plain() -> Callable[..., bytes]:
    """``make_plain(stanza_bytes, timestamp_text=...)`` -> E' bytes, built by hand."""
    return plain_bytes
