"""Outbound: the ``out`` and ``out_sce`` filters execute the core's plan.

The ``out`` stage (before XEP-0198 queues a stanza) asks
:func:`~slixmpp_objenc.core.send.plan` what to do and does it: lets the stanza
through, hands on a copy to encrypt (the application's own object is never
changed), parks it until keys, discovery or a key decision are there (it then
goes through every filter again), or drops it and reports (fail closed). The
``out_sce`` stage seals that copy in place, so an XEP-0198 resend (of what
left the ``out`` stage) can only ever carry the ciphertext.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding
from slixmpp import Iq, Message, Presence
from slixmpp.xmlstream import StanzaBase, tostring

from ..core import BlockCipher, CertificateError, EncryptionError, PeerCertificate, Recipient, seal
from ..core.auth_envelope import AuthRecipient, seal_authenticated
from ..core.constants import NS_OBJENC, qname
from ..core.rules import EME_NAME, PROFILE_HYBRID, may_stand_beside_envelope, outside_envelope
from ..core.send import (
    Encrypt,
    OutboundContext,
    Outgoing,
    Refuse,
    StripError,
    Wait,
    plan,
)
from ..events import EncryptionFailedEvent
from .common import Tasks, address, dispatch_local, scrub, strip_error, subscription
from .directory import KeyDirectory
from .persistence import Persistence

__all__ = ["EME_NAME", "Outbound"]

log = logging.getLogger(__name__)

_E2E_TAG: Final = qname(NS_OBJENC, "e2e")
_MUC_TAG: Final = qname("http://jabber.org/protocol/muc", "x")
_ESCAPED: Final = re.compile("[&<>\"']")
_XML_LANG: Final = "{http://www.w3.org/XML/1998/namespace}lang"

_AUTH_KEY_SIZE: Final = 400
"""Bytes of one ``<key/>`` of the authenticated profile (two hex ids, enc, ct)."""
_HYBRID_KEY_SIZE: Final = 2000
"""Bytes of one hybrid ``<key/>`` (three hex ids, enc, ct, the ML-KEM ciphertext)."""
DEFAULT_MAX_STANZA_SIZE: Final = 256 * 1024
"""The usual server limit on one stanza (Prosody's c2s_stanza_size_limit, ejabberd's
max_stanza_size): bytes."""
SIZE_MARGIN: Final = 1024
"""Room for our stanza's own attributes, namespace declarations and what the
server adds on the way (from, stanza-id, delay)."""


class Outbound:
    """The sending side of the plugin: plans, holds, parks and seals."""

    def __init__(
        self,
        xmpp: Any,
        context: OutboundContext,
        directory: KeyDirectory,
        persistence: Persistence,
        tasks: Tasks,
        *,
        cipher: BlockCipher,
        random_bytes: Callable[[int], bytes],
        padding: int,
        fallback_body: str | None,
        max_stanza_size: int = DEFAULT_MAX_STANZA_SIZE,
    ) -> None:
        self.xmpp = xmpp
        self.context = context
        self._directory = directory
        self._persistence = persistence
        self._tasks = tasks
        self.cipher = cipher
        self.random_bytes = random_bytes
        self.padding = padding
        self.fallback_body = fallback_body
        self.max_stanza_size = max_stanza_size
        self.catch_up: Callable[[], Awaitable[object]] | None = None
        """Runs our key rotation now, when our own certificate is found unusable."""
        self._pending: weakref.WeakKeyDictionary[ET.Element, Encrypt] = weakref.WeakKeyDictionary()
        self._sealed: weakref.WeakKeyDictionary[ET.Element, tuple[Any, ...]] = (
            weakref.WeakKeyDictionary()
        )
        self._holds: dict[str, asyncio.Future[None]] = {}
        self._held: weakref.WeakKeyDictionary[ET.Element, StanzaBase] = weakref.WeakKeyDictionary()

    # -- the 'out' stage ---------------------------------------------------------

    def outgoing(self, stanza: StanzaBase) -> Outgoing:
        """What the send decision needs to know of ``stanza``."""
        xml = stanza.xml
        e2e = xml.find(_E2E_TAG)
        return Outgoing(
            kind=stanza.name,
            type=xml.get("type", ""),
            to=address(stanza["to"]),
            id=xml.get("id", ""),
            sealed=e2e is not None,
            changed_since_sealed=e2e is not None and self._changed_since_sealed(xml, e2e),
            muc_join=isinstance(stanza, Presence) and xml.find(_MUC_TAG) is not None,
        )

    def _changed_since_sealed(self, xml: ET.Element, e2e: ET.Element) -> bool:
        snapshot = self._sealed.get(xml)
        if snapshot is not None:
            return _children_snapshot(xml) != snapshot
        # not sealed by us (by hand, or a copy of one): only what we put outside
        # may stand beside it
        return any(
            c is not e2e and not may_stand_beside_envelope(c, self.fallback_body) for c in xml
        )

    def plan(self, stanza: StanzaBase) -> StanzaBase | None:
        """'out' stage, before XEP-0198 queues the stanza: decide, and drop what must
        not go in the clear. Never waits: a stanza that needs our keys loaded, a
        contact's certificates fetched, or a key change decided leaves the queue
        and is sent again once that is done (the fetch itself must not queue
        behind it)."""
        if not isinstance(stanza, Message | Iq | Presence):
            return stanza
        try:
            decision = plan(self.outgoing(stanza), self.context)
        except CertificateError as exc:
            # our own certificate is unusable (expired: no rotation ran since, the
            # process slept): fail closed, loudly, and have the rotation catch up
            self.refuse(stanza, EncryptionError(f"our certificate is unusable: {exc}"))
            if self.catch_up is not None:
                self._tasks.spawn(self.catch_up()).add_done_callback(_retrieved)
            return None
        if isinstance(decision, Encrypt):
            size = self.size_once_encrypted(stanza, decision)
            if size > self.max_stanza_size:
                # refused before XEP-0198 counts and queues it (out_sync)
                self.refuse(stanza, EncryptionError(self._too_large(size)))
                return None
            # The application keeps its object as it made it (id, body...): the
            # wire gets a copy, which XEP-0198 queues after this stage and the
            # 'out_sce' stage seals in place, so a resend is ciphertext too.
            wire: StanzaBase = copy.copy(stanza)
            self._pending[wire.xml] = decision
            return wire
        if isinstance(decision, StripError):
            wire = copy.copy(stanza)
            strip_error(wire)  # errors are never encrypted: they carry nothing else
            return wire
        if isinstance(decision, Wait):
            # a copy waits: what the application does to its object meanwhile
            # is not what was sent
            held: StanzaBase = copy.copy(stanza)
            self._held[held.xml] = held
            self._tasks.spawn(self._send_when_resolved(held, decision.bare))
            return None
        if isinstance(decision, Refuse):
            self.refuse(stanza, EncryptionError(decision.reason))
            return None
        return stanza

    def size_once_encrypted(self, stanza: StanzaBase, decision: Encrypt) -> int:
        """About how many bytes ``stanza`` takes once sealed for ``decision``: its
        content is base64-encoded twice (S' inside <plain/>, then E'), padded,
        plus one wrapped key per recipient and what stays outside."""
        content = estimated_size(stanza.xml) + 64  # the 'from' the sender adds
        envelope = (content * 4 // 3 + 80) * 4 // 3 + 300
        draft = [p.public_key for p in decision.recipients if not p.authenticated]
        copies = (1 if draft else 0) + (1 if len(draft) < len(decision.recipients) else 0)
        auth_key = _HYBRID_KEY_SIZE if decision.profile == PROFILE_HYBRID else _AUTH_KEY_SIZE
        keys = sum(
            k.key_size // 6 + 200 if isinstance(k, rsa.RSAPublicKey) else auth_key
            for k in (p.public_key for p in decision.recipients)
        )
        return copies * envelope + keys + 600 + _attributes_size(stanza.xml) + SIZE_MARGIN

    def _too_large(self, size: int) -> str:
        return (
            f"encrypted, this stanza would be about {size} bytes, over the server's "
            f"limit of {self.max_stanza_size} (max_stanza_size)"
        )

    def fail_held(self) -> None:
        """The plugin is unloaded: stanzas still waiting are reported as not sent."""
        for stanza in list(self._held.values()):
            self.refuse(stanza, EncryptionError("the plugin was unloaded before it could send"))
        self._held.clear()

    async def _send_when_resolved(self, stanza: StanzaBase, bare: str) -> None:
        """Wait for keys, discovery or a held key change, then send ``stanza`` again
        through every filter (it is decided afresh)."""
        try:
            await self._persistence.loaded.wait()
            if self._persistence.load_error is None:
                await self.resolve(bare)
                if self._awaits_own_client(stanza, bare):
                    # A client of ours that encrypts asked before its keys reached
                    # our node (it publishes them right after connecting): wait for
                    # them rather than refuse; a key decision may follow.
                    await self._directory.next_change(bare)
                    await self.resolve(bare)
        except Exception as exc:
            self._held.pop(stanza.xml, None)
            self.refuse(stanza, exc)
            return
        directory = self._directory
        if not directory.held(bare) and directory.would_discover(bare):
            directory.remember_miss(bare)  # discovery could not run: do not loop
        self._held.pop(stanza.xml, None)
        self.xmpp.send(stanza)

    def _awaits_own_client(self, stanza: StanzaBase, bare: str) -> bool:
        return (
            bare == self.context.own_bare
            and not self._directory.usable(bare)
            and self.context.encrypting_own_resource(str(stanza["to"]))
        )

    async def resolve(self, bare: str) -> list[PeerCertificate]:
        """The contact's usable certificates (after discovery and any hold); empty
        if there are none."""
        directory = self._directory
        if not directory.held(bare):
            await directory.ensure_discovered(bare)
        while self.context.hold_on_key_change and directory.pending(bare):
            hold = self._holds.get(bare)
            if hold is None or hold.done():
                hold = asyncio.get_running_loop().create_future()
                self._holds[bare] = hold
            log.info("objenc: holding a stanza to %s until its key change is decided", bare)
            await hold
        return directory.usable(bare)

    def release_hold(self, bare: str) -> None:
        """A key decision was made: held stanzas go once nothing is pending."""
        hold = self._holds.get(bare)
        if hold is not None and not hold.done() and not self._directory.pending(bare):
            hold.set_result(None)
            del self._holds[bare]

    def refuse(self, stanza: StanzaBase, error: Exception) -> None:
        """Fail closed: not sent; the application hears of it; a pending iq fails now."""
        log.warning("objenc: not sending a stanza to %s: %s", stanza["to"], error)
        self.xmpp.event("objenc_encryption_failed", EncryptionFailedEvent(stanza, error))
        if isinstance(stanza, Iq) and stanza["type"] in ("get", "set") and stanza["id"]:
            failure = Iq(self.xmpp)
            failure["id"] = stanza["id"]
            failure["from"] = stanza["to"]
            failure["to"] = self.xmpp.boundjid
            failure["type"] = "error"
            failure["error"]["type"] = "cancel"
            failure["error"]["condition"] = "policy-violation"
            failure["error"]["text"] = f"objenc: not sent: {error}"
            self.context.exchanges.refused_locally(str(stanza["to"]), stanza["id"])
            self.xmpp.loop.call_soon(dispatch_local, self.xmpp, failure)

    # -- the 'out_sce' stage -----------------------------------------------------

    def seal(self, stanza: StanzaBase) -> StanzaBase | None:
        """'out_sce' stage: encrypt in place, so a resend can only carry the ciphertext."""
        decision = self._pending.pop(stanza.xml, None)
        if decision is None:
            if not isinstance(stanza, Message | Iq | Presence):
                return stanza
            # Not the object our 'out' stage handed on (another plugin's filter
            # replaced it): decide again, and never let a candidate go in the clear.
            again = plan(self.outgoing(stanza), self.context)
            if isinstance(again, StripError):
                strip_error(stanza)
                return stanza
            if isinstance(again, Wait | Refuse):
                reason = again.reason if isinstance(again, Refuse) else "replaced after planning"
                self.refuse(stanza, EncryptionError(f"not sent: {reason}"))
                return None
            if not isinstance(again, Encrypt):
                return stanza
            decision = again
        if decision.left_out:
            log.warning(
                "objenc: post-quantum hybrid: %d device(s) without an ML-KEM key left out",
                len(decision.left_out),
            )
        try:
            self.seal_stanza(stanza, decision.recipients, hybrid=decision.profile == PROFILE_HYBRID)
        except Exception as exc:
            log.exception("objenc: encryption failed; the stanza is not sent")
            scrub(stanza)
            self.xmpp.event("objenc_encryption_failed", EncryptionFailedEvent(stanza, exc))
            return None
        return stanza

    def seal_stanza(
        self, stanza: StanzaBase, recipients: Sequence[PeerCertificate], *, hybrid: bool = False
    ) -> None:
        """Replace ``stanza``'s content with an ``<e2e/>`` for ``recipients`` (steps 1-11);
        ``hybrid``: the post-quantum wrap for every device (each must have an ML-KEM
        key), with the passphrase set for the contact, if any (PROTOCOL.md 13.11)."""
        xml = stanza.xml
        had_from = "from" in xml.attrib
        if not had_from:
            xml.set("from", self.xmpp.boundjid.full)
        try:
            stanza_string = tostring(xml, top_level=True).encode("utf-8")
        finally:
            if not had_from:
                del xml.attrib["from"]
        timestamp = self._persistence.next_timestamp()
        copies = self._seal_copies(
            stanza_string, recipients, timestamp, stanza["to"].bare, hybrid=hybrid
        )
        inner_id = xml.get("id", "")
        outer_id = self.xmpp.new_id()
        outside = outside_envelope(xml, stanza.name, self.fallback_body)
        size = (
            sum(estimated_size(e2e) for e2e in copies)
            + sum(estimated_size(e) for e in outside)
            + _attributes_size(xml)
            + SIZE_MARGIN
        )
        if size > self.max_stanza_size:
            # the server would close the stream (policy-violation) and the
            # stanza would be lost without a word: refuse it here instead
            raise EncryptionError(self._too_large(size))
        scrub(stanza)
        xml.attrib.pop(_XML_LANG, None)  # the language stays inside
        xml.set("id", outer_id)
        xml.extend(copies)
        xml.extend(outside)
        self._sealed[xml] = _children_snapshot(xml)
        request = isinstance(stanza, Iq) and xml.get("type") in ("get", "set")
        self.context.exchanges.sent(outer_id, inner_id, str(stanza["to"]), request=request)

    def _seal_copies(
        self,
        stanza_string: bytes,
        recipients: Sequence[PeerCertificate],
        timestamp: datetime,
        contact: str = "",
        *,
        hybrid: bool = False,
    ) -> list[ET.Element]:
        """One ``<e2e/>`` per profile the recipients speak (PROTOCOL.md 13.7): the
        draft's first (a draft-only receiver opens the first one), then ours."""
        second = self._persistence.conversations.second(contact) if contact else b""
        if second and not hybrid:
            raise EncryptionError(
                f"a passphrase is set for {contact}: only the hybrid may carry it"
            )
        if hybrid and any(not p.authenticated for p in recipients):
            raise EncryptionError("the hybrid has no copy for devices of the draft's profile")
        draft = [p for p in recipients if not p.authenticated]
        devices = [p for p in recipients if p.authenticated]
        copies = []
        if draft:
            named = len(draft) > 1  # one <key/> per certificate, each named
            copies.append(
                seal(
                    stanza_string,
                    [
                        Recipient(p.public_key, p.fingerprint if named else None)
                        for p in draft
                        if isinstance(p.public_key, rsa.RSAPublicKey)
                    ],
                    timestamp=timestamp,
                    cipher=self.cipher,
                    random_bytes=self.random_bytes,
                    pad_to=self.padding,
                )
            )
        if devices:
            senders = self._directory.keyring.device.senders()
            if not senders:
                raise EncryptionError("no keys of ours for the authenticated profile")
            copies.append(
                seal_authenticated(
                    stanza_string,
                    senders[0],
                    [_auth_recipient(p) for p in devices],
                    timestamp=timestamp,
                    pad_to=self.padding,
                    random_bytes=self.random_bytes,
                    introduce=self._introduction(contact),
                    hybrid=hybrid,
                    second=second,
                )
            )
        return copies

    def _introduction(self, contact: str) -> tuple[bytes, bytes] | None:
        """Our certificates, for a contact that cannot read our node (it does not
        receive our presence: PEP's ``presence`` access), so it can check who wrote."""
        keys = self._directory.keyring.device.keys
        if keys is None or not contact or contact == self.context.own_bare:
            return None
        if subscription(self.xmpp, contact) in ("from", "both"):
            return None
        return (
            keys.identity_certificate.public_bytes(Encoding.DER),
            keys.encryption_certificate.public_bytes(Encoding.DER),
        )


