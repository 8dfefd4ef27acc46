"""The ``ObjEnc`` slixmpp plugin: configuration, lifecycle and the public API.

Every rule lives in :mod:`slixmpp_objenc.core` (what to send and how, what
to do with what arrives); the modules of :mod:`slixmpp_objenc.glue` execute
its decisions, one concern each. This class builds them, registers their
filters and handlers, and keeps the public API in one place.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, ClassVar

from slixmpp import JID
from slixmpp.plugins import BasePlugin
from slixmpp.plugins.xep_0060 import stanza as pubsub_stanza
from slixmpp.xmlstream import StanzaBase, register_stanza_plugin
from slixmpp.xmlstream.handler import CoroutineCallback
from slixmpp.xmlstream.matcher import StanzaPath

from .core import (
    BLOCK_CIPHERS,
    EncryptionError,
    Identity,
    PeerCertificate,
    ReplayGuard,
)
from .core.constants import DEFAULT_MAX_ENVELOPE_SIZE, NS_OBJENC
from .core.exchanges import Exchanges
from .core.publication import Publication
from .core.rules import candidate
from .core.send import OutboundContext
from .core.timestamps import utcnow
from .core.trust import TrustState
from .events import ArchivedMessage, EncryptionInfo, SasEvent
from .glue.common import Tasks, address, is_room, parse_address
from .glue.directory import NODE_CERTS, KeyDirectory, normalize_jid
from .glue.inbound import Inbound, inbound_context
from .glue.outbound import DEFAULT_MAX_STANZA_SIZE, Outbound
from .glue.persistence import Persistence, default_storage, identity_from_config
from .glue.resources import OwnResources
from .glue.rotation import KeyRotation, policy_from_config
from .glue.verification import Verification
from .keyring import Keyring
from .plugin_policy import PolicyApi
from .stanza import Certificate, register_stanza_plugins
from .store import Storage

__all__ = ["NODE_CERTS", "ObjEnc"]

log = logging.getLogger(__name__)

MAX_DELAY = timedelta(days=30)
"""Oldest server <delay/> stamp accepted (offline storage): older is refused as old."""
REORDER_TOLERANCE = timedelta(minutes=2)
"""Out-of-order stanzas (XEP-0198 resends after newer ones) up to this much older pass."""


def replay_guard_from_config(
    config: dict[str, Any], own_bare: str, sticky: Callable[[str], bool]
) -> ReplayGuard:
    """The receiver's replay guard as configured (``max_delay``: a timedelta or seconds)."""
    max_delay = config.get("max_delay", MAX_DELAY)
    if not isinstance(max_delay, timedelta):
        max_delay = timedelta(seconds=float(max_delay))
    return ReplayGuard(
        reorder=REORDER_TOLERANCE,
        max_delay=max_delay,
        # contacts and our own account never lose their replay state to a flood
        protect=lambda bare: bare == own_bare or sticky(bare),
    )


