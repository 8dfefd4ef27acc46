"""Namespaces and wire names shared by every layer."""

from __future__ import annotations

from typing import Final

NS_OBJENC: Final = "urn:ietf:params:xml:ns:xmpp-objenc:0"
"""Namespace of ``<e2e/>``, ``<key/>``, ``<data/>`` and ``<plain/>``."""

NS_E2E_ERRORS: Final = "urn:ietf:params:xml:xmpp-e2e"
"""Namespace of ``<decryption-failed/>`` and ``<bad-timestamp/>`` (RFC 3923)."""

NS_CLIENT: Final = "jabber:client"
NS_STANZAS: Final = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_DELAY: Final = "urn:xmpp:delay"

STANZA_KINDS: Final = frozenset({"message", "iq", "presence"})

DEFAULT_MAX_ENVELOPE_SIZE: Final = 256 * 1024
"""Largest ``<e2e/>`` (sum of its base64 text) accepted before any RSA work."""


def qname(ns: str, name: str) -> str:
    """ElementTree's ``{namespace}name`` form."""
    return f"{{{ns}}}{name}"
