"""Inbound: the ``in`` filter executes the core's verdict.

For every stanza it asks :func:`~slixmpp_objenc.core.receive.decide` and
turns the verdict into slixmpp's normal dispatch (the plaintext stanza in
place of the ciphertext), events, an error stanza, a parked stanza (our keys
still loading) or nothing (dropped). It also reads the server archive
(XEP-0313) and answers ``encryption_info()``.
"""

from __future__ import annotations

import functools
import logging
import time
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final

from slixmpp import JID, Iq, Message, Presence
from slixmpp.xmlstream import StanzaBase

from ..core import EncryptionError, Identity, ReplayGuard
from ..core.auth_envelope import introduction, is_authenticated
from ..core.constants import DEFAULT_MAX_ENVELOPE_SIZE, NS_E2E_ERRORS, NS_OBJENC, qname
from ..core.exchanges import Exchanges
from ..core.opening import DOWNGRADE, Opened, OpeningContext
from ..core.receive import (
    NS_FORWARD,
    NS_MAM,
    ArchiveUnreadable,
    BadTimestamp,
    DecryptionFailed,
    Delivered,
    ErrorAnswer,
    FetchSender,
    ForeignEncryption,
    InboundContext,
    Park,
    Pass,
    PlaintextRefused,
    Received,
    Verdict,
    decide,
)
from ..core.rules import ErrorBudget, ErrorReply, ReplyPolicy, beside_forwarded
from ..events import (
    ArchivedMessage,
    BadTimestampEvent,
    DecryptionFailedEvent,
    EncryptionInfo,
    ForeignEncryptionEvent,
    PeerRejectedEvent,
    UnsupportedEvent,
)
from ..keyring import Keyring
from .common import (
    Tasks,
    address,
    dispatch_local,
    forget_plugins,
    handles_mechanism,
    is_room,
    parse_address,
    strip_error,
    subscription,
)
from .directory import KeyDirectory
from .persistence import Persistence
from .resources import OwnResources

__all__ = ["Inbound"]

log = logging.getLogger(__name__)

MAX_PARKED: Final = 1000
"""Encrypted stanzas kept while our keys load; more are dropped (reported)."""
MAX_AWAITING_SENDER: Final = 64
"""Stanzas kept per sender while its node is fetched; more are refused (reported)."""
MAX_AWAITING_TOTAL: Final = 256
"""Stanzas kept in all while senders' nodes are fetched."""
MAX_SENDERS_AWAITED: Final = 16
"""Senders whose nodes are fetched at once."""
SENDER_REFETCH_SECONDS: Final = 60.0
"""A sender's node is fetched for an unknown device at most this often: a server
sending stanzas that claim unknown devices cannot make us fetch without end."""

_E2E_TAG: Final = qname(NS_OBJENC, "e2e")
_ARCHIVED_MESSAGE: Final = f"{{{NS_MAM}}}result/{{{NS_FORWARD}}}forwarded/{{jabber:client}}message"