class ObjEnc(PolicyApi, BasePlugin):
    """End-to-end object encryption (draft-miller-3923bis-02) for slixmpp.

    With no configuration at all it keeps a key and certificate per account
    in an SQLite file under the platform's data directory, publishes the
    certificate to PEP, discovers contacts' certificates the same way, pins
    them on first use and never falls back to plaintext once a contact has
    been seen with a certificate.

    Configuration (``pconfig``): README's table says what each key does and
    its default; :attr:`default_config` lists them all.
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
        "trust_own_new_devices": False,
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
        "max_delay": MAX_DELAY,
        "max_stanza_size": DEFAULT_MAX_STANZA_SIZE,
        "authenticated": True,
        "rotate_every": None,  # 7 days (a timedelta, or seconds): PROTOCOL.md 13.10
        "retention": None,  # 30 days: replaced keys still open, then are destroyed
        "hybrid": False,  # the post-quantum hybrid to every contact (set_hybrid per contact)
        "device_label": None,  # "laptop": shown to contacts (objenc peers, events, SAS)
    }

    # -- lifecycle ---------------------------------------------------------

    def plugin_init(self) -> None:
        register_stanza_plugins()
        register_stanza_plugin(pubsub_stanza.Item, Certificate)
        register_stanza_plugin(pubsub_stanza.EventItem, Certificate)
        config = self.config
        clock = config.get("clock") or utcnow
        self._clock = clock
        random_bytes = config.get("random_bytes") or os.urandom
        cipher = BLOCK_CIPHERS.get(config.get("cipher") or "")
        if cipher is None:
            raise EncryptionError(f"unknown cipher {config.get('cipher')!r}")
        configured = identity_from_config(config)
        self.storage: Storage = config.get("storage") or default_storage(
            config, self.xmpp.boundjid.bare
        )
        self.keyring = Keyring(self.storage, clock, normalize=normalize_jid)
        self.keyring.device.enabled = bool(config.get("authenticated", True))
        self.keyring.device.policy = policy_from_config(config)
        self.keyring.device.label = config.get("device_label") or None
        self.tasks = Tasks(self.xmpp.loop)
        self.persistence = Persistence(self.storage, self.keyring, clock, self.tasks)
        self.persistence.configured = configured
        self.persistence.conversations.default_hybrid = bool(config.get("hybrid", False))
        self.directory = KeyDirectory(
            self.xmpp, self.keyring, self.persistence, config, clock, lambda: self.identity
        )
        exchanges = Exchanges()
        loaded = self.persistence.loaded
        self.resources = OwnResources(
            self.xmpp, self.tasks, timeout=float(config.get("discovery_timeout", 10.0))
        )
        self.outbound = Outbound(
            self.xmpp,
            OutboundContext(
                own_bare=self.xmpp.boundjid.bare,
                directory=self.directory,
                exchanges=exchanges,
                own_certificate=self.persistence.own_recipient,
                ready=loaded.is_set,
                load_error=lambda: self.persistence.load_error,
                is_room=functools.partial(is_room, self.xmpp),
                encrypting_own_resource=self.resources.encrypting,
                hold_on_key_change=bool(config.get("hold_on_key_change", True)),
                hybrid=self.persistence.conversations.hybrid,
            ),
            self.directory,
            self.persistence,
            self.tasks,
            cipher=cipher,
            random_bytes=random_bytes,
            padding=int(config.get("padding", 64) or 0),
            fallback_body=str(config["fallback_body"]) if config.get("fallback_body") else None,
            max_stanza_size=int(config.get("max_stanza_size", DEFAULT_MAX_STANZA_SIZE)),
        )
        self.directory.released = self.outbound.release_hold
        self.persistence.loaders.append(self.directory.revocations.load)
        self.rotation = KeyRotation(
            self.xmpp, self.keyring.device, self.directory.publish, self.tasks, clock
        )
        self.outbound.catch_up = self.rotation.run
        self.inbound = Inbound(
            self.xmpp,
            inbound_context(
                self.xmpp,
                config,
                self.keyring,
                self.resources,
                exchanges,
                clock,
                identities=self.persistence.identities,
                ready=loaded.is_set,
                replay_guard=config.get("replay_guard")
                or replay_guard_from_config(config, self.xmpp.boundjid.bare, self.keyring.sticky),
                second=self.persistence.conversations.second,
            ),
            self.directory,
            self.persistence,
            self.keyring,
            self.resources,
            self.tasks,
        )
        self.verification = Verification(
            self.xmpp,
            self.keyring,
            fingerprint=self._fingerprint_for,
            encryption_info=self.encryption_info,
            set_trust=self.set_trust,
            random_bytes=random_bytes,
        )
        self._handlers = (
            ("session_start", self._on_session_start),
            ("session_start", self.rotation.on_session_start),
            ("session_end", self.rotation.on_session_end),
            ("objenc_certs_publish", self.directory.on_notified),
            ("objenc_certs_retract", self.directory.on_notified),
            ("objenc_certs_config", self.directory.on_configured),
            ("changed_subscription", self.directory.on_subscription_changed),
            ("presence_available", self.resources.on_presence),
            ("presence_unavailable", self.resources.on_presence),
        )
        self.xmpp.add_filter("out", self.outbound.plan)
        self.xmpp.add_filter("out_sce", self.outbound.seal)
        self.xmpp.add_filter("in", self.inbound.receive)
        for event, handler in self._handlers:
            self.xmpp.add_event_handler(event, handler)
        self.xmpp.register_handler(
            CoroutineCallback(
                "objenc verification",
                StanzaPath("iq@type=set/objenc_sas"),
                self.verification.handle,
            )
        )
        self.tasks.spawn(self._load())
        # Registered late (poezio loads plugins inside session_start): catch up on
        # what the session already did, so every moment leads to the same state.
        self._bound = False
        if self.xmpp.session_bind_event.is_set():
            self.session_bind(self.xmpp.boundjid)
        if getattr(self.xmpp, "_session_started", False):
            self.rotation.on_session_start(None)
            self.tasks.spawn(self._on_session_start(None))

    def plugin_end(self) -> None:
        """Undo what can be undone at once; the store is closed in the background
        (``await close()`` waits for it)."""
        self.xmpp.del_filter("out", self.outbound.plan)
        self.xmpp.del_filter("out_sce", self.outbound.seal)
        self.xmpp.del_filter("in", self.inbound.receive)
        for event, handler in self._handlers:
            self.xmpp.del_event_handler(event, handler)
        self.xmpp.remove_handler("objenc verification")
        self.outbound.fail_held()  # reported, never dropped without a word
        self.rotation.stop()
        self.tasks.cancel_all()
        disco = self.xmpp.plugin.get("xep_0030", None)
        if disco is not None:
            disco.del_feature(feature=NS_OBJENC)
            disco.del_feature(feature=NODE_CERTS + "+notify")
        self.persistence.start_closing()

    def session_bind(self, jid: JID) -> None:
        """Our resource is bound (slixmpp calls this then, or at registration if it
        already happened; registered inside the 'session_bind' event, the session
        start catches up)."""
        if not hasattr(self, "inbound"):
            return  # called by slixmpp before plugin_init: plugin_init calls it again
        self._bound = True
        self.xmpp.plugin["xep_0030"].add_feature(NS_OBJENC)
        # Stay the last 'in' filter: XEP-0198 must count each wire stanza
        # before we drop or replace it, and must not count it twice.
        self.xmpp.del_filter("in", self.inbound.receive)
        self.xmpp.add_filter("in", self.inbound.receive)
        self.inbound.context.own = address(self.xmpp.boundjid)  # the resource we got
        self.directory.register_interest()

    async def _on_session_start(self, _event: Any) -> None:
        if not self._bound:
            self.session_bind(self.xmpp.boundjid)
        await self.rotation.before_session(self.persistence)
        await self.directory.on_session_start()

    async def _load(self) -> None:
        await self.persistence.load(
            bare=self.xmpp.boundjid.bare,
            configured=self.persistence.configured,
            key_size=int(self.config.get("key_size", 3072)),
            authenticated=bool(self.config.get("authenticated", True)),
            replay_guard=self.replay_guard,
            parse=parse_address,
        )
        if self.persistence.rotated is not None:  # at start, before the first publication
            self.rotation.report(self.persistence.rotated)
        self.inbound.release_parked()

    async def ready(self) -> None:
        """Wait until keys are loaded (or created on first start); raise if that failed."""
        await self.persistence.loaded.wait()
        error = self.persistence.load_error
        if error is not None:
            raise EncryptionError(f"objenc could not load its keys: {error}")

    async def flush(self) -> None:
        """Wait until every pending write has reached the store."""
        await self.persistence.flush()

    async def close(self) -> None:
        """Flush pending writes and close the store (call before exiting)."""
        await self.persistence.close()

    # -- public API --------------------------------------------------------

    @property
    def replay_guard(self) -> ReplayGuard:
        """The receiver's timestamp and replay state."""
        return self.inbound.context.replay_guard

    @property
    def identity(self) -> Identity:
        """Our active identity. Raises :class:`EncryptionError` before :meth:`ready`."""
        identity = self.keyring.identity or self.persistence.configured
        if identity is None:
            raise EncryptionError("no identity yet: await plugin.ready()")
        return identity

    @property
    def fingerprint(self) -> str:
        """SHA-256 fingerprint (lowercase hex) of this device's identity certificate:
        what contacts pin and verify (``identity.fingerprint``, the RSA one, for a
        device of the draft's profile only)."""
        keys = self.keyring.device.keys
        return keys.fingerprint if keys is not None else self.identity.fingerprint

    def _fingerprint_for(self, bare: str) -> str:
        """Ours as ``bare`` knows us: our identity, unless it speaks only the draft."""
        if bare == self.xmpp.boundjid.bare or self.keyring.has_identity(bare):
            return self.fingerprint
        return self.identity.fingerprint

    def certificate_pem(self) -> bytes:
        """This device, to hand to peers by hand: our identity and encryption
        certificates (PEM, one after the other), or the RSA certificate for a
        device of the draft's profile only."""
        return self.keyring.device.bundle_pem() or self.identity.certificate_pem()

    def add_peer_certificate(
        self, pem: bytes, trust: TrustState = TrustState.TOFU, jid: JID | str | None = None
    ) -> PeerCertificate:
        """Hold a peer certificate for the JID its ``id-on-xmppAddr`` names.

        Adding by hand is the user's decision, so it is trusted as given
        (``tofu`` by default). A certificate naming several JIDs needs ``jid``
        to say which one it is for; it is never bound to the others. Raises
        :class:`CertificateError` with the reason, and nothing else, for any bad input.
        """
        return self.directory.add_manual(pem, trust, jid)

    def remove_peer_certificate(self, jid: JID | str, fingerprint: str | None = None) -> None:
        """Forget the certificate(s) held for a bare JID. Once none is held, stanzas
        to it go in the clear again unless encryption is required for it.

        On our own bare JID (a device of ours) the certificate is revoked instead, so
        it never comes back (not even as a question), and retracted from our node."""
        self.directory.remove(str(jid), fingerprint)

    def peer_certificate(self, jid: JID | str) -> PeerCertificate | None:
        """The first usable certificate held for a JID's bare part, if any."""
        usable = self.keyring.usable(JID(jid).bare, self._clock())
        return usable[0] if usable else None

    async def set_trust(self, jid: JID | str, fingerprint: str, trust: TrustState) -> None:
        """Set a peer certificate's trust state (``verified``, ``tofu``, ``untrusted``,
        ``revoked``); releases stanzas held for the JID once nothing is pending."""
        bare = JID(jid).bare
        await self.keyring.set_trust(bare, fingerprint, TrustState(trust))
        self.outbound.release_hold(bare)

    async def accept_key_change(self, jid: JID | str, fingerprint: str) -> None:
        """Trust a changed certificate; held stanzas are then encrypted to it."""
        await self.set_trust(jid, fingerprint, TrustState.TOFU)

    async def reject_key_change(self, jid: JID | str, fingerprint: str) -> None:
        """Refuse a changed certificate for good; held stanzas go to the old keys."""
        await self.set_trust(jid, fingerprint, TrustState.REVOKED)

    def encryption_info(self, stanza: StanzaBase) -> EncryptionInfo | None:
        """How ``stanza`` arrived: ``None`` if it was not encrypted."""
        return self.inbound.encryption_info(stanza)

    @property
    def publication(self) -> Publication:
        """Our certificate's state on PEP (``objenc_publication`` on each change);
        ``failing`` means contacts find no certificate and may write in the clear."""
        return self.directory.publisher.state

    async def publish_certificate(self) -> bool:
        """Publish our certificate on our PEP node, readable by contacts only
        (publish-options, else node configuration: ``core.publication``).
        Returns whether it is published; never publishes on a more open node."""
        return await self.directory.publish()

    async def discover(self, jid: JID | str) -> list[PeerCertificate]:
        """Fetch a contact's certificates from PEP now; returns the usable ones."""
        return await self.directory.discover(JID(jid).bare)

    def candidate(self, stanza: StanzaBase) -> str | None:
        """The bare JID ``stanza`` would be encrypted for, or ``None`` if this kind of
        stanza is never encrypted (groupchat, undirected presence, servers...)."""
        outgoing = self.outbound.outgoing(stanza)
        return candidate(
            outgoing.kind,
            outgoing.type,
            outgoing.to,
            own_bare=self.xmpp.boundjid.bare,
            sealed=outgoing.sealed,
            muc_join=outgoing.muc_join,
            is_room=functools.partial(is_room, self.xmpp),
        )

    def recipients_for(self, stanza: StanzaBase) -> list[PeerCertificate] | None:
        """The contact's certificates ``stanza`` would be encrypted to now, or ``None``."""
        bare = self.candidate(stanza)
        if bare is None:
            return None
        return self.keyring.usable(bare, self._clock()) or None

    def seal_stanza(self, stanza: StanzaBase, recipients: list[PeerCertificate]) -> None:
        """Replace ``stanza``'s content with an ``<e2e/>`` for ``recipients`` (steps 1-11)."""
        self.outbound.seal_stanza(stanza, recipients)

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
        if self.xmpp.plugin.get("xep_0313", None) is None:
            raise EncryptionError("fetch_archive needs the xep_0313 plugin")
        await self.ready()
        return await self.inbound.fetch_archive(with_jid, start, end, max_items)

    async def start_verification(self, jid: JID | str, timeout: float = 30.0) -> SasEvent:
        """Run the commit-then-reveal exchange with a contact's client, or another
        client of our own account (a full JID). It covers every certificate each
        side encrypts to for the other (PROTOCOL.md section 11).

        Returns the 6-character string (also sent as event ``objenc_sas``) for
        the users to compare; then call :meth:`confirm_verification`.
        """
        return await self.verification.start(jid, timeout)

    async def confirm_verification(self, sid: str, matched: bool) -> None:
        """The users compared the strings: mark the certificates it covered ``verified``
        and hold any other of that JID (or hold the covered ones if they differ)."""
        await self.verification.confirm(sid, matched)
