"""seal/open_envelope: round trips, recipients and key selection, misuse on the
sending side, input spellings accepted, PKCS#1 v1.5 refusal, the size limit
before any RSA work, and the opacity of InvalidEnvelope."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import os
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding

from slixmpp_objenc.core import (
    AES_128_CBC,
    AES_256_CBC,
    DEFAULT_BLOCK_CIPHER,
    EncryptionError,
    InvalidEnvelope,
    Recipient,
    open_envelope,
    seal,
)

NS = "urn:ietf:params:xml:ns:xmpp-objenc:0"
E2E, KEY, DATA = f"{{{NS}}}e2e", f"{{{NS}}}key", f"{{{NS}}}data"
MESSAGE = "the <e2e/> element could not be opened"
TS = datetime(2010, 6, 29, 2, 15, 21, 12_000, tzinfo=UTC)

STANZAS = {
    "message": (
        b"<message xmlns='jabber:client' from='juliet@capulet.net/balcony' id='183ef129' "
        b"to='romeo@montague.net' type='chat'><thread>8996aef0</thread>"
        b"<body>Wherefore art thou, Romeo?</body></message>"
    ),
    "iq": (
        b'<iq xmlns="jabber:client" from="juliet@capulet.net/crypt" id="a543bc3ee" '
        b'to="romeo@montegue.net/crypt" type="result">\n  <mood xmlns='
        b'"http://jabber.org/protocol/mood">\n    <dejected />\n    <text>Poison?</text>\n'
        b"  </mood>\n</iq>"
    ),
    "presence": (
        b"<presence xmlns='jabber:client' to='romeo@example.net/orchard'>"
        b"<show>away</show><status>in the garden</status></presence>"
    ),
    "unicode": (
        "<message xmlns='jabber:client' to='r\u00f6meo@example.net'><body>"
        "\u00e9t\u00e9 \u2014 \u4f60\u597d \u0645\u0631\u062d\u0628\u0627 \U0001f339\U0001f600"
        "</body></message>"
    ).encode(),
    "empty-message": b"<message xmlns='jabber:client'/>",
    "empty-iq": b'<iq xmlns="jabber:client" type="get" id="1"></iq>',
    "empty-presence": b"<presence xmlns='jabber:client' />",
    "prefixed": b"<c:message xmlns:c='jabber:client'><c:body>x</c:body></c:message>",
}


def _kind(stanza: bytes) -> str:
    for kind in ("message", "iq", "presence"):
        if stanza.startswith((b"<" + kind.encode(), b"<c:" + kind.encode())):
            return kind
    raise AssertionError(stanza)


def _reparse(e2e: ET.Element) -> ET.Element:
    """What a receiver gets: the element after a trip through serialization."""
    return ET.fromstring(ET.tostring(e2e))


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("cipher", [AES_128_CBC, AES_256_CBC], ids=lambda c: c.name)
@pytest.mark.parametrize("name", sorted(STANZAS))
def test_round_trip(identity_2048, cipher, name):
    stanza = STANZAS[name]
    ts = datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC)
    e2e = seal(
        stanza, [Recipient(identity_2048.certificate.public_key())], timestamp=ts, cipher=cipher
    )
    opened = open_envelope(_reparse(e2e), identity_2048.private_key)
    assert opened.stanza_bytes == stanza
    assert opened.stanza.tag == f"{{jabber:client}}{_kind(stanza)}"
    assert opened.timestamp == datetime(2024, 2, 29, 23, 59, 59, 999_000, tzinfo=UTC)
    assert opened.cipher == cipher.name
    assert opened.digest == base64.b64decode(e2e.find(DATA).get("mac-hash"))
    assert len(base64.b64decode(e2e.find(KEY).text)) == 256


def test_round_trip_unicode_content_parsed(identity_2048):
    stanza = STANZAS["unicode"]
    e2e = seal(stanza, [Recipient(identity_2048.private_key.public_key())], timestamp=TS)
    opened = open_envelope(e2e, identity_2048.private_key)
    body = opened.stanza.find("{jabber:client}body")
    assert (
        body.text == "\u00e9t\u00e9 \u2014 \u4f60\u597d \u0645\u0631\u062d\u0628\u0627 "
        "\U0001f339\U0001f600"
    )
    assert opened.stanza.get("to") == "r\u00f6meo@example.net"


def test_round_trip_3072_bit_key(identity_3072):
    stanza = STANZAS["message"]
    e2e = seal(
        stanza,
        [Recipient(identity_3072.certificate.public_key())],
        timestamp=TS,
        cipher=AES_256_CBC,
    )
    assert len(base64.b64decode(e2e.find(KEY).text)) == 384
    assert open_envelope(_reparse(e2e), identity_3072.private_key).stanza_bytes == stanza


def test_round_trip_large_stanza_within_default_limit(identity_2048):
    stanza = b"<message xmlns='jabber:client'><body>" + b"x" * 100_000 + b"</body></message>"
    e2e = seal(stanza, [Recipient(identity_2048.private_key.public_key())], timestamp=TS)
    assert open_envelope(e2e, identity_2048.private_key).stanza_bytes == stanza


def test_default_cipher_is_aes_128(identity_2048):
    assert DEFAULT_BLOCK_CIPHER is AES_128_CBC
    e2e = seal(
        STANZAS["message"], [Recipient(identity_2048.private_key.public_key())], timestamp=TS
    )
    assert e2e.find(DATA).get("cipher-algo") == "AES-128-CBC-PKCS5-WITH-IV"


def test_each_seal_is_fresh(identity_2048):
    rcpt = [Recipient(identity_2048.private_key.public_key())]
    a = seal(STANZAS["message"], rcpt, timestamp=TS)
    b = seal(STANZAS["message"], rcpt, timestamp=TS)
    assert a.find(KEY).text != b.find(KEY).text
    assert a.find(DATA).text != b.find(DATA).text
    assert a.find(DATA).get("mac-hash") != b.find(DATA).get("mac-hash")
    # same T length: same plaintext size
    assert len(a.find(DATA).text) == len(b.find(DATA).text)


def test_timestamp_with_offset_is_normalised_to_utc(identity_2048):
    plus2 = datetime(2010, 6, 29, 4, 15, 21, 12_345, tzinfo=UTC).astimezone(
        timezone(timedelta(hours=2))
    )
    e2e = seal(
        STANZAS["message"], [Recipient(identity_2048.private_key.public_key())], timestamp=plus2
    )
    opened = open_envelope(e2e, identity_2048.private_key)
    assert opened.timestamp == datetime(2010, 6, 29, 4, 15, 21, 12_000, tzinfo=UTC)
    assert opened.timestamp.utcoffset() == timedelta(0)


# --------------------------------------------------------------------------- recipients


@pytest.mark.parametrize("count", [1, 2, 4])
@pytest.mark.parametrize("cipher", [AES_128_CBC, AES_256_CBC], ids=lambda c: c.name)
def test_multi_recipient_named(identities_2048, outsider_2048, count, cipher):
    chosen = identities_2048[:count]
    stanza = STANZAS["unicode"]
    e2e = _reparse(
        seal(
            stanza,
            [Recipient(i.certificate.public_key(), i.fingerprint) for i in chosen],
            timestamp=TS,
            cipher=cipher,
        )
    )
    keys = e2e.findall(KEY)
    assert [k.get("cert-sha256") for k in keys] == [i.fingerprint for i in chosen]
    assert len(e2e.findall(DATA)) == 1
    digests = set()
    for identity in chosen:
        opened = open_envelope(e2e, identity.private_key, key_id=identity.fingerprint)
        assert opened.stanza_bytes == stanza
        digests.add(opened.digest)
    assert len(digests) == 1  # one T, one M for everybody
    with pytest.raises(InvalidEnvelope):
        open_envelope(e2e, outsider_2048.private_key, key_id=outsider_2048.fingerprint)
    with pytest.raises(InvalidEnvelope):
        open_envelope(e2e, outsider_2048.private_key)


@pytest.mark.parametrize("count", [1, 2, 4])
def test_multi_recipient_unnamed(identities_2048, outsider_2048, count):
    """The draft's bare <key/>: every recipient tries them (at most four)."""
    chosen = identities_2048[:count]
    stanza = STANZAS["iq"]
    e2e = seal(stanza, [Recipient(i.certificate.public_key()) for i in chosen], timestamp=TS)
    assert all(k.get("cert-sha256") is None for k in e2e.findall(KEY))
    for identity in chosen:
        assert open_envelope(e2e, identity.private_key).stanza_bytes == stanza
        # a key_id naming nobody on the wire falls back to the unnamed keys
        assert (
            open_envelope(e2e, identity.private_key, key_id=identity.fingerprint).stanza_bytes
            == stanza
        )
    with pytest.raises(InvalidEnvelope):
        open_envelope(e2e, outsider_2048.private_key)


