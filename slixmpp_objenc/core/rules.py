"""The protocol's rules, one function each: which stanzas are encrypted and to
whom, what an inner stanza must agree with, when plaintext is refused, and
when an error is sent back.

Each rule is a pure function of what the caller observed (parsed addresses,
the kind and type of a stanza, what the key directory holds), so it is tested
with plain values, and the send and receive decisions (:mod:`.send`,
:mod:`.receive`) are built from them. docs/PROTOCOL.md states each rule for
other implementations; the section is named in each docstring.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.asymmetric import rsa

from .addressing import Address, AddressParser
from .certificates import PeerCertificate
from .constants import NS_CLIENT, NS_DELAY, NS_E2E_ERRORS, NS_OBJENC, NS_STANZAS, qname

__all__ = [
    "EME_NAME",
    "ENCRYPTED_MESSAGE_TYPES",
    "ENCRYPTED_PRESENCE_TYPES",
    "ERROR_ATTRIBUTES",
    "PROFILE_AUTH",
    "PROFILE_BOTH",
    "PROFILE_DRAFT",
    "PROFILE_HYBRID",
    "SERVER_ADDED",
    "ErrorBudget",
    "ErrorReply",
    "PlainStanza",
    "ReplyPolicy",
    "archived_in_the_clear",
    "beside_forwarded",
    "candidate",
    "choose_profile",
    "condition_only",
    "consistent",
    "error_reply",
    "foreign_mechanism",
    "forwarded_message",
    "hybrid_capable",
    "is_bare_condition",
    "is_condition",
    "is_empty_envelope",
    "may_stand_beside_envelope",
    "outside_envelope",
    "recipients",
    "refuse_forwarded_plaintext",
    "refuse_plaintext",
]

ENCRYPTED_MESSAGE_TYPES: Final = frozenset({"", "normal", "chat", "headline"})
"""Message types this protocol encrypts (never ``groupchat`` or ``error``)."""
ENCRYPTED_PRESENCE_TYPES: Final = frozenset({"", "available", "unavailable"})
"""Directed presence types this protocol encrypts (never subscriptions or probes)."""

PROFILE_DRAFT: Final = "draft-miller-3923bis-02"
"""The draft's wire profile: AES-CBC + HMAC-SHA256, keys wrapped with RSA-OAEP."""
PROFILE_AUTH: Final = "auth-1"
"""The authenticated profile (PROTOCOL.md 13)."""
PROFILE_BOTH: Final = PROFILE_DRAFT + "+" + PROFILE_AUTH
PROFILE_HYBRID: Final = "auth-pq-1"
"""The authenticated profile with the post-quantum hybrid wrap for every device
(PROTOCOL.md 13.11): no draft copy, no Auth-mode wrap in the same stanza."""
"""Mixed recipients: one ``<e2e/>`` per profile in the same stanza (13.7)."""


# -- sending (PROTOCOL.md section 4) ------------------------------------------


def candidate(
    kind: str,
    kind_type: str,
    to: Address,
    *,
    own_bare: str,
    sealed: bool = False,
    muc_join: bool = False,
    is_room: Callable[[str], bool] = lambda _bare: False,
    encrypting_own_resource: Callable[[str], bool] = lambda _full: False,
) -> str | None:
    """The bare JID a stanza would be encrypted for, or ``None`` if this kind of
    stanza is never encrypted (PROTOCOL.md section 4).

    ``kind`` is ``message``, ``iq`` or ``presence``; ``sealed``: it already
    carries an ``<e2e/>``; ``muc_join``: a presence with a MUC ``<x/>``;
    ``is_room``: whether a bare JID is a room we joined;
    ``encrypting_own_resource``: whether a full JID of our own account is a
    client that announces this protocol (it is encrypted to like a contact;
    our bare JID, our own resource and other clients of ours are not).
    """
    if kind not in ("message", "iq", "presence") or sealed or kind_type == "error":
        return None
    if not to.bare or not to.local:
        return None  # no recipient, or a server
    if to.bare == own_bare and not (to.resource and encrypting_own_resource(to.full)):
        return None  # our own account: the server answers on its behalf
    if kind == "message" and kind_type not in ENCRYPTED_MESSAGE_TYPES:
        return None  # groupchat
    if kind == "presence" and (kind_type not in ENCRYPTED_PRESENCE_TYPES or muc_join):
        return None  # subscriptions, probes, MUC joins
    if kind == "iq" and not to.resource:
        return None  # an iq to a bare JID is handled by the contact's server
    if is_room(to.bare):
        return None
    return to.bare


