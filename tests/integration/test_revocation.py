"""Revocation of a lost device through a real server (Prosody and ejabberd):
PROTOCOL.md 13.13.

Alice has two devices on her account, the "laptop" and the "phone" (two objenc
clients, each with its own store and resource); Bob is her contact (mutual
subscription) and holds both of her identities, pinned at first contact
(``tofu``). The laptop revokes the phone (``revoke_device``): the real plugin
signs, publishes on Alice's node and retracts the phone's items; Bob reads the
node (its PEP notification, or a read the test forces) and the rules of
``core/revocation.py`` decide.

The attackers: another account (Mallory) publishing on its own node; a thief
with Alice's password (a second login, as in ``test_hostile_server.py``)
publishing on Alice's node revocations signed by keys Bob does not trust or
with bad signatures, retracting the one that was accepted, bringing back a
device of its own that was revoked before Bob ever saw it, or leaving an
ignored revocation on the node for Alice's next new device to read; the phone
itself (the lost device, still running), which keeps writing and republishes
its items. ejabberd does not notify contacts of what a session without
presence (the thief's) publishes: the test then makes Bob read the node.

Every clock is the real one (revocations are dated by their signer's clock,
at most 5 minutes ahead of the reader's: rule 4). Why a revocation was
ignored is read from the plugin's log (``glue/revocations.py``, the core's
reason): it shows that the forged item was read and which rule stopped it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from objenc_peers import (
    WAIT,
    QueuedDevice,
    Wire,
    befriend,
    eventually,
    publication_settled,
    secret,
    tap,
)
from slixmpp import JID, ClientXMPP

from slixmpp_objenc import PublicationStatus
from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.core.identities import DeviceKeys, generate_device_keys
from slixmpp_objenc.core.revocation import Revocation, revocation_element, sign_revocation
from slixmpp_objenc.events import DeviceRevokedEvent
from slixmpp_objenc.plugin import NODE_CERTS
from slixmpp_objenc.store import TrustState
from slixmpp_objenc.testing import disconnect_client

PLUGINS = ["xep_0030", "xep_0060", "xep_0163", "xep_0199", "xep_0280", "objenc"]
EVENTS = (
    "message",
    "objenc_device_revoked",
    "objenc_decryption_failed",
    "objenc_key_changed",
    "objenc_own_device_held",
)
QUIET = 0.5
"""Seconds given to something that must not happen (an event, a delivery)."""
E2E = f"{{{NS_OBJENC}}}e2e"
KEY = f"{{{NS_OBJENC}}}key"
DATA = f"{{{NS_OBJENC}}}data"
REVOCATIONS_LOG = "slixmpp_objenc.glue.revocations"

Connector = Callable[..., Awaitable[ClientXMPP]]


@dataclass
class Device(QueuedDevice):
    """One connected objenc client and the events it emitted since it was made."""

    client: ClientXMPP
    data_dir: Path
    resource: str
    queues: dict[str, asyncio.Queue[Any]] = field(default_factory=dict)

    @property
    def fingerprint(self) -> str:
        """The identity fingerprint (authenticated profile) of this device."""
        fingerprint: str = self.keys.fingerprint
        return fingerprint

    def trust(self, jid: str, fingerprint: str) -> TrustState | None:
        record = self.plugin.keyring.record(jid, fingerprint)
        return None if record is None else record.trust


async def connect(
    connect_client: Connector,
    jid: str,
    password: str,
    data_dir: Path,
    resource: str,
    *,
    first_read: bool = True,
) -> Device:
    """An objenc client with its own store, carbons on, published, having read its
    own account's node (unless not ``first_read``: not waited for); its events
    are queued from before the plugin loads."""
    queues: dict[str, asyncio.Queue[Any]] = {name: asyncio.Queue() for name in EVENTS}

    def factory(jid: str, password: str) -> ClientXMPP:
        client = ClientXMPP(jid, password)
        for name, queue in queues.items():
            client.add_event_handler(name, queue.put_nowait)
        return client

    client = await connect_client(
        jid,
        password,
        plugins=PLUGINS,
        pconfig={"objenc": {"data_dir": str(data_dir), "key_size": 2048}},
        client_factory=factory,
        resource=resource,
    )
    device = Device(client, data_dir, resource, queues)
    await device.plugin.ready()
    await client.plugin["xep_0280"].enable()
    state = await publication_settled(client)
    assert state.status is PublicationStatus.PUBLISHED, state
    if not first_read:
        return device
    await eventually(
        lambda: not device.plugin.keyring.own_first_contact,
        lambda: f"{client.boundjid.full} never read its own node",
    )
    return device


async def stop(device: Device) -> None:
    """Close the store, then the session."""
    await device.plugin.close()
    await disconnect_client(device.client)


async def holds(device: Device, jid: str, fingerprints: Iterable[str]) -> None:
    """Read ``jid``'s node until ``device`` may encrypt to all these identities."""
    wanted = set(fingerprints)
    have: set[str] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while loop.time() < deadline:
        have = {c.fingerprint for c in await device.plugin.discover(jid)}
        if wanted <= have:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{device.client.boundjid.full} holds {have} of {jid}, not {wanted}")


