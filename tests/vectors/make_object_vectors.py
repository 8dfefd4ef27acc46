"""Writes object-v1.json: fixed vectors for objects outside XMPP
(slixmpp_objenc.core.objects, docs/PROTOCOL.md "Objects"), one 3-chunk object
per profile (auth-1 for two devices with an introduction, auth-pq-1,
draft-rsa), with every input, every random draw and every intermediate
value, computed here a second time from ``cryptography`` and the HPKE layer
and checked against what the module writes. Run from the repository root:

    python tests/vectors/make_object_vectors.py

Deterministic: X25519 and Ed25519 keys from fixed bytes, the certificates of
the introduction with a fixed serial and dates (Ed25519 signs
deterministically), ``object_id``, ``R`` and each ``M_j`` through
``random_bytes``, HPKE's ephemeral keys through ``ephemeral_ikm``. ML-KEM
encapsulation and RSA-OAEP take their randomness inside ``cryptography``, so
the ML-KEM ``(ss, kem_ct)`` and the RSA key and whole draft-rsa object were
made once and are reused from the file already written (when they still
open): running this again writes the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

from cryptography import x509
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from slixmpp_objenc.core.algorithms import oaep_padding
from slixmpp_objenc.core.armor import armor
from slixmpp_objenc.core.auth_envelope import AuthRecipient, AuthSender
from slixmpp_objenc.core.authenticated import WRAP_SUITE
from slixmpp_objenc.core.certificates import Identity
from slixmpp_objenc.core.envelope import Recipient
from slixmpp_objenc.core.hpke import seal_auth
from slixmpp_objenc.core.hybrid import hybrid_psk
from slixmpp_objenc.core.identities import _builder, _key_usage, _name, issue_encryption_certificate
from slixmpp_objenc.core.objects import OBJECT_LABEL, open_object_stream, seal_object_stream

PATH = Path(__file__).with_name("object-v1.json")
SENDER_JID = "juliet@capulet.example"
RECIPIENT_JID = "romeo@montague.example"
CREATED = datetime(2026, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
CHUNK_SIZE = 64
PLAINTEXT = (
    b"But soft, what light through yonder window breaks? It is the east, and Juliet is"
    b" the sun. Arise, fair sun, and kill the envious moon, who is already sick."
)[:150]
SERIAL = 0x0B1EC7


def fixed(label: str, size: int) -> bytes:
    """Deterministic bytes: SHA-256 of a label, repeated to ``size``."""
    out, counter = b"", 0
    while len(out) < size:
        out += hashlib.sha256(f"objects/{label}/{counter}".encode()).digest()
        counter += 1
    return out[:size]


def sender_certificates() -> tuple[bytes, bytes]:
    """The sender's identity and encryption certificates (DER), deterministic."""
    identity_key = Ed25519PrivateKey.from_private_bytes(fixed("sender ed25519", 32))
    encryption = X25519PrivateKey.from_private_bytes(fixed("sender x25519", 32))
    start = CREATED - timedelta(days=1)
    name = _name(SENDER_JID)
    with mock.patch.object(x509, "random_serial_number", lambda: SERIAL):
        identity = (
            _builder(SENDER_JID, name, name, start, start + timedelta(days=3650))
            .public_key(identity_key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .sign(identity_key, None)
        )
        certificate = issue_encryption_certificate(
            identity_key, identity, encryption.public_key(), now=CREATED
        )
    der = serialization.Encoding.DER
    return identity.public_bytes(der), certificate.public_bytes(der)


def draws(*values: bytes) -> Any:
    """``random_bytes`` giving ``values`` in order (each of the size asked)."""
    queue = list(values)

    def random_bytes(size: int) -> bytes:
        value = queue.pop(0)
        assert len(value) == size
        return value

    return random_bytes


def u16(n: int) -> bytes:
    return struct.pack(">H", n)


def independent_payload(
    key: bytes, object_id: bytes, header: bytes, tag_keys: list[bytes]
) -> dict[str, Any]:
    """The chunks and trailer, from ``cryptography`` alone."""
    digest = hashlib.sha256(header).digest()
    info = OBJECT_LABEL + b" payload\x00" + digest
    okm = HKDF(hashes.SHA256(), 39, salt=object_id, info=info).derive(key)
    k, prefix = okm[:32], okm[32:]
    pieces = [PLAINTEXT[i : i + CHUNK_SIZE] for i in range(0, len(PLAINTEXT), CHUNK_SIZE)]
    if len(pieces[-1]) == CHUNK_SIZE:
        pieces.append(b"")
    chunks = []
    for index, plaintext in enumerate(pieces):
        last = index == len(pieces) - 1
        nonce = prefix + struct.pack(">I", index) + (b"\x01" if last else b"\x00")
        ct = AESGCM(k).encrypt(nonce, plaintext, digest)
        chunks.append({"nonce": nonce.hex(), "plaintext": plaintext.hex(), "ciphertext": ct.hex()})
    body = b"".join(bytes.fromhex(c["ciphertext"]) for c in chunks)
    transcript = hashlib.sha256(header + body).digest()
    tags = []
    for tag_key in tag_keys:
        mac = hmac.HMAC(tag_key, hashes.SHA256())
        mac.update(transcript)
        tags.append(mac.finalize())
    return {
        "H": digest.hex(),
        "hkdf_info": info.hex(),
        "K": k.hex(),
        "nonce_prefix": prefix.hex(),
        "chunks": chunks,
        "transcript": transcript.hex() if tag_keys else None,
        "tags": [t.hex() for t in tags],
        "object": (header + body + b"".join(tags)).hex(),
    }


def header_start(profile: str, object_id: bytes) -> bytes:
    """The prefix from its profile up to ``object_id`` (after magic and length)."""
    created_ms = 1777636800123
    assert datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=created_ms) == CREATED
    fields = bytes([len(profile)]) + profile.encode() + struct.pack(">QI", created_ms, CHUNK_SIZE)
    return fields + object_id


