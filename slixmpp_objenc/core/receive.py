"""What to do with one inbound stanza: a verdict (draft section 5).

:func:`decide` is the receiving side of the protocol as one function, in the
shape of h11's ``Connection.next_event()``: the glue hands in the stanza as
received (its XML and its parsed sender) and an :class:`InboundContext` (our
address, keys, replay state, what the key directory knows), and gets back
one :class:`Verdict`. The glue turns the verdict into events, an error
stanza and normal dispatch, and decides nothing itself.

The four cases of the draft: 1, an error from a peer that does not support
the protocol (:class:`ErrorAnswer`); 2, opened and fresh (:class:`Delivered`);
3, opened but stale (:class:`BadTimestamp`); 4, cannot be opened or
contradicts the outer addressing (:class:`DecryptionFailed`). Carbons
(XEP-0280) and archive results (XEP-0313) are opened here too
(PROTOCOL.md 5.4); plaintext is refused or passed (4, 5.5).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Final

from .addressing import Address, AddressParser
from .auth_envelope import AuthSender
from .certificates import Identity
from .constants import (
    DEFAULT_MAX_ENVELOPE_SIZE,
    NS_CLIENT,
    NS_DELAY,
    NS_E2E_ERRORS,
    NS_OBJENC,
    NS_STANZAS,
    STANZA_KINDS,
    qname,
)
from .errors import StaleStanza
from .exchanges import Exchanges
from .opening import (
    DOWNGRADE,
    KEY_DESTROYED,
    PASSPHRASE,
    UNKNOWN_SENDER,
    Opened,
    OpeningContext,
    OwnKeys,
    admit,
    open_copies,
)
from .rules import (
    SERVER_ADDED,
    ErrorBudget,
    ErrorReply,
    PlainStanza,
    ReplyPolicy,
    condition_only,
    consistent,
    error_reply,
    foreign_mechanism,
    forwarded_message,
    refuse_forwarded_plaintext,
    refuse_plaintext,
)
from .timestamps import (
    ReplayGuard,
    check_archived,
    from_our_server,
    own_server_delay,
    parse_timestamp,
    to_ms,
)

__all__ = [
    "PARK",
    "PASS",
    "PLAINTEXT_REFUSED",
    "UNAVAILABLE",
    "Admission",
    "ArchiveUnreadable",
    "BadTimestamp",
    "DecryptionFailed",
    "Delivered",
    "ErrorAnswer",
    "FetchSender",
    "ForeignEncryption",
    "InboundContext",
    "Park",
    "Pass",
    "PlaintextRefused",
    "Received",
    "Unavailable",
    "Verdict",
    "condition_only",
    "decide",
    "own_server_delay",
]

NS_CARBONS: Final = "urn:xmpp:carbons:2"
NS_FORWARD: Final = "urn:xmpp:forward:0"
NS_MAM: Final = "urn:xmpp:mam:2"
NS_EME: Final = "urn:xmpp:eme:0"

_E2E: Final = qname(NS_OBJENC, "e2e")
LOCAL_REASONS: Final = frozenset({DOWNGRADE, KEY_DESTROYED, PASSPHRASE})
"""Failures reported locally by their name; the reply to the sender is case 4's."""
_DELAY: Final = qname(NS_DELAY, "delay")
_EME: Final = qname(NS_EME, "encryption")
_ERROR: Final = qname(NS_CLIENT, "error")
_PEP_EVENT: Final = qname("http://jabber.org/protocol/pubsub#event", "event")
_BODY: Final = qname(NS_CLIENT, "body")
_SUBJECT: Final = qname(NS_CLIENT, "subject")


# -- what goes in ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """One inbound stanza as the glue received it."""

    element: ET.Element
    """The outer stanza (``{jabber:client}message|iq|presence``). :func:`decide`
    does not change it; what a verdict says to change, the glue changes."""
    sender: Address
    """Its ``from``, parsed; ``Address("")`` when it has none (our own server)."""