async def read_node(device: Device, jid: str) -> None:
    """Make ``device`` read ``jid``'s node as it is now: a read may join one a
    notification started earlier, so a second one follows it."""
    for _ in range(2):
        await device.plugin.discover(jid)


async def quiet(device: Device, event: str, predicate: Callable[[Any], bool] = bool) -> list[Any]:
    """What ``device`` emitted of ``event`` (matching) within :data:`QUIET` seconds."""
    await asyncio.sleep(QUIET)
    return [item for item in device.drain(event) if predicate(item)]


# -- the family -----------------------------------------------------------------


@dataclass
class Family:
    laptop: Device
    phone: Device
    bob: Device
    alice_jid: str
    alice_password: str
    bob_jid: str
    bob_password: str


async def family(connect_client: Connector, account: Any, tmp_path: Path) -> Family:
    """Alice's laptop, then her phone (which pins the laptop, its first contact;
    the laptop accepts it), Bob a contact of hers holding both identities
    (pinned at first contact) and held by both."""
    alice_jid, alice_pw = await account("alice")
    bob_jid, bob_pw = await account("bob")
    laptop = await connect(connect_client, alice_jid, alice_pw, tmp_path / "laptop", "laptop")
    phone = await connect(connect_client, alice_jid, alice_pw, tmp_path / "phone", "phone")
    assert phone.trust(alice_jid, laptop.fingerprint) is TrustState.TOFU
    await laptop.next(
        "objenc_own_device_held",
        "the phone held by the laptop",
        lambda e: e.new_fingerprint == phone.fingerprint,
    )
    await laptop.plugin.accept_key_change(alice_jid, phone.fingerprint)
    bob = await connect(connect_client, bob_jid, bob_pw, tmp_path / "bob", "desk")
    await befriend(laptop.client, bob.client)
    # Once more with caps: the directed presences of the subscription went
    # encrypted, and Prosody's mod_pep takes a caps-less presence as "no +notify
    # interest" (see test_forward_secrecy.py).
    for device in (laptop, phone, bob):
        device.client.send_presence()
    await holds(bob, alice_jid, [laptop.fingerprint, phone.fingerprint])
    await holds(laptop, bob_jid, [bob.fingerprint])
    await holds(phone, bob_jid, [bob.fingerprint])
    identities = {
        r.fingerprint: r.trust
        for r in bob.plugin.keyring.records(alice_jid)
        if r.fingerprint in {laptop.fingerprint, phone.fingerprint}
    }
    assert identities == {
        laptop.fingerprint: TrustState.TOFU,
        phone.fingerprint: TrustState.TOFU,
    }, bob.plugin.keyring.records(alice_jid)
    return Family(laptop, phone, bob, alice_jid, alice_pw, bob_jid, bob_pw)


