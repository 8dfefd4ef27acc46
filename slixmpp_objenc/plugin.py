"""The slixmpp glue: filters, handlers, events and disco.

Thin by design: every decision about bytes, algorithms and timestamps is made
by :mod:`slixmpp_objenc.core`; this module only decides *which* stanzas go
through it and wires the results into slixmpp's dispatch.
"""

from __future__ import annotations

import copy
import logging
import os
import time
import weakref
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from slixmpp import JID, Iq, Message, Presence
from slixmpp.plugins import BasePlugin
from slixmpp.xmlstream import StanzaBase, tostring

from .core import (
    BLOCK_CIPHERS,
    CertificateError,
    EncryptionError,
    Identity,
    InvalidEnvelope,
    PeerCertificate,
    Recipient,
    ReplayGuard,
    StaleStanza,
    TimestampSource,
    generate_identity,
    load_certificate,
    load_private_key,
    open_envelope,
    parse_timestamp,
    seal,
    validate_peer_certificate,
)
from .core.constants import (
    DEFAULT_MAX_ENVELOPE_SIZE,
    NS_DELAY,
    NS_E2E_ERRORS,
    NS_OBJENC,
    NS_STANZAS,
    qname,
)
from .core.timestamps import utcnow
from .events import (
    BadTimestampEvent,
    DecryptionFailedEvent,
    EncryptionFailedEvent,
    EncryptionInfo,
    PeerRejectedEvent,
    UnsupportedEvent,
)
from .stanza import register_stanza_plugins

__all__ = ["ObjEnc"]

log = logging.getLogger(__name__)

_E2E_TAG = qname(NS_OBJENC, "e2e")
_DELAY_TAG = qname(NS_DELAY, "delay")
_MUC_TAG = qname("http://jabber.org/protocol/muc", "x")
NS_HINTS = "urn:xmpp:hints"
_BODY_TAG = qname("jabber:client", "body")
_NO_STORE = frozenset(qname(NS_HINTS, n) for n in ("no-store", "no-permanent-store"))
_ENCRYPTED_PRESENCE_TYPES = frozenset({"", "available", "unavailable"})
_ENCRYPTED_MESSAGE_TYPES = frozenset({"", "normal", "chat", "headline"})
_OUTER_ID_MEMORY = 4096


