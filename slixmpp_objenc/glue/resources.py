"""Our own account's other clients that announce this protocol.

Stanzas to another client of ours are encrypted like stanzas to a contact
once that client announces this protocol (XEP-0115 caps / XEP-0030
disco#info feature), or has sent us an encrypted stanza; plaintext from such
a client is then refused like a contact's. Another client on the same
account that does not announce it keeps working in the clear (PROTOCOL.md 4).
"""

from __future__ import annotations

import logging
from typing import Any, Final

from slixmpp import JID, Iq, Presence
from slixmpp.exceptions import IqError, IqTimeout

from ..core.constants import NS_OBJENC
from .common import Tasks

__all__ = ["OwnResources"]

log = logging.getLogger(__name__)

_NS_CAPS: Final = "http://jabber.org/protocol/caps"

MAX_OWN_RESOURCES: Final = 256
"""Clients of our own account remembered as encrypting. Past this many (only a
server inventing resources gets there) every client of ours counts as
encrypting: stanzas to one that does not would be refused, never sent in the
clear."""


class OwnResources:
    """Which full JIDs of our own account are clients that encrypt."""

    def __init__(self, xmpp: Any, tasks: Tasks, *, timeout: float = 10.0) -> None:
        self.xmpp = xmpp
        self._tasks = tasks
        self._timeout = timeout
        self._encrypting: dict[str, None] = {}
        self._asked: dict[str, str] = {}
        """Clients asked already (until they go offline), with the entity
        capabilities (XEP-0115 ``ver``) they had: one disco#info each, again
        only when their features change (a plugin loaded after their first
        presence announces the protocol then)."""

    def encrypting(self, full: str) -> bool:
        """Whether ``full`` (a JID of our own account) is a client that encrypts.

        Once it announced the protocol (or sent an envelope), it is encrypted to
        for the rest of the session: the server relays its presence and answers
        for it, so neither an "unavailable" nor a flood of invented resources
        makes us forget it (fail closed)."""
        if full in self._encrypting:
            return True
        return len(self._encrypting) >= MAX_OWN_RESOURCES and full != self.xmpp.boundjid.full

    def encrypts(self, full: str) -> None:
        """``full`` sent us an encrypted stanza, or announced the protocol."""
        own = self.xmpp.boundjid
        jid = JID(full)
        if jid.bare != own.bare or not jid.resource or jid.full == own.full:
            return
        if len(self._encrypting) < MAX_OWN_RESOURCES:
            self._encrypting[jid.full] = None

    def on_presence(self, presence: Presence) -> None:
        """Presence from another client of ours: learn whether it encrypts."""
        sender = presence["from"]
        own = self.xmpp.boundjid
        if sender.bare != own.bare or not sender.resource or sender.full == own.full:
            return
        caps = presence.xml.find(f"{{{_NS_CAPS}}}c")
        ver = "" if caps is None else caps.get("ver", "")
        if presence["type"] == "unavailable":
            self._asked.pop(sender.full, None)  # asked again when it is back
        elif sender.full not in self._encrypting and self._asked.get(sender.full) != ver:
            self._asked.pop(sender.full, None)
            self._asked[sender.full] = ver
            while len(self._asked) > MAX_OWN_RESOURCES:
                del self._asked[next(iter(self._asked))]
            self._tasks.spawn(self._look_up(sender))

    async def _look_up(self, jid: JID) -> None:
        try:
            info = await self.xmpp.plugin["xep_0030"].get_info(
                jid=jid, cached=False, timeout=self._timeout
            )
        except (IqError, IqTimeout) as exc:
            log.info("objenc: no disco#info from our client %s (%s)", jid, exc)
            return
        if isinstance(info, Iq):
            info = info["disco_info"]
        if NS_OBJENC in set(info["features"]):
            log.info("objenc: our client %s encrypts: stanzas to it are encrypted", jid)
            self.encrypts(jid.full)