def test_named_keys_are_not_tried_without_key_id(identities_2048):
    romeo = identities_2048[0]
    e2e = seal(
        STANZAS["message"],
        [Recipient(romeo.certificate.public_key(), romeo.fingerprint)],
        timestamp=TS,
    )
    with pytest.raises(InvalidEnvelope):
        open_envelope(e2e, romeo.private_key)
    assert open_envelope(e2e, romeo.private_key, key_id=romeo.fingerprint).stanza_bytes


def test_key_named_for_someone_else_is_skipped(identities_2048):
    romeo, mercutio = identities_2048[:2]
    # romeo's key, but labelled as mercutio's: romeo's key_id finds no key naming him
    # and there is no unnamed key -> refused; mercutio's key_id selects it but his
    # private key cannot unwrap it.
    e2e = seal(
        STANZAS["message"],
        [Recipient(romeo.certificate.public_key(), mercutio.fingerprint)],
        timestamp=TS,
    )
    with pytest.raises(InvalidEnvelope):
        open_envelope(e2e, romeo.private_key, key_id=romeo.fingerprint)
    with pytest.raises(InvalidEnvelope):
        open_envelope(e2e, mercutio.private_key, key_id=mercutio.fingerprint)


def test_mixed_named_and_unnamed(identities_2048):
    romeo, mercutio = identities_2048[:2]
    e2e = seal(
        STANZAS["presence"],
        [
            Recipient(mercutio.certificate.public_key(), mercutio.fingerprint),
            Recipient(romeo.certificate.public_key()),
        ],
        timestamp=TS,
    )
    # romeo: nothing names him -> the unnamed key, which is his
    assert open_envelope(e2e, romeo.private_key, key_id=romeo.fingerprint).stanza_bytes
    assert open_envelope(e2e, romeo.private_key).stanza_bytes
    # mercutio: the key naming him
    assert open_envelope(e2e, mercutio.private_key, key_id=mercutio.fingerprint).stanza_bytes