def frame(body: bytes, wraps_size: int) -> bytes:
    """magic, the header's length (header = this prefix and the wraps), ``body``."""
    return b"OBJENC\x00\x01" + struct.pack(">I", 12 + len(body) + wraps_size) + body


def auth_case(
    name: str, hybrid: bool, recipients: list[dict[str, Any]], introduce: bool, stored: Any
) -> dict[str, Any]:
    profile = "auth-pq-1" if hybrid else "auth-1"
    sender_key = X25519PrivateKey.from_private_bytes(fixed("sender x25519", 32))
    identity_der, encryption_der = sender_certificates()
    ids = hashlib.sha256(identity_der).digest(), hashlib.sha256(encryption_der).digest()
    sender = AuthSender(sender_key, *ids)
    object_id, key = fixed(f"{name} object_id", 32), fixed(f"{name} R", 32)
    tag_keys = [fixed(f"{name} {r['name']} M", 32) for r in recipients]
    ikms = [fixed(f"{name} {r['name']} ikmE", 32) for r in recipients]
    encapsulations: dict[bytes, tuple[bytes, bytes]] = {}
    for r in recipients:
        if hybrid:
            ss, kem_ct = stored.get(f"{name}/{r['name']}", (b"", b""))
            if not ss or r["kem_private"].decapsulate(kem_ct) != ss:
                ss, kem_ct = r["kem_private"].public_key().encapsulate()
            encapsulations[r["kem_private"].public_key().public_bytes_raw()] = (ss, kem_ct)

    def encapsulate(pk: MLKEM768PublicKey) -> tuple[bytes, bytes]:
        return encapsulations[pk.public_bytes_raw()]

    targets = [
        AuthRecipient(
            r["identity_id"],
            r["encryption_id"],
            r["x25519"].public_key(),
            r.get("kem_id"),
            r["kem_private"].public_key() if hybrid else None,
        )
        for r in recipients
    ]
    introduction = (identity_der, encryption_der) if introduce else None
    sealed = b"".join(
        seal_object_stream(
            [PLAINTEXT[:100], PLAINTEXT[100:]],
            targets,
            sender=sender,
            hybrid=hybrid,
            introduce=introduction,
            chunk_size=CHUNK_SIZE,
            created=CREATED,
            random_bytes=draws(object_id, key, *tag_keys),
            ephemeral_ikm=ikms,
            encapsulate=encapsulate if hybrid else None,
        )
    )
    # the header again, field by field
    intro = introduction or (b"", b"")
    body = header_start(profile, object_id) + ids[0] + ids[1]
    body += u16(len(intro[0])) + intro[0] + u16(len(intro[1])) + intro[1] + u16(len(targets))
    wrap_size = 1296 if hybrid else 176
    prefix = frame(body, wrap_size * len(targets))
    aad = hashlib.sha256(prefix).digest()
    wraps, wrap_entries = b"", []
    for r, target, tag_key, ikm in zip(recipients, targets, tag_keys, ikms, strict=True):
        info = OBJECT_LABEL + b"\x00" + profile.encode() + b"\x00" + ids[0] + ids[1]
        info += target.identity_id + target.encryption_id
        entry: dict[str, Any] = {"recipient": r["name"], "M": tag_key.hex(), "ikmE": ikm.hex()}
        psk = psk_id = kem_ct = kem_id = b""
        if hybrid:
            ss, kem_ct = encapsulations[r["kem_private"].public_key().public_bytes_raw()]
            kem_id = r["kem_id"]
            psk, psk_id = hybrid_psk(ss, kem_ct, kem_id)
            info += kem_id
            entry.update(ss=ss.hex(), kem_ct=kem_ct.hex(), psk_id=psk_id.hex(), psk=psk.hex())
        enc, ct = seal_auth(
            WRAP_SUITE,
            target.public_key,
            sender_key,
            info=info,
            aad=aad,
            pt=key + tag_key,
            psk=psk,
            psk_id=psk_id,
            ikm_e=ikm,
        )
        wrap = target.identity_id + target.encryption_id + kem_id + enc + ct + kem_ct
        wraps += wrap
        entry.update(info=info.hex(), enc=enc.hex(), ct=ct.hex(), wrap=wrap.hex())
        wrap_entries.append(entry)
    header = prefix + wraps
    payload = independent_payload(key, object_id, header, tag_keys)
    assert payload["object"] == sealed.hex(), f"{name}: the module and this script disagree"
    known = sender_key.public_key()
    for r in recipients:  # and every recipient opens it
        keys = r["kem_private"] if hybrid else None
        own = AuthSender(r["x25519"], r["identity_id"], r["encryption_id"], keys, r.get("kem_id"))
        _, plaintext = open_object_stream([sealed], own=[own], resolve_sender=lambda _: known)
        assert b"".join(plaintext) == PLAINTEXT
    return {
        "name": name,
        "profile": profile,
        "sender": {
            "jid": SENDER_JID,
            "x25519_private": fixed("sender x25519", 32).hex(),
            "x25519_public": sender_key.public_key().public_bytes_raw().hex(),
            "ed25519_private": fixed("sender ed25519", 32).hex(),
            "identity_id": ids[0].hex(),
            "encryption_id": ids[1].hex(),
            "identity_der": identity_der.hex() if introduce else None,
            "encryption_der": encryption_der.hex() if introduce else None,
        },
        "recipients": [recipient_entry(r, hybrid) for r in recipients],
        "created": "2026-05-01T12:00:00.123Z",
        "chunk_size": CHUNK_SIZE,
        "object_id": object_id.hex(),
        "R": key.hex(),
        "prefix": prefix.hex(),
        "wrap_aad": aad.hex(),
        "wraps": wrap_entries,
        "header": header.hex(),
        **payload,
    }


