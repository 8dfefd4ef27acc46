"""OpenPGP sign+encrypt and decrypt+verify: the system gpg (python-gnupg) and PGPy.

gpg: one temporary GNUPGHOME per party (Alice signs; Bob's first device
decrypts; the other three recipient keys exist only as public keys in Alice's
home), keys generated in batch mode without a passphrase, the gpg-agent each
home starts is stopped at the end. Every operation is one ``gpg`` process
(python-gnupg) that talks to the agent for the private-key part, so the
process start is measured on its own as well.

PGPy: RSA-3072 keys (a signing primary key and an encryption subkey), pure
Python over ``cryptography``.

The plaintext is XEP-0373's ``<signcrypt/>`` around the body; the wire form is
``<openpgp/>`` with the binary message in base64 (XEP-0373), and the
ASCII-armored size is reported beside it. Compression is off for both (gpg
would otherwise deflate the repetitive test bodies, which real chat text and
the other mechanisms do not get).
"""

from __future__ import annotations

import contextlib
import cProfile
import shutil
import statistics
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slixmpp import ClientXMPP

from . import framing, profiling
from .common import ALICE, BOB, SIZES, Row, Settings, Unavailable, body_text, measure

KEY_TYPES: dict[str, str] = {
    "RSA-3072": (
        "Key-Type: RSA\nKey-Length: 3072\nKey-Usage: sign\n"
        "Subkey-Type: RSA\nSubkey-Length: 3072\nSubkey-Usage: encrypt\n"
    ),
    "ed25519/cv25519": (
        "Key-Type: EDDSA\nKey-Curve: ed25519\nKey-Usage: sign\n"
        "Subkey-Type: ECDH\nSubkey-Curve: cv25519\nSubkey-Usage: encrypt\n"
    ),
}


@dataclass
class OpenPGPResults:
    rows: list[Row]
    wire: list[dict[str, Any]]
    unavailable: list[Unavailable]
    spawn: dict[str, float]
    pgpy_profile: dict[str, Any] | None = None


def _wire_entry(
    mechanism: str, size: str, recipients: int, binary: bytes, armored: bytes, client: ClientXMPP
) -> dict[str, Any]:
    element = framing.openpgp_element(binary)
    return {
        "mechanism": mechanism,
        "size": size,
        "recipients": recipients,
        "binary_bytes": len(binary),
        "armored_bytes": len(armored),
        "payload_bytes": framing.element_bytes(element),
        "stanza_bytes": framing.framed_stanza_bytes(client, element, framing.NS_OX),
        "note": "<openpgp/> = base64 of the binary message (XEP-0373); same frame as objenc",
    }


# -- gpg -----------------------------------------------------------------------


class GpgParties:
    """Alice's and Bob's homes; Bob's three other devices as public keys only."""

    def __init__(self, root: Path, key_type: str) -> None:
        self.root = root
        self.key_type = key_type
        self.homes: list[Path] = []
        self.alice = self._home("alice")
        self.bob = self._home("bob")
        self.alice_fpr = self._generate(self.alice, ALICE)
        self.bob_fprs = [self._generate(self.bob, BOB)]
        scratch = self._home("others")
        for n in range(2, 5):
            self.bob_fprs.append(self._generate(scratch, f"bob{n}@objenc.test"))
        for fpr in self.bob_fprs[:1]:
            self.alice.import_keys(self.bob.export_keys(fpr))
        for fpr in self.bob_fprs[1:]:
            self.alice.import_keys(scratch.export_keys(fpr))
        self.bob.import_keys(self.alice.export_keys(self.alice_fpr))

    def _home(self, name: str) -> Any:
        import gnupg

        home = self.root / name
        home.mkdir(mode=0o700)
        self.homes.append(home)
        gpg = gnupg.GPG(gnupghome=str(home))
        gpg.encoding = "utf-8"
        return gpg

    def _generate(self, gpg: Any, email: str) -> str:
        spec = (
            KEY_TYPES[self.key_type]
            + f"Name-Email: {email}\nExpire-Date: 0\n%no-protection\n%commit\n"
        )
        key = gpg.gen_key(spec)
        if not key.fingerprint:
            raise RuntimeError(f"gpg key generation failed: {key.stderr[-300:]}")
        return str(key.fingerprint)

    def encrypt(self, plaintext: bytes, recipients: int, *, armor: bool) -> bytes:
        result = self.alice.encrypt(
            plaintext,
            self.bob_fprs[:recipients],
            sign=self.alice_fpr,
            always_trust=True,
            armor=armor,
            # No compression, like PGPy here and the other mechanisms: the
            # repetitive test bodies would otherwise shrink to almost nothing.
            extra_args=["--compress-algo", "none"],
        )
        if not result.ok:
            raise RuntimeError(f"gpg encrypt failed: {result.status}: {result.stderr[-300:]}")
        return bytes(result.data)

    def decrypt(self, data: bytes) -> bytes:
        result = self.bob.decrypt(data, always_trust=True)
        if not result.ok or not result.valid:
            raise RuntimeError(f"gpg decrypt/verify failed: {result.status}")
        return bytes(result.data)

    def op(self, plaintext: bytes, recipients: int) -> Callable[[], None]:
        def run() -> None:
            if self.decrypt(self.encrypt(plaintext, recipients, armor=False)) != plaintext:
                raise AssertionError("gpg round trip failed")

        return run

    def close(self) -> None:
        gpgconf = shutil.which("gpgconf")
        for home in self.homes:
            if gpgconf:
                subprocess.run(
                    [gpgconf, "--homedir", str(home), "--kill", "gpg-agent"],
                    capture_output=True,
                    timeout=10,
                    check=False,
                )


