"""The slixmpp glue: filters, handlers, events, PEP and disco.

Thin by design: bytes, algorithms, timestamps, trust decisions and the
verification math live in :mod:`slixmpp_objenc.core`; keys and certificates
in :class:`~slixmpp_objenc.keyring.Keyring`. This module decides only which
stanzas go through them and wires the results into slixmpp's dispatch.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import logging
import os
import stat
import time
import weakref
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

from cryptography.hazmat.primitives.serialization import Encoding
from slixmpp import JID, Iq, Message, Presence
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins import BasePlugin
from slixmpp.plugins.xep_0004 import Form
from slixmpp.plugins.xep_0060 import stanza as pubsub_stanza
from slixmpp.xmlstream import StanzaBase, register_stanza_plugin, tostring
from slixmpp.xmlstream.handler import CoroutineCallback
from slixmpp.xmlstream.matcher import StanzaPath

from .core import (
    BLOCK_CIPHERS,
    CertificateError,
    EncryptionError,
    Identity,
    InvalidEnvelope,
    OpenedEnvelope,
    PeerCertificate,
    Recipient,
    ReplayGuard,
    StaleStanza,
    TimestampSource,
    format_timestamp,
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
from .core.timestamps import check_archived, utcnow
from .core.trust import Observation, classify_publication
from .core.verification import SasInitiator, SasResponder, VerificationError
from .events import (
    ArchivedMessage,
    BadTimestampEvent,
    DecryptionFailedEvent,
    EncryptionFailedEvent,
    EncryptionInfo,
    ForeignEncryptionEvent,
    KeyChangedEvent,
    PeerRejectedEvent,
    PublishFailedEvent,
    SasEvent,
    UnsupportedEvent,
)
from .keyring import Keyring
from .stanza import Certificate, register_stanza_plugins
from .store import PeerRecord, Storage, TrustState

__all__ = ["NODE_CERTS", "ObjEnc"]

log = logging.getLogger(__name__)

NODE_CERTS = NS_OBJENC + ":certs"
"""PEP node holding our certificates: one item per certificate, id = fingerprint."""

NS_HINTS = "urn:xmpp:hints"
_E2E_TAG = qname(NS_OBJENC, "e2e")
_DELAY_TAG = qname(NS_DELAY, "delay")
_MUC_TAG = qname("http://jabber.org/protocol/muc", "x")
_BODY_TAG = qname("jabber:client", "body")
_NO_STORE = frozenset(qname(NS_HINTS, n) for n in ("no-store", "no-permanent-store"))
_HINTS_PREFIX = f"{{{NS_HINTS}}}"
NS_EME = "urn:xmpp:eme:0"
_EME_TAG = qname(NS_EME, "encryption")
EME_NAME = "Object Encryption"
NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
NS_MAM = "urn:xmpp:mam:2"
_FORWARDED_TAG = qname(NS_FORWARD, "forwarded")
_MESSAGE_TAG = qname("jabber:client", "message")
_OUTSIDE_OK = frozenset({_EME_TAG, _BODY_TAG})
# Mechanisms other plugins may handle: leave their messages alone when loaded.
_FOREIGN_HANDLERS = {
    "eu.siacs.conversations.axolotl": "xep_0384",
    "urn:xmpp:omemo:2": "xep_0384",
    "urn:xmpp:openpgp:0": "xep_0373",
    "jabber:x:encrypted": "xep_0027",
}
_ERROR_TAG = qname("jabber:client", "error")
_ENCRYPTED_PRESENCE_TYPES = frozenset({"", "available", "unavailable"})
_ENCRYPTED_MESSAGE_TYPES = frozenset({"", "normal", "chat", "headline"})
_OUTER_ID_MEMORY = 4096
_MAX_OWN_KEYS_TRIED = 3
_NEGATIVE_DISCOVERY_SECONDS = 300.0
_STICKY_RETRY_SECONDS = 10.0
_MAX_SAS_SESSIONS = 64
_MAX_PARKED = 1000
_MAX_MISSES = 10_000
_REORDER_TOLERANCE = timedelta(minutes=2)
"""Out-of-order stanzas (XEP-0198 resends after newer ones) up to this much older pass."""
_LAST_SENT = "last-sent-timestamp"
_REPLAY_FLOOR = "replay-floor-ms"


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

    With no configuration at all it keeps a key and certificate per account
    in an SQLite file under the platform's data directory, publishes the
    certificate to PEP, discovers contacts' certificates the same way, pins
    them on first use and never falls back to plaintext once a contact has
    been seen with a certificate.

    Configuration (``pconfig``):

    ``data_dir``
        where the per-account store lives (default: the platform's user
        data directory, ``~/.local/share/slixmpp-objenc`` on Linux).
    ``storage``
        a :class:`~slixmpp_objenc.store.Storage` to use instead of SQLite.
    ``key_file``, ``cert_file``, ``key_password``
        use this key and certificate (PEM) instead of generated ones.
    ``pep``
        publish our certificate and discover others' over PEP (default on).
    ``hold_on_key_change``
        hold stanzas to a contact whose certificate changed until the
        application decides (default on); off: encrypt to the old keys only.
    ``trust_new_devices``
        a contact's certificate published later, next to pinned ones that are
        still published and not verified, is trusted at once (blind trust
        before verification, event ``objenc_device_added``) instead of being
        held like a key change (default off).
    ``refuse_plaintext``
        drop plaintext messages and iqs from a contact's client once that
        contact is known to encrypt (default on): event ``objenc_plaintext_refused``.
    ``cipher``
        ``AES-128-CBC-PKCS5-WITH-IV`` (default) or ``AES-256-CBC-PKCS5-WITH-IV``.
    ``padding``
        pad the encrypted envelope to a multiple of this many bytes (64; 0: off).
    ``fallback_body``
        the outer ``<body/>`` clients without this protocol show (with XEP-0380).
    ``error_replies``, ``bad_timestamp_replies``, ``error_replies_per_minute``
        the draft's error stanzas for cases 4 and 3 (on; at most 10/min/sender).

    Expert knobs: ``identity``, ``key_size`` (3072), ``clock``,
    ``random_bytes``, ``max_envelope_size``, ``replay_guard``,
    ``discovery_timeout`` (10 s).
    """

    name = "objenc"
    description = "End-to-End Object Encryption (draft-miller-3923bis-02)"
    dependencies: ClassVar[set[str]] = {"xep_0030", "xep_0060", "xep_0115", "xep_0163"}
    default_config: ClassVar[dict[str, Any]] = {
        "data_dir": None,
        "storage": None,
        "key_file": None,
        "cert_file": None,
        "key_password": None,
        "identity": None,
        "key_size": 3072,
        "pep": True,
        "hold_on_key_change": True,
        "refuse_plaintext": True,
        "trust_new_devices": False,
        "padding": 64,
        "fallback_body": (
            "This message is end-to-end encrypted with Object Encryption "
            "(urn:ietf:params:xml:ns:xmpp-objenc:0) and your client cannot read it."
        ),
        "discovery_timeout": 10.0,
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
        register_stanza_plugin(pubsub_stanza.Item, Certificate)
        register_stanza_plugin(pubsub_stanza.EventItem, Certificate)
        self._clock: Callable[[], datetime] = self.config.get("clock") or utcnow
        self._random_bytes: Callable[[int], bytes] = self.config.get("random_bytes") or os.urandom
        cipher = BLOCK_CIPHERS.get(self.config.get("cipher") or "")
        if cipher is None:
            raise EncryptionError(f"unknown cipher {self.config.get('cipher')!r}")
        self._cipher = cipher
        self._configured_identity = self._identity_from_config()
        self.storage: Storage = self.config.get("storage") or self._default_storage()
        self.keyring = Keyring(self.storage, self._clock)
        self._timestamps = TimestampSource(self._clock)
        self.replay_guard: ReplayGuard = self.config.get("replay_guard") or ReplayGuard(
            reorder=_REORDER_TOLERANCE
        )
        self._ready = asyncio.Event()
        self._load_error: BaseException | None = None
        self._parked: list[StanzaBase] = []
        self._pending: weakref.WeakKeyDictionary[ET.Element, list[PeerCertificate]] = (
            weakref.WeakKeyDictionary()
        )
        self._info: weakref.WeakKeyDictionary[ET.Element, EncryptionInfo] = (
            weakref.WeakKeyDictionary()
        )
        self._outer_ids: OrderedDict[str, tuple[str, str]] = OrderedDict()
        self._answerable: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._sealed: weakref.WeakKeyDictionary[ET.Element, tuple[Any, ...]] = (
            weakref.WeakKeyDictionary()
        )
        self._archive_errors: weakref.WeakKeyDictionary[ET.Element, str] = (
            weakref.WeakKeyDictionary()
        )
        self._error_budget = _ErrorBudget(int(self.config.get("error_replies_per_minute", 10)))
        self._holds: dict[str, asyncio.Future[None]] = {}
        self._discovering: dict[str, asyncio.Future[None]] = {}
        self._no_certificates: dict[str, float] = {}
        self._sas: dict[str, SasInitiator | SasResponder] = {}
        self._sas_peers: dict[str, tuple[str, str]] = {}
        self._writes: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pep_interest = False
        self._writer_task: asyncio.Future[None] | None = None
        self._own_peer: PeerCertificate | None = None
        self._persisted_floor = 0
        self._last_sent: datetime | None = None
        self._stored_last_sent: datetime | None = None

        self.xmpp.add_filter("out", self._plan_outbound)
        self.xmpp.add_filter("out_sce", self._seal_outbound)
        self.xmpp.add_filter("in", self._receive)
        self.xmpp.add_event_handler("session_bind", self._on_session_bind)
        self.xmpp.add_event_handler("session_start", self._on_session_start)
        self.xmpp.add_event_handler("objenc_certs_publish", self._on_certificates_notified)
        self.xmpp.add_event_handler("objenc_certs_retract", self._on_certificates_notified)
        self.xmpp.add_event_handler("changed_subscription", self._on_subscription_changed)
        self.xmpp.register_handler(
            CoroutineCallback(
                "objenc verification", StanzaPath("iq@type=set/objenc_sas"), self._handle_sas
            )
        )
        self._spawn(self._load())

    def _register_pep_interest(self) -> None:
        # Not in post_init: slixmpp may call that before our dependencies exist.
        if self.config.get("pep", True) and not self._pep_interest:
            self._pep_interest = True
            self.xmpp.plugin["xep_0163"].add_interest(NODE_CERTS)
            self.xmpp.plugin["xep_0060"].map_node_event(NODE_CERTS, "objenc_certs")

    def plugin_end(self) -> None:
        self.xmpp.del_filter("out", self._plan_outbound)
        self.xmpp.del_filter("out_sce", self._seal_outbound)
        self.xmpp.del_filter("in", self._receive)
        self.xmpp.del_event_handler("session_bind", self._on_session_bind)
        self.xmpp.del_event_handler("session_start", self._on_session_start)
        self.xmpp.del_event_handler("objenc_certs_publish", self._on_certificates_notified)
        self.xmpp.del_event_handler("objenc_certs_retract", self._on_certificates_notified)
        self.xmpp.del_event_handler("changed_subscription", self._on_subscription_changed)
        self.xmpp.remove_handler("objenc verification")
        for task in list(self._tasks):
            task.cancel()
        disco = self.xmpp.plugin.get("xep_0030", None)
        if disco is not None:
            disco.del_feature(feature=NS_OBJENC)
            disco.del_feature(feature=NODE_CERTS + "+notify")

    def session_bind(self, jid: JID) -> None:
        self.xmpp.plugin["xep_0030"].add_feature(NS_OBJENC)

    def _on_session_bind(self, jid: JID) -> None:
        # Stay the last 'in' filter: XEP-0198 must count each wire stanza
        # before we drop or replace it, and must not count it twice.
        self.xmpp.del_filter("in", self._receive)
        self.xmpp.add_filter("in", self._receive)
        self._register_pep_interest()

    async def _on_session_start(self, _event: Any) -> None:
        await self._ready.wait()
        if self.config.get("pep", True) and self._load_error is None:
            await self.publish_certificate()
            await self.discover(self.xmpp.boundjid.bare)  # our other devices

    async def ready(self) -> None:
        """Wait until keys are loaded (or created on first start); raise if that failed."""
        await self._ready.wait()
        if self._load_error is not None:
            raise EncryptionError(f"objenc could not load its keys: {self._load_error}")

    async def flush(self) -> None:
        """Wait until every pending write has reached the store."""
        await self._writes.join()

    async def close(self) -> None:
        """Flush pending writes and close the store (call before exiting)."""
        if self._last_sent is not None:
            self._persist_last_sent(self._last_sent, force=True)
        await self.flush()
        await self.storage.close()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro, loop=self.xmpp.loop)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _persist(self, write: Callable[[], Awaitable[None]]) -> None:
        """Write-behind, in order: the stanza path never waits for storage."""
        self._writes.put_nowait(write)
        writer = self._writer_task
        if writer is None or writer.done():
            writer = asyncio.ensure_future(self._writer(), loop=self.xmpp.loop)
            self._writer_task = writer
            self._tasks.add(writer)
            writer.add_done_callback(self._tasks.discard)

    async def _writer(self) -> None:
        while not self._writes.empty():
            write = await self._writes.get()
            try:
                await write()
            except Exception:
                log.exception("objenc: a write to the store failed")
            finally:
                self._writes.task_done()

    def _persist_last_sent(self, timestamp: datetime, *, force: bool = False) -> None:
        """Keep the sending clock monotonic across restarts without a write per
        stanza: stored when it moved a second past the stored value (and on close)."""
        self._last_sent = timestamp
        stored = self._stored_last_sent
        if force or stored is None or (timestamp - stored).total_seconds() >= 1.0:
            self._stored_last_sent = timestamp
            text = format_timestamp(timestamp)
            self._persist(lambda: self.storage.set_setting(_LAST_SENT, text))

    def _identity_from_config(self) -> Identity | None:
        configured = self.config.get("identity")
        if isinstance(configured, Identity):
            return configured
        key_file, cert_file = self.config.get("key_file"), self.config.get("cert_file")
        if not (key_file or cert_file):
            return None
        if not (key_file and cert_file):
            raise EncryptionError("key_file and cert_file must be given together")
        mode = os.stat(key_file).st_mode
        if mode & stat.S_IROTH:
            raise EncryptionError(
                f"refusing to use {key_file}: the private key is world-readable "
                f"(chmod 600 {key_file})"
            )
        password = self.config.get("key_password")
        if isinstance(password, str):
            password = password.encode()
        try:
            key = load_private_key(Path(key_file).read_bytes(), password)
            cert = load_certificate(Path(cert_file).read_bytes())
            return Identity(key, cert)
        except (OSError, CertificateError) as exc:
            raise EncryptionError(f"cannot load our key or certificate: {exc}") from exc

    def _default_storage(self) -> Storage:
        from .store.sqlite import SQLiteStorage, account_store_path, default_data_dir

        data_dir = self.config.get("data_dir")
        directory = Path(data_dir) if data_dir else default_data_dir()
        return SQLiteStorage(account_store_path(directory, self.xmpp.boundjid.bare))

    async def _load(self) -> None:
        try:
            await self.storage.open()
            await self.keyring.load()
            bare = self.xmpp.boundjid.bare
            if self._configured_identity is not None:
                identity = self._configured_identity
                if self.keyring.identity is None or (
                    self.keyring.identity.fingerprint != identity.fingerprint
                ):
                    await self.keyring.add_identity(identity)
            else:
                await self.keyring.ensure_identity(
                    bare, key_size=int(self.config.get("key_size", 3072))
                )
            self._check_own_identity()
            self.replay_guard.restore(await self.storage.load_replay_state())
            floor = await self.storage.get_setting(_REPLAY_FLOOR)
            if floor:
                self.replay_guard.floor_ms = max(self.replay_guard.floor_ms, int(floor))
            self._persisted_floor = self.replay_guard.floor_ms
            last = await self.storage.get_setting(_LAST_SENT)
            if last:
                # up to a second of sending may not have been stored: start past it
                resume = parse_timestamp(last) + timedelta(seconds=1)
                self._timestamps = TimestampSource(self._clock, last=resume)
                # on disk before anything is sent: a second crash resumes past it
                await self.storage.set_setting(_LAST_SENT, format_timestamp(resume))
                self._stored_last_sent = resume
        except Exception as exc:
            log.exception("objenc: cannot load keys; encryption is unavailable (fail closed)")
            self._load_error = exc
        finally:
            self._ready.set()
        parked, self._parked = self._parked, []
        for stanza in parked:
            result = self._receive(stanza)
            if result is not None:
                self._dispatch_local(result)

    def _check_own_identity(self) -> None:
        identity = self.identity
        try:
            own = validate_peer_certificate(identity.certificate, now=self._clock())
        except CertificateError as exc:
            raise EncryptionError(f"our own certificate is unusable: {exc}") from exc
        self._own_peer = own
        bare = self.xmpp.boundjid.bare
        if bare and JID(bare).bare not in {JID(j).bare for j in own.jids}:
            raise EncryptionError(f"our certificate does not name {bare}")

    def _dispatch_local(self, stanza: StanzaBase) -> None:
        """Hand a stanza to slixmpp's handlers that XEP-0198 already counted (or that
        never was on the wire): its counter is compensated so acks stay exact."""
        sm = self.xmpp.plugin.get("xep_0198", None)
        if sm is not None and sm.enabled_in and isinstance(stanza, Message | Iq | Presence):
            sm.handled = (sm.handled - 1) % 2**32
        self.xmpp.recv_stanza(stanza)

    # -- public API --------------------------------------------------------

    @property
    def identity(self) -> Identity:
        """Our active identity. Raises :class:`EncryptionError` before :meth:`ready`."""
        identity = self.keyring.identity or self._configured_identity
        if identity is None:
            raise EncryptionError("no identity yet: await plugin.ready()")
        return identity

    @property
    def fingerprint(self) -> str:
        """SHA-256 fingerprint (lowercase hex) of our certificate."""
        return self.identity.fingerprint

    def certificate_pem(self) -> bytes:
        """Our certificate, to hand to peers."""
        return self.identity.certificate_pem()

    def add_peer_certificate(
        self, pem: bytes, trust: TrustState = TrustState.TOFU, jid: JID | str | None = None
    ) -> PeerCertificate:
        """Hold a peer certificate for the JID its ``id-on-xmppAddr`` names.

        Adding by hand is the user's decision, so it is trusted as given
        (``tofu`` by default). A certificate naming several JIDs needs ``jid``
        to say which one it is for; it is never bound to the others. Raises
        :class:`CertificateError` with the reason.
        """
        peer = validate_peer_certificate(pem, now=self._clock())
        if jid is None and len(peer.jids) != 1:
            raise CertificateError(
                f"certificate names {len(peer.jids)} JIDs; pass jid= to choose one"
            )
        target = JID(jid).bare if jid is not None else None
        _, records = self.keyring.observe_now(peer, source="manual", trust=trust, jid=target)
        for record in records:
            self._persist(self._saver(record))
            self._release_hold(record.jid)
        return peer

    def _saver(self, record: PeerRecord) -> Callable[[], Awaitable[None]]:
        return lambda: self.storage.save_peer(record)

    def remove_peer_certificate(self, jid: JID | str, fingerprint: str | None = None) -> None:
        """Forget the certificate(s) held for a bare JID. Once none is held, stanzas
        to it go in the clear again unless encryption is required for it."""
        bare = JID(jid).bare
        for record in self.keyring.records(bare):
            if fingerprint is None or record.fingerprint == fingerprint:
                self.keyring.forget_now(record.jid, record.fingerprint)
                self._persist(self._deleter(record.jid, record.fingerprint))

    def _deleter(self, jid: str, fingerprint: str) -> Callable[[], Awaitable[None]]:
        return lambda: self.storage.delete_peer(jid, fingerprint)

    def peer_certificate(self, jid: JID | str) -> PeerCertificate | None:
        """The first usable certificate held for a JID's bare part, if any."""
        usable = self.keyring.usable(JID(jid).bare, self._clock())
        return usable[0] if usable else None

    async def set_trust(self, jid: JID | str, fingerprint: str, trust: TrustState) -> None:
        """Set a peer certificate's trust state (``verified``, ``tofu``, ``untrusted``,
        ``revoked``); releases stanzas held for the JID once nothing is pending."""
        bare = JID(jid).bare
        await self.keyring.set_trust(bare, fingerprint, TrustState(trust))
        self._release_hold(bare)

    async def accept_key_change(self, jid: JID | str, fingerprint: str) -> None:
        """Trust a changed certificate; held stanzas are then encrypted to it."""
        await self.set_trust(jid, fingerprint, TrustState.TOFU)

    async def reject_key_change(self, jid: JID | str, fingerprint: str) -> None:
        """Refuse a changed certificate for good; held stanzas go to the old keys."""
        await self.set_trust(jid, fingerprint, TrustState.REVOKED)

    async def require_encryption(self, jid: JID | str, required: bool = True) -> None:
        """Refuse plaintext to ``jid`` even before a certificate is known."""
        await self.keyring.require_encryption(JID(jid).bare, required)

    def encryption_info(self, stanza: StanzaBase) -> EncryptionInfo | None:
        """How ``stanza`` arrived: ``None`` if it was not encrypted."""
        return self._info.get(stanza.xml)

    # -- PEP: publication and discovery ------------------------------------

    async def publish_certificate(self) -> bool:
        """Publish our certificate to our PEP node, readable by contacts only.

        Returns whether it was published; on refusal (for example a server
        without publish-options) emits ``objenc_publish_failed`` and does not
        retry without the access restriction.
        """
        identity = self.identity
        payload = Certificate()
        payload["value"] = base64.b64encode(identity.certificate.public_bytes(Encoding.DER)).decode(
            "ascii"
        )
        options = Form()
        options["type"] = "submit"
        options.add_field(
            var="FORM_TYPE",
            ftype="hidden",
            value="http://jabber.org/protocol/pubsub#publish-options",
        )
        options.add_field(var="pubsub#access_model", value="presence")
        options.add_field(var="pubsub#persist_items", value="true")
        options.add_field(var="pubsub#max_items", value="max")
        try:
            await self.xmpp.plugin["xep_0060"].publish(
                None,
                NODE_CERTS,
                id=identity.fingerprint,
                payload=payload,
                options=options,
                timeout=float(self.config.get("discovery_timeout", 10.0)),
            )
        except (IqError, IqTimeout) as exc:
            condition = exc.iq["error"]["condition"] if isinstance(exc, IqError) else "timeout"
            text = exc.iq["error"]["text"] if isinstance(exc, IqError) else ""
            log.warning("objenc: our certificate was not published (%s)", condition)
            self.xmpp.event("objenc_publish_failed", PublishFailedEvent(condition, text))
            return False
        self.xmpp.event("objenc_published", identity.fingerprint)
        return True

    async def discover(self, jid: JID | str) -> list[PeerCertificate]:
        """Fetch a contact's certificates from PEP now; returns the usable ones."""
        bare = JID(jid).bare
        self._no_certificates.pop(bare, None)
        await self._discover(bare)
        return self.keyring.usable(bare, self._clock())

    async def _discover(self, bare: str) -> None:
        """One fetch per contact at a time; concurrent senders share it."""
        if not self.config.get("pep", True):
            return
        missed = self._no_certificates.get(bare)
        # A miss is remembered, briefly when the stanza cannot go without a key.
        remember = (
            _STICKY_RETRY_SECONDS if self.keyring.sticky(bare) else _NEGATIVE_DISCOVERY_SECONDS
        )
        if missed is not None and time.monotonic() - missed < remember:
            return
        future = self._discovering.get(bare)
        if future is None:
            future = asyncio.ensure_future(self._fetch_certificates(bare), loop=self.xmpp.loop)
            self._discovering[bare] = future
            future.add_done_callback(lambda _f: self._discovering.pop(bare, None))
        await asyncio.shield(future)

    async def _fetch_certificates(self, bare: str) -> None:
        try:
            result = await self.xmpp.plugin["xep_0060"].get_items(
                bare, NODE_CERTS, timeout=float(self.config.get("discovery_timeout", 10.0))
            )
        except (IqError, IqTimeout) as exc:
            log.info("objenc: no certificates for %s over PEP (%s)", bare, exc)
            self._remember_miss(bare)
            return
        items = result["pubsub"]["items"]
        await self._reconcile(bare, [item.xml for item in items], complete=True)

    async def _on_certificates_notified(self, msg: Message) -> None:
        sender = msg["from"].bare
        if not sender:
            return
        await self._ready.wait()
        own = sender == self.xmpp.boundjid.bare
        if not own and not self.keyring.records(sender):
            return  # not a correspondent yet: its certificate is fetched on first send
        self._no_certificates.pop(sender, None)
        await self._discover(sender)

    def _on_subscription_changed(self, presence: Presence) -> None:
        # PEP access follows presence subscriptions: an earlier refusal may be stale.
        self._no_certificates.pop(presence["from"].bare, None)

    async def _reconcile(self, bare: str, items: list[ET.Element], *, complete: bool) -> None:
        """Take in the certificates a contact publishes; with ``complete``, those
        no longer published are revoked."""
        published: dict[str, PeerCertificate] = {}
        for item in items:
            certificate = item.find(qname(NS_OBJENC, "certificate"))
            if certificate is None or not certificate.text:
                continue
            try:
                der = base64.b64decode(certificate.text, validate=True)
                peer = validate_peer_certificate(der, now=self._clock())
            except (ValueError, CertificateError) as exc:
                log.info("objenc: ignoring a certificate published by %s: %s", bare, exc)
                continue
            if bare not in {JID(j).bare for j in peer.jids}:
                log.warning("objenc: %s published a certificate for %s", bare, peer.jids)
                continue
            published[peer.fingerprint] = peer
        own = {i.fingerprint for i in self.keyring.identities}
        held = {r.fingerprint: r.trust.value for r in self.keyring.records(bare)}
        for fingerprint, peer in published.items():
            if fingerprint in own:
                continue  # ourselves
            observation = classify_publication(held, set(published), fingerprint)
            if observation is Observation.KNOWN:
                await self.keyring.observe(peer, source="pep", jid=bare)
                continue
            if observation is Observation.ADDED and not self.config.get("trust_new_devices"):
                observation = Observation.CHANGED  # default: a new device is a key change
            trust = TrustState.UNTRUSTED if observation is Observation.CHANGED else TrustState.TOFU
            await self.keyring.observe(peer, source="pep", jid=bare, trust=trust)
            previous = tuple(fp for fp in held if fp != fingerprint)
            if observation is Observation.CHANGED:
                self.xmpp.event("objenc_key_changed", KeyChangedEvent(bare, previous, fingerprint))
            elif observation is Observation.ADDED:
                self.xmpp.event("objenc_device_added", KeyChangedEvent(bare, previous, fingerprint))
        if complete:
            for record in self.keyring.records(bare):
                if (
                    record.source == "pep"
                    and record.fingerprint not in published
                    and record.trust is not TrustState.REVOKED
                ):
                    log.info("objenc: %s no longer publishes %s", bare, record.fingerprint)
                    await self.keyring.set_trust(bare, record.fingerprint, TrustState.REVOKED)
        if not published:
            self._remember_miss(bare)

    def _remember_miss(self, bare: str) -> None:
        self._no_certificates.pop(bare, None)
        self._no_certificates[bare] = time.monotonic()
        while len(self._no_certificates) > _MAX_MISSES:
            del self._no_certificates[next(iter(self._no_certificates))]

    # -- outbound ----------------------------------------------------------

    def candidate(self, stanza: StanzaBase) -> str | None:
        """The bare JID ``stanza`` would be encrypted for, or ``None`` if this kind of
        stanza is never encrypted (groupchat, undirected presence, servers...)."""
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
        return str(to.bare)

    def recipients_for(self, stanza: StanzaBase) -> list[PeerCertificate] | None:
        """The certificates ``stanza`` would be encrypted to now, or ``None``."""
        bare = self.candidate(stanza)
        if bare is None:
            return None
        return self.keyring.usable(bare, self._clock()) or None

    def _is_muc(self, jid: JID) -> bool:
        muc = self.xmpp.plugin.get("xep_0045", None)
        rooms = getattr(muc, "rooms", None) if muc is not None else None
        return bool(rooms) and jid.bare in rooms  # type: ignore[operator]

    def _plan_outbound(self, stanza: StanzaBase) -> StanzaBase | None:
        """'out' stage, before XEP-0198 queues the stanza: decide, and drop what must
        not go in the clear. Never waits: a stanza that needs our keys loaded, a
        contact's certificates fetched, or a key change decided leaves the queue
        and is sent again once that is done (the fetch itself must not queue
        behind it)."""
        if not isinstance(stanza, Message | Iq | Presence):
            return stanza
        answer_key = (str(stanza["to"]), stanza.xml.get("id", ""))
        answers_encrypted = answer_key in self._answerable
        if stanza.xml.get("type") == "error":
            if answers_encrypted:
                _strip_error(stanza)  # errors are never encrypted: they carry nothing else
            return stanza
        e2e = stanza.xml.find(_E2E_TAG)
        if e2e is not None:
            snapshot = self._sealed.get(stanza.xml)
            if snapshot is not None:
                changed = _children_snapshot(stanza.xml) != snapshot
            else:
                changed = any(
                    c is not e2e
                    and not c.tag.startswith(_HINTS_PREFIX)
                    and c.tag not in _OUTSIDE_OK
                    for c in stanza.xml
                )
            if changed:  # e.g. a sealed stanza object changed and sent again
                self._refuse(stanza, EncryptionError("plaintext beside an <e2e/>: not sent"))
                return None
            return stanza
        bare = self.candidate(stanza)
        if bare is None:
            if answers_encrypted:
                self._refuse(stanza, EncryptionError("an answer to an encrypted stanza"))
                return None
            return stanza
        if self._must_wait(bare):
            self._spawn(self._send_when_resolved(stanza, bare))
            return None
        if self._load_error is not None:
            self._refuse(stanza, EncryptionError(f"keys could not be loaded: {self._load_error}"))
            return None
        recipients = self.keyring.usable(bare, self._clock())
        if recipients:
            self._pending[stanza.xml] = self._with_own_devices(recipients)
            return stanza
        if self.keyring.sticky(bare) or answers_encrypted:
            self._refuse(
                stanza,
                EncryptionError(
                    f"{bare} has been seen with a certificate (or encryption is required), "
                    "but no usable certificate is held: not sending in the clear"
                ),
            )
            return None
        return stanza

    def _must_wait(self, bare: str) -> bool:
        if not self._ready.is_set():
            return True
        if self._load_error is not None:
            return False
        if self.keyring.pending(bare) and self.config.get("hold_on_key_change", True):
            return True
        return not self.keyring.records(bare) and self._would_discover(bare)

    def _would_discover(self, bare: str) -> bool:
        if not self.config.get("pep", True):
            return False
        missed = self._no_certificates.get(bare)
        remember = (
            _STICKY_RETRY_SECONDS if self.keyring.sticky(bare) else _NEGATIVE_DISCOVERY_SECONDS
        )
        return missed is None or time.monotonic() - missed >= remember

    async def _send_when_resolved(self, stanza: StanzaBase, bare: str) -> None:
        """Wait for keys, discovery or a held key change, then send ``stanza`` again
        through every filter (it is decided afresh)."""
        try:
            await self._ready.wait()
            if self._load_error is None:
                await self._resolve(bare)
        except Exception as exc:
            self._refuse(stanza, exc)
            return
        if not self.keyring.records(bare) and self._would_discover(bare):
            self._remember_miss(bare)  # discovery could not run: do not loop
        self.xmpp.send(stanza)

    async def _resolve(self, bare: str) -> list[PeerCertificate]:
        """The contact's usable certificates (after discovery and any hold); empty
        if there are none. Our own account's certificates are added by the caller."""
        if not self.keyring.records(bare):
            await self._discover(bare)
        while self.keyring.pending(bare) and self.config.get("hold_on_key_change", True):
            hold = self._holds.get(bare)
            if hold is None or hold.done():
                hold = asyncio.get_running_loop().create_future()
                self._holds[bare] = hold
            log.info("objenc: holding a stanza to %s until its key change is decided", bare)
            await hold
        return self.keyring.usable(bare, self._clock())

    def _with_own_devices(self, recipients: list[PeerCertificate]) -> list[PeerCertificate]:
        """Add our account's other certificates (carbons, our other clients) and our
        own (our sent messages stay readable from the archive)."""
        result = {p.fingerprint: p for p in recipients}
        for peer in self.keyring.usable(self.xmpp.boundjid.bare, self._clock()):
            result.setdefault(peer.fingerprint, peer)
        own = self._own_certificate()
        if own is not None:
            result.setdefault(own.fingerprint, own)
        return list(result.values())

    def _own_certificate(self) -> PeerCertificate | None:
        """Our own certificate as a recipient; validated by ``_check_own_identity``."""
        own = self._own_peer
        return own if own is not None and own.fingerprint == self.identity.fingerprint else None

    def _release_hold(self, bare: str) -> None:
        hold = self._holds.get(bare)
        if hold is not None and not hold.done() and not self.keyring.pending(bare):
            hold.set_result(None)
            del self._holds[bare]

    def _refuse(self, stanza: StanzaBase, error: Exception) -> None:
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
            self.xmpp.loop.call_soon(self._dispatch_local, failure)

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
        timestamp = self._timestamps.next()
        named = len(recipients) > 1  # one <key/> per certificate, each named
        e2e = seal(
            stanza_string,
            [Recipient(p.public_key, p.fingerprint if named else None) for p in recipients],
            timestamp=timestamp,
            cipher=self._cipher,
            random_bytes=self._random_bytes,
            pad_to=int(self.config.get("padding", 64) or 0),
        )
        self._persist_last_sent(timestamp)
        inner_id = xml.get("id", "")
        outer_id = self.xmpp.new_id()
        hints = [copy.copy(child) for child in xml if child.tag.startswith(f"{{{NS_HINTS}}}")]
        has_body = isinstance(stanza, Message) and xml.find(_BODY_TAG) is not None
        archivable = has_body and not any(h.tag in _NO_STORE for h in hints)
        _scrub(stanza)
        xml.set("id", outer_id)
        xml.append(e2e)
        # Processing hints are for the server: they stay outside (and inside).
        for hint in hints:
            xml.append(hint)
        if archivable and not any(h.tag == qname(NS_HINTS, "store") for h in hints):
            ET.SubElement(xml, qname(NS_HINTS, "store"))
        if isinstance(stanza, Message):
            # XEP-0380: clients without this protocol say why they see nothing...
            ET.SubElement(xml, _EME_TAG, {"namespace": NS_OBJENC, "name": EME_NAME})
            fallback = self.config.get("fallback_body")
            if has_body and fallback:  # ...and show an honest notice, not the message
                ET.SubElement(xml, _BODY_TAG).text = str(fallback)
        self._sealed[xml] = _children_snapshot(xml)
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
        if stanza.xml in self._info:
            return stanza  # ours: decrypted already, now being dispatched
        xml = stanza.xml
        kind_type = xml.get("type", "")
        if kind_type == "error":
            return self._receive_error(stanza)
        if isinstance(stanza, Message) and xml.find(_FORWARDED_TAG) is None:
            forwarded = self._forwarded(stanza)
            if forwarded is not None:
                return self._receive_forwarded(stanza, *forwarded)
        e2e = xml.find(_E2E_TAG)
        if e2e is None:
            return self._receive_plaintext(stanza)
        if isinstance(stanza, Message) and kind_type == "groupchat":
            return stanza  # not ours to open: groupchat is never encrypted by this protocol
        if not self._ready.is_set():
            if len(self._parked) >= _MAX_PARKED:
                log.warning("objenc: too many stanzas before our keys loaded; dropping one")
                self.xmpp.event(
                    "objenc_decryption_failed", DecryptionFailedEvent(stanza, "undecryptable")
                )
                return None
            self._parked.append(stanza)  # opened once the keys are loaded
            return None
        sender = stanza["from"] if stanza["from"] else JID(self.xmpp.boundjid.bare)
        if not sender.resource:
            # Encrypted stanzas come from a contact's client (a full JID); a bare
            # one would make our answers go to the server, unencrypted.
            self._decryption_failed(stanza, sender, "forged")
            return None
        opened = self._open(e2e)
        if opened is None:
            self._decryption_failed(stanza, sender, "undecryptable")
            return None
        envelope, recipient_fingerprint = opened
        inner = envelope.stanza
        if not self._matches_outer(stanza, inner, sender):
            self._decryption_failed(stanza, sender, "forged")
            return None

        delay = self._delay_stamp(stanza) if isinstance(stanza, Message) else None
        delivered = self._inner_to_stanza(stanza, inner)
        now = self._clock()
        try:
            self.replay_guard.admit(
                sender.full, envelope.timestamp, envelope.digest, now=now, delay=delay
            )
        except StaleStanza as stale:
            self._bad_timestamp(stanza, delivered, sender, stale.reason, envelope.timestamp)
            return None
        self._persist(
            lambda: self.storage.record_admitted(
                sender.full, _ms(envelope.timestamp), _ms(now), envelope.digest
            )
        )
        floor = self.replay_guard.floor_ms
        if floor != self._persisted_floor:  # changes only when a digest is forgotten
            self._persisted_floor = floor
            self._persist(lambda: self.storage.set_setting(_REPLAY_FLOOR, str(floor)))
        inner_id = inner.get("id")
        if inner_id:  # answers to it must be encrypted (or, for errors, empty)
            self._answerable[(sender.full, inner_id)] = None
            while len(self._answerable) > _OUTER_ID_MEMORY:
                self._answerable.popitem(last=False)
        self._no_certificates.pop(sender.bare, None)  # it uses this protocol: look again
        if not self.keyring.sticky(sender.bare):
            # It encrypts: never answer it in the clear from now on.
            key, value = self.keyring.require_now(sender.bare)
            self._persist(lambda: self.storage.set_setting(key, value))

        self._info[delivered.xml] = self._encryption_info(
            envelope, recipient_fingerprint, sender.bare, delay
        )
        self.xmpp.event("objenc_decrypted", delivered)
        return delivered

    def _encryption_info(
        self,
        envelope: OpenedEnvelope,
        recipient_fingerprint: str,
        sender_bare: str | None,
        delay: datetime | None,
    ) -> EncryptionInfo:
        """What ``encryption_info()`` reports; the sender's certificate is the one we
        hold for it (a usable one first), or none for our own sent messages."""
        records = self.keyring.records(sender_bare) if sender_bare else []
        ranked = [r for r in records if r.trust.usable] + records
        best = ranked[0] if ranked else None
        return EncryptionInfo(
            timestamp=envelope.timestamp,
            cipher=envelope.cipher,
            recipient_fingerprint=recipient_fingerprint,
            sender_fingerprint=best.fingerprint if best else None,
            delay=delay,
            sender_trust=best.trust if best else None,
        )

    def _forwarded(self, stanza: StanzaBase) -> tuple[str, ET.Element, ET.Element] | None:
        """A carbon (XEP-0280) or archive result (XEP-0313) and the message it forwards."""
        for kind, tag in (
            ("received", qname(NS_CARBONS, "received")),
            ("sent", qname(NS_CARBONS, "sent")),
            ("archive", qname(NS_MAM, "result")),
        ):
            wrapper = stanza.xml.find(tag)
            if wrapper is None:
                continue
            forwarded = wrapper.find(_FORWARDED_TAG)
            message = forwarded.find(_MESSAGE_TAG) if forwarded is not None else None
            if forwarded is None or message is None:
                return None
            return kind, forwarded, message
        return None

    def _receive_forwarded(
        self, stanza: StanzaBase, kind: str, forwarded: ET.Element, message: ET.Element
    ) -> StanzaBase | None:
        """Open the forwarded message in place, so slixmpp's carbon and MAM handling
        see the plaintext; a forged carbon is dropped whatever it carries."""
        own = self.xmpp.boundjid.bare
        origin = stanza["from"]
        if kind in ("received", "sent"):
            if origin and origin.full != own:  # XEP-0280: only from our own bare JID
                log.warning("objenc: a carbon from %s (not our account) dropped", origin)
                self.xmpp.event("objenc_decryption_failed", DecryptionFailedEvent(stanza, "forged"))
                return None
        elif origin and origin.bare != own:
            return stanza  # another archive (e.g. a room's): not ours to open
        e2e = message.find(_E2E_TAG)
        if e2e is None:
            if kind != "archive" and self._forwarded_plaintext_refused(message, kind):
                self.xmpp.event("objenc_plaintext_refused", stanza)
                return None
            return stanza  # history may hold plaintext from before; live copies may not
        archived = kind == "archive"

        def fail(reason: str) -> StanzaBase | None:
            if archived:
                self._archive_errors[stanza.xml] = reason
                return stanza  # the archive result still arrives, ciphertext and all
            self.xmpp.event("objenc_decryption_failed", DecryptionFailedEvent(stanza, reason))
            return None

        try:
            sender, to = JID(message.get("from", "")), JID(message.get("to", ""))
        except Exception:
            return fail("forged")
        outgoing = sender.bare == own
        if not sender.resource or (kind == "sent" and not outgoing):
            return fail("forged")
        if kind == "received" and to.bare != own:
            return fail("forged")
        opened = self._open(e2e)
        if opened is None:
            return fail("undecryptable")
        envelope, recipient_fingerprint = opened
        inner = envelope.stanza
        recipient = to.bare if outgoing else own
        if not _consistent("message", message.get("type", ""), inner, sender.bare, recipient):
            return fail("forged")
        stamp = None
        try:
            if archived:
                delay = forwarded.find(_DELAY_TAG)
                stamp = parse_timestamp(
                    delay.get("stamp", "") if delay is not None else "", utc_only=False
                )
                check_archived(envelope.timestamp, stamp)
            else:
                self.replay_guard.admit(
                    sender.full, envelope.timestamp, envelope.digest, now=self._clock()
                )
        except ValueError:
            return fail("old")
        except StaleStanza as stale:
            if archived:
                return fail(stale.reason)
            self.xmpp.event(
                "objenc_bad_timestamp",
                BadTimestampEvent(stanza, stale.reason, envelope.timestamp),
            )
            return None
        for attribute in ("from", "to"):
            value = message.get(attribute)
            if value:
                inner.set(attribute, value)
        forwarded.remove(message)
        forwarded.append(inner)
        self._info[inner] = self._encryption_info(
            envelope, recipient_fingerprint, None if outgoing else sender.bare, stamp
        )
        rebuilt: StanzaBase = self.xmpp._build_stanza(stanza.xml)  # re-read its plugins
        self.xmpp.event("objenc_decrypted", rebuilt)
        return rebuilt

    def _forwarded_plaintext_refused(self, message: ET.Element, kind: str) -> bool:
        """A plaintext carbon of a conversation with a contact known to encrypt is
        refused like the plaintext itself: the server could have made it up."""
        if not self.config.get("refuse_plaintext", True):
            return False
        if message.get("type", "") not in _ENCRYPTED_MESSAGE_TYPES:
            return False
        try:
            contact = JID(message.get("to" if kind == "sent" else "from", ""))
        except Exception:
            return True
        return bool(contact.bare) and self.keyring.sticky(contact.bare)

    async def fetch_archive(
        self,
        with_jid: JID | str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        max_items: int = 100,
    ) -> list[ArchivedMessage]:
        """Fetch messages from our server archive (XEP-0313) and decrypt them.

        Each is checked against the archive's own delay stamp; messages from
        long ago open as long as the key they were encrypted to is still held.
        Needs the ``xep_0313`` plugin.
        """
        mam = self.xmpp.plugin.get("xep_0313", None)
        if mam is None:
            raise EncryptionError("fetch_archive needs the xep_0313 plugin")
        await self.ready()
        result = await mam.retrieve(
            with_jid=JID(with_jid) if with_jid else None,
            start=start,
            end=end,
            rsm={"max": max_items},
        )
        archived = []
        for wrapper in result["mam"]["results"]:
            element = wrapper.xml.find(
                f"{{{NS_MAM}}}result/{{{NS_FORWARD}}}forwarded/{{jabber:client}}message"
            )
            if element is None:
                continue
            info = self._info.get(element)
            error = None if info is not None else self._archive_errors.get(wrapper.xml)
            archived.append(ArchivedMessage(self.xmpp._build_stanza(element), info, error))
        return archived

    def _receive_plaintext(self, stanza: StanzaBase) -> StanzaBase | None:
        """Plaintext from the client of a contact known to encrypt is refused: the
        server could have injected it."""
        if isinstance(stanza, Message):
            eme = stanza.xml.find(_EME_TAG)
            namespace = eme.get("namespace", "") if eme is not None else ""
            if eme is not None and namespace != NS_OBJENC:
                handler = _FOREIGN_HANDLERS.get(namespace)
                if handler is None or self.xmpp.plugin.get(handler, None) is None:
                    # Its body is a fallback notice, not the message: do not show it
                    # as if it were.
                    log.info("objenc: %s message from %s not for us", namespace, stanza["from"])
                    self.xmpp.event(
                        "objenc_foreign_encryption",
                        ForeignEncryptionEvent(stanza, namespace, eme.get("name", "")),
                    )
                    return None
        if not self.config.get("refuse_plaintext", True) or isinstance(stanza, Presence):
            return stanza
        sender = stanza["from"]
        kind_type = stanza.xml.get("type", "")
        if not sender or not sender.resource or sender.bare == self.xmpp.boundjid.bare:
            return stanza  # servers, PEP events, our own account
        if isinstance(stanza, Message) and kind_type not in _ENCRYPTED_MESSAGE_TYPES:
            return stanza
        if not self.keyring.sticky(sender.bare) or self._is_muc(sender):
            return stanza
        log.warning("objenc: plaintext %s from %s refused", stanza.name, sender)
        self.xmpp.event("objenc_plaintext_refused", stanza)
        return None

    def _open(self, e2e: ET.Element) -> tuple[OpenedEnvelope, str] | None:
        max_size = int(self.config.get("max_envelope_size", DEFAULT_MAX_ENVELOPE_SIZE))
        for identity in self.keyring.identities[:_MAX_OWN_KEYS_TRIED] or [self.identity]:
            try:
                return (
                    open_envelope(
                        e2e, identity.private_key, key_id=identity.fingerprint, max_size=max_size
                    ),
                    identity.fingerprint,
                )
            except InvalidEnvelope:
                continue
        return None

    def _delay_stamp(self, stanza: StanzaBase) -> datetime | None:
        """The XEP-0203 stamp our own server added (offline storage stamps from our
        domain, stream-management hibernation from our bare JID); with several,
        the earliest: when our server first received the stanza."""
        ours = {self.xmpp.boundjid.domain, self.xmpp.boundjid.bare}
        stamps = []
        for delay in stanza.xml.findall(_DELAY_TAG):
            try:
                if JID(delay.get("from", "")).bare not in ours:
                    continue
                stamps.append(parse_timestamp(delay.get("stamp", ""), utc_only=False))
            except Exception:  # noqa: S112 - malformed or out of range: not a usable stamp
                continue
        return min(stamps) if stamps else None

    def _matches_outer(self, outer: StanzaBase, inner: ET.Element, sender: JID) -> bool:
        """The inner stanza must repeat the outer kind, type and addressing."""
        return _consistent(
            outer.name, outer.xml.get("type", ""), inner, sender.bare, self.xmpp.boundjid.bare
        )

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
        outer_id = stanza.xml.get("id", "")
        mapped = self._outer_ids.get(outer_id)
        if mapped is None:
            return stanza
        inner_id, sent_to = mapped
        sender = stanza["from"]
        try:
            if sender and JID(sent_to).bare != sender.bare:
                return stanza  # only the peer we sent to may answer for it
        except Exception:
            return stanza
        del self._outer_ids[outer_id]
        stanza.xml.set("id", inner_id)
        error = stanza.xml.find(qname("jabber:client", "error"))
        if error is None:
            return stanza
        peer = str(sender)
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
        # An exact copy (e.g. a stream-management resend) gets no error: the
        # original was delivered, and the sender must not think it failed.
        if reason != "replay" and self.config.get("bad_timestamp_replies", True):
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

    # -- short authentication string ---------------------------------------

    async def start_verification(self, jid: JID | str, timeout: float = 30.0) -> SasEvent:
        """Run the commit-then-reveal exchange with a contact's client (a full JID).

        Returns the 6-character string (also sent as event ``objenc_sas``) for
        the users to compare; then call :meth:`confirm_verification`.
        """
        peer = JID(jid)
        if not peer.resource:
            raise EncryptionError("verification needs the contact's full JID")
        certificate = self.peer_certificate(peer)
        if certificate is None:
            raise EncryptionError(f"no usable certificate for {peer.bare}")
        sid = base64.b32encode(self._random_bytes(10)).decode("ascii").lower()
        initiator = SasInitiator(self.fingerprint, certificate.fingerprint, self._random_bytes)
        self._sas[sid] = initiator
        self._sas_peers[sid] = (peer.bare, certificate.fingerprint)
        iq = self.xmpp.make_iq_set(ito=peer)
        iq["objenc_sas"]["sid"] = sid
        iq["objenc_sas"]["cert"] = self.fingerprint
        iq["objenc_sas"]["commit"] = _b64(initiator.commit())
        answer = await iq.send(timeout=timeout)
        self._require_encrypted(answer)
        if answer["objenc_sas"]["cert"] != certificate.fingerprint:
            raise VerificationError("the contact answered with another certificate")
        reveal = initiator.receive_nonce(_unb64(answer["objenc_sas"]["nonce"]))
        iq = self.xmpp.make_iq_set(ito=peer)
        iq["objenc_sas"]["sid"] = sid
        iq["objenc_sas"]["reveal"] = _b64(reveal)
        self._require_encrypted(await iq.send(timeout=timeout))
        assert initiator.sas is not None
        event = SasEvent(str(peer), sid, initiator.sas, certificate.fingerprint, "initiator")
        self.xmpp.event("objenc_sas", event)
        return event

    async def confirm_verification(self, sid: str, matched: bool) -> None:
        """The users compared the strings: mark the contact's certificate ``verified``
        (or ``untrusted`` if they differ, which holds stanzas to it)."""
        session = self._sas.pop(sid, None)
        peer = self._sas_peers.pop(sid, None)
        if session is None or peer is None or session.sas is None:
            raise VerificationError("no completed verification with this id")
        bare, fingerprint = peer
        await self.set_trust(
            bare, fingerprint, TrustState.VERIFIED if matched else TrustState.UNTRUSTED
        )

    def _require_encrypted(self, stanza: StanzaBase) -> None:
        if self.encryption_info(stanza) is None:
            raise VerificationError("verification messages must arrive encrypted")

    async def _handle_sas(self, iq: StanzaBase) -> None:
        request = iq["objenc_sas"]
        sid = request["sid"]
        try:
            if self.encryption_info(iq) is None or not sid:
                raise VerificationError("verification messages must arrive encrypted")
            reply = iq.reply()
            reply["objenc_sas"]["sid"] = sid
            if request["commit"]:
                claimed = request["cert"]
                record = self.keyring.record(iq["from"].bare, claimed)
                if record is None or not record.trust.usable or sid in self._sas:
                    raise VerificationError("unknown certificate or session")
                while len(self._sas) >= _MAX_SAS_SESSIONS:  # bounded: oldest dropped
                    oldest = next(iter(self._sas))
                    self._sas.pop(oldest, None)
                    self._sas_peers.pop(oldest, None)
                responder = SasResponder(self.fingerprint, claimed, self._random_bytes)
                reply["objenc_sas"]["cert"] = self.fingerprint
                reply["objenc_sas"]["nonce"] = _b64(
                    responder.receive_commit(_unb64(request["commit"]))
                )
                self._sas[sid] = responder
                self._sas_peers[sid] = (iq["from"].bare, claimed)
            elif request["reveal"]:
                responder = self._sas.get(sid)  # type: ignore[assignment]
                if not isinstance(responder, SasResponder):
                    raise VerificationError("no such verification")
                sas = responder.receive_reveal(_unb64(request["reveal"]))
                _bare, fingerprint = self._sas_peers[sid]
                self.xmpp.event(
                    "objenc_sas", SasEvent(str(iq["from"]), sid, sas, fingerprint, "responder")
                )
            else:
                raise VerificationError("empty verification request")
            reply.send()
        except (VerificationError, ValueError) as exc:
            self._sas.pop(sid, None)
            self._sas_peers.pop(sid, None)
            error = iq.reply()
            error["type"] = "error"
            error["error"]["type"] = "cancel"
            error["error"]["condition"] = "not-acceptable"
            error["error"]["text"] = str(exc)
            error.send()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _consistent(kind: str, kind_type: str, inner: ET.Element, sender: str, recipient: str) -> bool:
    """Inner kind and type as the outer stanza's; inner from/to name the same bare JIDs."""
    if inner.tag.rsplit("}", 1)[-1] != kind:
        return False
    if _normal_type(kind, inner.get("type", "")) != _normal_type(kind, kind_type):
        return False
    inner_from, inner_to = inner.get("from"), inner.get("to")
    if not inner_from or not inner_to:
        return False
    try:
        return bool(JID(inner_from).bare == sender and JID(inner_to).bare == recipient)
    except Exception:
        return False


