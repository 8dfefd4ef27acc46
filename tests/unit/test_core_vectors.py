"""Vectors. (1) Deterministic: ``random_bytes`` and the timestamp are injected,
and T and M are recomputed here with ``cryptography``/``hmac`` directly (and
pinned as literals). (2) Static: an <e2e/> produced once by ``seal`` and pasted
below, for a fixed RSA key, must keep opening to the same bytes: this guards
wire compatibility against future changes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from slixmpp_objenc.core import (
    AES_128_CBC,
    AES_256_CBC,
    InvalidEnvelope,
    Recipient,
    open_envelope,
    seal,
)
from slixmpp_objenc.core.envelope import build_plain

NS = "urn:ietf:params:xml:ns:xmpp-objenc:0"
E2E, KEY, DATA = f"{{{NS}}}e2e", f"{{{NS}}}key", f"{{{NS}}}data"
OAEP = asym_padding.OAEP(asym_padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)


# --------------------------------------------------------------------------- deterministic


def deterministic_random() -> tuple[Callable[[int], bytes], list[bytes]]:
    """First draw: 00 01 02 ...; second draw: a0 a1 a2 ...; records what it gave."""
    given: list[bytes] = []
    starts = iter((0x00, 0xA0, 0x40, 0x60))

    def random_bytes(n: int) -> bytes:
        start = next(starts)
        out = bytes((start + i) & 0xFF for i in range(n))
        given.append(out)
        return out

    return random_bytes, given


def independent_t_and_m(e_prime: bytes, r: bytes, iv: bytes) -> tuple[bytes, bytes]:
    padder = sym_padding.PKCS7(128).padder()
    body = padder.update(e_prime) + padder.finalize()
    enc = Cipher(algorithms.AES(r), modes.CBC(iv)).encryptor()
    t = iv + enc.update(body) + enc.finalize()
    return t, hmac.new(t, r, hashlib.sha256).digest()


VECTORS = [
    pytest.param(
        AES_128_CBC,
        b"<message xmlns='jabber:client' to='romeo@example.net' type='chat'>"
        b"<body>Hi</body></message>",
        datetime(2010, 6, 29, 2, 15, 21, 12_345, tzinfo=UTC),
        "2010-06-29T02:15:21.012Z",
        "oKGio6SlpqeoqaqrrK2uryQOP0vkNNjcdGMyuF0qRJJOOtMqi13613Tz2kLcgJ8MfEFgboke1ogpjSApaAglvlvK"
        "Z+SJDgsD4we7Ey3EBzWGYrD0JT/RyjRXCM44tg0KUEtofMAbq0jXpEKquK2jQgH/30KXzeGEYTbooun2M9uPXBPR"
        "LTlcCplfX/5Bo2wMsVBM7XCy9ru7wwvVsv7qo5SlzF39uiCZe4oe3l+/MBPTR00Caf0C7GoYDojXro45VaJG0tz/"
        "k8hgjdGj9mVca73nH4o2LhMQOks1cIWCkf6VkGTF0Fmn9aq7G+DoJ2Eo",
        "Wb6eNwhln6xMEH19oK8EdAy30JwVAW0CtmemPIjM9WY=",
        id="aes128-message",
    ),
    pytest.param(
        AES_256_CBC,
        "<iq xmlns='jabber:client' type='set' id='\u00e9'><query xmlns='jabber:iq:private'/>"
        "</iq>".encode(),
        datetime(1999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
        "1999-12-31T23:59:59.999Z",
        "oKGio6SlpqeoqaqrrK2urxY6yUVglS1YsngyELW/TfK+8Cu525bt5YsPex00Ui9zws+UAqe5q4Prx5j+z6OkVWLe"
        "PghqETXVwy4H+isbyixRBMkHn+cnYX4XQ2DzrqVbFPNBdKU6uSOBDe59m7uRNvx2DWqvO9twlt7KhYAA2YTRSKxI"
        "nYW32+gpzHxAQVuEGEhmfmOdfcVfpzwCzGCcXgBPEsH3hODW9WK2ivECra/8gEtA0okeHWSNZXqwplG312nIU3JH"
        "1J7wbOab0XAiRAFqr3oSI2GQOZP7h7jnuh9XjenqefQ+C4t7K1oIfbWa",
        "rKlM6ptqn+1W7B8g/b2wntd1y0MbtavFrt9JjFA824c=",
        id="aes256-iq",
    ),
]


@pytest.mark.parametrize(("cipher", "stanza", "ts", "ts_text", "t_b64", "m_b64"), VECTORS)
def test_deterministic_vector(identity_2048, cipher, stanza, ts, ts_text, t_b64, m_b64):
    random_bytes, given = deterministic_random()
    e2e = seal(
        stanza,
        [Recipient(identity_2048.certificate.public_key())],
        timestamp=ts,
        cipher=cipher,
        random_bytes=random_bytes,
    )

    # E' exactly, written out here by hand
    e_prime = (
        f"<plain xmlns='urn:ietf:params:xml:ns:xmpp-objenc:0' timestamp='{ts_text}'>".encode()
        + base64.b64encode(stanza)
        + b"</plain>"
    )
    assert build_plain(stanza, ts) == e_prime

    # R from K, independently of the core; R and IV are the two injected draws
    k = base64.b64decode(e2e.find(KEY).text, validate=True)
    assert len(k) == 256
    r = identity_2048.private_key.decrypt(k, OAEP)
    assert len(r) == cipher.key_length
    t_text, m_text = e2e.find(DATA).text, e2e.find(DATA).get("mac-hash")
    t = base64.b64decode(t_text, validate=True)
    iv = t[:16]
    assert sorted(given) == sorted([r, iv])
    assert len(given) == 2

    expected_t, expected_m = independent_t_and_m(e_prime, r, iv)
    assert t_text == base64.b64encode(expected_t).decode()
    assert m_text == base64.b64encode(expected_m).decode()
    # and the literals pinned when this vector was written (R = 00 01 .., IV = a0 a1 ..)
    assert (r, iv) == (bytes(range(cipher.key_length)), bytes(range(0xA0, 0xB0)))
    assert t_text == t_b64
    assert m_text == m_b64

    # decrypting T by hand gives E' exactly
    dec = Cipher(algorithms.AES(r), modes.CBC(iv)).decryptor()
    unpadder = sym_padding.PKCS7(128).unpadder()
    assert unpadder.update(dec.update(t[16:]) + dec.finalize()) + unpadder.finalize() == e_prime

    # the decoded structure
    assert e2e.tag == E2E
    assert [c.tag for c in e2e] == [KEY, DATA]
    assert e2e.attrib == {}
    assert e2e.find(KEY).attrib == {"cipher-algo": "RSAES-OAEP-SHA-256-MFG1"}
    assert e2e.find(DATA).attrib == {
        "cipher-algo": cipher.name,
        "mac-algo": "HMACSHA256",
        "mac-hash": m_b64,
    }
    # base64 without line breaks, canonical (re-encoding gives the same text)
    for text in (e2e.find(KEY).text, t_text, m_text):
        assert re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", text)
        assert base64.b64encode(base64.b64decode(text)).decode() == text

    serialized = ET.tostring(e2e, encoding="unicode")
    assert NS in serialized
    opened = open_envelope(ET.fromstring(serialized), identity_2048.private_key)
    assert opened.stanza_bytes == stanza
    assert opened.digest == expected_m
    assert opened.cipher == cipher.name
    assert opened.timestamp == datetime.fromisoformat(ts_text.replace("Z", "+00:00"))


def test_key_id_emitted_verbatim(identity_2048):
    random_bytes, _ = deterministic_random()
    e2e = seal(
        b"<message xmlns='jabber:client'/>",
        [Recipient(identity_2048.certificate.public_key(), identity_2048.fingerprint)],
        timestamp=datetime(2010, 6, 29, tzinfo=UTC),
        random_bytes=random_bytes,
    )
    assert e2e.find(KEY).attrib == {
        "cipher-algo": "RSAES-OAEP-SHA-256-MFG1",
        "cert-sha256": identity_2048.fingerprint,
    }
    assert (
        identity_2048.fingerprint
        == hashlib.sha256(
            identity_2048.certificate.public_bytes(serialization.Encoding.DER)
        ).hexdigest()
    )


def test_build_plain_formats():
    ts = datetime(2010, 6, 29, 2, 15, 21, 12_000, tzinfo=UTC)
    assert build_plain(b"<message xmlns='jabber:client'/>", ts) == (
        b"<plain xmlns='urn:ietf:params:xml:ns:xmpp-objenc:0' "
        b"timestamp='2010-06-29T02:15:21.012Z'>"
        b"PG1lc3NhZ2UgeG1sbnM9J2phYmJlcjpjbGllbnQnLz4=</plain>"
    )
    # S' is opaque: bytes are encoded as given, whatever they are
    assert build_plain(b"\xff\x00", ts).endswith(b">/wA=</plain>")


def test_draft_example_plain_decodes():
    """The base64 in the draft's <plain/> example is the message stanza S'."""
    b64 = (
        "PG1lc3NhZ2UgeG1sbnM9ImphYmJlcjpjbGllbnQiIGZyb209Imp1bGlldEBjYXB"
        "1bGV0Lm5ldC9iYWxjb255IiB0bz0icm9tZW9AbW9udGVndWUubmV0IiB0eXBlPS"
        "JjaGF0Ij48dGhyZWFkPmM2MzczODI0LWEzMDctNDBkZC04ZmUwLWJhZDZlNzI5O"
        "WFkMDwvdGhyZWFkPjxib2R5PldoZXJlZm9yZSBhcnQgdGhvdSwgUm9tZW8/PC9i"
        "b2R5PjwvbWVzc2FnZT4="
    )
    stanza = base64.b64decode(b64)
    assert stanza.startswith(b'<message xmlns="jabber:client"')
    ts = datetime(2010, 6, 29, 2, 15, 21, 12_000, tzinfo=UTC)
    assert build_plain(stanza, ts).endswith(b">" + b64.encode() + b"</plain>")


# --------------------------------------------------------------------------- static

# A throwaway, test-only RSA-2048 key (openssl genpkey), public on purpose.
STATIC_KEY_PEM = b"""\
-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC+bGPefet0KOnm
4n4vrWOUnQuSl83SxCvCCt6/ntaKRmmE/o91Cbq1dDE+xMZH4+VcJd25DU7gYD3/
WKD0heJRiaOVl+WOjD0JDN/ikecDMmuo/hhx9r56xxCCoeXCjnuh+8uiy4ZXc/Nj
AH19HEnDY3NArYOWdywUpAfUQDrLZwt2QvpfqxeRbXKAnJ5/4tA6pkVO2mIpz/Dv
L0LfoqHFF10Jt0QH0ucAbGHS+jWczVkPzG38IoqciikgSk8dkWtxYcvZYtg/qc0i
gFd4EkpRuHOehbav28bqKR0AUCrD1RKPh0u7WrBspE1NiojOanNM6dSr1+9vVAnS
sOTTeMRxAgMBAAECggEAEDxWHIWAcog9fyvPBfoi3CwyrSZHzIFg2LvMB6r/kE0W
GJqKuTgh5PA59afZ3w3Jg7yPxcQidkOGbbPND2Qt6nVRjwLjNe7zkka4fQ0jFPTy
1HcLtwXKclXwLK8ok5jJ5kL9dw0i0GiItyd2y5jCmkfrrvdMWaMiDUV6DGkIikiC
VgL5It7eTMMGo07yEItv/fy49+yKZA3xpnfdUpjFEdwBGHlhIHDig7cZ5284ryQn
ooVQqH9pja75YmZeN7gioK32cnImtIH3JLob0KJK5AQn/tWMMuK9cJkeq5+W50HK
pX6ndQm3oYB+IjoaIQ+ef+bXbT+Clgd9KiUxTCslZQKBgQDxsbuOK/hanAYKVmU6
QkqwsSyirz0dBJB/936w/GKcb9k1Z/bIqvEuBfmZ+ek7bhFTwbiynnp5C7EEAr7+
MKRl2OHIUyXDo4tcidBxxVQyA9CwaKCInMXnSc/8Nlh/0cm8p4NjO3ekT8PyLCeS
QpSGBLh2Z0uVZORaX5pRfjagtQKBgQDJscbVqaLPTSWNmlrhdqrk3RC42SgtPMf4
d8xAXNCL6Dw4oUiOy+DXugoQ7o8cUhZ1FZcP+3v4RZXOVkkNL0t/ldazUZ27Ec79
lO4iZC1dpFIe0SuJwJ9EjTq01rzgBGVAPu88kmNR+EmwUumnIXo0Fl2KkPhAooOb
FDCimHt2TQKBgQCqule4aAr5Rnll1/2Nl8JW6fCTwqGy28SPAG736nBl/QQ8G4JR
4Z6YWhQk1koQdwG6Xn9vfU8aLk4OfToZKJcYcombDlEAz4fkCF274B5HbjZ+RooP
tl59sMBAcss1DyYoI1RGRn2PDeFmMhaJ1IpB2RfMW88iarB7vkiuBC/meQKBgBpS
ijmORwI49kKxt1SfcRQnSaxmItksioiB0fVAZ7MqntlhKx//uZtN20x0ZdbzW5zy
MWHTl01Cf5eLKUOAPaEsA/YpG6WzYEk165IvcsA61sDQ2ZbDvcVrjRLWx5WQ3Uny
LLTCAhZLigpp97ZpJxKvLIwN+WguDXDqxKIjtlEtAoGBAKooKafihrEdOIn8ZYO/
THr0eKaZ5nmzG7YyIRyyDbo67ku+Um7ibaBvzQEo8cv6eVYISRAcooL/Gtsc405L
X4n2gVe7Af1Ln48J1p0klbw4VyrTOChWjZf2iPbrV06TNmYbH1DR4qO17EuB9IJV
5nPrGEXd8k7pwdandbALE0kt
-----END PRIVATE KEY-----
"""

STATIC_VECTOR_A = (
    "<ns0:e2e xmlns:ns0='urn:ietf:params:xml:ns:xmpp-objenc:0'><ns0:key cipher-algo='RSAES-OA"
    "EP-SHA-256-MFG1'>ngjFulcmZIHnm7Q3lSOSlsr5p6s/X0yjNrFwXFGQm25cDvwN9jQi6tP34F3tMzfQ/3aIKDA"
    "TYSie4h+0iHyRY+GFqshlTXT9KWfyFeX6GsbrdqleiaXEGqHjLm1+6MLO+yx2SW04hkLBkCuqJPItYfbYfQKiq90"
    "ejRIxSvHaCdR//OSiBl+NvVbfpGYW4BdJezx202Qyzh9G7RDbBwhXINDYPNbczH3d4sNsTAoHhbm5ixBQkOcgTrP"
    "D20UYHvB9Z5kX0Yzic0szhbRJzDM1nuSEeOPVTjGjQePM1UuOOB4tsKJgILQju1xtTy3PBCLa+7MnxVExUqbSEBf"
    "l+fyoiw==</ns0:key><ns0:data cipher-algo='AES-128-CBC-PKCS5-WITH-IV' mac-algo='HMACSHA25"
    "6' mac-hash='jzAVE6iIZebrLTPEx5v8+Q4jXvD5onPbGy7Ee8iswPo='>f3WvcqeY0VK+ggBuM29+o/ayjT0E4"
    "LnxSjNHMwQQY0OWtLX9FGjt+7QAo2rLpdCCdBfBiQPMj+O7uYCreVCd2EeBVlQuNYdqyiyFgLPOTmy1jhhuoYMs6"
    "fV0jMlz7j9lohTxPztIvfw2AGDHF0RBdJuwf9ae+jNrR6s8wwjfXh21uL3GOcIeWJMkPKlqBwmrKrAWxy/eTsVHP"
    "IZu38tqh3IqgxeaxXNm36kcpPT7Bcb76JURFV7vhvMIFVTlBMgrwzasHOWngutrdSqtHAm92JmrK4YNBYH8QkF9R"
    "XYCirIBMK0v2nnY2AdKv/pYHFbheAtSywB/bCfPR1kzbotB023L/dPQmYc8/SzQRgqTNqRewMaCQeAnKC3j5FCYB"
    "vbO8syr26JFhB3ursx37lqFUOIsNf1iXc7n+FNm2Btv0hUJfQRb7WOOg/7j3DekpGrGVaqPXXyubqXscJ6jDSYoJ"
    "N2/IuuvF/XNDhqEdEcAtnc=</ns0:data></ns0:e2e>"
)
STATIC_STANZA_A = (
    "<message xmlns='jabber:client' from='juliet@capulet.net/balcony' id='183ef129' "
    "to='romeo@montague.net' type='chat'><body>Wherefore art thou, Romeo? \u2014 "
    "\u00e9t\u00e9 \U0001f339</body></message>"
).encode()

STATIC_KEY_ID_B = "76134da9a61ee8b22d88b8bd21eed434ffc34fdcbc7ce5712a8ae16133ccb6eb"
STATIC_VECTOR_B = (
    "<ns0:e2e xmlns:ns0='urn:ietf:params:xml:ns:xmpp-objenc:0'><ns0:key cipher-algo='RSAES-OA"
    "EP-SHA-256-MFG1' cert-sha256='76134da9a61ee8b22d88b8bd21eed434ffc34fdcbc7ce5712a8ae16133"
    "ccb6eb'>Xb3z4Li/9FxbNts0bC+dAtqfVWWFtNU1+H/qf1htuUZkWcvH+ZL4fEl3Uh4t4giFs1JiXq81Yp6Ny2tK"
    "Bg52q370CvEiLNqqAYy51NrzeMOnSy8NOW7oKE96ZTsq4RxBoty36fkf7Y8gpWUQw7GoSySh9CJaNPvsdeluiwTU"
    "17hzqcO71ia+YkhriHrXsBLoGecnL/e/PIBEwRyY79q83Re8roPuBmHmH+o4MW4YOPGgtQhVGAsyB86+QuaJRdbL"
    "hiGhjVvYRKSGxxqXmyWhymNrpNp1s48TfKmYlciM+4fKZ/8xOFY+Ap8xmGg3TPqd1pEQh4q80vI/9nwOuPuZgQ=="
    "</ns0:key><ns0:data cipher-algo='AES-256-CBC-PKCS5-WITH-IV' mac-algo='HMACSHA256' mac-ha"
    "sh='8fIDQ5D4zgycXcLMpHx1oYLQdDRfbJ36Qg77HaKVGrM='>aWI0dBXU04IFM/+t/umXUSK6s/Y00TOs8AaNtL"
    "xrUt/HTc60+NtSS48+c7678WAyj1vOdtb4K2mjHRAMFss+NPTZ4OFONzm3T+YA9EVeg77llZpM139YvWeoMptLJj"
    "j/dGeboDn0XBsPRRSbNfa+lOre1gBYeJTr88wIjWn/xl/F96Uk9Tu3uX1nyQnz76yzo88UoD/3Mqn54G+FjBT2Vl"
    "dfuthuG18iDLGA2SMOs/4shDy5gzR8BKXzgDKyGXeioUr7DU/VYOwdb7cMqwwDAVVP8lk0extRzhFveZD4mADTWu"
    "71P5APwJLjNhtweevK5RB2kM5t29493EHsP24EfOUhdlo2TJWNDawG9Wqj3kKVYdXUiVumYVT5uuOTdydBWoOxXl"
    "JASlq+Vu2ipUuAy8jDCqwG2BR3lA9vuwOL0CVCePtWtnTpNZoUjj3SO3WCYzSTDRHrG5BPEPHOA1PHvVpb+2T6PH"
    "qEY7LfYumeIg0=</ns0:data></ns0:e2e>"
)
STATIC_STANZA_B = (
    b"<iq xmlns='jabber:client' from='juliet@capulet.net/crypt' id='a543bc3ee' "
    b"to='romeo@montague.net/crypt' type='result'><mood xmlns='http://jabber.org/protocol/mood'>"
    b"<dejected/></mood></iq>"
)


@pytest.fixture(scope="module")
def static_key() -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(STATIC_KEY_PEM, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    return key


def test_static_vector_a(static_key):
    e2e = ET.fromstring(STATIC_VECTOR_A)
    opened = open_envelope(e2e, static_key)
    assert opened.stanza_bytes == STATIC_STANZA_A
    assert opened.timestamp == datetime(2010, 6, 29, 2, 15, 21, 12_000, tzinfo=UTC)
    assert opened.cipher == "AES-128-CBC-PKCS5-WITH-IV"
    assert opened.digest == base64.b64decode("jzAVE6iIZebrLTPEx5v8+Q4jXvD5onPbGy7Ee8iswPo=")
    assert opened.stanza.find("{jabber:client}body").text.endswith("\u00e9t\u00e9 \U0001f339")


def test_static_vector_b_named_key(static_key):
    e2e = ET.fromstring(STATIC_VECTOR_B)
    spki = static_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert hashlib.sha256(spki).hexdigest() == STATIC_KEY_ID_B
    opened = open_envelope(e2e, static_key, key_id=STATIC_KEY_ID_B)
    assert opened.stanza_bytes == STATIC_STANZA_B
    assert opened.timestamp == datetime(2010, 6, 29, 2, 15, 22, 345_000, tzinfo=UTC)
    assert opened.cipher == "AES-256-CBC-PKCS5-WITH-IV"
    with pytest.raises(InvalidEnvelope):  # named key: not tried without our key_id
        open_envelope(e2e, static_key)


def test_static_vector_a_in_draft_style(static_key):
    """The same bytes, written the way the draft's examples are: default namespace,
    wrapped base64, ``mac-data`` and the MGF1 spelling."""
    e2e = ET.fromstring(STATIC_VECTOR_A)
    k, t = e2e.find(KEY).text, e2e.find(DATA).text
    mac = e2e.find(DATA).get("mac-hash")

    def wrap(s: str) -> str:
        return "\n        ".join(s[i : i + 63] for i in range(0, len(s), 63))

    xml = (
        f'<e2e xmlns="{NS}">\n  <key cipher-algo="RSAES-OAEP-SHA-256-MGF1">\n        '
        f"{wrap(k)}\n  </key>\n"
        f'  <data cipher-algo="AES-128-CBC-PKCS5-WITH-IV" mac-algo="HMACSHA256"\n'
        f'        mac-data="{mac}">\n        {wrap(t)}\n  </data>\n</e2e>'
    )
    assert open_envelope(ET.fromstring(xml), static_key).stanza_bytes == STATIC_STANZA_A


def test_static_vector_independently_decryptable(static_key):
    """The static vector, opened by hand: R via OAEP-SHA-256, M = HMAC(T, R), E'."""
    e2e = ET.fromstring(STATIC_VECTOR_A)
    r = static_key.decrypt(base64.b64decode(e2e.find(KEY).text), OAEP)
    t = base64.b64decode(e2e.find(DATA).text)
    assert hmac.new(t, r, hashlib.sha256).digest() == base64.b64decode(
        e2e.find(DATA).get("mac-hash")
    )
    dec = Cipher(algorithms.AES(r), modes.CBC(t[:16])).decryptor()
    unpadder = sym_padding.PKCS7(128).unpadder()
    e_prime = unpadder.update(dec.update(t[16:]) + dec.finalize()) + unpadder.finalize()
    assert e_prime == (
        b"<plain xmlns='urn:ietf:params:xml:ns:xmpp-objenc:0' timestamp='2010-06-29T02:15:21.012Z'>"
        + base64.b64encode(STATIC_STANZA_A)
        + b"</plain>"
    )


def test_static_vector_wrong_key(static_key, identity_2048):
    with pytest.raises(InvalidEnvelope):
        open_envelope(ET.fromstring(STATIC_VECTOR_A), identity_2048.private_key)