def recipients(
    contact: Sequence[PeerCertificate],
    own_devices: Sequence[PeerCertificate] = (),
    own: PeerCertificate | None = None,
) -> tuple[PeerCertificate, ...]:
    """Every certificate a stanza to a contact is encrypted to (PROTOCOL.md 3, step 9):
    the contact's usable ones, then our account's other devices (carbons, our
    other clients), then our own (sent messages stay readable in the archive);
    each once, in that order. Empty when the contact has none."""
    if not contact:
        return ()
    result = {p.fingerprint: p for p in contact}
    for peer in own_devices:
        result.setdefault(peer.fingerprint, peer)
    if own is not None:
        result.setdefault(own.fingerprint, own)
    return tuple(result.values())


def hybrid_capable(peer: PeerCertificate) -> bool:
    """Whether a device can receive the hybrid wrap: an identity whose current
    encryption certificate came with an ML-KEM-768 certificate."""
    return peer.authenticated and peer.encryption is not None and peer.encryption.kem is not None


def choose_profile(certificates: Sequence[PeerCertificate]) -> str | None:
    """The wire profile(s) for ``certificates``, or ``None`` if one cannot be used.

    Per recipient device (PROTOCOL.md 13.7): an identity with its encryption
    certificate gets the authenticated profile, an RSA certificate the
    draft's; both kinds give :data:`PROFILE_BOTH` (one copy each). The key
    directory has already dropped RSA certificates of a JID with an identity
    (unless its legacy devices are allowed).
    """
    auth = [p for p in certificates if p.authenticated]
    if any(p.encryption is None for p in auth) or not certificates:
        return None
    if not all(isinstance(p.public_key, rsa.RSAPublicKey) for p in certificates if p not in auth):
        return None
    if not auth:
        return PROFILE_DRAFT
    return PROFILE_AUTH if len(auth) == len(certificates) else PROFILE_BOTH


NS_HINTS: Final = "urn:xmpp:hints"
NS_EME: Final = "urn:xmpp:eme:0"
EME_NAME: Final = "Object Encryption"
_HINT: Final = f"{{{NS_HINTS}}}"
_STORE: Final = qname(NS_HINTS, "store")
_NO_STORE: Final = frozenset(qname(NS_HINTS, n) for n in ("no-store", "no-permanent-store"))
_CARBONS_PRIVATE: Final = qname("urn:xmpp:carbons:2", "private")
NS_CAPS: Final = "http://jabber.org/protocol/caps"
_CAPS: Final = qname(NS_CAPS, "c")
_CAPS_ATTRIBUTES: Final = frozenset({"hash", "node", "ver", "ext"})
_ARCHIVED_CHILDREN: Final = frozenset(
    {qname(NS_CLIENT, "body"), qname(NS_CLIENT, "subject"), qname("jabber:x:conference", "x")}
)
_ARCHIVED_NAMESPACES: Final = (
    "{urn:xmpp:receipts}",
    "{urn:xmpp:chat-markers:0}",
    "{urn:xmpp:jingle-message:0}",
    "{urn:xmpp:jingle-message:1}",
)


def archived_in_the_clear(message: ET.Element) -> bool:
    """Whether a server archives this plaintext message (XEP-0313, as Prosody
    0.12's mod_mam decides): by its hints, else when it carries a body, a
    subject, a receipt, a chat marker, an invitation or a call."""
    if any(child.tag in _NO_STORE for child in message):
        return False
    for child in message:
        if child.tag == _STORE or child.tag in _ARCHIVED_CHILDREN:
            return True
        if child.tag.startswith(_ARCHIVED_NAMESPACES):
            return True
    return False


def outside_envelope(inner: ET.Element, kind: str, fallback_body: str | None) -> list[ET.Element]:
    """What goes outside the ``<e2e/>`` beside it (PROTOCOL.md 3): the server
    acts on it, or clients without this protocol show it; everything else is
    inside only.

    - server instructions, kept inside too: XEP-0334 hints and XEP-0280
      ``<private/>``;
    - for a message, the archiving decision made explicit so the server treats
      the envelope as it would the plaintext (``<store/>`` or ``<no-store/>``:
      a server may archive every message marked as encrypted);
    - for a message, XEP-0380 ``<encryption/>``, and the fallback body when
      the message has a body.
    """
    # the element alone: hints and <private/> are empty by definition, and
    # nothing the sender put in them may travel in the clear
    outside = [
        ET.Element(child.tag)
        for child in inner
        if child.tag.startswith(_HINT) or child.tag == _CARBONS_PRIVATE
    ]
    if kind == "presence":
        # XEP-0115 caps: the contact's server reads them to send it our PEP
        # notifications (XEP-0163 4); our undirected presence shows the same
        # element to every contact anyway. Attributes only.
        caps = inner.find(_CAPS)
        if caps is not None:
            outside.append(
                ET.Element(_CAPS, {k: v for k, v in caps.attrib.items() if k in _CAPS_ATTRIBUTES})
            )
    if kind != "message":
        return outside
    tags = {child.tag for child in outside}
    if archived_in_the_clear(inner):
        if _STORE not in tags:
            outside.append(ET.Element(_STORE))
    elif not tags & _NO_STORE:
        outside.append(ET.Element(qname(NS_HINTS, "no-store")))
    outside.append(
        ET.Element(qname(NS_EME, "encryption"), {"namespace": NS_OBJENC, "name": EME_NAME})
    )
    if fallback_body and inner.find(qname(NS_CLIENT, "body")) is not None:
        body = ET.Element(qname(NS_CLIENT, "body"))
        body.text = fallback_body
        outside.append(body)
    return outside