def _normal_type(kind: str, value: str) -> str:
    if kind == "message" and value == "":
        return "normal"
    if kind == "presence" and value == "":
        return "available"
    return value


def _children_snapshot(xml: ET.Element) -> tuple[Any, ...]:
    """What a sealed stanza looked like: its children, their texts and attributes
    (cheap: no serialization), so a changed object sent again is caught."""
    return tuple((id(c), c.tag, c.text, tuple(c.items()), len(c)) for c in xml)


def _strip_error(stanza: StanzaBase) -> None:
    """Keep only the error's type and condition elements: no text, no payload."""
    xml = stanza.xml
    for child in list(xml):
        if child.tag != _ERROR_TAG:
            xml.remove(child)
    error = xml.find(_ERROR_TAG)
    if error is not None:
        for child in list(error):
            if child.tag == qname(NS_STANZAS, "text"):
                error.remove(child)
    _forget_plugins(stanza)


def _scrub(stanza: StanzaBase) -> None:
    """Remove every child and cached plugin, leaving only the stanza's attributes."""
    xml = stanza.xml
    for child in list(xml):
        xml.remove(child)
    xml.text = None
    _forget_plugins(stanza)


def _forget_plugins(stanza: StanzaBase) -> None:
    """Drop slixmpp's cached sub-stanza objects after we changed the XML under them."""
    stanza.plugins.clear()
    stanza.loaded_plugins.clear()
    stanza.iterables.clear()