def test_key_naming_us_takes_precedence_over_unnamed(identities_2048):
    """A <key/> naming our certificate is used instead of unnamed ones."""
    romeo = identities_2048[0]
    e2e = seal(STANZAS["message"], [Recipient(romeo.certificate.public_key())], timestamp=TS)
    bogus = ET.Element(
        KEY, {"cipher-algo": "RSAES-OAEP-SHA-256-MFG1", "cert-sha256": romeo.fingerprint}
    )
    bogus.text = base64.b64encode(os.urandom(256)).decode()
    e2e.insert(0, bogus)
    with pytest.raises(InvalidEnvelope):
        open_envelope(e2e, romeo.private_key, key_id=romeo.fingerprint)
    # without our key_id, the named key is ignored and the unnamed one opens
    assert open_envelope(e2e, romeo.private_key).stanza_bytes == STANZAS["message"]


class CountingKey:
    """Wraps a private key and counts RSA decryptions."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self._key = key
        self.decrypts = 0

    @property
    def key_size(self) -> int:
        return self._key.key_size

    def decrypt(self, ciphertext: bytes, padding: asym_padding.AsymmetricPadding) -> bytes:
        self.decrypts += 1
        return self._key.decrypt(ciphertext, padding)


def _with_bogus_keys(e2e: ET.Element, n: int) -> ET.Element:
    e2e = copy.deepcopy(e2e)
    for _ in range(n):
        bogus = ET.Element(KEY, {"cipher-algo": "RSAES-OAEP-SHA-256-MFG1"})
        bogus.text = base64.b64encode(os.urandom(256)).decode()
        e2e.insert(0, bogus)
    return e2e


def test_rsa_attempts_are_bounded(identity_2048):
    e2e = seal(
        STANZAS["message"], [Recipient(identity_2048.private_key.public_key())], timestamp=TS
    )
    key = CountingKey(identity_2048.private_key)
    assert open_envelope(_with_bogus_keys(e2e, 2), key).stanza_bytes == STANZAS["message"]
    assert key.decrypts == 3

    key = CountingKey(identity_2048.private_key)
    with pytest.raises(InvalidEnvelope):
        open_envelope(_with_bogus_keys(e2e, 50), key)
    assert 1 <= key.decrypts <= 4


def test_wrong_size_key_is_not_decrypted(identity_2048):
    e2e = seal(
        STANZAS["message"], [Recipient(identity_2048.private_key.public_key())], timestamp=TS
    )
    e2e.find(KEY).text = base64.b64encode(os.urandom(384)).decode()
    key = CountingKey(identity_2048.private_key)
    with pytest.raises(InvalidEnvelope):
        open_envelope(e2e, key)
    assert key.decrypts == 0


# --------------------------------------------------------------------------- sending misuse


def test_seal_without_recipients():
    with pytest.raises(EncryptionError):
        seal(STANZAS["message"], [], timestamp=TS)


@pytest.fixture(scope="module")
def weak_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


def test_seal_to_weak_key_refused(weak_key, identity_2048):
    with pytest.raises(EncryptionError):
        seal(STANZAS["message"], [Recipient(weak_key.public_key())], timestamp=TS)
    with pytest.raises(EncryptionError):
        seal(
            STANZAS["message"],
            [Recipient(identity_2048.private_key.public_key()), Recipient(weak_key.public_key())],
            timestamp=TS,
        )


def test_seal_to_non_rsa_key_refused():
    for key in (ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate()):
        with pytest.raises(EncryptionError):
            seal(STANZAS["message"], [Recipient(key.public_key())], timestamp=TS)


@pytest.mark.parametrize("lengths", [(15, 16), (16, 15), (17, 16), (16, 32), (0, 0)])
def test_seal_refuses_short_random(identity_2048, lengths):
    calls = iter(lengths)

    def bad_random(n: int) -> bytes:
        return b"\x01" * next(calls)

    with pytest.raises(EncryptionError):
        seal(
            STANZAS["message"],
            [Recipient(identity_2048.private_key.public_key())],
            timestamp=TS,
            random_bytes=bad_random,
        )


def test_seal_draws_key_length_for_each_cipher(identity_2048):
    for cipher, expected in ((AES_128_CBC, [16, 16]), (AES_256_CBC, [32, 16])):
        asked: list[int] = []

        def rnd(n: int, asked: list[int] = asked) -> bytes:
            asked.append(n)
            return os.urandom(n)

        seal(
            STANZAS["message"],
            [Recipient(identity_2048.private_key.public_key())],
            timestamp=TS,
            cipher=cipher,
            random_bytes=rnd,
        )
        assert sorted(asked) == sorted(expected)


# --------------------------------------------------------------------------- input spellings


def test_accepts_mac_data_instead_of_mac_hash(identity_2048, build_envelope, make_plain):
    stanza = STANZAS["message"]
    e2e = build_envelope(
        make_plain(stanza), identity_2048.private_key.public_key(), mac_attr="mac-data"
    )
    assert e2e.find(DATA).get("mac-hash") is None
    assert open_envelope(e2e, identity_2048.private_key).stanza_bytes == stanza


def test_accepts_mac_data_from_sealed_envelope(identity_2048):
    e2e = seal(STANZAS["iq"], [Recipient(identity_2048.private_key.public_key())], timestamp=TS)
    data = e2e.find(DATA)
    data.set("mac-data", data.attrib.pop("mac-hash"))
    assert open_envelope(e2e, identity_2048.private_key).stanza_bytes == STANZAS["iq"]


def test_accepts_agreeing_mac_hash_and_mac_data(identity_2048):
    e2e = seal(STANZAS["iq"], [Recipient(identity_2048.private_key.public_key())], timestamp=TS)
    data = e2e.find(DATA)
    data.set("mac-data", data.get("mac-hash"))
    assert open_envelope(e2e, identity_2048.private_key).stanza_bytes == STANZAS["iq"]


@pytest.mark.parametrize("name", ["RSAES-OAEP-SHA-256-MGF1", "RSAES-OAEP-SHA-256-MFG1"])
@pytest.mark.parametrize("mac_attr", ["mac-hash", "mac-data"])
def test_accepts_both_key_transport_spellings(
    identity_2048, build_envelope, make_plain, name, mac_attr
):
    stanza = STANZAS["presence"]
    e2e = build_envelope(
        make_plain(stanza),
        identity_2048.private_key.public_key(),
        key_algo=name,
        mac_attr=mac_attr,
        cipher="AES-256-CBC-PKCS5-WITH-IV",
    )
    assert open_envelope(e2e, identity_2048.private_key).stanza_bytes == stanza


def test_emits_draft_spelling(identity_2048):
    e2e = seal(STANZAS["iq"], [Recipient(identity_2048.private_key.public_key())], timestamp=TS)
    assert e2e.find(KEY).get("cipher-algo") == "RSAES-OAEP-SHA-256-MFG1"
    assert set(e2e.find(DATA).attrib) == {"cipher-algo", "mac-algo", "mac-hash"}


def test_draft_style_pretty_printed_envelope_opens(identity_2048):
    """Whitespace in base64 text and between elements, as in the draft's examples."""
    stanza = STANZAS["message"]
    e2e = seal(stanza, [Recipient(identity_2048.private_key.public_key())], timestamp=TS)
    k, t = e2e.find(KEY).text, e2e.find(DATA).text
    wrap = "\n         ".join
    xml = (
        f'<e2e   xmlns="{NS}">\n'
        f'  <key    cipher-algo="RSAES-OAEP-SHA-256-MFG1">\n         '
        f"{wrap(k[i : i + 63] for i in range(0, len(k), 63))}\n  </key>\n"
        f'  <data   cipher-algo="AES-128-CBC-PKCS5-WITH-IV"\n          mac-algo="HMACSHA256"\n'
        f'          mac-data="{e2e.find(DATA).get("mac-hash")}">\n         '
        f"{wrap(t[i : i + 63] for i in range(0, len(t), 63))}\n  </data>\n</e2e>"
    )
    assert open_envelope(ET.fromstring(xml), identity_2048.private_key).stanza_bytes == stanza