def may_stand_beside_envelope(child: ET.Element, fallback_body: str | None) -> bool:
    """Whether ``child`` is something :func:`outside_envelope` puts beside an
    ``<e2e/>`` (an empty hint or ``<private/>``, the EME marker, the fallback
    body): anything else beside one is plaintext that must not be sent."""
    if len(child):
        return False
    if child.tag.startswith(_HINT) or child.tag in (_CARBONS_PRIVATE, qname(NS_EME, "encryption")):
        return True
    if child.tag == _CAPS:
        return set(child.attrib) <= _CAPS_ATTRIBUTES
    return child.tag == qname(NS_CLIENT, "body") and (child.text or "") == (fallback_body or "")


# -- receiving (PROTOCOL.md section 5) ----------------------------------------


def _normal_type(kind: str, value: str) -> str:
    if kind == "message" and value == "":
        return "normal"
    if kind == "presence" and value == "":
        return "available"
    return value


def consistent(
    kind: str,
    kind_type: str,
    inner: ET.Element,
    sender_bare: str,
    recipient_bare: str,
    parse: AddressParser,
) -> bool:
    """The inner stanza repeats the outer kind and type, and its ``from``/``to``
    name the same bare JIDs as the outer addressing (PROTOCOL.md 5.3).

    Missing or unparsable inner addresses fail the rule (case 4, ``forged``).
    """
    if inner.tag.rsplit("}", 1)[-1] != kind:
        return False
    if _normal_type(kind, inner.get("type", "")) != _normal_type(kind, kind_type):
        return False
    inner_from, inner_to = inner.get("from"), inner.get("to")
    if not inner_from or not inner_to:
        return False
    try:
        return parse(inner_from).bare == sender_bare and parse(inner_to).bare == recipient_bare
    except ValueError:
        return False


def foreign_mechanism(eme_namespace: str | None, handled: Callable[[str], bool]) -> bool:
    """A message marked (XEP-0380) as encrypted with another mechanism that no
    loaded plugin handles (``handled`` says which do): its body is a fallback
    notice, never to be shown as the message (PROTOCOL.md 5.5)."""
    return eme_namespace is not None and eme_namespace != NS_OBJENC and not handled(eme_namespace)


@dataclass(frozen=True, slots=True)
class PlainStanza:
    """What the plaintext rule looks at in one unencrypted stanza."""

    kind: str
    type: str
    sender: Address
    answers_our_request: bool = False
    """An iq result or error whose id is that of a plaintext request we sent to
    exactly this sender (PEP items, disco, vCard...)."""
    pep_event: bool = False
    """A message carrying a PEP notification (XEP-0163) and no body or subject."""
    condition_only: bool = False
    """An error that carries only its type and condition: no ``<text/>``, no
    payload besides an empty ``<e2e/>``."""


_ERROR: Final = qname(NS_CLIENT, "error")
_TEXT: Final = qname(NS_STANZAS, "text")
_CONDITION_NAMESPACES: Final = (f"{{{NS_STANZAS}}}", f"{{{NS_E2E_ERRORS}}}")
_E2E: Final = qname(NS_OBJENC, "e2e")
SERVER_ADDED: Final = frozenset({qname(NS_DELAY, "delay"), qname("urn:xmpp:sid:0", "stanza-id")})
"""What only a server adds to a stanza it routes (XEP-0203, XEP-0359)."""


def is_condition(element: ET.Element) -> bool:
    """A defined error condition (RFC 6120 or RFC 3923's): not ``<text/>``, not
    anything application-specific."""
    return element.tag != _TEXT and element.tag.startswith(_CONDITION_NAMESPACES)