def _retrieved(task: Any) -> None:
    if not task.cancelled():
        task.exception()  # logged where it was raised


def _auth_recipient(peer: PeerCertificate) -> AuthRecipient:
    if peer.encryption is None:
        raise EncryptionError(f"no encryption certificate for {peer.fingerprint}")
    kem = peer.encryption.kem
    return AuthRecipient(
        bytes.fromhex(peer.fingerprint),
        bytes.fromhex(peer.encryption.fingerprint),
        peer.encryption.public_key,
        None if kem is None else bytes.fromhex(kem.fingerprint),
        None if kem is None else kem.public_key,
    )


def estimated_size(element: ET.Element) -> int:
    """About how many bytes ``element`` serializes to in UTF-8, escaping included
    (an upper estimate), without serializing it."""
    size = 0
    for node in element.iter():
        tag = node.tag.rsplit("}", 1)[-1]
        size += 2 * len(tag) + 5 + _text_size(node.text) + _text_size(node.tail)
        size += _attributes_size(node)
        if node.tag.startswith("{"):
            size += len(node.tag) - len(tag) + 8  # an xmlns declaration
    return size


def _text_size(text: str | None) -> int:
    if not text:
        return 0
    size = len(text) if text.isascii() else len(text.encode("utf-8"))
    if "&" in text or "<" in text or ">" in text or '"' in text or "'" in text:
        size += 5 * len(_ESCAPED.findall(text))  # &amp; &lt; ...
    return size  # base64, the bulk of an envelope, needs none


def _attributes_size(element: ET.Element) -> int:
    return sum(len(k) + _text_size(v) + 4 for k, v in element.items())


def _children_snapshot(xml: ET.Element) -> tuple[Any, ...]:
    """What a sealed stanza looked like: its children, their texts and attributes
    (cheap: no serialization), so a changed object sent again is caught."""
    return tuple((id(c), c.tag, c.text, tuple(c.items()), len(c)) for c in xml)