# --------------------------------------------------------------------------- key transport


def test_pkcs1v15_key_transport_refused(identity_2048, build_envelope, make_plain):
    plain = make_plain(STANZAS["message"])
    pub = identity_2048.private_key.public_key()
    # positive control: the same helper with OAEP opens
    assert open_envelope(build_envelope(plain, pub), identity_2048.private_key).stanza_bytes
    for name in ("RSAES-OAEP-SHA-256-MFG1", "RSAES-PKCS1-v1_5", "RSAES-PKCS1-V1_5"):
        e2e = build_envelope(plain, pub, key_padding=asym_padding.PKCS1v15(), key_algo=name)
        with pytest.raises(InvalidEnvelope):
            open_envelope(e2e, identity_2048.private_key)


@pytest.mark.parametrize(
    "padding",
    [
        asym_padding.OAEP(asym_padding.MGF1(hashes.SHA1()), hashes.SHA1(), None),
        asym_padding.OAEP(asym_padding.MGF1(hashes.SHA1()), hashes.SHA256(), None),
        asym_padding.OAEP(asym_padding.MGF1(hashes.SHA256()), hashes.SHA1(), None),
        asym_padding.OAEP(asym_padding.MGF1(hashes.SHA256()), hashes.SHA256(), b"label"),
    ],
    ids=["sha1-sha1", "sha256-mgf1sha1", "sha1-mgf1sha256", "label"],
)
def test_other_oaep_parameters_refused(identity_2048, build_envelope, make_plain, padding):
    e2e = build_envelope(
        make_plain(STANZAS["message"]), identity_2048.private_key.public_key(), key_padding=padding
    )
    with pytest.raises(InvalidEnvelope):
        open_envelope(e2e, identity_2048.private_key)


