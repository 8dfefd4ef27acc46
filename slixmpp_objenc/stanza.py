"""slixmpp stanza classes for the ``urn:ietf:params:xml:ns:xmpp-objenc:0`` elements
and the two RFC 3923 error conditions, laid out as slixmpp's own plugins do.
"""

from __future__ import annotations

from typing import ClassVar

from slixmpp import Iq, Message, Presence
from slixmpp.stanza import Error
from slixmpp.xmlstream import ElementBase, register_stanza_plugin

from .core.constants import NS_E2E_ERRORS, NS_OBJENC

__all__ = [
    "E2E",
    "BadTimestamp",
    "Data",
    "DecryptionFailed",
    "Key",
    "Plain",
    "Sas",
    "register_stanza_plugins",
]


class _TextValue(ElementBase):
    """An element whose character data is exposed as the ``value`` interface."""

    def get_value(self) -> str:
        return self.xml.text or ""

    def set_value(self, value: str) -> None:
        self.xml.text = value

    def del_value(self) -> None:
        self.xml.text = None


class Key(_TextValue):
    """``<key cipher-algo='...' [cert-sha256='...']>base64(K)</key>``."""

    name = "key"
    namespace = NS_OBJENC
    plugin_attrib = "key"
    interfaces: ClassVar[set[str]] = {"cipher-algo", "cert-sha256", "value"}


class Data(_TextValue):
    """``<data cipher-algo mac-algo mac-hash>base64(T)</data>``."""

    name = "data"
    namespace = NS_OBJENC
    plugin_attrib = "data"
    interfaces: ClassVar[set[str]] = {"cipher-algo", "mac-algo", "mac-hash", "mac-data", "value"}


class Plain(_TextValue):
    """``<plain timestamp='...'>base64(S')</plain>``: only ever seen decrypted."""

    name = "plain"
    namespace = NS_OBJENC
    plugin_attrib = "plain"
    interfaces: ClassVar[set[str]] = {"timestamp", "value"}


class E2E(ElementBase):
    """``<e2e/>``: the encrypted payload of a message, iq or presence.

    Its ``<key/>`` and ``<data/>`` children are wrapped on access only
    (:meth:`key_elements`, :meth:`data_element`), not registered as
    sub-plugins: an incoming stanza with thousands of children must cost no
    more to receive than any other.
    """

    name = "e2e"
    namespace = NS_OBJENC
    plugin_attrib = "e2e"
    interfaces: ClassVar[set[str]] = set()

    def key_elements(self) -> list[Key]:
        """The ``<key/>`` children, wrapped."""
        return [Key(xml=k, parent=self) for k in self.xml.findall(f"{{{NS_OBJENC}}}key")]

    def data_element(self) -> Data:
        """The ``<data/>`` child, wrapped; created if missing."""
        existing = self.xml.find(f"{{{NS_OBJENC}}}data")
        if existing is not None:
            return Data(xml=existing, parent=self)
        return Data(parent=self)

    def add_key(self, cipher_algo: str, value: str, cert_sha256: str | None = None) -> Key:
        """Append a ``<key/>`` (before ``<data/>``, as the schema orders them)."""
        key = Key()
        key["cipher-algo"] = cipher_algo
        if cert_sha256:
            key["cert-sha256"] = cert_sha256
        key["value"] = value
        data = self.xml.find(f"{{{NS_OBJENC}}}data")
        position = list(self.xml).index(data) if data is not None else len(self.xml)
        self.xml.insert(position, key.xml)
        return key


class DecryptionFailed(ElementBase):
    """Application error condition: the ``<e2e/>`` could not be opened (case 4)."""

    name = "decryption-failed"
    namespace = NS_E2E_ERRORS
    plugin_attrib = "decryption_failed"
    interfaces: ClassVar[set[str]] = set()


class BadTimestamp(ElementBase):
    """Application error condition: the timestamp failed the checks (case 3)."""

    name = "bad-timestamp"
    namespace = NS_E2E_ERRORS
    plugin_attrib = "bad_timestamp"
    interfaces: ClassVar[set[str]] = set()


def register_stanza_plugins() -> None:
    """Attach the classes to slixmpp's stanzas (idempotent)."""
    for stanza in (Message, Iq, Presence):
        register_stanza_plugin(stanza, E2E)
    register_stanza_plugin(Error, DecryptionFailed)
    register_stanza_plugin(Error, BadTimestamp)
    register_stanza_plugin(Iq, Sas)


class Certificate(_TextValue):
    """A PEP item payload: ``<certificate xmlns='...objenc:0'>base64(DER)</certificate>``."""

    name = "certificate"
    namespace = NS_OBJENC
    plugin_attrib = "objenc_certificate"
    interfaces: ClassVar[set[str]] = {"value"}


class Sas(ElementBase):
    """The short-authentication-string exchange, carried in encrypted iqs
    (PROTOCOL.md section 11).

    ``<sas xmlns='...objenc:0' sid='...' cert='fp'><commit|nonce|reveal>base64</...>
    <initiator>fp fp</initiator><responder>fp</responder></sas>``: ``cert`` is the
    sending device's certificate; ``initiator`` and ``responder`` (in the commit
    and in its answer) are the two accounts' certificate sets as the sender
    sees them, space-separated fingerprints, for a precise diagnosis when the
    sides disagree (the strings themselves are computed from each side's own
    view, never from these).
    """

    name = "sas"
    namespace = NS_OBJENC
    plugin_attrib = "objenc_sas"
    interfaces: ClassVar[set[str]] = {
        "sid",
        "cert",
        "commit",
        "nonce",
        "reveal",
        "initiator",
        "responder",
    }
    sub_interfaces: ClassVar[set[str]] = {"commit", "nonce", "reveal", "initiator", "responder"}