@dataclass(slots=True)
class InboundContext:
    """What the receiving side knows; built once by the glue, read per stanza."""

    own: Address
    """Our full JID (bare JID and resource)."""
    identities: Callable[[], Sequence[Identity]]
    """Our RSA identities, the active one first; empty while none is loaded."""
    replay_guard: ReplayGuard
    """Timestamp and replay state (section 6); :func:`decide` admits into it."""
    exchanges: Exchanges
    """Ids of encrypted stanzas sent and received."""
    clock: Callable[[], datetime]
    parse: AddressParser
    """Parses the addresses found inside envelopes and forwarded messages."""
    device_keys: Callable[[], Sequence[AuthSender]] = lambda: ()
    """Our encryption keys of the authenticated profile, the current one first."""
    destroyed_keys: Callable[[], Collection[str]] = lambda: frozenset()
    """Fingerprints of our encryption certificates whose private keys are destroyed."""
    opening: OpeningContext = field(default_factory=OpeningContext)
    """What the key directory knows about senders (which copy to open)."""
    may_fetch_sender: Callable[[str], bool] = lambda _bare: False
    """Whether a sender's node may be fetched now (an unknown device wrote)."""
    sticky: Callable[[str], bool] = lambda _bare: False
    """Whether a bare JID is known to encrypt (a certificate held, or required)."""
    is_room: Callable[[str], bool] = lambda _bare: False
    """Whether a bare JID is a multi-user chat room we joined."""
    handles_mechanism: Callable[[str], bool] = lambda _namespace: False
    """Whether another loaded plugin handles this XEP-0380 mechanism namespace."""
    encrypting_own_resource: Callable[[str], bool] = lambda _full: False
    """Whether a full JID of our own account is a client that announces this protocol."""
    ready: Callable[[], bool] = lambda: True
    """False while our keys are loading: encrypted stanzas wait (:data:`PARK`)."""
    refuse_plaintext: bool = True
    replies: ReplyPolicy = field(default_factory=lambda: ReplyPolicy(ErrorBudget(10)))
    max_envelope_size: int = DEFAULT_MAX_ENVELOPE_SIZE


# -- what comes out -----------------------------------------------------------------


