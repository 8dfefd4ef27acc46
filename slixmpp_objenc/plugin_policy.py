"""The part of ``ObjEnc``'s public API that sets policy per contact and for our
keys: legacy devices, required encryption, the post-quantum hybrid, a shared
passphrase, rotation now. A mixin of :class:`~slixmpp_objenc.plugin.ObjEnc`
(one class would exceed what a reader takes in at once); it uses only what
``ObjEnc.plugin_init`` builds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slixmpp import JID
from slixmpp.exceptions import IqError, IqTimeout

if TYPE_CHECKING:
    from .core.revocation import Revocation
    from .glue.directory import KeyDirectory
    from .glue.outbound import Outbound
    from .glue.persistence import Persistence
    from .glue.rotation import KeyRotation
    from .keyring import Keyring
    from .own_device import RotationOutcome
    from .store import Storage

__all__ = ["PolicyApi"]


class PolicyApi:
    """Per-contact policy and key rotation (mixed into ``ObjEnc``)."""

    xmpp: Any
    keyring: Keyring
    storage: Storage
    persistence: Persistence
    outbound: Outbound
    directory: KeyDirectory
    rotation: KeyRotation

    async def allow_legacy_devices(self, jid: JID | str, allowed: bool = True) -> None:
        """Accept (and encrypt to) a JID's devices of the draft's profile although
        it has an identity; their stanzas are delivered *unauthenticated*."""
        key, value = self.keyring.allow_legacy_now(JID(jid).bare, allowed)
        await self.storage.set_setting(key, value)

    async def require_encryption(self, jid: JID | str, required: bool = True) -> None:
        """Refuse plaintext to ``jid`` even before a certificate is known."""
        await self.keyring.require_encryption(JID(jid).bare, required)

    async def set_hybrid(self, jid: JID | str, on: bool | None = True) -> None:
        """Seal stanzas to ``jid`` with the post-quantum hybrid (ML-KEM-768 with
        X25519, PROTOCOL.md 13.11), or not (``False``), or as the account's
        ``hybrid`` configuration says (``None``). With it on, devices without an
        ML-KEM key are left out, and a contact with none is not written to."""
        await self.persistence.conversations.set_hybrid(JID(jid).bare, on)

    def uses_hybrid(self, jid: JID | str) -> bool:
        """Whether stanzas to ``jid`` are sealed with the post-quantum hybrid now (a
        passphrase set, else ``set_hybrid``'s choice, else the ``hybrid``
        configuration)."""
        return self.persistence.conversations.hybrid(str(JID(jid).bare))

    async def set_passphrase(self, jid: JID | str, passphrase: str | None) -> None:
        """Share a second secret with ``jid``, agreed out of band (PROTOCOL.md 13.12):
        stretched with scrypt (about 0.35 s), mixed into every wrap of the stanzas of
        this conversation (which then use the hybrid), required on those received.
        ``None`` clears it. A wrong one fails as any undecryptable stanza (event
        reason ``passphrase``; the sender learns nothing more)."""
        await self.persistence.conversations.set_passphrase(
            self.xmpp.boundjid.bare, JID(jid).bare, passphrase
        )
        self.outbound.release_hold(JID(jid).bare)

    async def revoke_device(self, fingerprint: str) -> Revocation:
        """Revoke a lost or stolen device of our own account (its identity
        fingerprint) for every contact (PROTOCOL.md 13.13): publish a revocation
        signed by this device on our node, then treat it as removed (``revoked``
        here, its items retracted). Contacts that trust this device for our
        account stop encrypting to it at once (``objenc_device_revoked``).
        :class:`~slixmpp_objenc.core.EncryptionError` for this device itself or a
        fingerprint not held for our account."""
        own = self.xmpp.boundjid.bare
        face = self.directory.revocations.face(own, fingerprint)  # its RSA certificate
        try:
            revocation = await self.directory.revocations.publish(fingerprint)
        except (IqError, IqTimeout):
            await self._removed(own, fingerprint, face)  # not published: revoked here only
            raise
        await self._removed(own, fingerprint, face)
        return revocation

    async def _removed(self, own: str, fingerprint: str, face: str | None) -> None:
        """A lost device of ours, revoked here and retracted from our node with its
        RSA certificate (the same device's draft-profile face)."""
        if face is not None:  # first: once the device item goes, it would look new
            self.directory.remove(own, face)
            await self.directory.retract_own(face)
        self.directory.remove(own, fingerprint)

    async def set_device_label(self, label: str | None) -> None:
        """Name this device for contacts ("laptop", "phone"; cleaned to at most 32
        printable characters, PROTOCOL.md 13.6): written in a new encryption
        certificate signed by our identity (a rotation, now), published, and kept
        (it wins over the ``device_label`` configuration from then on). ``None``:
        no label."""
        await self.keyring.device.set_label(label)
        await self.rotation.run()

    async def rotate_keys(self, *, force: bool = False) -> RotationOutcome | None:
        """Replace our encryption key now if it is due (``force``: now, due or not:
        a key you suspect), destroy replaced keys past the retention, publish
        (PROTOCOL.md 13.10; this also runs at start and on a timer)."""
        return await self.rotation.run(force=force)
