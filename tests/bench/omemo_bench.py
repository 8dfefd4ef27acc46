"""OMEMO with an established session: python-omemo with twomemo (OMEMO 2) and oldmemo.

Two (or five) in-memory ``SessionManager`` instances in one process publish
bundles and device lists to a shared dictionary that plays the server's PEP.
Sessions are built (key exchange and the answering empty message) before any
timing. The timed operation is what one message costs both ends once the
session exists: ``encrypt`` for Bob's device(s), serialization of the
``<encrypted/>`` element to bytes and back (``twomemo.etree``/``oldmemo.etree``,
schema validation included, as a client does), and ``decrypt`` on Bob's first
device. Empty "heartbeat" messages the library sends on its own (every 53
messages received without a reply) are delivered inside the timed loop too.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import oldmemo
import oldmemo.etree
import omemo
import twomemo
import twomemo.etree
from omemo.storage import Just, Maybe, Nothing
from slixmpp import ClientXMPP

from . import framing
from .common import ALICE, BOB, SIZES, Row, Settings, ameasure, body_text

NS_TWOMEMO = twomemo.twomemo.NAMESPACE
NS_OLDMEMO = oldmemo.oldmemo.NAMESPACE
BACKENDS = {
    NS_TWOMEMO: "twomemo (OMEMO 2, urn:xmpp:omemo:2)",
    NS_OLDMEMO: "oldmemo (OMEMO 0.3, axolotl)",
}
TRUST = "BLIND"


class MemoryStorage(omemo.Storage):
    """python-omemo's key/value storage in a dictionary (the library caches on top)."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, Any] = {}

    async def _load(self, key: str) -> Maybe[Any]:
        return Just(self.data[key]) if key in self.data else Nothing()

    async def _store(self, key: str, value: Any) -> None:
        self.data[key] = value

    async def _delete(self, key: str) -> None:
        self.data.pop(key, None)


@dataclass
class Directory:
    """What the server's PEP would hold: bundles and device lists."""

    bundles: dict[tuple[str, str, int], omemo.Bundle] = field(default_factory=dict)
    device_lists: dict[tuple[str, str], dict[int, Any]] = field(default_factory=dict)


def manager_class(
    own_jid: str, directory: Directory, outbox: list[tuple[str, omemo.Message]]
) -> type[omemo.SessionManager]:
    """A ``SessionManager`` whose XMPP side is the shared ``directory``."""

    class Manager(omemo.SessionManager):
        @staticmethod
        async def _upload_bundle(bundle: omemo.Bundle) -> None:
            directory.bundles[(bundle.namespace, bundle.bare_jid, bundle.device_id)] = bundle

        @staticmethod
        async def _download_bundle(namespace: str, bare_jid: str, device_id: int) -> omemo.Bundle:
            try:
                return directory.bundles[(namespace, bare_jid, device_id)]
            except KeyError:
                raise omemo.BundleNotFound(f"{namespace} {bare_jid} {device_id}") from None

        @staticmethod
        async def _delete_bundle(namespace: str, device_id: int) -> None:
            directory.bundles.pop((namespace, own_jid, device_id), None)

        @staticmethod
        async def _upload_device_list(namespace: str, device_list: dict[int, Any]) -> None:
            directory.device_lists[(namespace, own_jid)] = dict(device_list)

        @staticmethod
        async def _download_device_list(namespace: str, bare_jid: str) -> dict[int, Any]:
            return dict(directory.device_lists.get((namespace, bare_jid), {}))

        async def _evaluate_custom_trust_level(
            self, device: omemo.DeviceInformation
        ) -> omemo.TrustLevel:
            if device.trust_level_name == TRUST:
                return omemo.TrustLevel.TRUSTED
            return omemo.TrustLevel[device.trust_level_name]

        async def _make_trust_decision(
            self, undecided: frozenset[omemo.DeviceInformation], identifier: str | None
        ) -> None:
            for device in undecided:
                await self.set_trust(device.bare_jid, device.identity_key, TRUST)

        @staticmethod
        async def _send_message(message: omemo.Message, bare_jid: str) -> None:
            outbox.append((bare_jid, message))

    return Manager