async def revoke_the_phone(f: Family) -> Revocation:
    """The laptop revokes the phone; Bob and the phone are told."""
    revocation: Revocation = await f.laptop.plugin.revoke_device(f.phone.fingerprint)
    assert (revocation.revoked, revocation.revoker) == (f.phone.fingerprint, f.laptop.fingerprint)
    event = await f.bob.next(
        "objenc_device_revoked", "bob told of the phone's revocation", lambda e: True
    )
    assert event == DeviceRevokedEvent(
        f.alice_jid, f.phone.fingerprint, f.laptop.fingerprint, revocation.issued_at
    )
    return revocation


# -- the wire -------------------------------------------------------------------


def messages(texts: list[str], *, to: str = "", sender: str = "") -> list[ET.Element]:
    """Encrypted ``<message/>``s among ``texts`` to / from these bare JIDs."""
    found = []
    for text in texts:
        element = ET.fromstring(text)
        if element.tag.rsplit("}", 1)[-1] != "message" or element.find(E2E) is None:
            continue
        if to and JID(element.get("to", "")).bare != to:
            continue
        if sender and JID(element.get("from", "")).bare != sender:
            continue
        found.append(element)
    return found


def sealed_for(message: ET.Element) -> set[str]:
    """The identities a ``<key/>`` of the message is sealed to."""
    return {
        key.get("identity-sha256", "") for copy in message.findall(E2E) for key in copy.iter(KEY)
    }


def sealed_by(message: ET.Element) -> set[str]:
    """The sender identities ``<data/>`` names (authenticated copies)."""
    return {
        data.get("identity-sha256", "")
        for copy in message.findall(E2E)
        for data in copy.findall(DATA)
        if data.get("identity-sha256")
    }


async def bob_writes(f: Family, wire: Wire, label: str) -> ET.Element:
    """Bob writes to Alice's bare JID; the laptop reads it; what Bob sent."""
    body = secret(label)
    before = len(wire.sent)
    f.bob.client.send_message(mto=f.alice_jid, mbody=body, mtype="chat")
    await f.laptop.body(body)
    [sent] = [m for m in messages(wire.sent[before:], to=f.alice_jid) if m.get("type") == "chat"]
    return sent


# -- the thief: a second login with Alice's password ------------------------------


async def thief_login(connect_client: Connector, f: Family) -> ClientXMPP:
    """A plain client (no objenc) logged in with Alice's password, no presence."""
    return await connect_client(
        f.alice_jid,
        f.alice_password,
        plugins=["xep_0030", "xep_0060"],
        resource="thief",
        send_presence=False,
    )


async def publish(client: ClientXMPP, item_id: str, payload: ET.Element) -> None:
    """Publish one item on the account's certificate node (a plain publish)."""
    await client.plugin["xep_0060"].publish(
        None, NODE_CERTS, id=item_id, payload=payload, timeout=WAIT
    )


async def publish_revocation(client: ClientXMPP, revocation: Revocation) -> None:
    await publish(client, revocation.item_id, revocation_element(revocation))


def device_payload(keys: DeviceKeys) -> ET.Element:
    """A ``<device/>`` item payload (identity and encryption certificates)."""
    payload = ET.Element(f"{{{NS_OBJENC}}}device")
    for name, certificate in (
        ("identity", keys.identity_certificate),
        ("encryption", keys.encryption_certificate),
    ):
        child = ET.SubElement(payload, f"{{{NS_OBJENC}}}{name}")
        child.text = base64.b64encode(certificate.public_bytes(Encoding.DER)).decode()
    return payload


async def item_ids(client: ClientXMPP, jid: str) -> set[str]:
    result = await client.plugin["xep_0060"].get_items(jid, NODE_CERTS, timeout=WAIT)
    return {item["id"] for item in result["pubsub"]["items"]}