def gpg_spawn_cost(gpg_binary: str, home: Path, runs: int = 20) -> dict[str, float]:
    """Milliseconds to start gpg and do nothing, and to open the keyring and list it."""

    def timed(args: list[str]) -> float:
        samples = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(args, capture_output=True, timeout=30, check=False)
            samples.append((time.perf_counter() - start) * 1000)
        return statistics.median(samples)

    return {
        "gpg --version (process start)": timed([gpg_binary, "--version"]),
        "gpg --list-keys (start + keyring)": timed(
            [gpg_binary, "--homedir", str(home), "--batch", "--list-keys"]
        ),
    }


@contextlib.contextmanager
def gpg_parties(key_type: str) -> Iterator[GpgParties]:
    with tempfile.TemporaryDirectory(prefix="bench-gpg-", dir="/tmp") as tmp:
        parties = GpgParties(Path(tmp), key_type)
        try:
            yield parties
        finally:
            parties.close()


# -- PGPy ------------------------------------------------------------------------


class PgpyParties:
    """RSA-3072 keys for Alice and Bob's four devices, in memory."""

    def __init__(self) -> None:
        import pgpy
        from pgpy.constants import (
            CompressionAlgorithm,
            HashAlgorithm,
            KeyFlags,
            PubKeyAlgorithm,
            SymmetricKeyAlgorithm,
        )

        self.pgpy = pgpy
        self.uncompressed = CompressionAlgorithm.Uncompressed
        self.cipher = SymmetricKeyAlgorithm.AES256

        def make(email: str) -> Any:
            key = pgpy.PGPKey.new(PubKeyAlgorithm.RSAEncryptOrSign, 3072)
            key.add_uid(
                pgpy.PGPUID.new(email.split("@")[0], email=email),
                usage={KeyFlags.Sign, KeyFlags.Certify},
                hashes=[HashAlgorithm.SHA256],
                ciphers=[SymmetricKeyAlgorithm.AES256],
                compression=[CompressionAlgorithm.Uncompressed],
            )
            key.add_subkey(
                pgpy.PGPKey.new(PubKeyAlgorithm.RSAEncryptOrSign, 3072),
                usage={KeyFlags.EncryptCommunications, KeyFlags.EncryptStorage},
            )
            return key

        self.alice = make(ALICE)
        self.bobs = [make(BOB)] + [make(f"bob{n}@objenc.test") for n in range(2, 5)]

    def encrypt(self, plaintext: bytes, recipients: int) -> Any:
        message = self.pgpy.PGPMessage.new(plaintext, compression=self.uncompressed)
        message |= self.alice.sign(message)
        if recipients == 1:
            return self.bobs[0].pubkey.encrypt(message)
        session_key = self.cipher.gen_key()
        for bob in self.bobs[:recipients]:
            message = bob.pubkey.encrypt(message, cipher=self.cipher, sessionkey=session_key)
        return message

    def decrypt(self, data: bytes) -> bytes:
        opened = self.bobs[0].decrypt(self.pgpy.PGPMessage.from_blob(data))
        if not self.alice.pubkey.verify(opened):
            raise AssertionError("PGPy signature does not verify")
        content = opened.message
        return content.encode("utf-8") if isinstance(content, str) else bytes(content)

    def op(self, plaintext: bytes, recipients: int) -> Callable[[], None]:
        def run() -> None:
            if self.decrypt(bytes(self.encrypt(plaintext, recipients))) != plaintext:
                raise AssertionError("PGPy round trip failed")

        return run


