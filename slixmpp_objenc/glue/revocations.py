"""Lost devices (PROTOCOL.md 13.13): publishing a revocation signed by this
device, and taking in those a node publishes. The rules are the core's
(:func:`~slixmpp_objenc.core.revocation.decide_revocations`); this module
reads items, remembers what was accepted, and applies it to the key ring.
"""

from __future__ import annotations

import json
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from slixmpp.exceptions import IqError, IqTimeout

from ..core import CertificateError, EncryptionError, load_certificate, xmpp_addresses
from ..core.constants import NS_OBJENC, qname
from ..core.revocation import (
    Revocation,
    decide_revocations,
    parse_revocation,
    revocation_element,
    sign_revocation,
)
from ..core.timestamps import format_timestamp, parse_timestamp
from ..core.trust import TrustState
from ..events import DeviceRevokedEvent
from ..keyring import Keyring, is_identity
from .persistence import Persistence
from .publication import NODE_CERTS

__all__ = ["REVOCATION_PREFIX", "Revocations"]

log = logging.getLogger(__name__)

REVOCATION_PREFIX: Final = "revocation:"
"""Setting per accepted revocation, ``revocation:{bare}:{revoked id}:{revoker id}``
(one per pair: a device revoked by two keeps both, rule 6 needs them; the older
``revocation:{bare}:{revoked id}`` is still read): the revocation (JSON:
revoker, issued, signature hex) and the revoked identity's trust state before
it (the core's rule 6 reads that one)."""
MAX_PRE_REVOKED: Final = 64
"""Revocations of identities not held kept per JID: beyond, new ones are not
kept (they are decided again at each read while the node serves them)."""
MAX_FACES: Final = 64
"""RSA faces (vouches) remembered per JID in memory."""
_REVOCATION_TAG: Final = qname(NS_OBJENC, "revocation")
_HEX_ID: Final = re.compile("[0-9a-f]{64}")