# --------------------------------------------------------------------------- size limit


class NoRSAKey:
    """A private key that records any use: proves a refusal came before RSA."""

    def __init__(self) -> None:
        self.used: list[str] = []

    @property
    def key_size(self) -> int:
        self.used.append("key_size")
        return 2048

    def decrypt(self, *args: object, **kwargs: object) -> bytes:
        self.used.append("decrypt")
        raise AssertionError("RSA work done")

    def __getattr__(self, name: str) -> object:
        self.used.append(name)
        raise AttributeError(name)


def _padded(e2e: ET.Element, extra: int) -> ET.Element:
    """The same envelope, with ``extra`` characters of whitespace inside <data/>."""
    e2e = copy.deepcopy(e2e)
    data = e2e.find(DATA)
    data.text = data.text + " " * extra
    return e2e


def test_oversized_envelope_refused_before_rsa(identity_2048):
    stanza = STANZAS["message"]
    e2e = seal(stanza, [Recipient(identity_2048.private_key.public_key())], timestamp=TS)
    big = _padded(e2e, 300 * 1024)
    # the whitespace is harmless: with a larger limit, it opens
    assert open_envelope(big, identity_2048.private_key, max_size=10**7).stanza_bytes == stanza
    # with the default limit it is refused, and the key is never touched
    stub = NoRSAKey()
    with pytest.raises(InvalidEnvelope):
        open_envelope(big, stub)
    assert stub.used == []
    # positive control: a normal envelope does reach the RSA step with the stub
    stub = NoRSAKey()
    with pytest.raises(InvalidEnvelope):
        open_envelope(e2e, stub)
    assert "decrypt" in stub.used