class Inbound:
    """The receiving side of the plugin: executes verdicts, keeps what was decrypted."""

    def __init__(
        self,
        xmpp: Any,
        context: InboundContext,
        directory: KeyDirectory,
        persistence: Persistence,
        keyring: Keyring,
        resources: OwnResources,
        tasks: Tasks,
    ) -> None:
        self.xmpp = xmpp
        self._tasks = tasks
        self._awaiting: dict[str, list[StanzaBase]] = {}
        self._fetched: dict[str, float] = {}
        self._deciding: set[str] = set()
        context.may_fetch_sender = self.may_fetch_sender
        self._resources = resources
        self.context = context
        self._directory = directory
        self._persistence = persistence
        self._keyring = keyring
        self._parked: list[StanzaBase] = []
        self._info: weakref.WeakKeyDictionary[ET.Element, EncryptionInfo] = (
            weakref.WeakKeyDictionary()
        )
        self._opened: weakref.WeakSet[ET.Element] = weakref.WeakSet()
        """Stanzas this filter opened (or that carry what it opened): never again."""
        self._archive_errors: weakref.WeakKeyDictionary[ET.Element, str] = (
            weakref.WeakKeyDictionary()
        )

    def encryption_info(self, stanza: StanzaBase) -> EncryptionInfo | None:
        """How ``stanza`` arrived: ``None`` if it was not encrypted."""
        return self._info.get(stanza.xml)

    def archive_error(self, stanza: StanzaBase) -> str | None:
        """Why an archive result could not be opened, if it could not."""
        return self._archive_errors.get(stanza.xml)

    # -- the 'in' filter -----------------------------------------------------

    def receive(self, stanza: StanzaBase) -> StanzaBase | None:
        """'in' filter: open ``<e2e/>``, hand back the plaintext; never raises."""
        try:
            if not isinstance(stanza, Message | Iq | Presence) or stanza.xml in self._opened:
                return stanza  # not a stanza, or ours: decrypted already, being dispatched
            verdict = decide(Received(stanza.xml, address(stanza["from"])), self.context)
            return self._execute(stanza, verdict)
        except Exception:
            log.exception("objenc: unexpected failure handling an inbound stanza; dropped")
            return None

    def release_parked(self) -> None:
        """Our keys are loaded: decide the stanzas that waited for them."""
        parked, self._parked = self._parked, []
        for stanza in parked:
            result = self.receive(stanza)
            if result is not None:
                dispatch_local(self.xmpp, result)

    def may_fetch_sender(self, bare: str) -> bool:
        """Whether to fetch ``bare``'s node for a device we do not hold: only our own
        account, a JID we hold devices for, or one whose presence we receive (its
        node is readable to us: XEP-0163 ``presence`` access), so a stranger (or a
        server inventing senders) makes us fetch nothing and pin nothing; one fetch
        at a time, at most every :data:`SENDER_REFETCH_SECONDS`."""
        if bare in self._awaiting:
            return True  # one is running: wait for it too
        readable = self._readable(bare)
        introducing = subscription(self.xmpp, bare) == "from"  # sees us, we not it
        if not (readable or introducing) or bare in self._deciding:
            return False
        if len(self._awaiting) >= MAX_SENDERS_AWAITED:
            return False
        if introducing and not readable and not self._keyring.records(bare):
            return True  # its first introduction: no read, at no cost
        last = self._fetched.get(bare)
        return last is None or time.monotonic() - last >= SENDER_REFETCH_SECONDS

    def _readable(self, bare: str) -> bool:
        """Whether ``bare``'s node is readable to us: ours, or we receive its
        presence (otherwise its stanzas introduce their devices)."""
        return bare == self.xmpp.boundjid.bare or _subscribed_to(self.xmpp, bare)

    def _await_sender(self, stanza: StanzaBase, bare: str) -> None:
        waiting = self._awaiting.get(bare)
        if waiting is None:
            waiting = self._awaiting[bare] = []
            self._tasks.spawn(self._fetch_sender(bare))
        total = sum(len(w) for w in self._awaiting.values())
        if len(waiting) >= MAX_AWAITING_SENDER or total >= MAX_AWAITING_TOTAL:
            self.xmpp.event(
                "objenc_decryption_failed", DecryptionFailedEvent(stanza, "undecryptable")
            )
            return
        waiting.append(stanza)

    async def _fetch_sender(self, bare: str) -> None:
        """A device of ``bare`` we do not hold wrote: read its node, then decide
        again on what it sent (no second fetch: unknown then is undecryptable)."""
        try:
            if self._readable(bare):
                await self._directory.refresh(bare)
            else:
                # a contact in our roster whose presence we do not receive: its node
                # is closed to us, so it introduced its device in the stanza
                for stanza in list(self._awaiting.get(bare, [])):
                    await self._learn_introduced(stanza, bare)
        except Exception:
            log.exception("objenc: reading %s's certificates failed", bare)
        finally:
            self._fetched[bare] = time.monotonic()
            while len(self._fetched) > 4 * MAX_PARKED:
                del self._fetched[next(iter(self._fetched))]
            waiting = self._awaiting.pop(bare, [])
        self._deciding.add(bare)  # decided again: unknown now is undecryptable
        try:
            results = [self.receive(stanza) for stanza in waiting]
        finally:
            self._deciding.discard(bare)
        for result in results:
            if result is not None:
                dispatch_local(self.xmpp, result)

    async def _learn_introduced(self, stanza: StanzaBase, bare: str) -> None:
        for e2e in stanza.xml.findall(_E2E_TAG):
            introduced = introduction(e2e) if is_authenticated(e2e) else None
            if introduced is not None:
                await self._directory.introduced(bare, *introduced)
                return

    def _execute(self, stanza: StanzaBase, verdict: Verdict) -> StanzaBase | None:
        if isinstance(verdict, Pass):
            return stanza
        if isinstance(verdict, Delivered):
            return self._deliver(stanza, verdict)
        if isinstance(verdict, ErrorAnswer):
            return self._error_answer(stanza, verdict)
        if isinstance(verdict, ArchiveUnreadable):
            for extra in beside_forwarded(stanza.xml):  # nothing that failed is shown
                stanza.xml.remove(extra)
            forget_plugins(stanza)
            self._archive_errors[stanza.xml] = verdict.reason
            return stanza  # the archive result still arrives, ciphertext and all
        if isinstance(verdict, FetchSender):
            self._await_sender(stanza, verdict.bare)
            return None
        if isinstance(verdict, DecryptionFailed):
            if verdict.reason == DOWNGRADE:
                log.warning(
                    "objenc: refused a stanza of the draft's profile (unauthenticated) from "
                    "%s, which has an identity: a downgrade, or a legacy device of theirs "
                    "(allow_legacy_devices to accept those)",
                    stanza["from"],
                )
            log.info("objenc: cannot open <e2e/> from %s (%s)", stanza["from"], verdict.reason)
            self.xmpp.event(
                "objenc_decryption_failed", DecryptionFailedEvent(stanza, verdict.reason)
            )
            self._reply(stanza, verdict.reply)
        elif isinstance(verdict, BadTimestamp):
            log.info("objenc: %s timestamp from %s refused", verdict.reason, stanza["from"])
            shown = stanza if verdict.inner is None else self.xmpp._build_stanza(verdict.inner)
            self.xmpp.event(
                "objenc_bad_timestamp", BadTimestampEvent(shown, verdict.reason, verdict.timestamp)
            )
            self._reply(stanza, verdict.reply)
        elif isinstance(verdict, PlaintextRefused):
            log.warning("objenc: plaintext %s from %s refused", stanza.name, stanza["from"])
            self.xmpp.event("objenc_plaintext_refused", stanza)
        elif isinstance(verdict, ForeignEncryption):
            # Its body is a fallback notice, not the message: not shown as if it were.
            log.info("objenc: %s message from %s not for us", verdict.namespace, stanza["from"])
            self.xmpp.event(
                "objenc_foreign_encryption",
                ForeignEncryptionEvent(stanza, verdict.namespace, verdict.name),
            )
        elif isinstance(verdict, Park):
            self._park(stanza)
        else:  # Unavailable
            log.error("objenc: no key to open a stanza from %s; dropped", stanza["from"])
        return None

    def _park(self, stanza: StanzaBase) -> None:
        if len(self._parked) >= MAX_PARKED:
            log.warning("objenc: too many stanzas before our keys loaded; dropping one")
            self.xmpp.event(
                "objenc_decryption_failed", DecryptionFailedEvent(stanza, "undecryptable")
            )
            return
        self._parked.append(stanza)  # decided again once the keys are loaded

    def _deliver(self, stanza: StanzaBase, verdict: Delivered) -> StanzaBase:
        info = self._encryption_info(verdict.envelope, verdict.sender_bare, verdict.delay)
        if verdict.forwarded is not None and verdict.original is not None:
            # A carbon or archive result: opened in place, so slixmpp's own carbon
            # and MAM handling see the plaintext.
            verdict.forwarded.remove(verdict.original)
            verdict.forwarded.append(verdict.inner)
            for extra in beside_forwarded(stanza.xml):  # only what was forwarded counts
                stanza.xml.remove(extra)
            self._info[verdict.inner] = info
            self._opened.add(stanza.xml)  # dispatched again after a wait: not a second time
            delivered: StanzaBase = self.xmpp._build_stanza(stanza.xml)  # re-read its plugins
        else:
            delivered = self.xmpp._build_stanza(verdict.inner)
            self._info[delivered.xml] = info
            self._opened.add(delivered.xml)
        if verdict.admission is not None:
            self._persistence.admitted(verdict.admission, self.context.replay_guard)
        if verdict.sender_bare is not None and verdict.forwarded is None:
            self._directory.forget_miss(verdict.sender_bare)  # it uses this protocol
            if verdict.admission is not None:
                self._resources.encrypts(verdict.admission.sender)
        self.xmpp.event("objenc_decrypted", delivered)
        return delivered

    def _encryption_info(
        self, envelope: Opened, sender_bare: str | None, delay: datetime | None
    ) -> EncryptionInfo:
        """What ``encryption_info()`` reports: the sender device and its trust state
        only when the stanza proved them (authenticated profile); for the draft's
        profile, nothing about the sender (anyone holding our certificate could
        have written it)."""
        fingerprint = envelope.sender_fingerprint
        own = self.xmpp.boundjid.bare
        record = self._keyring.record(sender_bare or own, fingerprint) if fingerprint else None
        return EncryptionInfo(
            timestamp=envelope.timestamp,
            cipher=envelope.cipher,
            recipient_fingerprint=envelope.recipient_fingerprint,
            sender_fingerprint=fingerprint,
            delay=delay,
            sender_trust=record.trust if record is not None else None,
            idempotency_key=envelope.digest.hex(),
            authenticated=envelope.authenticated,
            hybrid=envelope.hybrid,
        )

    def _error_answer(self, stanza: StanzaBase, verdict: ErrorAnswer) -> StanzaBase:
        """A plaintext error answering one of our encrypted stanzas: its id mapped
        back, stripped to its condition (it was not encrypted)."""
        strip_error(stanza)
        stanza.xml.set("id", verdict.inner_id)
        stripped: StanzaBase = self.xmpp._build_stanza(stanza.xml)  # re-read its plugins
        if verdict.unsupported:
            self.xmpp.event("objenc_unsupported", UnsupportedEvent(stripped, verdict.peer))
        for condition in verdict.rejected:
            self.xmpp.event("objenc_rejected", PeerRejectedEvent(stripped, verdict.peer, condition))
        return stripped

    def _reply(self, stanza: StanzaBase, reply: ErrorReply | None) -> None:
        """Send the error stanza the core decided on, if any."""
        if reply is None:
            return
        answer = type(stanza)(self.xmpp)
        answer["to"] = JID(reply.to)
        if reply.id:
            answer["id"] = reply.id
        answer["type"] = "error"
        answer.xml.append(ET.Element(_E2E_TAG))
        answer["error"]["type"] = reply.error_type
        answer["error"]["condition"] = reply.condition
        answer["error"].xml.append(ET.Element(qname(NS_E2E_ERRORS, reply.e2e_condition)))
        answer.send()

    # -- the archive ---------------------------------------------------------

    async def fetch_archive(
        self,
        with_jid: JID | str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        max_items: int = 100,
    ) -> list[ArchivedMessage]:
        """Messages from our server archive (XEP-0313), decrypted and checked
        against the archive's own stamps (see ``ObjEnc.fetch_archive``)."""
        mam = self.xmpp.plugin.get("xep_0313", None)
        if mam is None:
            raise EncryptionError("fetch_archive needs the xep_0313 plugin")
        result = await mam.retrieve(
            with_jid=JID(with_jid) if with_jid else None,
            start=start,
            end=end,
            rsm={"max": max_items},
        )
        archived = []
        for wrapper in result["mam"]["results"]:
            element = wrapper.xml.find(_ARCHIVED_MESSAGE)
            if element is None:
                continue
            info = self._info.get(element)
            error = None if info is not None else self._archive_errors.get(wrapper.xml)
            archived.append(ArchivedMessage(self.xmpp._build_stanza(element), info, error))
        return archived