def recipient_entry(r: dict[str, Any], hybrid: bool) -> dict[str, Any]:
    entry = {
        "name": r["name"],
        "jid": RECIPIENT_JID,
        "x25519_private": r["x25519"].private_bytes_raw().hex(),
        "x25519_public": r["x25519"].public_key().public_bytes_raw().hex(),
        "identity_id": r["identity_id"].hex(),
        "encryption_id": r["encryption_id"].hex(),
    }
    if hybrid:
        entry.update(mlkem768_seed=r["seed"].hex(), kem_id=r["kem_id"].hex())
    return entry


def draft_case(stored: dict[str, Any]) -> dict[str, Any]:
    """draft-rsa: the RSA key and the object are kept from the file when they open."""
    name = "draft-rsa, one certificate"
    old = stored.get("draft")
    if old is not None:
        private = serialization.load_pem_private_key(old["rsa_private_pem"].encode(), None)
        assert isinstance(private, rsa.RSAPrivateKey)
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    certificate = (  # a bare certificate: only its id and key matter here
        x509.CertificateBuilder()
        .subject_name(_name(RECIPIENT_JID))
        .issuer_name(_name(RECIPIENT_JID))
        .public_key(private.public_key())
        .serial_number(SERIAL)
        .not_valid_before(CREATED - timedelta(days=1))
        .not_valid_after(CREATED + timedelta(days=3650))
        .sign(private, hashes.SHA256())
    )
    identity = Identity(private, certificate)
    certificate_id = bytes.fromhex(identity.fingerprint)
    object_id, key = fixed(f"{name} object_id", 32), fixed(f"{name} R", 32)
    sealed = bytes.fromhex(old["object"]) if old is not None else b""
    try:
        _, plaintext = open_object_stream([sealed], rsa_identities=[identity])
        assert b"".join(plaintext) == PLAINTEXT
    except Exception:
        stream = seal_object_stream(
            [PLAINTEXT],
            [Recipient(private.public_key(), identity.fingerprint)],
            chunk_size=CHUNK_SIZE,
            created=CREATED,
            random_bytes=draws(object_id, key),
        )
        sealed = b"".join(stream)
    ct_size = private.key_size // 8
    body = header_start("draft-rsa", object_id) + u16(1)
    prefix = frame(body, 32 + 2 + ct_size)
    header_size = len(prefix) + 32 + 2 + ct_size
    header = sealed[:header_size]
    wrap = header[len(prefix) :]
    assert header.startswith(prefix) and wrap[:32] == certificate_id
    assert wrap[32:34] == u16(ct_size)
    assert private.decrypt(wrap[34:], oaep_padding()) == key
    payload = independent_payload(key, object_id, header, [])
    assert payload["object"] == sealed.hex(), "draft-rsa: the module and this script disagree"
    return {
        "name": name,
        "profile": "draft-rsa",
        "rsa_private_pem": pem,
        "certificate_der": certificate.public_bytes(serialization.Encoding.DER).hex(),
        "certificate_id": certificate_id.hex(),
        "created": "2026-05-01T12:00:00.123Z",
        "chunk_size": CHUNK_SIZE,
        "object_id": object_id.hex(),
        "R": key.hex(),
        "prefix": prefix.hex(),
        "wraps": [{"certificate_id": certificate_id.hex(), "oaep_ct": wrap[34:].hex()}],
        "header": header.hex(),
        **payload,
    }