def ignored(caplog: pytest.LogCaptureFixture, jid: str, revoked: str) -> list[str]:
    """Why the plugin ignored revocations of ``revoked`` on ``jid``'s node (its log)."""
    marker = f"revocation of {revoked[:16]} on {jid}'s node ignored: "
    return [
        message.split(marker, 1)[1]
        for message in (r.getMessage() for r in caplog.records if r.name == REVOCATIONS_LOG)
        if marker in message
    ]


async def phone_writes(f: Family, wire: Wire) -> str:
    """The phone writes to Bob as itself; Bob refuses it (not delivered). Returns
    the body written."""
    body = secret("written by the lost phone")
    before = len(wire.sent)
    f.phone.client.send_message(mto=f.bob_jid, mbody=body, mtype="chat")
    await eventually(
        lambda: any(m.get("type") == "chat" for m in messages(wire.sent[before:], to=f.bob_jid)),
        lambda: "the phone sent nothing encrypted to bob",
    )
    [written] = [m for m in messages(wire.sent[before:], to=f.bob_jid) if m.get("type") == "chat"]
    assert sealed_by(written) == {f.phone.fingerprint}, "the phone really wrote it, as itself"
    refused = await f.bob.next(
        "objenc_decryption_failed",
        "bob refusing the phone's stanza",
        lambda e: e.stanza["id"] == written.get("id"),
    )
    assert refused.reason == "undecryptable"
    assert refused.stanza["from"] == f.phone.client.boundjid
    # the laptop's stanza, written after it, is delivered; the phone's never was
    control = secret("written by the laptop")
    f.laptop.client.send_message(mto=f.bob_jid, mbody=control, mtype="chat")
    await f.bob.body(control)
    assert body not in [m["body"] for m in f.bob.drain("message")]
    return body


async def unpublished(device: Device, jid: str, gone: Iterable[str]) -> None:
    """Wait until none of these item ids is on ``jid``'s node (as ``device`` reads it)."""
    gone = set(gone)
    ids: set[str] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while loop.time() < deadline:
        ids = await item_ids(device.client, jid)
        if not ids & gone:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"still on {jid}'s node: {sorted(ids & gone)} (all: {sorted(ids)})")


def nothing_pending(device: Device, jid: str) -> None:
    """``device`` asks its user nothing about ``jid`` (no held stanza waits)."""
    pending = [(r.fingerprint, r.trust.value) for r in device.plugin.keyring.pending(jid)]
    asked = [e.new_fingerprint for e in device.drain("objenc_key_changed") if e.jid == jid]
    asked += [e.new_fingerprint for e in device.drain("objenc_own_device_held") if e.jid == jid]
    assert not pending and not asked, f"{device.resource} asked about {asked}, holds {pending}"


# -- the tests -------------------------------------------------------------------