def test_oversized_real_ciphertext_refused_before_rsa(identity_2048):
    stanza = b"<message xmlns='jabber:client'><body>" + b"y" * 200_000 + b"</body></message>"
    e2e = seal(stanza, [Recipient(identity_2048.private_key.public_key())], timestamp=TS)
    stub = NoRSAKey()
    with pytest.raises(InvalidEnvelope):
        open_envelope(e2e, stub)
    assert stub.used == []
    assert open_envelope(e2e, identity_2048.private_key, max_size=512 * 1024).stanza_bytes


def test_oversized_attribute_refused_before_rsa(identity_2048):
    e2e = seal(
        STANZAS["message"], [Recipient(identity_2048.private_key.public_key())], timestamp=TS
    )
    e2e.set("junk", "a" * (257 * 1024))
    stub = NoRSAKey()
    with pytest.raises(InvalidEnvelope):
        open_envelope(e2e, stub)
    assert stub.used == []


def test_max_size_parameter_is_honoured(identity_2048):
    e2e = seal(
        STANZAS["message"], [Recipient(identity_2048.private_key.public_key())], timestamp=TS
    )
    stub = NoRSAKey()
    with pytest.raises(InvalidEnvelope):
        open_envelope(e2e, stub, max_size=100)
    assert stub.used == []