def recipients(hybrid: bool) -> list[dict[str, Any]]:
    names = ["romeo-1"] if hybrid else ["romeo-1", "romeo-2"]
    out = []
    for name in names:
        r: dict[str, Any] = {
            "name": name,
            "x25519": X25519PrivateKey.from_private_bytes(fixed(f"{name} x25519", 32)),
            "identity_id": fixed(f"{name} identity id", 32),
            "encryption_id": fixed(f"{name} encryption id", 32),
        }
        if hybrid:
            r["seed"] = fixed(f"{name} ml-kem-768 seed", 64)
            r["kem_private"] = MLKEM768PrivateKey.from_seed_bytes(r["seed"])
            r["kem_id"] = fixed(f"{name} ml-kem id", 32)
        out.append(r)
    return out


def main() -> None:
    old = json.loads(PATH.read_text()) if PATH.exists() else {"cases": []}
    stored: dict[str, Any] = {}
    for case in old["cases"]:
        if case["profile"] == "draft-rsa":
            stored["draft"] = case
        for w in case.get("wraps", []):
            if "ss" in w:
                stored[f"{case['name']}/{w['recipient']}"] = (
                    bytes.fromhex(w["ss"]),
                    bytes.fromhex(w["kem_ct"]),
                )
    cases = [
        auth_case("auth-1, two devices, introduction", False, recipients(False), True, stored),
        auth_case("auth-pq-1, one device", True, recipients(True), False, stored),
        draft_case(stored),
    ]
    for case in cases:
        case["armored"] = "".join(armor([bytes.fromhex(case["object"])]))
    vector = {
        "magic": b"OBJENC\x00\x01".hex(),
        "label": OBJECT_LABEL.hex(),
        "hpke_suite": "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM; mode_auth "
        "(auth-1), mode_auth_psk (auth-pq-1) (RFC 9180)",
        "payload": "K || P = HKDF-SHA256(R, salt=object_id, info=label || ' payload' || 0x00 || H,"
        " L=39); chunk i = AES-256-GCM(K, P || u32 i || last, aad=H)",
        "trailer": "HMAC-SHA256(M_j, SHA-256(header || chunks)) per wrap (auth profiles)",
        "plaintext": PLAINTEXT.hex(),
        "cases": cases,
    }
    PATH.write_text(json.dumps(vector, indent=1) + "\n")
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