async def test_a_lost_device_revoked_by_another_of_the_account_is_dropped(
    connect_client: Connector, account: Any, tmp_path: Path
) -> None:
    """Attack shown failing: the thief who took Alice's phone keeps reading what
    her contacts write, and keeps writing as her. Once her laptop revokes the
    phone (``revoke_device``), Bob is told (``objenc_device_revoked``: Alice's
    phone, revoked by the laptop) and holds it ``revoked``; his next message to
    Alice has no ``<key/>`` for the phone: the laptop reads it, the phone cannot
    (undecryptable); a stanza the phone then writes to Bob (sealed by the phone
    itself) is not delivered to him. The phone, still running, learns that it
    was revoked (the event, for its own JID and fingerprint). The phone's items
    (``<device/>`` and its RSA certificate) leave Alice's node, and nobody is
    asked about anything of it afterwards."""
    f = await family(connect_client, account, tmp_path)
    laptop, phone, bob = f.laptop, f.phone, f.bob
    bob_wire, phone_wire = tap(bob.client), tap(phone.client)

    # before: Bob's message is sealed to both of Alice's devices, and both read it
    before = await bob_writes(f, bob_wire, "before")
    assert {laptop.fingerprint, phone.fingerprint} <= sealed_for(before)
    await phone.next("message", "the phone reads Bob", lambda m: m["from"].bare == f.bob_jid)

    revocation = await revoke_the_phone(f)
    assert bob.trust(f.alice_jid, phone.fingerprint) is TrustState.REVOKED
    assert bob.trust(f.alice_jid, laptop.fingerprint) is TrustState.TOFU
    assert phone.fingerprint not in {c.fingerprint for c in bob.plugin.keyring.usable(f.alice_jid)}
    assert laptop.trust(f.alice_jid, phone.fingerprint) is TrustState.REVOKED
    told = await phone.next("objenc_device_revoked", "the phone told it was revoked")
    assert told == DeviceRevokedEvent(
        f.alice_jid, phone.fingerprint, laptop.fingerprint, revocation.issued_at
    )

    # the laptop retracted both items of the phone (PROTOCOL.md 13.13: "its <device/>
    # and RSA items retracted"); the revocation stays
    phone_rsa = phone.plugin.identity.fingerprint
    await unpublished(laptop, f.alice_jid, [phone.fingerprint, phone_rsa])
    assert revocation.item_id in await item_ids(bob.client, f.alice_jid)
    await read_node(bob, f.alice_jid)
    await read_node(laptop, f.alice_jid)
    nothing_pending(bob, f.alice_jid)
    nothing_pending(laptop, f.alice_jid)

    # Bob writes: sealed to the laptop, not to the phone
    phone.drain("message")
    sent = await bob_writes(f, bob_wire, "after the revocation")
    assert laptop.fingerprint in sealed_for(sent)
    assert phone.fingerprint not in sealed_for(sent)
    failed = await phone.next(
        "objenc_decryption_failed",
        "the phone failing to open Bob's message",
        lambda e: e.stanza["from"].bare == f.bob_jid,
    )
    assert failed.reason == "undecryptable"
    handed = messages(phone_wire.received, sender=f.bob_jid)[-1]  # what the phone got
    assert sealed_for(handed) == sealed_for(sent)
    assert not [m for m in phone.drain("message") if m["from"].bare == f.bob_jid]

    # the phone writes to Bob, as itself: not delivered
    await phone_writes(f, phone_wire)
    assert bob.drain("objenc_device_revoked") == [], "reported once"


async def test_a_revocation_on_another_accounts_node_revokes_nothing(
    connect_client: Connector, account: Any, tmp_path: Path
) -> None:
    """Attack shown failing: Mallory, another contact of Bob's (trusted by him for
    her own account), signs a revocation of Alice's laptop with her identity and
    publishes it on her own node, which Bob reads. It is read (the item is there)
    and changes nothing for Alice's devices: Bob still trusts the laptop, nobody
    is told of a revocation, and Bob's next message is sealed to the laptop."""
    f = await family(connect_client, account, tmp_path)
    laptop, bob = f.laptop, f.bob
    mallory_jid, mallory_pw = await account("mallory")
    mallory = await connect(connect_client, mallory_jid, mallory_pw, tmp_path / "mallory", "m")
    await befriend(mallory.client, bob.client)
    mallory.client.send_presence()
    bob.client.send_presence()
    await holds(bob, mallory_jid, [mallory.fingerprint])
    assert bob.trust(mallory_jid, mallory.fingerprint) is TrustState.TOFU
    bob_wire = tap(bob.client)

    forged = sign_revocation(
        mallory.keys.identity_key, mallory.keys.identity_certificate, laptop.fingerprint
    )
    await publish_revocation(mallory.client, forged)
    assert forged.item_id in await item_ids(bob.client, mallory_jid)
    await read_node(bob, mallory_jid)
    await read_node(bob, f.alice_jid)

    assert bob.trust(f.alice_jid, laptop.fingerprint) is TrustState.TOFU
    assert bob.trust(f.alice_jid, f.phone.fingerprint) is TrustState.TOFU
    assert bob.plugin.keyring.record(mallory_jid, laptop.fingerprint) is None
    assert await quiet(bob, "objenc_device_revoked") == []
    assert await quiet(laptop, "objenc_device_revoked") == []
    sent = await bob_writes(f, bob_wire, "despite mallory")
    assert {laptop.fingerprint, f.phone.fingerprint} <= sealed_for(sent)