# -- the section -------------------------------------------------------------------


def run(settings: Settings, client: ClientXMPP, log: Callable[[str], None]) -> OpenPGPResults:
    rows: list[Row] = []
    wire: list[dict[str, Any]] = []
    unavailable: list[Unavailable] = []
    spawn: dict[str, float] = {}
    pgpy_profile: dict[str, Any] | None = None
    slow = {"repeats": settings.slow_repeats, "min_iterations": settings.min_iterations}
    gpg_binary = shutil.which("gpg")
    if gpg_binary is None:
        unavailable.append(Unavailable("OpenPGP via gpg", "no gpg executable on this machine"))
    else:
        for key_type in KEY_TYPES:
            try:
                with gpg_parties(key_type) as parties:
                    log(f"  gpg {key_type}: keys made")
                    if not spawn:
                        spawn = gpg_spawn_cost(gpg_binary, parties.root / "alice")
                    for size, length in SIZES.items():
                        plaintext = framing.signcrypt(body_text(length))
                        rows.append(
                            Row(
                                "OpenPGP (gpg)",
                                f"gpg {key_type}: sign+encrypt, decrypt+verify",
                                size,
                                1,
                                measure(parties.op(plaintext, 1), settings, **slow),
                                note="2 gpg processes per message, gpg-agent for the private keys",
                            )
                        )
                        for recipients in (1, 4):
                            binary = parties.encrypt(plaintext, recipients, armor=False)
                            armored = parties.encrypt(plaintext, recipients, armor=True)
                            wire.append(
                                _wire_entry(
                                    f"OpenPGP gpg {key_type}",
                                    size,
                                    recipients,
                                    binary,
                                    armored,
                                    client,
                                )
                            )
                    plaintext = framing.signcrypt(body_text(SIZES["2 KiB"]))
                    rows.append(
                        Row(
                            "OpenPGP (gpg)",
                            f"gpg {key_type}: sign+encrypt, decrypt+verify, 4 recipient devices",
                            "2 KiB",
                            4,
                            measure(parties.op(plaintext, 4), settings, **slow),
                        )
                    )
            except (OSError, RuntimeError) as exc:
                unavailable.append(Unavailable(f"OpenPGP via gpg ({key_type})", str(exc)))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PGPy's deprecation noise about cryptography
            pgp = PgpyParties()
            log("  PGPy: keys made")
            for size, length in SIZES.items():
                plaintext = framing.signcrypt(body_text(length))
                rows.append(
                    Row(
                        "OpenPGP (PGPy)",
                        "PGPy RSA-3072: sign+encrypt, decrypt+verify",
                        size,
                        1,
                        measure(pgp.op(plaintext, 1), settings, **slow),
                        note="pure Python over cryptography",
                    )
                )
                for recipients in (1, 4):
                    message = pgp.encrypt(plaintext, recipients)
                    wire.append(
                        _wire_entry(
                            "OpenPGP PGPy RSA-3072",
                            size,
                            recipients,
                            bytes(message),
                            str(message).encode("ascii"),
                            client,
                        )
                    )
            plaintext = framing.signcrypt(body_text(SIZES["2 KiB"]))
            profile = cProfile.Profile()
            profile.runcall(pgp.op(plaintext, 1))
            pgpy_profile = profiling.summarize(profile, top=5)
            rows.append(
                Row(
                    "OpenPGP (PGPy)",
                    "PGPy RSA-3072: sign+encrypt, decrypt+verify, 4 recipient devices",
                    "2 KiB",
                    4,
                    measure(pgp.op(plaintext, 4), settings, **slow),
                )
            )
    except ImportError as exc:
        unavailable.append(Unavailable("OpenPGP via PGPy", f"PGPy cannot be imported: {exc}"))
    return OpenPGPResults(rows, wire, unavailable, spawn, pgpy_profile)
