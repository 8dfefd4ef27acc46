"""Writes hybrid-profile-v1.json: fixed vectors for the post-quantum hybrid
wrap (slixmpp_objenc.core.hybrid), without and with a passphrase: every
input, the randomness, every intermediate value and the output, so that
another implementation can check itself. Run from the repository root:

    python tests/vectors/make_hybrid_vectors.py

ML-KEM-768 encapsulation takes its randomness inside ``cryptography`` (FIPS
203 ML-KEM.Encaps has no seed input there), so each ``(ss, kem_ct)`` was
produced once by a real encapsulation and is stored: a run with the file
present reuses them (when the fixed ML-KEM key still decapsulates them), so
running this again writes the same bytes. Certificate ids are fixed bytes
(SHA-256 of a DER, taken as given). tests/unit/test_core_hybrid.py
recomputes every value from the inputs.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.mlkem import MLKEM768PrivateKey, MLKEM768PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from slixmpp_objenc.core.authenticated import content_aad, seal_content
from slixmpp_objenc.core.hybrid import (
    HYBRID_CIPHER_ALGO,
    HYBRID_LABEL,
    SCRYPT_N,
    SCRYPT_P,
    SCRYPT_R,
    hybrid_info,
    hybrid_psk,
    passphrase_salt,
    seal_hybrid_wraps,
    stretch_passphrase,
)

PATH = Path(__file__).with_name("hybrid-profile-v1.json")
SENDER_JID = "juliet@capulet.example"
RECIPIENT_JID = "romeo@montague.example"
PASSPHRASE = "Rome\u0301o, wherefore art thou"  # decomposed: NFC composes the e-acute
CASES = [("no passphrase", False), ("passphrase", True)]
RECIPIENTS = ["romeo-1", "romeo-2"]


def fixed(label: str, size: int) -> bytes:
    """Deterministic bytes: SHA-256 of a label, repeated to ``size``."""
    out = b""
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{label}/{counter}".encode()).digest()
        counter += 1
    return out[:size]


def stored_encapsulations() -> dict[str, tuple[bytes, bytes]]:
    """``"case/recipient" -> (ss, kem_ct)`` from the file already written, if any."""
    if not PATH.exists():
        return {}
    old = json.loads(PATH.read_text())
    return {
        f"{case['name']}/{w['recipient']}": (bytes.fromhex(w["ss"]), bytes.fromhex(w["kem_ct"]))
        for case in old["cases"]
        for w in case["wraps"]
    }


def main() -> None:
    stored = stored_encapsulations()
    sender_sk = fixed("sender x25519", 32)
    sender = X25519PrivateKey.from_private_bytes(sender_sk)
    sender_identity = fixed("sender identity id", 32)
    sender_encryption = fixed("sender encryption id", 32)
    envelope = (
        b"<plain xmlns='urn:ietf:params:xml:ns:xmpp-objenc:0' timestamp='1796061600'>"
        b"PG1lc3NhZ2UvPg==</plain>"
    )
    randomness = iter([fixed("content key", 32), fixed("nonce", 12)])
    key, sealed = seal_content(
        envelope, sender_identity, sender_encryption, random_bytes=lambda n: next(randomness)
    )
    devices = []
    for name in RECIPIENTS:
        x_sk = fixed(f"{name} x25519", 32)
        seed = fixed(f"{name} ml-kem-768 seed", 64)
        kem_private = MLKEM768PrivateKey.from_seed_bytes(seed)
        devices.append(
            {
                "name": name,
                "x25519_private": x_sk,
                "x25519": X25519PrivateKey.from_private_bytes(x_sk).public_key(),
                "seed": seed,
                "kem_private": kem_private,
                "kem_public": kem_private.public_key(),
                "identity_id": fixed(f"{name} identity id", 32),
                "encryption_id": fixed(f"{name} encryption id", 32),
                "kem_id": fixed(f"{name} ml-kem id", 32),
            }
        )
    second = stretch_passphrase(PASSPHRASE, SENDER_JID, RECIPIENT_JID)
    cases = []
    for case_name, with_passphrase in CASES:
        case_second = second if with_passphrase else b""
        encapsulations: dict[bytes, tuple[bytes, bytes]] = {}
        for d in devices:
            ss, kem_ct = stored.get(f"{case_name}/{d['name']}", (b"", b""))
            if not ss or d["kem_private"].decapsulate(kem_ct) != ss:
                ss, kem_ct = d["kem_public"].encapsulate()  # the one real encapsulation
            encapsulations[d["kem_public"].public_bytes_raw()] = (ss, kem_ct)

        def encapsulate(
            pk: MLKEM768PublicKey, table: dict[bytes, tuple[bytes, bytes]] = encapsulations
        ) -> tuple[bytes, bytes]:
            return table[pk.public_bytes_raw()]

        ikms = [fixed(f"{case_name} {d['name']} ikmE", 32) for d in devices]
        targets = [
            (d["identity_id"], d["encryption_id"], d["kem_id"], d["x25519"], d["kem_public"])
            for d in devices
        ]
        wraps = seal_hybrid_wraps(
            key,
            sealed,
            sender,
            sender_identity,
            sender_encryption,
            targets,
            second=case_second,
            ephemeral_ikm=ikms,
            encapsulate=encapsulate,
        )
        entries: list[dict[str, Any]] = []
        for d, ikm, wrap in zip(devices, ikms, wraps, strict=True):
            ss, kem_ct = encapsulations[d["kem_public"].public_bytes_raw()]
            psk, psk_id = hybrid_psk(ss, kem_ct, d["kem_id"], case_second)
            info = hybrid_info(
                sender_identity,
                sender_encryption,
                d["identity_id"],
                d["encryption_id"],
                d["kem_id"],
            )
            entries.append(
                {
                    "recipient": d["name"],
                    "ikmE": ikm.hex(),
                    "ss": ss.hex(),
                    "kem_ct": kem_ct.hex(),
                    "sha256_kem_ct": hashlib.sha256(kem_ct).hexdigest(),
                    "psk_id": psk_id.hex(),
                    "psk": psk.hex(),
                    "info": info.hex(),
                    "enc": wrap.enc.hex(),
                    "ct": wrap.ct.hex(),
                }
            )
        cases.append({"name": case_name, "second": case_second.hex(), "wraps": entries})
    vector = {
        "label": HYBRID_LABEL.hex(),
        "cipher_algo": HYBRID_CIPHER_ALGO,
        "hpke_suite": (
            "DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, mode_auth_psk (RFC 9180)"
        ),
        "kem": "ML-KEM-768 (FIPS 203); private key from the 64-byte seed d || z",
        "psk_kdf": "HKDF-SHA256(IKM = ss || second, salt = psk_id, info = label || ' psk'), L=32",
        "content_aead": "AES-256-GCM",
        "sender": {
            "jid": SENDER_JID,
            "x25519_private": sender_sk.hex(),
            "x25519_public": sender.public_key().public_bytes_raw().hex(),
            "identity_id": sender_identity.hex(),
            "encryption_id": sender_encryption.hex(),
        },
        "recipients": [
            {
                "name": d["name"],
                "jid": RECIPIENT_JID,
                "x25519_private": d["x25519_private"].hex(),
                "x25519_public": d["x25519"].public_bytes_raw().hex(),
                "mlkem768_seed": d["seed"].hex(),
                "mlkem768_public": d["kem_public"].public_bytes_raw().hex(),
                "identity_id": d["identity_id"].hex(),
                "encryption_id": d["encryption_id"].hex(),
                "kem_id": d["kem_id"].hex(),
            }
            for d in devices
        ],
        "passphrase": {
            "text": PASSPHRASE,
            "nfc_utf8": unicodedata.normalize("NFC", PASSPHRASE).encode().hex(),
            "jids": [SENDER_JID, RECIPIENT_JID],
            "scrypt": {"N": SCRYPT_N, "r": SCRYPT_R, "p": SCRYPT_P, "dkLen": 32},
            "salt": passphrase_salt(SENDER_JID, RECIPIENT_JID).hex(),
            "second": second.hex(),
        },
        "envelope": envelope.hex(),
        "content_key": key.hex(),
        "nonce": fixed("nonce", 12).hex(),
        "content_aad": content_aad(sender_identity, sender_encryption).hex(),
        "T": sealed.hex(),
        "sha256_T": hashlib.sha256(sealed).hexdigest(),
        "cases": cases,
    }
    PATH.write_text(json.dumps(vector, indent=1) + "\n")
    print(f"wrote {PATH}")


if __name__ == "__main__":
    main()