ERROR_ATTRIBUTES: Final = frozenset({"type"})
"""What an ``<error/>`` from anyone who encrypts may carry as attributes: its
type. ``by`` (RFC 6120 8.3.2) is free text its sender chose, so it is content."""


def is_bare_condition(element: ET.Element) -> bool:
    """A defined error condition that says nothing more: no text (``<gone/>`` and
    ``<redirect/>`` may carry an address, which is content), no children, no
    attributes, nothing after it."""
    return (
        is_condition(element)
        and len(element) == 0
        and not element.attrib
        and not (element.text or "").strip()
        and not (element.tail or "").strip()
    )


def is_empty_envelope(element: ET.Element) -> bool:
    """An empty ``<e2e/>``: the marker error replies carry, saying nothing."""
    return element.tag == _E2E and len(element) == 0 and not (element.text or "").strip()


def condition_only(xml: ET.Element) -> bool:
    """An error stanza that carries only its type and condition(s): an
    ``<error/>`` whose children are defined conditions, each empty (no
    ``<text/>``, no address in ``<gone/>``), and beside it at most an empty
    ``<e2e/>`` and what servers add (``<delay/>``, ``<stanza-id/>``)."""
    has_error = False
    for child in xml:
        if child.tag == _ERROR:
            if has_error or (child.text or "").strip() or set(child.attrib) - ERROR_ATTRIBUTES:
                return False  # two errors, or words of its own
            has_error = True
            if not all(is_bare_condition(condition) for condition in child):
                return False
        elif not (is_empty_envelope(child) or child.tag in SERVER_ADDED):
            return False
    return has_error


def refuse_plaintext(
    stanza: PlainStanza,
    *,
    own: Address,
    sticky: Callable[[str], bool],
    is_room: Callable[[str], bool] = lambda _bare: False,
    encrypting_own_resource: Callable[[str], bool] = lambda _full: False,
) -> bool:
    """Whether an unencrypted stanza is refused (PROTOCOL.md 4, receivers' rules):
    the server could have injected it.

    Once a contact is known to encrypt (``sticky``: a certificate is held for
    it, or encryption is required), every message and iq from its bare or
    full JIDs that is not encrypted is refused, of any type (``groupchat``
    too, unless from a room we joined), except: results and errors answering
    a plaintext request we sent to that very JID, PEP notifications from the
    bare JID, and errors that carry only a condition. Receipts and chat
    markers are not excepted: a client that encrypts sends them encrypted.
    The same holds for our own other clients that announce this protocol
    (``encrypting_own_resource``). Never presence; never a server (the
    contact's domain included), our own bare JID, or our server.
    """
    sender = stanza.sender
    if stanza.kind == "presence" or not sender.bare or not sender.local:
        return False  # presence, servers
    if stanza.answers_our_request or (stanza.type == "error" and stanza.condition_only):
        return False
    if sender.bare == own.bare:
        # Our own account: the server on our behalf (bare), or another client of
        # ours, which must encrypt once it announces this protocol.
        return (
            bool(sender.resource)
            and sender.resource != own.resource
            and (encrypting_own_resource(sender.full))
        )
    if not sticky(sender.bare) or is_room(sender.bare):
        return False
    return not (stanza.pep_event and not sender.resource)


def refuse_forwarded_plaintext(
    kind_type: str,
    contact: str,
    *,
    parse: AddressParser,
    sticky: Callable[[str], bool],
    is_room: Callable[[str], bool] = lambda _bare: False,
    condition_only: bool = False,
) -> bool:
    """A live carbon (XEP-0280) in the clear of a conversation with a contact
    known to encrypt is refused like the plaintext itself (PROTOCOL.md 5.4),
    whatever its type, unless a condition-only error or from a room.

    ``contact`` is the forwarded message's ``to`` for a sent carbon, its
    ``from`` for a received one; an unparsable one is refused.
    """
    if kind_type == "error" and condition_only:
        return False
    try:
        bare = parse(contact).bare
    except ValueError:
        return True
    return bool(bare) and sticky(bare) and not is_room(bare)


# -- error replies (PROTOCOL.md 5.2) -------------------------------------


class ErrorBudget:
    """A token bucket per sender, so a flood of bad stanzas is not answered forever.

    ``per_minute`` replies per sender and minute (0: never); at most
    ``max_senders`` buckets are kept, the oldest dropped first.
    """

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_senders: int = 10_000,
    ) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._max_senders = max_senders
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def take(self, sender: str) -> bool:
        """Spend one reply for ``sender``; ``False`` when its bucket is empty."""
        if self.per_minute <= 0:
            return False
        now = self._clock()
        tokens, last = self._buckets.pop(sender, (float(self.per_minute), now))
        tokens = min(float(self.per_minute), tokens + (now - last) * self.per_minute / 60.0)
        allowed = tokens >= 1.0
        self._buckets[sender] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > self._max_senders:
            self._buckets.popitem(last=False)
        return allowed