class _ErrorBudget:
    """Token bucket per sender, so a flood of bad stanzas is not answered forever."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, sender: str) -> bool:
        if self.per_minute <= 0:
            return False
        now = self._clock()
        tokens, last = self._buckets.pop(sender, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - last) * self.per_minute / 60.0)
        allowed = tokens >= 1.0
        self._buckets[sender] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > 10_000:
            self._buckets.popitem(last=False)
        return allowed


class ObjEnc(BasePlugin):
    """End-to-end object encryption (draft-miller-3923bis-02) for slixmpp.

    Configuration (``pconfig``):

    ``key_file``, ``cert_file``, ``key_password``
        our RSA private key and certificate (PEM). Without them an in-memory
        identity is generated for this run (not persisted).
    ``cipher``
        block cipher for outgoing stanzas; default ``AES-128-CBC-PKCS5-WITH-IV``.
    ``error_replies``
        send ``<bad-request/><decryption-failed/>`` for case 4 (default on).
    ``bad_timestamp_replies``
        send ``<not-acceptable/><bad-timestamp/>`` for case 3 (default on).
    ``error_replies_per_minute``
        cap on error replies per sender (default 10).

    Expert knobs, for tests and unusual deployments: ``identity`` (an
    :class:`~slixmpp_objenc.core.Identity`), ``clock`` (returns an aware UTC
    datetime), ``random_bytes``, ``max_envelope_size``, ``replay_guard``.
    """

    name = "objenc"
    description = "End-to-End Object Encryption (draft-miller-3923bis-02)"
    dependencies: ClassVar[set[str]] = {"xep_0030"}
    default_config: ClassVar[dict[str, Any]] = {
        "key_file": None,
        "cert_file": None,
        "key_password": None,
        "identity": None,
        "cipher": "AES-128-CBC-PKCS5-WITH-IV",
        "error_replies": True,
        "bad_timestamp_replies": True,
        "error_replies_per_minute": 10,
        "max_envelope_size": DEFAULT_MAX_ENVELOPE_SIZE,
        "clock": None,
        "random_bytes": None,
        "replay_guard": None,
    }

    # -- lifecycle ---------------------------------------------------------

    def plugin_init(self) -> None:
        register_stanza_plugins()
        self._clock: Callable[[], datetime] = self.config.get("clock") or utcnow
        self._random_bytes: Callable[[int], bytes] = self.config.get("random_bytes") or os.urandom
        cipher = BLOCK_CIPHERS.get(self.config.get("cipher") or "")
        if cipher is None:
            raise EncryptionError(f"unknown cipher {self.config.get('cipher')!r}")
        self._cipher = cipher
        self.identity: Identity = self._load_identity()
        self._timestamps = TimestampSource(self._clock)
        self.replay_guard: ReplayGuard = self.config.get("replay_guard") or ReplayGuard()
        self._peers: dict[str, PeerCertificate] = {}
        self._pending: weakref.WeakKeyDictionary[ET.Element, list[PeerCertificate]] = (
            weakref.WeakKeyDictionary()
        )
        self._info: weakref.WeakKeyDictionary[ET.Element, EncryptionInfo] = (
            weakref.WeakKeyDictionary()
        )
        self._outer_ids: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._error_budget = _ErrorBudget(int(self.config.get("error_replies_per_minute", 10)))

        self.xmpp.add_filter("out", self._plan_outbound)
        self.xmpp.add_filter("out_sce", self._seal_outbound)
        self.xmpp.add_filter("in", self._receive)
        self.xmpp.add_event_handler("session_bind", self._on_session_bind)

    def plugin_end(self) -> None:
        self.xmpp.del_filter("out", self._plan_outbound)
        self.xmpp.del_filter("out_sce", self._seal_outbound)
        self.xmpp.del_filter("in", self._receive)
        self.xmpp.del_event_handler("session_bind", self._on_session_bind)
        disco = self.xmpp.plugin.get("xep_0030", None)
        if disco is not None:
            disco.del_feature(feature=NS_OBJENC)

    def session_bind(self, jid: JID) -> None:
        self.xmpp.plugin["xep_0030"].add_feature(NS_OBJENC)

    def _on_session_bind(self, jid: JID) -> None:
        # Stay the last 'in' filter: XEP-0198 must count each wire stanza
        # before we drop or replace it, and must not count it twice.
        self.xmpp.del_filter("in", self._receive)
        self.xmpp.add_filter("in", self._receive)

    def _load_identity(self) -> Identity:
        configured = self.config.get("identity")
        if isinstance(configured, Identity):
            identity = configured
        elif self.config.get("key_file") or self.config.get("cert_file"):
            key_file, cert_file = self.config.get("key_file"), self.config.get("cert_file")
            if not (key_file and cert_file):
                raise EncryptionError("key_file and cert_file must be given together")
            password = self.config.get("key_password")
            if isinstance(password, str):
                password = password.encode()
            try:
                key = load_private_key(Path(key_file).read_bytes(), password)
                cert = load_certificate(Path(cert_file).read_bytes())
                identity = Identity(key, cert)
            except (OSError, CertificateError) as exc:
                raise EncryptionError(f"cannot load our key or certificate: {exc}") from exc
        else:
            log.warning("objenc: no key_file/cert_file; using a throwaway in-memory identity")
            identity = generate_identity(self.xmpp.boundjid.bare or "unknown@invalid")
        try:
            own = validate_peer_certificate(identity.certificate, now=self._clock())
        except CertificateError as exc:
            raise EncryptionError(f"our own certificate is unusable: {exc}") from exc
        bare = self.xmpp.boundjid.bare
        if bare and JID(bare).bare not in {JID(j).bare for j in own.jids}:
            raise EncryptionError(f"our certificate does not name {bare}")
        return identity

    # -- public API --------------------------------------------------------

    @property
    def fingerprint(self) -> str:
        """SHA-256 fingerprint (lowercase hex) of our certificate."""
        return self.identity.fingerprint

    def certificate_pem(self) -> bytes:
        """Our certificate, to hand to peers."""
        return self.identity.certificate_pem()

    def add_peer_certificate(self, pem: bytes) -> PeerCertificate:
        """Trust a peer certificate for the JIDs its ``id-on-xmppAddr`` names.

        Raises :class:`~slixmpp_objenc.core.CertificateError` with the reason.
        """
        peer = validate_peer_certificate(pem, now=self._clock())
        for jid in peer.jids:
            self._peers[JID(jid).bare] = peer
        return peer

    def remove_peer_certificate(self, jid: JID | str) -> None:
        """Forget the certificate held for a bare JID: stanzas to it go in the clear."""
        self._peers.pop(JID(jid).bare, None)

    def peer_certificate(self, jid: JID | str) -> PeerCertificate | None:
        """The certificate held for a JID's bare part, if any."""
        return self._peers.get(JID(jid).bare)

    def encryption_info(self, stanza: StanzaBase) -> EncryptionInfo | None:
        """How ``stanza`` arrived: ``None`` if it was not encrypted."""
        return self._info.get(stanza.xml)

    # -- outbound ----------------------------------------------------------

    def recipients_for(self, stanza: StanzaBase) -> list[PeerCertificate] | None:
        """The certificates ``stanza`` would be encrypted to, or ``None`` to send it as is."""
        if not isinstance(stanza, Message | Iq | Presence):
            return None
        if stanza.xml.find(_E2E_TAG) is not None:
            return None
        kind_type = stanza.xml.get("type", "")
        if kind_type == "error":
            return None
        to = stanza["to"]
        if not to or not to.user:
            return None  # no recipient, or a server
        if to.bare == self.xmpp.boundjid.bare:
            return None  # our own account: the server answers on its behalf
        if isinstance(stanza, Message) and kind_type not in _ENCRYPTED_MESSAGE_TYPES:
            return None  # groupchat
        if isinstance(stanza, Presence) and (
            kind_type not in _ENCRYPTED_PRESENCE_TYPES or stanza.xml.find(_MUC_TAG) is not None
        ):
            return None  # subscriptions, probes, MUC joins
        if isinstance(stanza, Iq) and not to.resource:
            return None  # an iq to a bare JID is handled by the contact's server
        if self._is_muc(to):
            return None
        peer = self._peers.get(to.bare)
        if peer is None:
            return None
        return [peer]

    def _is_muc(self, jid: JID) -> bool:
        muc = self.xmpp.plugin.get("xep_0045", None)
        rooms = getattr(muc, "rooms", None) if muc is not None else None
        return bool(rooms) and jid.bare in rooms  # type: ignore[operator]

    def _plan_outbound(self, stanza: StanzaBase) -> StanzaBase | None:
        """'out' stage, before XEP-0198 queues the stanza: decide, drop if we must."""
        try:
            recipients = self.recipients_for(stanza)
        except Exception as exc:
            log.exception("objenc: cannot decide how to send a stanza; not sending it")
            self.xmpp.event("objenc_encryption_failed", EncryptionFailedEvent(stanza, exc))
            return None
        if recipients:
            self._pending[stanza.xml] = recipients
        return stanza

    def _seal_outbound(self, stanza: StanzaBase) -> StanzaBase | None:
        """'out_sce' stage: encrypt in place, so a resend can only carry the ciphertext."""
        recipients = self._pending.pop(stanza.xml, None)
        if not recipients:
            return stanza
        try:
            self.seal_stanza(stanza, recipients)
        except Exception as exc:
            log.exception("objenc: encryption failed; the stanza is not sent")
            _scrub(stanza)
            self.xmpp.event("objenc_encryption_failed", EncryptionFailedEvent(stanza, exc))
            return None
        return stanza

    def seal_stanza(self, stanza: StanzaBase, recipients: list[PeerCertificate]) -> None:
        """Replace ``stanza``'s content with an ``<e2e/>`` for ``recipients`` (steps 1-11)."""
        xml = stanza.xml
        had_from = "from" in xml.attrib
        if not had_from:
            xml.set("from", self.xmpp.boundjid.full)
        try:
            stanza_string = tostring(xml, top_level=True).encode("utf-8")
        finally:
            if not had_from:
                del xml.attrib["from"]
        e2e = seal(
            stanza_string,
            [Recipient(p.public_key) for p in recipients],
            timestamp=self._timestamps.next(),
            cipher=self._cipher,
            random_bytes=self._random_bytes,
        )
        inner_id = xml.get("id", "")
        outer_id = self.xmpp.new_id()
        hints = [copy.copy(child) for child in xml if child.tag.startswith(f"{{{NS_HINTS}}}")]
        archivable = (
            isinstance(stanza, Message)
            and xml.find(_BODY_TAG) is not None
            and not any(h.tag in _NO_STORE for h in hints)
        )
        _scrub(stanza)
        xml.set("id", outer_id)
        xml.append(e2e)
        # Processing hints are for the server: they stay outside (and inside).
        for hint in hints:
            xml.append(hint)
        if archivable and not any(h.tag == qname(NS_HINTS, "store") for h in hints):
            ET.SubElement(xml, qname(NS_HINTS, "store"))
        self._outer_ids[outer_id] = (inner_id, str(stanza["to"]))
        while len(self._outer_ids) > _OUTER_ID_MEMORY:
            self._outer_ids.popitem(last=False)

    # -- inbound -----------------------------------------------------------

    def _receive(self, stanza: StanzaBase) -> StanzaBase | None:
        """'in' filter: open ``<e2e/>``, hand back the plaintext; never raises."""
        try:
            return self._receive_unsafe(stanza)
        except Exception:
            log.exception("objenc: unexpected failure handling an inbound stanza; dropped")
            return None

    def _receive_unsafe(self, stanza: StanzaBase) -> StanzaBase | None:
        if not isinstance(stanza, Message | Iq | Presence):
            return stanza
        xml = stanza.xml
        kind_type = xml.get("type", "")
        if kind_type == "error":
            return self._receive_error(stanza)
        e2e = xml.find(_E2E_TAG)
        if e2e is None:
            return stanza
        if isinstance(stanza, Message) and kind_type == "groupchat":
            return stanza  # not ours to open: groupchat is never encrypted by this protocol
        sender = stanza["from"] if stanza["from"] else JID(self.xmpp.boundjid.bare)
        try:
            opened = open_envelope(
                e2e,
                self.identity.private_key,
                key_id=self.identity.fingerprint,
                max_size=int(self.config.get("max_envelope_size", DEFAULT_MAX_ENVELOPE_SIZE)),
            )
        except InvalidEnvelope:
            self._decryption_failed(stanza, sender, "undecryptable")
            return None
        inner = opened.stanza
        if not self._matches_outer(stanza, inner, sender):
            self._decryption_failed(stanza, sender, "forged")
            return None

        delay = _delay_stamp(stanza) if isinstance(stanza, Message) else None
        delivered = self._inner_to_stanza(stanza, inner)
        try:
            self.replay_guard.admit(
                sender.full, opened.timestamp, opened.digest, now=self._clock(), delay=delay
            )
        except StaleStanza as stale:
            self._bad_timestamp(stanza, delivered, sender, stale.reason, opened.timestamp)
            return None

        peer = self._peers.get(sender.bare)
        self._info[delivered.xml] = EncryptionInfo(
            timestamp=opened.timestamp,
            cipher=opened.cipher,
            recipient_fingerprint=self.identity.fingerprint,
            sender_fingerprint=peer.fingerprint if peer else None,
            delay=delay,
        )
        self.xmpp.event("objenc_decrypted", delivered)
        return delivered

    def _matches_outer(self, outer: StanzaBase, inner: ET.Element, sender: JID) -> bool:
        """The inner stanza must repeat the outer kind, type and addressing."""
        if inner.tag.rsplit("}", 1)[-1] != outer.name:
            return False
        if _normal_type(outer.name, inner.get("type", "")) != _normal_type(
            outer.name, outer.xml.get("type", "")
        ):
            return False
        inner_from, inner_to = inner.get("from"), inner.get("to")
        if not inner_from or not inner_to:
            return False
        try:
            if JID(inner_from).bare != sender.bare:
                return False
            return bool(JID(inner_to).bare == self.xmpp.boundjid.bare)
        except Exception:
            return False

    def _inner_to_stanza(self, outer: StanzaBase, inner: ET.Element) -> StanzaBase:
        """A slixmpp stanza for the plaintext, addressed as the server stamped the outer one."""
        delay = outer.xml.find(_DELAY_TAG)
        if delay is not None and inner.find(_DELAY_TAG) is None:
            inner.append(delay)
        for attribute in ("from", "to"):
            value = outer.xml.get(attribute)
            if value:
                inner.set(attribute, value)
            else:
                inner.attrib.pop(attribute, None)
        delivered: StanzaBase = self.xmpp._build_stanza(inner)
        return delivered

    def _receive_error(self, stanza: StanzaBase) -> StanzaBase:
        """An error answering one of our encrypted stanzas: map its id back, tell the app."""
        mapped = self._outer_ids.pop(stanza.xml.get("id", ""), None)
        if mapped is None:
            return stanza
        inner_id, _to = mapped
        stanza.xml.set("id", inner_id)
        error = stanza.xml.find(qname("jabber:client", "error"))
        if error is None:
            return stanza
        peer = str(stanza["from"])
        if error.find(qname(NS_STANZAS, "service-unavailable")) is not None:
            self.xmpp.event("objenc_unsupported", UnsupportedEvent(stanza, peer))
        for condition in ("decryption-failed", "bad-timestamp"):
            if error.find(qname(NS_E2E_ERRORS, condition)) is not None:
                self.xmpp.event("objenc_rejected", PeerRejectedEvent(stanza, peer, condition))
        return stanza

    def _decryption_failed(self, stanza: StanzaBase, sender: JID, reason: str) -> None:
        log.info("objenc: cannot open <e2e/> from %s (%s)", sender, reason)
        self.xmpp.event("objenc_decryption_failed", DecryptionFailedEvent(stanza, reason))
        if self.config.get("error_replies", True):
            self._reply_error(stanza, sender, "bad-request", "decryption-failed")

    def _bad_timestamp(
        self,
        outer: StanzaBase,
        delivered: StanzaBase,
        sender: JID,
        reason: str,
        timestamp: datetime,
    ) -> None:
        log.info("objenc: %s timestamp from %s refused", reason, sender)
        self.xmpp.event("objenc_bad_timestamp", BadTimestampEvent(delivered, reason, timestamp))
        if self.config.get("bad_timestamp_replies", True):
            self._reply_error(outer, sender, "not-acceptable", "bad-timestamp")

    def _reply_error(
        self, stanza: StanzaBase, sender: JID, condition: str, e2e_condition: str
    ) -> None:
        """At most one error per stanza, never to errors, groupchat or iq results."""
        kind_type = stanza.xml.get("type", "")
        if kind_type in ("error", "groupchat", "result"):
            return
        if not self._error_budget.take(sender.bare):
            log.info("objenc: error replies to %s rate-limited", sender.bare)
            return
        reply = type(stanza)(self.xmpp)
        reply["to"] = sender
        if stanza["id"]:
            reply["id"] = stanza["id"]
        reply["type"] = "error"
        reply.xml.append(ET.Element(_E2E_TAG))
        reply["error"]["type"] = "modify"
        reply["error"]["condition"] = condition
        reply["error"].xml.append(ET.Element(qname(NS_E2E_ERRORS, e2e_condition)))
        reply.send()


def _normal_type(kind: str, value: str) -> str:
    if kind == "message" and value == "":
        return "normal"
    if kind == "presence" and value == "":
        return "available"
    return value


def _delay_stamp(stanza: StanzaBase) -> datetime | None:
    delay = stanza.xml.find(_DELAY_TAG)
    if delay is None:
        return None
    try:
        return parse_timestamp(delay.get("stamp", ""), utc_only=False)
    except ValueError:
        return None


def _scrub(stanza: StanzaBase) -> None:
    """Remove every child and cached plugin, leaving only the stanza's attributes."""
    xml = stanza.xml
    for child in list(xml):
        xml.remove(child)
    xml.text = None
    stanza.plugins.clear()
    stanza.loaded_plugins.clear()
    stanza.iterables.clear()