def inbound_context(
    xmpp: Any,
    config: dict[str, Any],
    keyring: Keyring,
    resources: OwnResources,
    exchanges: Exchanges,
    clock: Callable[[], datetime],
    *,
    identities: Callable[[], Sequence[Identity]],
    ready: Callable[[], bool],
    replay_guard: ReplayGuard,
    second: Callable[[str], bytes] = lambda _peer: b"",
) -> InboundContext:
    """The receiving side's context, from the plugin's configuration; ``second``:
    the stretched passphrase per conversation partner (``ConversationSettings``)."""
    return InboundContext(
        own=address(xmpp.boundjid),
        identities=identities,
        device_keys=keyring.device.senders,
        destroyed_keys=lambda: keyring.device.destroyed,
        opening=OpeningContext(
            resolve_sender=keyring.resolve_sender,
            superseded_at=keyring.superseded_at,
            has_identity=keyring.has_identity,
            legacy_allowed=keyring.legacy_allowed,
            second=second,
        ),
        replay_guard=replay_guard,
        exchanges=exchanges,
        clock=clock,
        parse=parse_address,
        sticky=keyring.sticky,
        is_room=functools.partial(is_room, xmpp),
        handles_mechanism=functools.partial(handles_mechanism, xmpp),
        encrypting_own_resource=resources.encrypting,
        ready=ready,
        refuse_plaintext=bool(config.get("refuse_plaintext", True)),
        replies=ReplyPolicy(
            ErrorBudget(int(config.get("error_replies_per_minute", 10))),
            decryption_failed=bool(config.get("error_replies", True)),
            bad_timestamp=bool(config.get("bad_timestamp_replies", True)),
        ),
        max_envelope_size=int(config.get("max_envelope_size", DEFAULT_MAX_ENVELOPE_SIZE)),
    )


def _subscribed_to(xmpp: Any, bare: str) -> bool:
    """Whether our roster says we receive ``bare``'s presence (``to`` or ``both``)."""
    return subscription(xmpp, bare) in ("to", "both")