@dataclass(frozen=True, slots=True)
class ReplyPolicy:
    """Which error replies are sent (``pconfig``) and the budget they spend."""

    budget: ErrorBudget
    decryption_failed: bool = True
    """Case 4 replies (``error_replies``)."""
    bad_timestamp: bool = True
    """Case 3 replies (``bad_timestamp_replies``)."""


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """An error stanza to send back: same kind, ``type='error'``, an empty
    ``<e2e/>`` (never the ciphertext), and the two conditions (draft section 5)."""

    to: str
    """The sender's JID as the server stamped it."""
    id: str
    """The outer stanza's id (empty: none)."""
    condition: str
    """``bad-request`` (case 4) or ``not-acceptable`` (case 3)."""
    e2e_condition: str
    """``decryption-failed`` or ``bad-timestamp`` (urn:ietf:params:xml:xmpp-e2e)."""
    error_type: str = "modify"


_DECRYPTION_FAILURES: Final = frozenset({"undecryptable", "forged"})
_TIMESTAMP_FAILURES: Final = frozenset({"old", "future", "decreasing"})


def error_reply(
    kind_type: str, failure: str, sender: Address, stanza_id: str, policy: ReplyPolicy
) -> ErrorReply | None:
    """The error stanza answering a stanza refused for ``failure``, or ``None``
    (PROTOCOL.md 5.2).

    ``undecryptable``/``forged`` get ``<bad-request/><decryption-failed/>``
    and ``old``/``future``/``decreasing`` ``<not-acceptable/><bad-timestamp/>``
    when the policy allows; an exact ``replay`` none (usually a resend whose
    original was delivered). Never to errors, groupchat or iq results; at
    most ``policy.budget`` per sender bare JID. One call spends the budget
    once: call it once per refused stanza.
    """
    if failure in _DECRYPTION_FAILURES:
        if not policy.decryption_failed:
            return None
        condition, e2e_condition = "bad-request", "decryption-failed"
    elif failure in _TIMESTAMP_FAILURES:
        if not policy.bad_timestamp:
            return None
        condition, e2e_condition = "not-acceptable", "bad-timestamp"
    else:
        return None
    if kind_type in ("error", "groupchat", "result"):
        return None
    if not policy.budget.take(sender.bare):
        return None
    return ErrorReply(sender.full, stanza_id, condition, e2e_condition)


_FORWARD_WRAPPERS: Final = (
    ("received", qname("urn:xmpp:carbons:2", "received")),
    ("sent", qname("urn:xmpp:carbons:2", "sent")),
    ("archive", qname("urn:xmpp:mam:2", "result")),
)
_WRAPPER_TAGS: Final = frozenset(tag for _kind, tag in _FORWARD_WRAPPERS)
_FORWARDED_TAG: Final = qname("urn:xmpp:forward:0", "forwarded")
_MESSAGE_TAG: Final = qname(NS_CLIENT, "message")


def beside_forwarded(xml: ET.Element) -> list[ET.Element]:
    """What a carbon or archive result carries beside its wrapper other than what
    servers add: never part of what was forwarded, so never delivered with it
    (a server's ``<body/>`` next to an unreadable archive result, say)."""
    return [c for c in xml if c.tag not in _WRAPPER_TAGS and c.tag not in SERVER_ADDED]


def forwarded_message(
    xml: ET.Element,
) -> tuple[str, ET.Element | None, ET.Element | None] | None:
    """A carbon (XEP-0280) or archive result (XEP-0313), its ``<forwarded/>`` and
    the message it forwards; ``None`` when the message is neither. Anything but
    exactly one wrapper holding exactly one forwarded message comes back without
    them (malformed: slixmpp's own handlers might still read part of it)."""
    found = [(kind, wrapper) for kind, tag in _FORWARD_WRAPPERS for wrapper in xml.findall(tag)]
    if not found:
        return None
    kind = found[0][0]
    if len(found) != 1:
        carbon = any(k in ("received", "sent") for k, _ in found)
        return ("received" if carbon else "archive"), None, None
    forwarded = found[0][1].findall(_FORWARDED_TAG)
    messages = forwarded[0].findall(_MESSAGE_TAG) if len(forwarded) == 1 else []
    if len(messages) != 1:
        return kind, None, None
    return kind, forwarded[0], messages[0]
