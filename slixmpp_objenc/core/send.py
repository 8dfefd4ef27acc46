"""What to do with one outbound stanza: a plan (draft section 4, PROTOCOL.md 4).

:func:`plan` is the sending side's decision as one function: the glue hands
in what the stanza is (an :class:`Outgoing`) and what it knows about the
recipient (a :class:`KeyDirectoryView`: the certificates held, pending key
changes, whether discovery would run), and gets back one :class:`Plan`:
send in the clear, encrypt to these certificates with this profile, wait
(keys loading, discovery, a key decision) or refuse, with the reason. The
glue executes it: it seals, parks, or drops and reports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from .addressing import Address
from .certificates import PeerCertificate
from .exchanges import Exchanges
from .rules import PROFILE_HYBRID, candidate, choose_profile, hybrid_capable, recipients

__all__ = [
    "SEND_CLEAR",
    "STRIP_ERROR",
    "Encrypt",
    "KeyDirectoryView",
    "OutboundContext",
    "Outgoing",
    "Plan",
    "Refuse",
    "SendClear",
    "StripError",
    "Wait",
    "iq_recipients",
    "plan",
]


class KeyDirectoryView(Protocol):
    """What the key directory knows about a bare JID, as the send decision reads it."""

    def usable(self, bare: str) -> Sequence[PeerCertificate]:
        """Certificates we may encrypt to now (trusted, valid, naming it)."""

    def held(self, bare: str) -> bool:
        """Whether any certificate (any trust state) is held for it."""

    def pending(self, bare: str) -> bool:
        """Whether a certificate awaits the application's decision (a key change)."""

    def sticky(self, bare: str) -> bool:
        """Whether plaintext to it is refused (a certificate was seen, or required)."""

    def would_discover(self, bare: str) -> bool:
        """Whether a key discovery (PEP) would run now (none remembered as missing)."""

    def own_devices(self) -> Sequence[PeerCertificate]:
        """Usable certificates of our own account's other clients."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One outbound stanza as the decision sees it."""

    kind: str
    """``message``, ``iq`` or ``presence``."""
    type: str
    to: Address
    id: str
    sealed: bool = False
    """It already carries an ``<e2e/>``."""
    changed_since_sealed: bool = False
    """With ``sealed``: something beside the ``<e2e/>`` is plaintext (a sealed
    object changed and sent again)."""
    muc_join: bool = False
    """A presence with a MUC ``<x/>``."""


@dataclass(slots=True)
class OutboundContext:
    """What the sending side knows; built once by the glue, read per stanza."""

    own_bare: str
    directory: KeyDirectoryView
    exchanges: Exchanges
    own_certificate: Callable[[], PeerCertificate | None]
    """Our own certificate as a recipient (sent messages readable from archives)."""
    ready: Callable[[], bool] = lambda: True
    """False while our keys load: candidates wait."""
    load_error: Callable[[], BaseException | None] = lambda: None
    """Why our keys could not be loaded: candidates are refused (fail closed)."""
    is_room: Callable[[str], bool] = lambda _bare: False
    encrypting_own_resource: Callable[[str], bool] = lambda _full: False
    """Whether a full JID of our own account is a client that announces this protocol."""
    hold_on_key_change: bool = True
    hybrid: Callable[[str], bool] = lambda _bare: False
    """Whether stanzas to a bare JID are sealed with the post-quantum hybrid."""