class Revocations:
    """Accepted revocations per bare JID, applied to the key ring."""

    def __init__(
        self,
        xmpp: Any,
        keyring: Keyring,
        persistence: Persistence,
        clock: Callable[[], datetime],
        timeout: float,
    ) -> None:
        self.xmpp = xmpp
        self.keyring = keyring
        self._persistence = persistence
        self._clock = clock
        self.timeout = timeout
        self._faces: dict[str, dict[str, str]] = {}
        """bare JID -> identity id -> the RSA certificate it vouched for (the same
        device's draft-profile face, §13.8), as its node last showed; bounded."""
        self._stored_faces: dict[tuple[str, str], str] = {}
        """(bare JID, revoked identity) -> its RSA face, kept with the revocation."""
        self._accepted: dict[str, dict[tuple[str, str], tuple[Revocation, str, bool]]] = {}
        """bare JID -> (revoked id, revoker id) -> (the revocation, the trust state
        before it, whether it was applied: once applied, the user's own decision
        stands)."""

    async def load(self) -> None:
        """Read the accepted revocations from the store."""
        stored = await self._persistence.storage.settings_with_prefix(REVOCATION_PREFIX)
        for key, value in stored.items():
            bare, _, revoked = key[len(REVOCATION_PREFIX) :].rpartition(":")
            head, _, middle = bare.rpartition(":")
            if _HEX_ID.fullmatch(middle) and head:  # {bare}:{revoked}:{revoker}
                bare, revoked = head, middle
            try:
                data = json.loads(value)
                revocation = Revocation(
                    revoked,
                    str(data["revoker"]),
                    parse_timestamp(str(data["issued"])),
                    bytes.fromhex(str(data["signature"])),
                )
                before = str(data["before"])
                applied = bool(data.get("applied", False))
                face = data.get("face")
            except (ValueError, KeyError, TypeError):
                log.warning("objenc: unreadable stored revocation %r ignored", key)
                continue
            pair = (revoked, revocation.revoker)
            self._accepted.setdefault(bare, {})[pair] = (revocation, before, applied)
            if isinstance(face, str) and _HEX_ID.fullmatch(face):
                self._stored_faces[(bare, revoked)] = face

    def face(self, bare: str, identity: str) -> str | None:
        """The RSA certificate (fingerprint) ``identity`` vouched for, if known: the
        same device's draft-profile face, revoked with it."""
        return self._faces.get(bare, {}).get(identity) or self._stored_faces.get((bare, identity))

    def _learn_faces(self, bare: str, vouches: Mapping[str, tuple[str, bytes]]) -> None:
        faces = self._faces.setdefault(bare, {})
        for identity, (rsa, _signature) in vouches.items():
            if identity in faces or len(faces) < MAX_FACES:
                faces[identity] = rsa

    def revoked_by(self, bare: str, fingerprint: str) -> Revocation | None:
        """The accepted revocation of ``fingerprint`` for ``bare``, if any."""
        found = [
            r
            for (revoked, _), (r, _b, _a) in self._accepted.get(bare, {}).items()
            if revoked == fingerprint
        ]
        return min(found, key=lambda r: (r.issued_at, r.revoker)) if found else None

    async def take(
        self,
        bare: str,
        items: Collection[ET.Element],
        vouches: Mapping[str, tuple[str, bytes]] | None = None,
    ) -> None:
        """:meth:`read`, logging instead of raising: a node's junk must not stop the
        rest of its reading (our own devices known, held stanzas released)."""
        try:
            await self.read(bare, items, vouches)
        except Exception:
            log.exception("objenc: reading the revocations on %s's node failed", bare)

    async def read(
        self,
        bare: str,
        items: Collection[ET.Element],
        vouches: Mapping[str, tuple[str, bytes]] | None = None,
    ) -> None:
        """Take in the revocations among a node's items (after its certificates):
        accept what the rules accept, remember it, revoke the identities held, and
        the RSA certificates they vouched for (``vouches``: identity -> (RSA
        fingerprint, signature), as the node's items carry them)."""
        self._learn_faces(bare, vouches or {})
        found = _found(items)
        accepted = self._accepted.get(bare, {})
        if not found and not accepted:
            return
        held = self._held(bare)
        decision = decide_revocations(
            bare,
            held,
            found,
            remembered=[r for r, _before, _applied in accepted.values()],
            now=self._clock(),
        )
        for revocation, reason in decision.ignored:
            if reason != "already taken":
                log.info(
                    "objenc: revocation of %s on %s's node ignored: %s",
                    revocation.revoked[:16],
                    bare,
                    reason,
                )
        pre_revoked = sum(1 for r, _b, _a in accepted.values() if r.revoked not in held)
        for revocation in decision.accepted:
            before = held[revocation.revoked][1] if revocation.revoked in held else "unknown"
            if before == TrustState.UNPUBLISHED.value:
                before = TrustState.TOFU.value  # pinned, hidden by the server for now
            elif before == "unknown" and not self._is_ours(bare, revocation.revoked):
                if pre_revoked >= MAX_PRE_REVOKED:
                    continue  # not kept: decided again at the next read
                pre_revoked += 1
            self._remember(bare, revocation, before, applied=False)
        entries = sorted(
            self._accepted.get(bare, {}).values(), key=lambda e: (e[0].issued_at, e[0].revoker)
        )
        done = {r.revoked for r, _before, applied in entries if applied}
        for revocation, before, applied in entries:
            fingerprint = revocation.revoked
            if applied:
                continue  # applied once: a later decision of the user's stands
            record = self.keyring.record(bare, fingerprint)
            if record is not None:
                if record.trust is not TrustState.REVOKED:
                    await self.keyring.set_trust(bare, fingerprint, TrustState.REVOKED)
            elif not self._is_ours(bare, fingerprint):
                continue  # not held yet: revoked as soon as it is published
            face = self.face(bare, fingerprint)
            face_record = self.keyring.record(bare, face) if face is not None else None
            if face_record is not None and face_record.trust is not TrustState.REVOKED:
                await self.keyring.set_trust(bare, face_record.fingerprint, TrustState.REVOKED)
            if fingerprint not in done and before != TrustState.REVOKED.value:
                self._report(bare, fingerprint, revocation)  # it is revoked now
            done.add(fingerprint)
            self._remember(bare, revocation, before, applied=True)

    def barred(self, bare: str, items: Collection[ET.Element]) -> set[str]:
        """Identities that a kept revocation, or one among ``items`` accepted now,
        revokes: one of them not held yet is recorded ``revoked`` as it appears
        (never pinned, never asked about). Nothing is remembered here."""
        found = _found(items)
        accepted = self._accepted.get(bare, {})
        if not found and not accepted:
            return set()
        decision = decide_revocations(
            bare,
            self._held(bare),
            found,
            remembered=[r for r, _before, _applied in accepted.values()],
            now=self._clock(),
        )
        barred = {r.revoked for r, _b, _a in accepted.values()} | {
            r.revoked for r in decision.accepted
        }
        return barred | {f for f in (self.face(bare, fp) for fp in barred) if f is not None}

    def _held(self, bare: str) -> dict[str, tuple[Ed25519PublicKey, str, Collection[str]]]:
        """The identities held for ``bare`` as the core reads them: key, trust state
        (before an accepted revocation, for those it revoked), JIDs; ours too, for
        our own node."""
        accepted = self._accepted.get(bare, {})
        held: dict[str, tuple[Ed25519PublicKey, str, Collection[str]]] = {}
        for record in self.keyring.records(bare):
            try:
                certificate = load_certificate(record.cert_pem)
            except CertificateError:
                continue
            key = certificate.public_key()
            if not isinstance(key, Ed25519PublicKey):
                continue
            jids = {self.keyring.bare(j) or j for j in xmpp_addresses(certificate)}
            held[record.fingerprint] = (key, record.trust.value, jids)
        for (fingerprint, _revoker), (_revocation, before, _applied) in accepted.items():
            if fingerprint in held:
                key, _trust, names = held[fingerprint]
                held[fingerprint] = (key, before, names)
        keys = self.keyring.device.keys
        if keys is not None and bare == self.xmpp.boundjid.bare:
            ours = {self.keyring.bare(j) or j for j in xmpp_addresses(keys.identity_certificate)}
            held[keys.fingerprint] = (keys.identity_key.public_key(), "verified", ours)
        return held

    def _is_ours(self, bare: str, fingerprint: str) -> bool:
        keys = self.keyring.device.keys
        return (
            keys is not None and bare == self.xmpp.boundjid.bare and keys.fingerprint == fingerprint
        )

    def _remember(self, bare: str, revocation: Revocation, before: str, *, applied: bool) -> None:
        pair = (revocation.revoked, revocation.revoker)
        self._accepted.setdefault(bare, {})[pair] = (revocation, before, applied)
        value = json.dumps(
            {
                "revoker": revocation.revoker,
                "issued": format_timestamp(revocation.issued_at),
                "signature": revocation.signature.hex(),
                "before": before,
                "applied": applied,
                "face": self.face(bare, revocation.revoked),
            },
            sort_keys=True,
        )
        key = f"{REVOCATION_PREFIX}{bare}:{revocation.revoked}:{revocation.revoker}"
        self._persistence.set_setting(key, value)

    def _report(self, bare: str, fingerprint: str, revocation: Revocation) -> None:
        log.warning(
            "objenc: %s's device %s was revoked by its device %s (lost or stolen): "
            "nothing is encrypted to it any more",
            bare,
            fingerprint[:16],
            revocation.revoker[:16],
        )
        record = self.keyring.record(bare, fingerprint)
        peer = self.keyring.validated(record) if record is not None else None
        label = peer.label if peer is not None else None
        event = DeviceRevokedEvent(
            bare, fingerprint, revocation.revoker, revocation.issued_at, label
        )
        self.xmpp.event("objenc_device_revoked", event)

    async def publish(self, fingerprint: str) -> Revocation:
        """Revoke one of our own account's devices (a lost one) for our contacts:
        sign a revocation with this device's identity and publish it on our node
        (item ``revoke-{id}``). :class:`~slixmpp_objenc.core.EncryptionError` for
        this device itself or without keys of the authenticated profile."""
        keys = self.keyring.device.keys
        if keys is None:
            raise EncryptionError("revoking a device needs this device's identity")
        if fingerprint == keys.fingerprint:
            raise EncryptionError(
                "this device cannot revoke itself: revoke it from another device of the account"
            )
        own = self.xmpp.boundjid.bare
        record = self.keyring.record(own, fingerprint)
        if record is None or not is_identity(record.cert_pem):
            raise EncryptionError(
                f"{fingerprint!r} is not a device of our account that we hold "
                "(give its full identity fingerprint, 64 hex digits, as objenc peers shows it)"
            )
        revocation = sign_revocation(
            keys.identity_key, keys.identity_certificate, fingerprint, self._clock()
        )
        self._remember(own, revocation, record.trust.value, applied=True)
        try:
            await self.xmpp.plugin["xep_0060"].publish(
                None,
                NODE_CERTS,
                id=revocation.item_id,
                payload=revocation_element(revocation),
                timeout=self.timeout,
            )
        except (IqError, IqTimeout) as exc:
            log.warning("objenc: the revocation of %s was not published: %s", fingerprint, exc)
            raise
        return revocation


def _found(items: Collection[ET.Element]) -> list[Revocation]:
    """The well-formed revocations among a node's items."""
    found = []
    for item in items:
        for element in item.findall(_REVOCATION_TAG):
            revocation = parse_revocation(element)
            if revocation is not None:
                found.append(revocation)
    return found