class Verdict:
    """Base of every verdict."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Pass(Verdict):
    """Not ours to touch (plaintext, groupchat, another archive): deliver it as it is."""


@dataclass(frozen=True, slots=True)
class Park(Verdict):
    """Encrypted, but our keys are still loading: keep it and decide again once they are."""


@dataclass(frozen=True, slots=True)
class Unavailable(Verdict):
    """Encrypted, but we have no key at all (loading failed): dropped, logged."""


@dataclass(frozen=True, slots=True)
class PlaintextRefused(Verdict):
    """Plaintext where only ciphertext may come (PROTOCOL.md 4): dropped, reported."""


PASS: Final = Pass()
PARK: Final = Park()
UNAVAILABLE: Final = Unavailable()
PLAINTEXT_REFUSED: Final = PlaintextRefused()


@dataclass(frozen=True, slots=True)
class FetchSender(Verdict):
    """Encrypted by a device of :attr:`bare` we do not hold: fetch its node, then
    decide again (with fetching no longer allowed)."""

    bare: str


@dataclass(frozen=True, slots=True)
class Admission:
    """A stanza admitted by the replay guard, to persist (``Storage.record_admitted``)."""

    sender: str
    timestamp_ms: int
    received_ms: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class Delivered(Verdict):
    """Case 2: opened, consistent and fresh. Deliver :attr:`inner`."""

    inner: ET.Element
    """The plaintext stanza, addressed as the server stamped the outer one."""
    envelope: Opened
    """What was opened, and what it proved about the sender."""
    recipient_fingerprint: str
    """Our certificate whose key opened it."""
    sender_bare: str | None
    """Whose certificate ``encryption_info()`` reports; ``None`` for our own sent message."""
    delay: datetime | None = None
    """Our server's delay stamp (offline) or the archive's stamp."""
    admission: Admission | None = None
    """What the replay guard admitted, to persist; ``None`` when nothing is to be kept."""
    forwarded: ET.Element | None = None
    """For a carbon or archive result: the ``<forwarded/>`` whose message is to
    be replaced by :attr:`inner` in place (slixmpp's own handlers then see it)."""
    original: ET.Element | None = None
    """The forwarded ``<message/>`` that :attr:`inner` replaces."""


@dataclass(frozen=True, slots=True)
class BadTimestamp(Verdict):
    """Case 3: opened, but ``old``, ``future``, ``decreasing`` or ``replay``."""

    reason: str
    timestamp: datetime
    inner: ET.Element | None
    """The decrypted stanza for the event (``None``: report the outer one)."""
    reply: ErrorReply | None = None


@dataclass(frozen=True, slots=True)
class DecryptionFailed(Verdict):
    """Case 4: ``undecryptable`` (deliberately no finer) or ``forged``."""

    reason: str
    reply: ErrorReply | None = None


@dataclass(frozen=True, slots=True)
class ArchiveUnreadable(Verdict):
    """An archive result that cannot be opened or fails its stamp: delivered as it
    is (ciphertext) and marked with ``reason``."""

    reason: str


@dataclass(frozen=True, slots=True)
class ForeignEncryption(Verdict):
    """A message in another mechanism (XEP-0380) no loaded plugin handles."""

    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class ErrorAnswer(Verdict):
    """A plaintext error answering one of our encrypted stanzas (case 1 seen from
    the sender): delivered stripped to its type and condition (it is not
    encrypted: no text, no payload), its id set to :attr:`inner_id`."""

    inner_id: str
    peer: str
    unsupported: bool
    """``<service-unavailable/>``: the peer does not support the protocol."""
    rejected: tuple[str, ...]
    """``decryption-failed`` and/or ``bad-timestamp`` (the peer refused ours)."""


# -- the decision -----------------------------------------------------------------


def decide(received: Received, ctx: InboundContext) -> Verdict:
    """The verdict for one inbound stanza (draft section 5, PROTOCOL.md 5).

    Opens ``<e2e/>`` (direct, carbon or archive), checks the inner stanza
    against the outer one and the timestamp against ``ctx.replay_guard``
    (admitting it there), and refuses plaintext where only ciphertext may
    come. Never raises for anything a peer or server sent.
    """
    xml = received.element
    kind = xml.tag.rsplit("}", 1)[-1]
    if kind not in STANZA_KINDS:
        return PASS
    kind_type = xml.get("type", "")
    forwarded = forwarded_message(xml) if kind == "message" else None
    if forwarded is not None:  # a carbon or archive result, whatever its outer type
        return _decide_forwarded(received, *forwarded, ctx)
    if kind_type == "error":  # never opened: errors are never encrypted
        if ctx.exchanges.our_own_failure(received.sender.full, xml.get("id", "")):
            return PASS  # made by us for a request we refused to send
        answer = _error_answer(received, kind, ctx)
        return answer if answer is not None else _decide_plaintext(received, kind, kind_type, ctx)
    copies = xml.findall(_E2E)
    if not copies or (kind == "message" and kind_type == "groupchat"):
        # groupchat is never encrypted by this protocol: an <e2e/> in it is
        # meaningless, and the stanza is judged as the plaintext it is
        return _decide_plaintext(received, kind, kind_type, ctx)
    if not ctx.ready():
        return PARK
    sender = received.sender if received.sender.bare else Address(ctx.own.bare)
    stanza_id = xml.get("id", "")

    def case4(reason: str) -> DecryptionFailed:
        return DecryptionFailed(
            reason, error_reply(kind_type, reason, sender, stanza_id, ctx.replies)
        )

    if not sender.resource:
        # Encrypted stanzas come from a contact's client (a full JID); a bare
        # one would make our answers go to the server, unencrypted.
        return case4("forged")
    keys = OwnKeys(ctx.identities(), ctx.device_keys(), ctx.destroyed_keys())
    if not keys.rsa and not keys.device:
        return UNAVAILABLE
    envelope = open_copies(copies, keys, sender.bare, ctx.opening, max_size=ctx.max_envelope_size)
    if isinstance(envelope, str):
        if envelope == UNKNOWN_SENDER and ctx.may_fetch_sender(sender.bare):
            return FetchSender(sender.bare)
        failure = case4("undecryptable")  # the reply to the sender says no more than that
        if envelope in LOCAL_REASONS:
            return DecryptionFailed(envelope, failure.reply)
        return failure
    recipient_fingerprint = envelope.recipient_fingerprint
    if not consistent(kind, kind_type, envelope.stanza, sender.bare, ctx.own.bare, ctx.parse):
        return case4("forged")
    delay = own_server_delay(xml, ctx.own, ctx.parse) if kind == "message" else None
    inner = _readdressed(envelope.stanza, xml, ctx)
    now = ctx.clock()
    try:
        admit(ctx.replay_guard, sender.full, envelope, now=now, delay=delay)
    except StaleStanza as stale:
        reply = error_reply(kind_type, stale.reason, sender, stanza_id, ctx.replies)
        return BadTimestamp(stale.reason, envelope.timestamp, inner, reply)
    inner_id = inner.get("id", "")
    if kind == "iq" and inner.get("type") in ("result", "error"):
        requested_from = ctx.exchanges.pending_request(inner_id)
        if requested_from is not None:
            if requested_from != sender.full:
                return DecryptionFailed("forged")  # only the JID asked may answer
            ctx.exchanges.request_answered(inner_id)
    if inner_id:  # answers to it must be encrypted (or, for errors, empty)
        ctx.exchanges.received(sender.full, inner_id)
    return Delivered(
        inner,
        envelope,
        recipient_fingerprint,
        sender.bare,
        delay,
        Admission(sender.full, to_ms(envelope.timestamp), to_ms(now), envelope.digest),
    )


def _readdressed(inner: ET.Element, outer: ET.Element, ctx: InboundContext) -> ET.Element:
    """The inner stanza addressed as the server stamped the outer one, with what
    our server added outside (``<delay/>``, ``<stanza-id/>``): only that counts,
    so the same elements found inside (the sender's claim) are dropped."""
    _server_elements_from(inner, outer, ctx)
    for attribute in ("from", "to"):
        value = outer.get(attribute)
        if value:
            inner.set(attribute, value)
        else:
            inner.attrib.pop(attribute, None)
    return inner


def _server_elements_from(inner: ET.Element, outer: ET.Element, ctx: InboundContext) -> None:
    for child in [c for c in inner if c.tag in SERVER_ADDED]:
        inner.remove(child)
    # what another server claims is not passed on
    inner.extend(
        c for c in outer if c.tag in SERVER_ADDED and from_our_server(c, ctx.own, ctx.parse)
    )


def _error_answer(received: Received, kind: str, ctx: InboundContext) -> Verdict | None:
    """A plaintext error answering one of our encrypted stanzas: by its outer id
    from the peer we sent it to (mapped back, with what it means), or, for an
    iq request, by its inner id from anyone (it fails the request at once).
    ``None``: it answers nothing of ours that was encrypted."""
    xml = received.element
    stanza_id = xml.get("id", "")
    sender = received.sender
    mapped = ctx.exchanges.sent_to(stanza_id)
    if mapped is not None:
        inner_id, sent_to = mapped
        try:
            from_peer = not sender.bare or ctx.parse(sent_to).bare == sender.bare
        except ValueError:
            from_peer = False
        if from_peer:
            ctx.exchanges.answered(stanza_id)
            ctx.exchanges.request_answered(inner_id)
            error = xml.find(_ERROR)
            if error is None:
                return ErrorAnswer(inner_id, sender.full, False, ())
            unsupported = error.find(qname(NS_STANZAS, "service-unavailable")) is not None
            rejected = tuple(
                condition
                for condition in ("decryption-failed", "bad-timestamp")
                if error.find(qname(NS_E2E_ERRORS, condition)) is not None
            )
            return ErrorAnswer(inner_id, sender.full, unsupported, rejected)
    if kind == "iq" and ctx.exchanges.pending_request(stanza_id) is not None:
        ctx.exchanges.request_answered(stanza_id)
        return ErrorAnswer(stanza_id, sender.full, False, ())
    return None


def _decide_plaintext(
    received: Received, kind: str, kind_type: str, ctx: InboundContext
) -> Verdict:
    xml = received.element
    sender = received.sender
    stanza_id = xml.get("id", "")
    if kind == "message":
        eme = xml.find(_EME)
        if eme is not None:
            namespace = eme.get("namespace", "")
            if foreign_mechanism(namespace, ctx.handles_mechanism):
                return ForeignEncryption(namespace, eme.get("name", ""))
    if kind == "iq" and kind_type == "result" and ctx.exchanges.pending_request(stanza_id):
        return PLAINTEXT_REFUSED  # a result for an encrypted request must be encrypted
    if not ctx.refuse_plaintext:
        return PASS
    if not ctx.ready() and kind != "presence" and sender.local and sender.bare != ctx.own.bare:
        return PARK  # who encrypts is not known before our store is loaded
    plain = PlainStanza(
        kind,
        kind_type,
        sender,
        answers_our_request=kind == "iq"
        and kind_type in ("result", "error")
        and ctx.exchanges.answers_plain_request(sender.full, stanza_id),
        pep_event=kind == "message"
        and xml.find(_PEP_EVENT) is not None
        and xml.find(_BODY) is None
        and xml.find(_SUBJECT) is None,
        condition_only=kind_type == "error" and condition_only(xml),
    )
    if refuse_plaintext(
        plain,
        own=ctx.own,
        sticky=ctx.sticky,
        is_room=ctx.is_room,
        encrypting_own_resource=ctx.encrypting_own_resource,
    ):
        return PLAINTEXT_REFUSED
    return PASS


def _decide_forwarded(
    received: Received,
    kind: str,
    forwarded: ET.Element | None,
    message: ET.Element | None,
    ctx: InboundContext,
) -> Verdict:
    """A carbon or archive result: opened in place, so slixmpp's carbon and MAM
    handling see the plaintext; a forged carbon is dropped whatever it carries."""
    own = ctx.own
    origin = received.sender
    if kind in ("received", "sent"):
        if origin.bare and origin.full != own.bare:  # XEP-0280: only from our bare JID
            return DecryptionFailed("forged")
    elif origin.bare and origin.full != own.bare:
        # XEP-0313: our archive answers from our bare JID. Another's (a room's) is
        # not ours to open; a <result/> does not exempt a stanza from the
        # plaintext rule, so anything else is judged as the plaintext it is.
        return _decide_plaintext(received, "message", received.element.get("type", ""), ctx)
    archived = kind == "archive"
    if forwarded is None or message is None:
        # malformed (several wrappers, several messages, none): never delivered
        # as a carbon, never opened as an archive result
        return ArchiveUnreadable("forged") if archived else DecryptionFailed("forged")
    copies = message.findall(_E2E)
    if not copies:
        # History may hold plaintext from before; live copies may not.
        contact = message.get("to" if kind == "sent" else "from", "")
        if (
            not archived
            and ctx.refuse_plaintext
            and refuse_forwarded_plaintext(
                message.get("type", ""),
                contact,
                parse=ctx.parse,
                sticky=ctx.sticky,
                is_room=ctx.is_room,
                condition_only=message.get("type") == "error" and condition_only(message),
            )
        ):
            return PLAINTEXT_REFUSED
        return PASS

    def fail(reason: str) -> Verdict:
        # The archive result still arrives, ciphertext and all.
        return ArchiveUnreadable(reason) if archived else DecryptionFailed(reason)

    try:
        sender, to = ctx.parse(message.get("from", "")), ctx.parse(message.get("to", ""))
    except ValueError:
        return fail("forged")
    outgoing = sender.bare == own.bare
    if not sender.resource or (kind == "sent" and not outgoing):
        return fail("forged")
    if kind == "sent" and sender.full == own.full:
        return fail("forged")  # XEP-0280: never a carbon of our own stanza to us
    if not ctx.ready():
        return PARK
    if kind == "received" and to.bare != own.bare:
        return fail("forged")
    keys = OwnKeys(ctx.identities(), ctx.device_keys(), ctx.destroyed_keys())
    if not keys.rsa and not keys.device:
        return UNAVAILABLE
    # history from before a contact's migration opens, as unauthenticated
    opening = replace(ctx.opening, legacy_allowed=lambda _b: True) if archived else ctx.opening
    envelope = open_copies(
        copies,
        keys,
        sender.bare,
        opening,
        max_size=ctx.max_envelope_size,
        peer=to.bare if outgoing else sender.bare,
    )
    if isinstance(envelope, str):
        if envelope == UNKNOWN_SENDER and not archived and ctx.may_fetch_sender(sender.bare):
            return FetchSender(sender.bare)
        return fail(envelope if envelope in LOCAL_REASONS else "undecryptable")
    recipient_fingerprint = envelope.recipient_fingerprint
    inner = envelope.stanza
    recipient = to.bare if outgoing else own.bare
    if not consistent("message", message.get("type", ""), inner, sender.bare, recipient, ctx.parse):
        return fail("forged")
    stamp = None
    admission = None  # history is read again on purpose: nothing to keep
    try:
        if archived:
            delay = forwarded.find(_DELAY)
            stamp = parse_timestamp(
                delay.get("stamp", "") if delay is not None else "", utc_only=False
            )
            check_archived(envelope.timestamp, stamp)
        else:
            # a carbon our server held (stream-management hibernation) keeps the
            # time it first received it, like a direct stanza
            stamp = own_server_delay(received.element, ctx.own, ctx.parse)
            now = ctx.clock()
            admit(ctx.replay_guard, sender.full, envelope, now=now, delay=stamp)
            admission = Admission(
                sender.full, to_ms(envelope.timestamp), to_ms(now), envelope.digest
            )
    except ValueError:
        return fail("old")
    except StaleStanza as stale:
        if archived:
            return fail(stale.reason)
        return BadTimestamp(stale.reason, envelope.timestamp, None)
    for attribute in ("from", "to"):
        value = message.get(attribute)
        if value:
            inner.set(attribute, value)
    _server_elements_from(inner, message, ctx)
    return Delivered(
        inner,
        envelope,
        recipient_fingerprint,
        None if outgoing else sender.bare,
        stamp,
        admission,  # a live carbon is kept like a direct stanza: no replay after a restart
        forwarded=forwarded,
        original=message,
    )