class Plan:
    """Base of every plan."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class SendClear(Plan):
    """Send as it is: not a candidate, or a candidate with no certificate held."""


@dataclass(frozen=True, slots=True)
class StripError(Plan):
    """An error answering an encrypted stanza: errors are never encrypted, so it
    goes with its condition only (no text, no payload)."""


SEND_CLEAR: Final = SendClear()
STRIP_ERROR: Final = StripError()


@dataclass(frozen=True, slots=True)
class Encrypt(Plan):
    """Seal for :attr:`recipients` with :attr:`profile`."""

    recipients: tuple[PeerCertificate, ...]
    profile: str
    left_out: tuple[str, ...] = ()
    """With the hybrid: fingerprints of usable devices left out because they have
    no ML-KEM key (an X25519-only wrap would undo the post-quantum protection)."""


@dataclass(frozen=True, slots=True)
class Wait(Plan):
    """Not yet: send again through every filter once :attr:`reason` is resolved."""

    bare: str
    reason: str
    """``keys`` (ours are loading), ``key-change`` (a decision is pending) or
    ``discovery`` (the contact's certificates are being fetched)."""


@dataclass(frozen=True, slots=True)
class Refuse(Plan):
    """Fail closed: the stanza is not sent; the application is told why."""

    reason: str


def plan(stanza: Outgoing, ctx: OutboundContext) -> Plan:
    """The plan for one outbound stanza (PROTOCOL.md section 4).

    Errors are never encrypted (answers to encrypted stanzas are stripped);
    an already sealed stanza goes as it is unless plaintext was added beside
    it; non-candidates go in the clear unless they answer an encrypted
    stanza; candidates wait for our keys, a pending key decision or
    discovery, then are encrypted to every usable certificate of the
    contact and of our own account, or refused if the contact is known to
    encrypt (or this answers an encrypted stanza, or goes to another client
    of ours that encrypts) and none is usable. An iq request sent in the
    clear is remembered: its answer may come back in the clear.
    """
    decision = _decide(stanza, ctx)
    if (
        decision is SEND_CLEAR
        and stanza.kind == "iq"
        and stanza.type in ("get", "set")
        and not stanza.sealed
    ):
        # Its answer may come back in the clear, from exactly this address.
        ctx.exchanges.plain_request(stanza.to.full, stanza.id)
    return decision


def _decide(stanza: Outgoing, ctx: OutboundContext) -> Plan:
    answers_encrypted = ctx.exchanges.answers_encrypted(stanza.to.full, stanza.id)
    if stanza.type == "error":
        # errors are never encrypted: to anyone who encrypts (or answering an
        # encrypted stanza) they go with their condition only
        encrypts = ctx.directory.sticky(stanza.to.bare) or (
            stanza.to.bare == ctx.own_bare and ctx.encrypting_own_resource(stanza.to.full)
        )
        return STRIP_ERROR if answers_encrypted or encrypts else SEND_CLEAR
    if stanza.sealed:
        if stanza.changed_since_sealed:
            return Refuse("plaintext beside an <e2e/>: not sent")
        return SEND_CLEAR
    bare = candidate(
        stanza.kind,
        stanza.type,
        stanza.to,
        own_bare=ctx.own_bare,
        muc_join=stanza.muc_join,
        is_room=ctx.is_room,
        encrypting_own_resource=ctx.encrypting_own_resource,
    )
    if bare is None:
        return Refuse("an answer to an encrypted stanza") if answers_encrypted else SEND_CLEAR
    directory = ctx.directory
    waiting = _wait_reason(bare, ctx)
    if waiting is not None:
        return Wait(bare, waiting)
    error = ctx.load_error()
    if error is not None:
        return Refuse(f"keys could not be loaded: {error}")
    if stanza.kind == "iq":
        chosen = iq_recipients(directory.usable(bare))
    else:
        chosen = recipients(directory.usable(bare), directory.own_devices(), ctx.own_certificate())
    if chosen and ctx.hybrid(bare):
        return _hybrid(bare, chosen)
    if chosen:
        profile = choose_profile(chosen)
        if profile is None:
            return Refuse(f"no wire profile every certificate of {bare} can open")
        return Encrypt(chosen, profile)
    if bare == ctx.own_bare or directory.sticky(bare) or answers_encrypted:
        return Refuse(
            f"{bare} has been seen with a certificate (or encryption is required), "
            "but no usable certificate is held: not sending in the clear"
        )
    return SEND_CLEAR


def _hybrid(bare: str, chosen: Sequence[PeerCertificate]) -> Plan:
    """The hybrid to every device that has an ML-KEM key, the others left out
    (PROTOCOL.md 13.11); refused if none of the contact's has one."""
    capable = tuple(p for p in chosen if hybrid_capable(p))
    if not any(bare in p.jids for p in capable):
        return Refuse(
            f"the post-quantum hybrid is on for {bare}, but none of its devices "
            "publishes an ML-KEM key: not sent (turn the hybrid off for it to send)"
        )
    left_out = tuple(p.fingerprint for p in chosen if not hybrid_capable(p))
    return Encrypt(capable, PROFILE_HYBRID, left_out)


def iq_recipients(contact: Sequence[PeerCertificate]) -> tuple[PeerCertificate, ...]:
    """Whom an iq is encrypted to: RFC 6120 section 8.2.3 allows one child in an
    iq, so it carries one ``<e2e/>`` of one profile (PROTOCOL.md 13.7): the
    contact's identities if it has any, else its RSA certificates. No copy for
    our own devices: iqs are neither carbon-copied nor archived."""
    identities = tuple(p for p in contact if p.authenticated)
    return identities or tuple(contact)


def _wait_reason(bare: str, ctx: OutboundContext) -> str | None:
    if not ctx.ready():
        return "keys"
    if ctx.load_error() is not None:
        return None
    directory = ctx.directory
    if ctx.hold_on_key_change and directory.pending(bare):
        return "key-change"
    if not directory.held(bare) and directory.would_discover(bare):
        return "discovery"
    return None