# --------------------------------------------------------------------------- opacity


def _failures(identity, outsider):
    """(name, zero-argument callable raising InvalidEnvelope) for many failure paths."""
    good = seal(STANZAS["message"], [Recipient(identity.private_key.public_key())], timestamp=TS)
    key = identity.private_key

    def mutated(fn):
        e2e = copy.deepcopy(good)
        fn(e2e)
        return lambda: open_envelope(e2e, key)

    def set_attr(tag, name, value):
        return mutated(lambda e: e.find(tag).set(name, value))

    def set_text(tag, value):
        return mutated(lambda e: setattr(e.find(tag), "text", value))

    def flip_t(e):
        t = bytearray(base64.b64decode(e.find(DATA).text))
        t[20] ^= 1
        e.find(DATA).text = base64.b64encode(bytes(t)).decode()

    t = base64.b64decode(good.find(DATA).text)
    return [
        ("wrong-tag", mutated(lambda e: setattr(e, "tag", "{urn:other}e2e"))),
        ("too-big", lambda: open_envelope(good, key, max_size=10)),
        ("no-data", mutated(lambda e: e.remove(e.find(DATA)))),
        ("unknown-cipher", set_attr(DATA, "cipher-algo", "DES-CBC")),
        ("unknown-mac", set_attr(DATA, "mac-algo", "HMACMD5")),
        ("mac-disagree", set_attr(DATA, "mac-data", base64.b64encode(b"\0" * 32).decode())),
        ("short-mac", set_attr(DATA, "mac-hash", base64.b64encode(b"\0" * 31).decode())),
        ("short-t", set_text(DATA, base64.b64encode(t[:16]).decode())),
        ("bad-base64", set_text(DATA, "!!!!")),
        ("no-key", mutated(lambda e: e.remove(e.find(KEY)))),
        ("other-key", lambda: open_envelope(good, outsider.private_key)),
        ("cipher-swap", set_attr(DATA, "cipher-algo", "AES-256-CBC-PKCS5-WITH-IV")),
        ("mac-mismatch", mutated(flip_t)),
    ]


FAILURE_NAMES = [
    "wrong-tag",
    "too-big",
    "no-data",
    "unknown-cipher",
    "unknown-mac",
    "mac-disagree",
    "short-mac",
    "short-t",
    "bad-base64",
    "no-key",
    "other-key",
    "cipher-swap",
    "mac-mismatch",
]


def _raise(identity, outsider, name) -> InvalidEnvelope:
    fn = dict(_failures(identity, outsider))[name]
    with pytest.raises(InvalidEnvelope) as info:
        fn()
    return info.value


@pytest.mark.parametrize("name", FAILURE_NAMES)
def test_invalid_envelope_is_opaque(identity_2048, outsider_2048, name):
    exc = _raise(identity_2048, outsider_2048, name)
    assert type(exc) is InvalidEnvelope
    assert str(exc) == MESSAGE
    assert exc.args == (MESSAGE,)
    assert exc.__cause__ is None
    # nothing chained is shown either: no context, or a suppressed one
    assert exc.__context__ is None or exc.__suppress_context__
    assert not [a for a in vars(exc) if not a.startswith("__")]


def test_invalid_envelope_raised_inside_except_block_chains_nothing(identity_2048):
    e2e = seal(
        STANZAS["message"], [Recipient(identity_2048.private_key.public_key())], timestamp=TS
    )
    e2e.find(DATA).text = "@@@@"
    with pytest.raises(InvalidEnvelope) as info:
        open_envelope(e2e, identity_2048.private_key)
    # bad base64 raised binascii.Error internally: it must not be visible
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