class OmemoPeers:
    """Alice (one device) and Bob (``devices`` devices), sessions established."""

    def __init__(self) -> None:
        self.directory = Directory()
        self.alice_outbox: list[tuple[str, omemo.Message]] = []
        self.bob_outbox: list[tuple[str, omemo.Message]] = []
        self.alice: omemo.SessionManager
        self.bobs: list[omemo.SessionManager] = []

    @classmethod
    async def create(cls, devices: int = 1) -> OmemoPeers:
        peers = cls()
        peers.alice = await peers._manager(ALICE, peers.alice_outbox)
        for _ in range(devices):
            peers.bobs.append(await peers._manager(BOB, peers.bob_outbox))
        for namespace in BACKENDS:
            await peers.alice.refresh_device_list(namespace, BOB)
            for bob in peers.bobs:
                await bob.refresh_device_list(namespace, ALICE)
            # Session building: Alice's key exchange, each device's empty answer.
            messages, errors = await peers.alice.encrypt(
                frozenset({BOB}), {namespace: b"hello"}, backend_priority_order=[namespace]
            )
            if errors or len(messages) != 1:
                raise RuntimeError(f"OMEMO session set-up failed: {errors}")
            message = next(iter(messages))
            for bob in peers.bobs:
                plaintext, _, _ = await bob.decrypt(message)
                if plaintext != b"hello":
                    raise RuntimeError("OMEMO session set-up: wrong plaintext")
            await peers.deliver_to_alice()
        return peers

    async def _manager(
        self, jid: str, outbox: list[tuple[str, omemo.Message]]
    ) -> omemo.SessionManager:
        storage = MemoryStorage()
        manager = await manager_class(jid, self.directory, outbox).create(
            backends=[twomemo.Twomemo(storage), oldmemo.Oldmemo(storage)],
            storage=storage,
            own_bare_jid=jid,
            initial_own_label=None,
            undecided_trust_level_name=TRUST,
        )
        await manager.after_history_sync()
        return manager

    async def deliver_to_alice(self) -> None:
        """Bob's automatic empty messages (handshake completion, heartbeats)."""
        while self.bob_outbox:
            _, message = self.bob_outbox.pop(0)
            await self.alice.decrypt(message)
        self.alice_outbox.clear()

    async def shutdown(self) -> None:
        for manager in (self.alice, *self.bobs):
            await manager.shutdown()

    async def encrypt(self, namespace: str, plaintext: bytes) -> omemo.Message:
        messages, errors = await self.alice.encrypt(
            frozenset({BOB}), {namespace: plaintext}, backend_priority_order=[namespace]
        )
        if errors:
            raise RuntimeError(f"OMEMO encryption errors: {errors}")
        return next(iter(messages))

    async def through_xml(self, namespace: str, message: omemo.Message) -> omemo.Message:
        """Serialize to bytes and parse back, as it would cross the stream."""
        if namespace == NS_TWOMEMO:
            data = ET.tostring(twomemo.etree.serialize_message(message))
            return twomemo.etree.parse_message(ET.fromstring(data), ALICE)
        data = ET.tostring(oldmemo.etree.serialize_message(message))
        return await oldmemo.etree.parse_message(ET.fromstring(data), ALICE, BOB, self.bobs[0])

    def element(self, namespace: str, message: omemo.Message) -> ET.Element:
        if namespace == NS_TWOMEMO:
            return twomemo.etree.serialize_message(message)
        return oldmemo.etree.serialize_message(message)

    def op(self, namespace: str, plaintext: bytes, *, xml: bool) -> Callable[[], Awaitable[None]]:
        async def run() -> None:
            message = await self.encrypt(namespace, plaintext)
            if xml:
                message = await self.through_xml(namespace, message)
            opened, _, _ = await self.bobs[0].decrypt(message)
            if opened != plaintext:
                raise AssertionError("OMEMO round trip failed")
            await self.deliver_to_alice()

        return run


def plaintext_for(namespace: str, body: str) -> bytes:
    """OMEMO 2 encrypts an XEP-0420 envelope; OMEMO 0.3 the body text."""
    return framing.sce_envelope(body) if namespace == NS_TWOMEMO else body.encode("utf-8")


@dataclass
class OmemoResults:
    rows: list[Row]
    wire: list[dict[str, Any]]


async def run(settings: Settings, client: ClientXMPP, log: Callable[[str], None]) -> OmemoResults:
    rows: list[Row] = []
    wire: list[dict[str, Any]] = []
    one = await OmemoPeers.create(1)
    four = await OmemoPeers.create(4)
    try:
        for size, length in SIZES.items():
            body = body_text(length)
            for namespace, label in BACKENDS.items():
                plaintext = plaintext_for(namespace, body)
                rows.append(
                    Row(
                        "OMEMO",
                        f"{label}: encrypt + XML + decrypt",
                        size,
                        1,
                        await ameasure(one.op(namespace, plaintext, xml=True), settings),
                        note="session set up; <encrypted/> to bytes and back (schema-validated)",
                    )
                )
                if namespace == NS_TWOMEMO:
                    rows.append(
                        Row(
                            "OMEMO",
                            f"{label}: encrypt + decrypt, no XML",
                            size,
                            1,
                            await ameasure(one.op(namespace, plaintext, xml=False), settings),
                            note="library objects handed over directly",
                        )
                    )
                for recipients, peers in ((1, one), (4, four)):
                    message = await peers.encrypt(namespace, plaintext)
                    element = peers.element(namespace, message)
                    wire.append(
                        {
                            "mechanism": f"OMEMO {label}",
                            "size": size,
                            "recipients": recipients,
                            "payload_bytes": framing.element_bytes(element),
                            "stanza_bytes": framing.framed_stanza_bytes(client, element, namespace),
                            "note": (
                                "<encrypted/>; stanza: the same frame as "
                                "objenc (EME, fallback, store)"
                            ),
                        }
                    )
                    # keep the sessions in step: Bob's first device reads it
                    await peers.bobs[0].decrypt(await peers.through_xml(namespace, message))
                    await peers.deliver_to_alice()
            log(f"  {size}: done")
        body = body_text(SIZES["2 KiB"])
        rows.append(
            Row(
                "OMEMO",
                f"{BACKENDS[NS_TWOMEMO]}: encrypt + XML + decrypt, 4 recipient devices",
                "2 KiB",
                4,
                await ameasure(
                    four.op(NS_TWOMEMO, plaintext_for(NS_TWOMEMO, body), xml=True), settings
                ),
                note="encrypted for Bob's 4 devices, opened on one",
            )
        )
    finally:
        await one.shutdown()
        await four.shutdown()
    return OmemoResults(rows, wire)
