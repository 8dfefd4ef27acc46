"""Short authentication string (SAS): 6 characters two people read to each other.

A bare 6-character fingerprint could be matched by an attacker who grinds
keys, so the string is derived from a commit-then-reveal exchange, as in
ZRTP and Bluetooth numeric comparison:

1. the initiator picks a nonce ``Ni`` and sends ``commit = H(tag, Ni, D(S_i), D(S_r))``;
2. the responder answers with its nonce ``Nr`` (it cannot know ``Ni`` yet);
3. the initiator reveals ``Ni``; the responder checks it against ``commit``.

Both compute ``SAS = H(tag, Ni, Nr, D(S_i), D(S_r))`` truncated to 30 bits
and written in 6 Crockford base32 characters. ``S_i`` and ``S_r`` are the
*sets* of certificate fingerprints of the initiator's and the responder's
accounts *as each side sees them*: for the other account, every certificate
it encrypts to for that JID; for its own, its certificate and those of the
other devices of its account it encrypts to. ``D`` is a digest of the
sorted set (:func:`set_digest`). So one comparison covers every key either
side would encrypt to for the other: a certificate a server slipped into
one side's view (a contact's "extra device", a device of ours) changes that
side's string. A man in the middle who substituted certificates feeds
different sets into each side's hash, and because each nonce is fixed
before the other side's is known, he cannot steer both strings to agree:
they match with probability 2^-30 per attempt.

Pure state machines, no I/O: the plugin carries the three messages.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Collection
from enum import Enum
from typing import Final

from .errors import ObjEncError

__all__ = [
    "MAX_SET_SIZE",
    "NONCE_LENGTH",
    "SAS_ALPHABET",
    "SAS_LENGTH",
    "SasInitiator",
    "SasResponder",
    "VerificationError",
    "commitment",
    "differences",
    "set_digest",
    "short_authentication_string",
]

NONCE_LENGTH: Final = 32
SAS_LENGTH: Final = 6
SAS_BITS: Final = 30
SAS_ALPHABET: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
"""Crockford base32: no I, L, O or U, so nothing is misread over the phone."""
MAX_SET_SIZE: Final = 128
"""Fingerprints one set may hold (an account's capped devices, with room)."""

_SET_TAG: Final = b"urn:ietf:params:xml:ns:xmpp-objenc:0 sas set\x00"
_COMMIT_TAG: Final = b"urn:ietf:params:xml:ns:xmpp-objenc:0 sas commit v2\x00"
_SAS_TAG: Final = b"urn:ietf:params:xml:ns:xmpp-objenc:0 sas v2\x00"


class VerificationError(ObjEncError):
    """The exchange was broken: wrong order, bad lengths, or a reveal that does not
    match its commitment (a sign of tampering)."""


def _fp(fingerprint: str) -> bytes:
    try:
        raw = bytes.fromhex(fingerprint.replace(":", ""))
    except ValueError as exc:
        raise VerificationError("fingerprint is not hex") from exc
    if len(raw) != 32:
        raise VerificationError("fingerprint is not a SHA-256")
    return raw


def _check_nonce(nonce: bytes) -> None:
    if len(nonce) != NONCE_LENGTH:
        raise VerificationError(f"nonce must be {NONCE_LENGTH} bytes")


def _set(fingerprints: Collection[str]) -> list[bytes]:
    if isinstance(fingerprints, str | bytes):
        raise VerificationError("a set of fingerprints is needed, not one string")
    raw = sorted({_fp(fp) for fp in fingerprints})
    if not raw:
        raise VerificationError("an empty set of certificates cannot be verified")
    if len(raw) > MAX_SET_SIZE:
        raise VerificationError(f"more than {MAX_SET_SIZE} certificates in one set")
    return raw


def set_digest(fingerprints: Collection[str]) -> bytes:
    """``SHA-256(tag || n || fp_1 || ... || fp_n)``: the set's distinct fingerprints as
    32 raw bytes each, in ascending order, ``n`` as two bytes big-endian."""
    raw = _set(fingerprints)
    return hashlib.sha256(_SET_TAG + len(raw).to_bytes(2, "big") + b"".join(raw)).digest()


def commitment(
    nonce: bytes, initiator_set: Collection[str], responder_set: Collection[str]
) -> bytes:
    """``H(tag || Ni || D(S_i) || D(S_r))`` with SHA-256."""
    _check_nonce(nonce)
    return hashlib.sha256(
        _COMMIT_TAG + nonce + set_digest(initiator_set) + set_digest(responder_set)
    ).digest()


def short_authentication_string(
    initiator_nonce: bytes,
    responder_nonce: bytes,
    initiator_set: Collection[str],
    responder_set: Collection[str],
) -> str:
    """The 6 characters both users compare."""
    _check_nonce(initiator_nonce)
    _check_nonce(responder_nonce)
    digest = hashlib.sha256(
        _SAS_TAG
        + initiator_nonce
        + responder_nonce
        + set_digest(initiator_set)
        + set_digest(responder_set)
    ).digest()
    value = int.from_bytes(digest[:4], "big") >> (32 - SAS_BITS)
    chars = []
    for _ in range(SAS_LENGTH):
        chars.append(SAS_ALPHABET[value & 0x1F])
        value >>= 5
    return "".join(reversed(chars))


def differences(
    claimed: Collection[str], seen: Collection[str]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What the other side says a set is (``claimed``) against what we see:
    ``(only_claimed, only_seen)``, each sorted. Only a diagnosis for the users
    (the sets in messages are not protected); the strings decide."""
    claimed_set = {fp.lower() for fp in claimed}
    seen_set = {fp.lower() for fp in seen}
    return tuple(sorted(claimed_set - seen_set)), tuple(sorted(seen_set - claimed_set))


class _Stage(Enum):
    START = "start"
    WAITING = "waiting"
    DONE = "done"


class _SasParty:
    """What both sides hold: the two sets as this side sees them, its nonce."""

    def __init__(
        self,
        own_fingerprints: Collection[str],
        peer_fingerprints: Collection[str],
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        _set(own_fingerprints)
        _set(peer_fingerprints)
        self.own_fingerprints = frozenset(fp.lower() for fp in own_fingerprints)
        """Our account's set: our certificate and our other devices we encrypt to."""
        self.peer_fingerprints = frozenset(fp.lower() for fp in peer_fingerprints)
        """The other account's set: every certificate we encrypt to for it."""
        self._nonce = random_bytes(NONCE_LENGTH)
        _check_nonce(self._nonce)
        self._stage = _Stage.START
        self.sas: str | None = None


class SasInitiator(_SasParty):
    """The side that starts: commit, receive the responder's nonce, reveal."""

    def commit(self) -> bytes:
        """Message 1: the commitment to our nonce."""
        if self._stage is not _Stage.START:
            raise VerificationError("commit already sent")
        self._stage = _Stage.WAITING
        return commitment(self._nonce, self.own_fingerprints, self.peer_fingerprints)

    def receive_nonce(self, responder_nonce: bytes) -> bytes:
        """Message 2 in, message 3 out: our nonce, revealed. Sets :attr:`sas`."""
        if self._stage is not _Stage.WAITING:
            raise VerificationError("no commitment outstanding")
        _check_nonce(responder_nonce)
        self._stage = _Stage.DONE
        self.sas = short_authentication_string(
            self._nonce, responder_nonce, self.own_fingerprints, self.peer_fingerprints
        )
        return self._nonce


class SasResponder(_SasParty):
    """The side that answers: store the commitment, send a nonce, check the reveal."""

    _commitment: bytes | None = None

    def receive_commit(self, commit: bytes) -> bytes:
        """Message 1 in, message 2 out: our nonce."""
        if self._stage is not _Stage.START:
            raise VerificationError("commitment already received")
        if len(commit) != hashlib.sha256().digest_size:
            raise VerificationError("commitment must be a SHA-256")
        self._commitment = commit
        self._stage = _Stage.WAITING
        return self._nonce

    def receive_reveal(self, initiator_nonce: bytes) -> str:
        """Message 3 in: check it against the commitment; return the SAS."""
        if self._stage is not _Stage.WAITING or self._commitment is None:
            raise VerificationError("no commitment received")
        expected = commitment(initiator_nonce, self.peer_fingerprints, self.own_fingerprints)
        self._stage = _Stage.DONE
        if not hmac.compare_digest(expected, self._commitment):
            raise VerificationError(
                "revealed nonce does not match the commitment: the two sides do not "
                "hold the same certificates for each other"
            )
        self.sas = short_authentication_string(
            initiator_nonce, self._nonce, self.peer_fingerprints, self.own_fingerprints
        )
        return self.sas