async def test_a_thief_with_the_password_cannot_forge_a_revocation(
    connect_client: Connector, account: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Attack shown failing: a thief who has Alice's password (a second login, no
    device of hers) publishes on her node revocations of her laptop: signed by a
    key it never published; by a fresh device it publishes there (a new device
    Bob is asked about, then rejects); by her phone (trusted) but with one byte
    of the signature flipped; naming the phone as revoker but signed by the
    thief; and with the phone's real signature over a different ``issued``.
    Each is read and ignored (the reason logged: unknown revoker, untrusted,
    revoked, bad signature): Bob still trusts the laptop and seals to it, and
    neither of Alice's devices is told it was revoked. Control, so that the
    attack path is real: the phone's genuine revocation, published the same way,
    is taken."""
    caplog.set_level(logging.INFO, logger=REVOCATIONS_LOG)
    f = await family(connect_client, account, tmp_path)
    laptop, phone, bob = f.laptop, f.phone, f.bob
    bob_wire = tap(bob.client)
    thief = await thief_login(connect_client, f)

    async def refused(revocation: Revocation, reason: str) -> None:
        caplog.clear()
        await publish_revocation(thief, revocation)
        for device in (bob, laptop, phone):
            await read_node(device, f.alice_jid)
        assert reason in ignored(caplog, f.alice_jid, laptop.fingerprint), caplog.text
        assert bob.trust(f.alice_jid, laptop.fingerprint) is TrustState.TOFU
        assert phone.trust(f.alice_jid, laptop.fingerprint) is TrustState.TOFU
        for device in (bob, laptop, phone):
            assert device.drain("objenc_device_revoked") == [], device.resource

    # (b) signed by a key nobody holds
    stranger = generate_device_keys(f.alice_jid)
    unknown = sign_revocation(
        stranger.identity_key, stranger.identity_certificate, laptop.fingerprint
    )
    await refused(unknown, "revoker is not an identity held for this JID")

    # (b) signed by a fresh device the thief publishes on Alice's node
    fresh = generate_device_keys(f.alice_jid)
    await publish(thief, fresh.fingerprint, device_payload(fresh))
    await read_node(bob, f.alice_jid)  # (ejabberd does not notify it)
    await bob.next(
        "objenc_key_changed", "bob asked about the thief's device", lambda e: e.jid == f.alice_jid
    )
    assert bob.trust(f.alice_jid, fresh.fingerprint) is TrustState.UNTRUSTED
    by_fresh = sign_revocation(fresh.identity_key, fresh.identity_certificate, laptop.fingerprint)
    await refused(by_fresh, "revoker is untrusted")
    assert laptop.fingerprint in {c.fingerprint for c in bob.plugin.keyring.usable(f.alice_jid)}
    await bob.plugin.reject_key_change(f.alice_jid, fresh.fingerprint)
    await refused(by_fresh, "revoker is revoked")
    sent = await bob_writes(f, bob_wire, "after the thief's device")
    assert laptop.fingerprint in sealed_for(sent)
    assert fresh.fingerprint not in sealed_for(sent)

    # (c) the phone's revocation of the laptop, altered
    real = sign_revocation(
        phone.keys.identity_key, phone.keys.identity_certificate, laptop.fingerprint
    )
    flipped = bytearray(real.signature)
    flipped[17] ^= 0x01
    await refused(dataclasses.replace(real, signature=bytes(flipped)), "bad signature")
    in_its_name = sign_revocation(
        stranger.identity_key, stranger.identity_certificate, laptop.fingerprint
    )
    await refused(dataclasses.replace(in_its_name, revoker=phone.fingerprint), "bad signature")
    redated = real.issued_at - timedelta(milliseconds=1)
    await refused(dataclasses.replace(real, issued_at=redated), "bad signature")
    sent = await bob_writes(f, bob_wire, "after the forgeries")
    assert {laptop.fingerprint, phone.fingerprint} <= sealed_for(sent)

    # control: the genuine one, published by the thief the same way, is taken
    await publish_revocation(thief, real)
    await read_node(bob, f.alice_jid)  # ejabberd does not notify what the thief publishes
    event = await bob.next("objenc_device_revoked", "the genuine revocation")
    assert event == DeviceRevokedEvent(
        f.alice_jid, laptop.fingerprint, phone.fingerprint, real.issued_at
    )
    assert bob.trust(f.alice_jid, laptop.fingerprint) is TrustState.REVOKED


async def test_an_accepted_revocation_survives_a_restart_and_its_retraction(
    connect_client: Connector, account: Any, tmp_path: Path
) -> None:
    """Attack shown failing: once Bob has taken the revocation of Alice's phone,
    the thief (her password) retracts the revocation item from her node and the
    phone publishes its ``<device/>`` (and RSA certificate) again, hoping Bob
    trusts it anew. Bob restarted before that (same store): the phone is still
    ``revoked``, read from the store; after the retraction and the new
    publication it stays ``revoked`` (no question, no second event), Bob's next
    message has no ``<key/>`` for it and its stanzas still do not reach him."""
    f = await family(connect_client, account, tmp_path)
    laptop, phone = f.laptop, f.phone
    revocation = await revoke_the_phone(f)
    await unpublished(laptop, f.alice_jid, [phone.fingerprint])

    await stop(f.bob)
    bob = f.bob = await connect(connect_client, f.bob_jid, f.bob_password, tmp_path / "bob", "desk")
    assert bob.trust(f.alice_jid, phone.fingerprint) is TrustState.REVOKED
    assert bob.trust(f.alice_jid, laptop.fingerprint) is TrustState.TOFU
    bob_wire, phone_wire = tap(bob.client), tap(phone.client)

    thief = await thief_login(connect_client, f)
    await thief.plugin["xep_0060"].retract(None, NODE_CERTS, revocation.item_id, timeout=WAIT)
    assert await phone.plugin.publish_certificate()
    ids = await item_ids(thief, f.alice_jid)
    assert revocation.item_id not in ids and phone.fingerprint in ids, ids
    await read_node(bob, f.alice_jid)

    assert bob.trust(f.alice_jid, phone.fingerprint) is TrustState.REVOKED
    assert bob.trust(f.alice_jid, laptop.fingerprint) is TrustState.TOFU
    assert await quiet(bob, "objenc_device_revoked") == [], "applied once, not again"
    nothing_pending(bob, f.alice_jid)
    sent = await bob_writes(f, bob_wire, "after the restart")
    assert laptop.fingerprint in sealed_for(sent)
    assert phone.fingerprint not in sealed_for(sent)
    await phone_writes(f, phone_wire)


async def test_a_device_revoked_before_a_contact_saw_it_is_never_asked_about(
    connect_client: Connector, account: Any, tmp_path: Path
) -> None:
    """Attack shown failing: the thief (Alice's password) adds a device of its own
    on Alice's node; her laptop revokes it (``revoke_device``: the revocation
    published, the device's item retracted) while Bob is offline. Bob, back,
    reads the node: a revocation of an identity he never held, kept. The thief
    publishes its device again, hoping Bob pins it or asks his user (who might
    accept it): Bob records it ``revoked`` at once, is never asked about it
    (PROTOCOL.md 13.13, "What is kept") and never seals to it."""
    f = await family(connect_client, account, tmp_path)
    laptop = f.laptop
    await stop(f.bob)
    thief = await thief_login(connect_client, f)
    intruder = generate_device_keys(f.alice_jid)
    await publish(thief, intruder.fingerprint, device_payload(intruder))
    await laptop.next(
        "objenc_own_device_held",
        "the laptop asked about the thief's device",
        lambda e: e.new_fingerprint == intruder.fingerprint,
    )
    revocation = await laptop.plugin.revoke_device(intruder.fingerprint)
    await unpublished(laptop, f.alice_jid, [intruder.fingerprint])

    bob = f.bob = await connect(connect_client, f.bob_jid, f.bob_password, tmp_path / "bob", "desk")
    await read_node(bob, f.alice_jid)
    assert bob.plugin.keyring.record(f.alice_jid, intruder.fingerprint) is None
    assert revocation.item_id in await item_ids(bob.client, f.alice_jid)

    await publish(thief, intruder.fingerprint, device_payload(intruder))
    await read_node(bob, f.alice_jid)
    assert bob.trust(f.alice_jid, intruder.fingerprint) is TrustState.REVOKED
    asked = [
        e for e in bob.drain("objenc_key_changed") if e.new_fingerprint == intruder.fingerprint
    ]
    assert asked == [], "bob was asked about a device revoked before he saw it"
    nothing_pending(bob, f.alice_jid)
    sent = await bob_writes(f, tap(bob.client), "never to the intruder")
    assert intruder.fingerprint not in sealed_for(sent)
    assert laptop.fingerprint in sealed_for(sent)


async def test_an_ignored_revocation_does_not_stop_a_new_device_asking_about_others(
    connect_client: Connector, account: Any, tmp_path: Path
) -> None:
    """Attack shown failing: the thief (Alice's password) leaves on her node a
    revocation signed by a key nobody holds, before Alice adds a device (a
    tablet). The revocation is ignored, and must not break the read it is in:
    the tablet's first read of its own node ends (it pins what its account
    already had, and is done with its first contact), so that the device the
    thief publishes next is held for a decision (``untrusted``), not pinned as
    if it were still the first contact, and the tablet does not seal to it."""
    f = await family(connect_client, account, tmp_path)
    laptop = f.laptop
    thief = await thief_login(connect_client, f)
    stranger = generate_device_keys(f.alice_jid)
    unknown = sign_revocation(
        stranger.identity_key, stranger.identity_certificate, laptop.fingerprint
    )
    await publish_revocation(thief, unknown)

    tablet = await connect(
        connect_client,
        f.alice_jid,
        f.alice_password,
        tmp_path / "tablet",
        "tablet",
        first_read=False,
    )
    await eventually(
        lambda: tablet.trust(f.alice_jid, laptop.fingerprint) is TrustState.TOFU,
        lambda: "the tablet did not pin the laptop",
    )
    intruder = generate_device_keys(f.alice_jid)
    await publish(thief, intruder.fingerprint, device_payload(intruder))
    for _ in range(20):  # as read_node, each read's failure aside (looked at below),
        with contextlib.suppress(Exception):  # until the server shows the thief's item
            await tablet.plugin.discover(f.alice_jid)
        if tablet.trust(f.alice_jid, intruder.fingerprint) is not None:
            break
        await asyncio.sleep(0.25)
    assert tablet.trust(f.alice_jid, intruder.fingerprint) is TrustState.UNTRUSTED, (
        "the thief's device was pinned without a decision"
    )
    assert not tablet.plugin.keyring.own_first_contact
    await read_node(tablet, f.alice_jid)  # and reading it raises nothing
    assert tablet.trust(f.alice_jid, laptop.fingerprint) is TrustState.TOFU