@pytest.mark.parametrize("name", FAILURE_NAMES)
def test_invalid_envelope_suppresses_context_on_every_path(identity_2048, outsider_2048, name):
    exc = _raise(identity_2048, outsider_2048, name)
    assert exc.__cause__ is None
    assert exc.__context__ is None


def test_mac_is_hmac_of_r_keyed_by_t(identity_2048):
    """M = HMAC-SHA256(key=T, msg=R), checked with the R unwrapped independently."""
    e2e = seal(
        STANZAS["message"], [Recipient(identity_2048.private_key.public_key())], timestamp=TS
    )
    r = identity_2048.private_key.decrypt(
        base64.b64decode(e2e.find(KEY).text),
        asym_padding.OAEP(asym_padding.MGF1(hashes.SHA256()), hashes.SHA256(), None),
    )
    t = base64.b64decode(e2e.find(DATA).text)
    m = base64.b64decode(e2e.find(DATA).get("mac-hash"))
    assert len(r) == 16
    assert m == hmac.new(t, r, hashlib.sha256).digest()
    assert m != hmac.new(r, t, hashlib.sha256).digest()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.find(DATA).set("cipher-algo", "AES-192-CBC-PKCS5-WITH-IV"),
        lambda e: e.find(DATA).set("mac-algo", "HMACSHA1"),
        lambda e: e.find(DATA).set("mac-hash", base64.b64encode(b"\0" * 20).decode()),
        lambda e: e.find(DATA).set("mac-data", base64.b64encode(b"\0" * 32).decode()),
        lambda e: setattr(e.find(DATA), "text", base64.b64encode(b"\0" * 33).decode()),
        lambda e: setattr(e.find(DATA), "text", base64.b64encode(b"\0" * 16).decode()),
        lambda e: setattr(e.find(DATA), "text", "####"),
        lambda e: e.append(copy.deepcopy(e.find(DATA))),
    ],
    ids=[
        "cipher",
        "mac-algo",
        "mac-length",
        "mac-disagree",
        "t-not-block-multiple",
        "t-only-iv",
        "t-bad-base64",
        "two-data",
    ],
)
def test_cheap_structural_checks_come_before_rsa(identity_2048, mutate):
    """Whatever can be refused without the private key is refused before any RSA work
    (a peer cannot make us spend an RSA decryption on an obviously broken envelope)."""
    e2e = seal(
        STANZAS["message"], [Recipient(identity_2048.private_key.public_key())], timestamp=TS
    )
    mutate(e2e)
    stub = NoRSAKey()
    with pytest.raises(InvalidEnvelope):
        open_envelope(e2e, stub)
    assert stub.used == []


def test_a_broken_unnamed_key_before_ours_does_not_lock_us_out(identity_2048):
    e2e = seal(
        STANZAS["message"], [Recipient(identity_2048.private_key.public_key())], timestamp=TS
    )
    decoy = ET.Element(KEY, {"cipher-algo": "RSAES-OAEP-SHA-256-MFG1"})
    decoy.text = "!!not base64!!"
    e2e.insert(0, decoy)
    assert open_envelope(e2e, identity_2048.private_key).stanza_bytes == STANZAS["message"]


def test_whitespace_only_base64_is_refused():
    from slixmpp_objenc.core.xmlsafe import b64decode_strict

    with pytest.raises(ValueError):
        b64decode_strict(" \n\t ")


def test_naive_timestamp_is_local_misuse(identity_2048):
    from datetime import datetime as naive_dt

    with pytest.raises(EncryptionError):
        seal(
            STANZAS["message"],
            [Recipient(identity_2048.private_key.public_key())],
            timestamp=naive_dt(2026, 1, 1),
        )
