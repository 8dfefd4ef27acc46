"""Per-conversation choices of the post-quantum hybrid (PROTOCOL.md 13.11) and
of a passphrase shared with a contact (13.12), kept in the store's settings.
No slixmpp here.

* **Hybrid**: one switch per account (configuration ``hybrid``, off by
  default: it adds about 1.5 KB per recipient device) and one per contact
  (``set_hybrid``), which wins. A stanza to a contact with the hybrid on is
  sealed with it to every device, ours included, or not to that device.
* **Passphrase**: agreed out of band; stretched once with scrypt
  (:func:`~slixmpp_objenc.core.hybrid.stretch_passphrase`, salted with both
  JIDs) and kept stretched, never as typed. Setting one turns the hybrid on
  for that contact (never a passphrase-only key), and from then on only
  stanzas sealed with it open in that conversation. It guards against an
  attacker who breaks or steals the public-key secrets (a future quantum
  computer, the server); it is kept in this device's store, so it does not
  guard against a thief of the store itself.
"""

from __future__ import annotations

import asyncio
from typing import Final

from .core.certificates import Normalizer, canonical_jid
from .core.errors import EncryptionError
from .core.hybrid import stretch_passphrase
from .store import Storage

__all__ = ["HYBRID_PREFIX", "PASSPHRASE_PREFIX", "ConversationSettings"]

HYBRID_PREFIX: Final = "hybrid:"
"""Setting per contact: ``1`` on, ``0`` off (the account's default otherwise)."""
PASSPHRASE_PREFIX: Final = "passphrase:"  # noqa: S105 - a settings key
"""Setting per contact: the stretched passphrase, hex (32 bytes)."""


class ConversationSettings:
    """The hybrid switch and passphrases, per contact bare JID; cached in memory."""

    def __init__(self, storage: Storage, normalize: Normalizer) -> None:
        self._storage = storage
        self._normalize = normalize
        self.default_hybrid = False
        """The account's switch (configuration ``hybrid``)."""
        self._hybrid: dict[str, bool] = {}
        self._second: dict[str, bytes] = {}

    async def load(self) -> None:
        """Read every choice from the store."""
        hybrid = await self._storage.settings_with_prefix(HYBRID_PREFIX)
        self._hybrid = {k[len(HYBRID_PREFIX) :]: v == "1" for k, v in hybrid.items()}
        seconds = await self._storage.settings_with_prefix(PASSPHRASE_PREFIX)
        self._second = {}
        for key, value in seconds.items():
            try:
                second = bytes.fromhex(value)
            except ValueError:
                continue
            if len(second) == 32:
                self._second[key[len(PASSPHRASE_PREFIX) :]] = second

    def _bare(self, jid: str) -> str:
        try:
            return canonical_jid(jid, self._normalize)
        except ValueError as exc:
            raise EncryptionError(f"{jid!r} is not a JID: {exc}") from exc

    def hybrid(self, jid: str) -> bool:
        """Whether stanzas to ``jid`` are sealed with the hybrid: a passphrase set,
        else the contact's switch, else the account's."""
        if not self._second and not self._hybrid:
            return self.default_hybrid  # the usual case: no per-contact choice, no work
        try:
            bare = self._bare(jid)
        except EncryptionError:
            return self.default_hybrid
        if bare in self._second:
            return True
        return self._hybrid.get(bare, self.default_hybrid)

    def second(self, jid: str) -> bytes:
        """The stretched passphrase for the conversation with ``jid``, or ``b""``."""
        if not self._second:
            return b""
        try:
            return self._second.get(self._bare(jid), b"")
        except EncryptionError:
            return b""

    def has_passphrase(self, jid: str) -> bool:
        """Whether a passphrase is set for ``jid``."""
        return bool(self.second(jid))

    async def set_hybrid(self, jid: str, on: bool | None) -> None:
        """The contact's switch: ``True``/``False``, or ``None`` for the account's."""
        bare = self._bare(jid)
        if on is None:
            self._hybrid.pop(bare, None)
            await self._storage.set_setting(HYBRID_PREFIX + bare, None)
        else:
            self._hybrid[bare] = bool(on)
            await self._storage.set_setting(HYBRID_PREFIX + bare, "1" if on else "0")

    async def set_passphrase(self, own_jid: str, jid: str, passphrase: str | None) -> None:
        """Set (stretched in a worker thread: about 0.35 s) or clear the passphrase
        shared with ``jid``; :class:`EncryptionError` for an empty one."""
        bare = self._bare(jid)
        if passphrase is None:
            self._second.pop(bare, None)
            await self._storage.set_setting(PASSPHRASE_PREFIX + bare, None)
            return
        second = await asyncio.to_thread(
            stretch_passphrase, passphrase, own_jid, bare, normalize=self._normalize
        )
        await self._storage.set_setting(PASSPHRASE_PREFIX + bare, second.hex())
        self._second[bare] = second
