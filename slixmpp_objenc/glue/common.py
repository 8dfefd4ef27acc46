"""Small helpers every glue module uses: addresses from slixmpp's JIDs, local
dispatch that keeps XEP-0198's counter exact, background tasks, and the
in-place XML edits slixmpp's cached sub-stanzas must forget."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, Final

from slixmpp import JID, Iq, Message, Presence
from slixmpp.xmlstream import StanzaBase

from ..core.addressing import Address
from ..core.constants import qname
from ..core.rules import ERROR_ATTRIBUTES, is_condition, is_empty_envelope

__all__ = [
    "Tasks",
    "address",
    "dispatch_local",
    "forget_plugins",
    "handles_mechanism",
    "is_room",
    "parse_address",
    "scrub",
    "strip_error",
    "subscription",
]

_ERROR_TAG = qname("jabber:client", "error")


def address(jid: JID) -> Address:
    """A slixmpp JID (already stringprepped) as the core's :class:`Address`, its
    domain without the final dot (RFC 7622 3.2: stripped before any comparison;
    slixmpp 1.17 keeps it in some spellings, so ``alice@example.org.`` would be
    another contact)."""
    domain = jid.domain.rstrip(".")
    bare = f"{jid.user}@{domain}" if jid.user else domain
    return Address(bare, jid.resource, jid.user)


def parse_address(text: str) -> Address:
    """The core's :data:`~slixmpp_objenc.core.addressing.AddressParser`, with
    slixmpp's stringprep; ``ValueError`` for an invalid JID."""
    try:
        return address(JID(text))
    except ValueError:
        raise
    except Exception as exc:  # any other failure of the JID parser: invalid
        raise ValueError(f"invalid JID {text!r}") from exc


class Tasks:
    """The plugin's background tasks, so ``plugin_end`` can cancel them all."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.running: set[asyncio.Future[Any]] = set()

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Future[Any]:
        task: asyncio.Future[Any] = asyncio.ensure_future(coro, loop=self.loop)
        self.running.add(task)
        task.add_done_callback(self.running.discard)
        return task

    def cancel_all(self) -> None:
        for task in list(self.running):
            task.cancel()


FOREIGN_HANDLERS: Final = {
    "eu.siacs.conversations.axolotl": "xep_0384",
    "urn:xmpp:omemo:2": "xep_0384",
    "urn:xmpp:openpgp:0": "xep_0373",
    "jabber:x:encrypted": "xep_0027",
}
"""Mechanisms (XEP-0380 namespaces) other plugins may handle, and those plugins."""


def handles_mechanism(xmpp: Any, namespace: str) -> bool:
    """Whether a loaded plugin handles this end-to-end encryption mechanism."""
    handler = FOREIGN_HANDLERS.get(namespace)
    return handler is not None and xmpp.plugin.get(handler, None) is not None


def is_room(xmpp: Any, bare: str) -> bool:
    """Whether ``bare`` is a multi-user chat room we joined (XEP-0045 plugin)."""
    muc = xmpp.plugin.get("xep_0045", None)
    if muc is None:
        return False
    return any(address(JID(room)).bare == bare for room in muc.get_joined_rooms())


def subscription(xmpp: Any, bare: str) -> str:
    """Our roster's presence subscription with ``bare`` (``none`` when it has none),
    read without creating an item (slixmpp makes one for any JID that sends us a
    presence, so being "in the roster" says nothing)."""
    roster = xmpp.client_roster
    return str(roster[bare]["subscription"]) if roster.has_jid(bare) else "none"


def dispatch_local(xmpp: Any, stanza: StanzaBase) -> None:
    """Hand a stanza to slixmpp's handlers that XEP-0198 already counted (or that
    never was on the wire): its counter is compensated so acks stay exact."""
    sm = xmpp.plugin.get("xep_0198", None)
    if sm is not None and sm.enabled_in and isinstance(stanza, Message | Iq | Presence):
        sm.handled = (sm.handled - 1) % 2**32
    xmpp.recv_stanza(stanza)


def strip_error(stanza: StanzaBase) -> None:
    """Keep only the error's type and condition elements: no text, no payload,
    one ``<error/>`` (slixmpp reads the last one)."""
    xml = stanza.xml
    error = xml.find(_ERROR_TAG)
    for child in list(xml):
        if child is not error and not is_empty_envelope(child):  # the marker stays
            xml.remove(child)
    if error is not None:
        error.text = None
        for name in [n for n in error.attrib if n not in ERROR_ATTRIBUTES]:
            del error.attrib[name]
        for child in list(error):
            if not is_condition(child):  # no <text/>, nothing application-specific
                error.remove(child)
            else:  # the condition alone: no address in <gone/>, nothing nested
                child.clear()
    forget_plugins(stanza)


def scrub(stanza: StanzaBase) -> None:
    """Remove every child and cached plugin, leaving only the stanza's attributes."""
    xml = stanza.xml
    for child in list(xml):
        xml.remove(child)
    xml.text = None
    forget_plugins(stanza)


def forget_plugins(stanza: StanzaBase) -> None:
    """Drop slixmpp's cached sub-stanza objects after we changed the XML under them."""
    stanza.plugins.clear()
    stanza.loaded_plugins.clear()
    stanza.iterables.clear()
