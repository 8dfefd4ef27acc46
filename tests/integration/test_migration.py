"""Migration from the draft's (RSA) profile to the authenticated one, through a
real server (Prosody and ejabberd): PROTOCOL.md 13.6-13.8.

An "old device" is one configured with ``authenticated: False`` (RSA only, as
the previous release); a "new device" has the default configuration (an
Ed25519 identity and X25519 encryption certificate published in a
``<device/>`` item beside its RSA ``<certificate/>``, vouched for by its RSA
key). What the tests show: an upgrade carries a verification over without a
prompt, once per RSA certificate; old and new devices talk across contacts
and on one account; an RSA certificate next to an identity is not encrypted
to unless the user allows that JID's legacy devices.
"""

from __future__ import annotations

import asyncio
import base64
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from objenc_peers import (
    WAIT,
    Wire,
    befriend,
    eventually,
    next_matching,
    publication_settled,
    queue_of,
    secret,
    tap,
)
from slixmpp import JID, ClientXMPP
from slixmpp.plugins.xep_0060 import stanza as pubsub_stanza
from slixmpp.xmlstream import register_stanza_plugin

from slixmpp_objenc import PublicationStatus
from slixmpp_objenc.core import Identity, InvalidEnvelope, generate_identity, open_envelope
from slixmpp_objenc.core.auth_envelope import is_authenticated
from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.core.identities import DeviceKeys, generate_device_keys
from slixmpp_objenc.glue.publication import device_payload
from slixmpp_objenc.plugin import NODE_CERTS
from slixmpp_objenc.stanza import Certificate
from slixmpp_objenc.store import TrustState
from slixmpp_objenc.testing import disconnect_client

PLUGINS = ["xep_0030", "xep_0060", "xep_0199", "xep_0280", "objenc"]
E2E = f"{{{NS_OBJENC}}}e2e"
KEY = f"{{{NS_OBJENC}}}key"

Connector = Callable[..., Awaitable[ClientXMPP]]
NOTIFICATION_WAIT = 5.0


# -- helpers ------------------------------------------------------------------


async def connect(
    connect_client: Connector,
    jid: str,
    password: str,
    data_dir: Path,
    resource: str,
    **config: Any,
) -> ClientXMPP:
    """An objenc client with its own store, ready, published, carbons on, its
    own account's node read once (``authenticated=False`` makes an old device)."""
    client = await connect_client(
        jid,
        password,
        plugins=PLUGINS,
        pconfig={"objenc": {"data_dir": str(data_dir), "key_size": 2048, **config}},
        resource=resource,
    )
    plugin = client.plugin["objenc"]
    await plugin.ready()
    await client.plugin["xep_0280"].enable(timeout=WAIT)
    state = await publication_settled(client)
    assert state.status is PublicationStatus.PUBLISHED, state
    await eventually(
        lambda: not plugin.keyring.own_first_contact,
        lambda: f"{client.boundjid.full} never read its own node",
    )
    return client


async def stop(client: ClientXMPP) -> None:
    """Close the store, then wait until the server closed the session (ejabberd
    routes to a session it still holds open)."""
    await client.plugin["objenc"].close()
    await disconnect_client(client)


async def publish_with_the_password(
    connect_client: Connector, jid: str, password: str, item_id: str, payload: Any
) -> ClientXMPP:
    """Someone with only the account's password: a plain client (no objenc)
    publishes an item of its own on the account's certificate node."""
    attacker = await connect_client(
        jid, password, plugins=["xep_0030", "xep_0060", "xep_0163"], resource="attacker"
    )
    await attacker.plugin["xep_0060"].publish(
        None, NODE_CERTS, id=item_id, payload=payload, timeout=WAIT
    )
    return attacker


def rsa_payload(identity: Identity) -> Certificate:
    """An RSA ``<certificate/>`` item payload, as a plain client publishes it."""
    register_stanza_plugin(pubsub_stanza.Item, Certificate)
    payload = Certificate()
    payload["value"] = base64.b64encode(identity.certificate.public_bytes(Encoding.DER)).decode()
    return payload


def sent_to(wire: Wire, kind: str, to: str) -> list[ET.Element]:
    """Parsed stanzas of ``kind`` sent to ``to`` (a bare or full JID) with an ``<e2e/>``."""
    found = []
    for text in wire.sent:
        element = ET.fromstring(text)
        target = JID(element.get("to", ""))
        if (
            element.tag.rsplit("}", 1)[-1] == kind
            and to in (target.bare, target.full)
            and element.find(E2E) is not None
        ):
            found.append(element)
    return found


def received_from(wire: Wire, kind: str, sender: str) -> list[ET.Element]:
    found = []
    for text in wire.received:
        element = ET.fromstring(text)
        origin = JID(element.get("from", ""))
        if (
            element.tag.rsplit("}", 1)[-1] == kind
            and sender in (origin.bare, origin.full)
            and element.find(E2E) is not None
        ):
            found.append(element)
    return found


def profiles(element: ET.Element) -> list[str]:
    """The profile of each ``<e2e/>`` of a stanza, in order."""
    return ["auth" if is_authenticated(e) else "draft" for e in element.findall(E2E)]


def trust_of(client: ClientXMPP, jid: str, fingerprint: str) -> TrustState | None:
    record = client.plugin["objenc"].keyring.record(jid, fingerprint)
    return None if record is None else record.trust


def usable(client: ClientXMPP, jid: str) -> set[str]:
    return {p.fingerprint for p in client.plugin["objenc"].keyring.usable(jid)}


def held(client: ClientXMPP, jid: str) -> str:
    return str(
        [(r.fingerprint[:12], r.trust.value) for r in client.plugin["objenc"].keyring.records(jid)]
    )


async def learns(observer: ClientXMPP, jid: str, fingerprint: str) -> None:
    """Wait until ``observer`` holds ``fingerprint`` for ``jid``: from the PEP
    notification, or else by reading the node again (on ejabberd, the
    notification of an item published by a session that has just logged in
    sometimes never reaches the contact)."""
    plugin = observer.plugin["objenc"]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    notified = loop.time() + NOTIFICATION_WAIT
    while plugin.keyring.record(jid, fingerprint) is None:
        if loop.time() > deadline:
            raise AssertionError(
                f"{observer.boundjid.full} never took {fingerprint[:12]} for {jid}; "
                f"holds {held(observer, jid)}"
            )
        if loop.time() > notified:
            await plugin.discover(jid)
        await asyncio.sleep(0.2)


class Reader:
    """Message bodies a client reads, directly or as a received carbon, with how
    they arrived (``encryption_info``)."""

    def __init__(self, client: ClientXMPP) -> None:
        self.client = client
        self.read: dict[str, Any] = {}
        client.add_event_handler("message", self._note)
        client.add_event_handler("carbon_received", lambda m: self._note(m["carbon_received"]))

    def _note(self, msg: Any) -> None:
        if msg["body"]:
            self.read[msg["body"]] = self.client.plugin["objenc"].encryption_info(msg)

    async def wait(self, body: str, why: Callable[[], str] = lambda: "") -> Any:
        await eventually(
            lambda: body in self.read,
            lambda: f"{self.client.boundjid.full} did not read {body!r} {why()}",
        )
        return self.read[body]


class Failures:
    """What went wrong on a client, for the messages of failed waits."""

    def __init__(self, client: ClientXMPP) -> None:
        self.encryption: list[str] = []
        self.decryption: list[str] = []
        client.add_event_handler(
            "objenc_encryption_failed", lambda e: self.encryption.append(str(e.error))
        )
        client.add_event_handler(
            "objenc_decryption_failed", lambda e: self.decryption.append(e.reason)
        )

    def __str__(self) -> str:
        return f"(encryption failed: {self.encryption}; decryption failed: {self.decryption})"


async def upgraded(
    connect_client: Connector, account: Any, tmp_path: Path
) -> tuple[ClientXMPP, ClientXMPP, str, str, Any]:
    """Alice starts as an old device; Bob (new) pins her RSA certificate and
    verifies it; Alice restarts on the same store as a new device. Returns
    (alice, bob, alice_jid, alice_pw, bob's objenc_key_changed queue), once
    Bob holds Alice's new identity."""
    alice_jid, alice_pw = await account("alice")
    bob_jid, bob_pw = await account("bob")
    alice = await connect(
        connect_client, alice_jid, alice_pw, tmp_path / "A1", "A1", authenticated=False
    )
    bob = await connect(connect_client, bob_jid, bob_pw, tmp_path / "B1", "B1")
    rsa_fp = alice.plugin["objenc"].fingerprint
    assert rsa_fp == alice.plugin["objenc"].identity.fingerprint  # an old device: RSA only
    await befriend(alice, bob)
    changed = queue_of(bob, "objenc_key_changed")
    found = await bob.plugin["objenc"].discover(alice_jid)
    assert [p.fingerprint for p in found] == [rsa_fp]
    assert trust_of(bob, alice_jid, rsa_fp) is TrustState.TOFU  # pinned on first contact
    await bob.plugin["objenc"].set_trust(alice_jid, rsa_fp, TrustState.VERIFIED)

    await stop(alice)
    alice = await connect(connect_client, alice_jid, alice_pw, tmp_path / "A1", "A1")
    plugin = alice.plugin["objenc"]
    assert plugin.identity.fingerprint == rsa_fp  # the same RSA identity...
    alice_fp = plugin.fingerprint
    assert alice_fp != rsa_fp  # ...and a new identity of the authenticated profile
    # Bob learns it from the PEP notification of Alice's <device/> item
    await learns(bob, alice_jid, alice_fp)
    return alice, bob, alice_jid, alice_pw, changed


# -- 1. an upgrade keeps the verification ---------------------------------------


async def test_an_upgrade_keeps_the_verification(
    connect_client: Connector, account: Any, tmp_path: Path
) -> None:
    """Bob verified Alice's RSA certificate while she ran an old device; she
    upgrades on the same store: her RSA key vouches for her new identity, which
    Bob takes as verified without any prompt (once: the vouch is marked used),
    and messages both ways are of the authenticated profile, proving the
    verified sender."""
    alice, bob, alice_jid, _pw, changed = await upgraded(connect_client, account, tmp_path)
    bob_jid = bob.boundjid.bare
    alice_fp, rsa_fp = (
        alice.plugin["objenc"].fingerprint,
        alice.plugin["objenc"].identity.fingerprint,
    )
    keyring = bob.plugin["objenc"].keyring
    assert trust_of(bob, alice_jid, alice_fp) is TrustState.VERIFIED
    # the RSA certificate is the same device: once its trust moved, it is dropped
    # (it would otherwise stay outside every later verification)
    assert keyring.record(alice_jid, rsa_fp) is None
    assert keyring.vouch_used(alice_jid, rsa_fp)
    assert changed.empty(), "the vouched identity was treated as a key change"
    # Alice has an identity now: Bob encrypts to it, not to her RSA certificate
    assert usable(bob, alice_jid) == {alice_fp}

    bob_failures, alice_failures = Failures(bob), Failures(alice)
    to_bob, to_alice = Reader(bob), Reader(alice)
    body = secret("upgraded alice to bob")
    alice.send_message(mto=bob_jid, mbody=body, mtype="chat")
    info = await to_bob.wait(body, lambda: f"{alice_failures} {bob_failures}")
    assert info is not None and info.authenticated is True
    assert info.sender_fingerprint == alice_fp
    assert info.sender_trust is TrustState.VERIFIED

    body = secret("bob to upgraded alice")
    bob.send_message(mto=alice_jid, mbody=body, mtype="chat")
    info = await to_alice.wait(body, lambda: f"{alice_failures} {bob_failures}")
    assert info is not None and info.authenticated is True
    assert info.sender_fingerprint == bob.plugin["objenc"].fingerprint
    assert changed.empty()


async def test_an_upgraded_device_does_not_ask_about_itself(
    connect_client: Connector, account: Any, tmp_path: Path
) -> None:
    """After the upgrade, Alice's device reads its own account's node, where
    its new <device/> item now is: that identity is its own, not a new device
    of the account to decide on (no ``objenc_own_device_held`` for it)."""
    alice, _bob, alice_jid, _pw, _changed = await upgraded(connect_client, account, tmp_path)
    plugin = alice.plugin["objenc"]
    await plugin.discover(alice_jid)  # its own node, read again
    pending = {r.fingerprint for r in plugin.keyring.pending(alice_jid)}
    assert plugin.fingerprint not in pending, (
        f"alice's device holds its own identity for a decision: {held(alice, alice_jid)}"
    )


# -- 2. a stolen RSA key vouches once only -------------------------------------


async def test_a_stolen_rsa_key_vouches_once_only(
    connect_client: Connector, account: Any, tmp_path: Path
) -> None:
    """After the upgrade (the vouch taken), a thief with Alice's password and a
    copy of her RSA key publishes a second identity vouched for by that key:
    Bob holds it as a key change (``untrusted``) and does not encrypt to it."""
    alice, bob, alice_jid, alice_pw, changed = await upgraded(connect_client, account, tmp_path)
    alice_fp = alice.plugin["objenc"].fingerprint
    stolen_rsa = alice.plugin["objenc"].identity  # what the thief copied
    thief: DeviceKeys = generate_device_keys(alice_jid)
    payload = device_payload(stolen_rsa, thief)
    attacker = await publish_with_the_password(
        connect_client, alice_jid, alice_pw, thief.fingerprint, payload
    )
    await learns(bob, alice_jid, thief.fingerprint)
    event = await next_matching(
        changed,
        lambda e: e.new_fingerprint == thief.fingerprint,
        "bob's key change for the thief's identity",
    )
    assert event.jid == alice_jid and alice_fp in event.old_fingerprints
    assert trust_of(bob, alice_jid, thief.fingerprint) is TrustState.UNTRUSTED
    assert thief.fingerprint not in usable(bob, alice_jid)
    assert trust_of(bob, alice_jid, alice_fp) is TrustState.VERIFIED  # untouched
    attacker.disconnect()


# -- 3. old and new across contacts ---------------------------------------------


async def test_old_and_new_devices_across_contacts(
    connect_client: Connector, account: Any, tmp_path: Path
) -> None:
    """Carol runs an old device, Bob a new one: messages go both ways in the
    draft's profile (unauthenticated, no sender fingerprint); Bob's message
    carries the draft's <e2e/> first (Carol's), then the authenticated one (his
    own copy); an encrypted iq carries exactly one <e2e/>, both ways."""
    carol_jid, carol_pw = await account("carol")
    bob_jid, bob_pw = await account("bob")
    carol = await connect(
        connect_client, carol_jid, carol_pw, tmp_path / "C1", "C1", authenticated=False
    )
    bob = await connect(connect_client, bob_jid, bob_pw, tmp_path / "B1", "B1")
    assert carol.plugin["objenc"].fingerprint == carol.plugin["objenc"].identity.fingerprint
    await befriend(carol, bob)
    # each reads the other's node now (a read refused before the subscription
    # completed is otherwise remembered for minutes: the first message would
    # go in the clear)
    await bob.plugin["objenc"].discover(carol_jid)
    await carol.plugin["objenc"].discover(bob_jid)
    bob_wire, carol_wire = tap(bob), tap(carol)
    bob_failures, carol_failures = Failures(bob), Failures(carol)
    to_bob, to_carol = Reader(bob), Reader(carol)

    def why() -> str:
        return f"bob {bob_failures}; carol {carol_failures}"

    body = secret("bob to old carol")
    bob.send_message(mto=carol_jid, mbody=body, mtype="chat")
    info = await to_carol.wait(body, why)
    assert info is not None and info.authenticated is False
    assert info.sender_fingerprint is None and info.sender_trust is None
    [outer] = sent_to(bob_wire, "message", carol_jid)
    assert profiles(outer) == ["draft", "auth"]  # Carol reads the first one
    assert body not in bob_wire.text()

    body = secret("old carol to bob")
    carol.send_message(mto=bob_jid, mbody=body, mtype="chat")
    info = await to_bob.wait(body, why)
    assert info is not None and info.authenticated is False
    assert info.sender_fingerprint is None and info.sender_trust is None
    [outer] = sent_to(carol_wire, "message", bob_jid)
    assert profiles(outer) == ["draft"]  # an old device writes RSA only
    assert body not in carol_wire.text()

    # an iq to Carol's full JID, answered encrypted: one <e2e/> each way
    bob_wire.clear()
    result = await bob.plugin["xep_0199"].send_ping(carol.boundjid.full, timeout=WAIT)
    assert result["type"] == "result"
    assert bob.plugin["objenc"].encryption_info(result) is not None
    [request] = sent_to(bob_wire, "iq", carol.boundjid.full)
    assert profiles(request) == ["draft"]
    [answer] = received_from(bob_wire, "iq", carol.boundjid.full)
    assert profiles(answer) == ["draft"]


# -- 4. old and new devices on one account --------------------------------------


async def test_old_and_new_devices_on_one_account(
    connect_client: Connector, account: Any, tmp_path: Path
) -> None:
    """Bob has a new device (B1) and an old one (B2); Alice is new. B1 holds
    B2's RSA certificate as a new device of the account until accepted. Alice
    holds B1's identity and B2's RSA certificate, but since Bob has an
    identity, B2's stanzas are refused as a downgrade until Alice allows Bob's
    legacy devices; then they are delivered unauthenticated, and what Alice
    sends reaches B1 (authenticated copy) and B2 (draft copy)."""
    alice_jid, alice_pw = await account("alice")
    bob_jid, bob_pw = await account("bob")
    bob1 = await connect(connect_client, bob_jid, bob_pw, tmp_path / "B1", "B1")
    own_held = queue_of(bob1, "objenc_own_device_held")
    bob2 = await connect(
        connect_client, bob_jid, bob_pw, tmp_path / "B2", "B2", authenticated=False
    )
    b1_fp, b2_fp = bob1.plugin["objenc"].fingerprint, bob2.plugin["objenc"].fingerprint
    assert b2_fp == bob2.plugin["objenc"].identity.fingerprint  # RSA only
    event = await next_matching(
        own_held, lambda e: e.new_fingerprint == b2_fp, "B1 holding B2's RSA certificate"
    )
    assert event.jid == bob_jid
    assert trust_of(bob1, bob_jid, b2_fp) is TrustState.UNTRUSTED
    await bob1.plugin["objenc"].accept_key_change(bob_jid, b2_fp)
    assert trust_of(bob1, bob_jid, b2_fp) is TrustState.TOFU

    alice = await connect(connect_client, alice_jid, alice_pw, tmp_path / "A1", "A1")
    alice_fp = alice.plugin["objenc"].fingerprint
    await befriend(alice, bob1)
    await alice.plugin["objenc"].discover(bob_jid)
    for device in (bob1, bob2):  # (see the test above)
        await device.plugin["objenc"].discover(alice_jid)
    assert trust_of(alice, bob_jid, b1_fp) is TrustState.TOFU
    assert trust_of(alice, bob_jid, b2_fp) is TrustState.TOFU
    assert usable(alice, bob_jid) == {b1_fp}  # Bob has an identity: B2's RSA is not used

    failures = {name: Failures(c) for name, c in (("A", alice), ("B1", bob1), ("B2", bob2))}
    refused = queue_of(alice, "objenc_decryption_failed")
    readers = {name: Reader(c) for name, c in (("A", alice), ("B1", bob1), ("B2", bob2))}

    def why() -> str:
        return "; ".join(f"{name} {f}" for name, f in failures.items())

    # by default, B2's draft copy is a downgrade for Alice
    body = secret("from the old device, refused")
    bob2.send_message(mto=alice_jid, mbody=body, mtype="chat")
    try:
        event = await next_matching(
            refused,
            lambda e: e.stanza.name == "message" and JID(e.stanza["from"]).bare == bob_jid,
            "alice refusing B2's message",
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc} ({why()})") from None
    assert event.reason == "downgrade"
    assert body not in readers["A"].read

    # allowed: B2's next message is delivered, unauthenticated
    await alice.plugin["objenc"].allow_legacy_devices(bob_jid)
    assert usable(alice, bob_jid) == {b1_fp, b2_fp}
    body = secret("from the old device, allowed")
    bob2.send_message(mto=alice_jid, mbody=body, mtype="chat")
    info = await readers["A"].wait(body, why)
    assert info is not None and info.authenticated is False
    assert info.sender_fingerprint is None

    # Alice to Bob: a draft copy for B2, an authenticated one for B1 (and her own)
    wire = tap(alice)
    body = secret("to both of bob's devices")
    alice.send_message(mto=bob_jid, mbody=body, mtype="chat")
    info = await readers["B1"].wait(body, why)
    assert info is not None and info.authenticated is True
    assert info.sender_fingerprint == alice_fp
    info = await readers["B2"].wait(body, why)
    assert info is not None and info.authenticated is False
    [outer] = sent_to(wire, "message", bob_jid)
    assert profiles(outer) == ["draft", "auth"]
    draft, auth = outer.findall(E2E)
    assert {k.get("identity-sha256") for k in auth.findall(KEY)} == {b1_fp, alice_fp}
    assert len(draft.findall(KEY)) == 1  # B2's RSA certificate only


# -- 5. a slipped RSA certificate at first contact --------------------------------


async def test_a_slipped_rsa_certificate_is_not_encrypted_to(
    connect_client: Connector, account: Any, tmp_path: Path
) -> None:
    """Someone with Bob's password slips an RSA certificate onto his node
    before Alice's first contact (Bob runs a new device). Alice pins what she
    finds, but since Bob has an identity, the RSA certificate is not encrypted
    to: no <key/> of her next message is for it, and its key opens nothing."""
    alice_jid, alice_pw = await account("alice")
    bob_jid, bob_pw = await account("bob")
    alice = await connect(connect_client, alice_jid, alice_pw, tmp_path / "A1", "A1")
    bob = await connect(connect_client, bob_jid, bob_pw, tmp_path / "B1", "B1")
    bob_fp = bob.plugin["objenc"].fingerprint
    bob_held = queue_of(bob, "objenc_own_device_held")
    slipped = generate_identity(bob_jid, key_size=2048)
    intruder = await publish_with_the_password(
        connect_client, bob_jid, bob_pw, slipped.fingerprint, rsa_payload(slipped)
    )
    await next_matching(
        bob_held, lambda e: e.new_fingerprint == slipped.fingerprint, "bob told of the intruder"
    )
    intruder.disconnect()

    await befriend(alice, bob)
    await alice.plugin["objenc"].discover(bob_jid)
    assert trust_of(alice, bob_jid, bob_fp) is TrustState.TOFU
    assert trust_of(alice, bob_jid, slipped.fingerprint) is TrustState.TOFU  # pinned...
    assert usable(alice, bob_jid) == {bob_fp}  # ...but not encrypted to

    wire = tap(alice)
    got = Reader(bob)
    body = secret("not for the slipped key")
    alice.send_message(mto=bob_jid, mbody=body, mtype="chat")
    info = await got.wait(body)
    assert info is not None and info.authenticated is True
    [outer] = sent_to(wire, "message", bob_jid)
    assert profiles(outer) == ["auth"]  # no draft copy at all
    named = {
        k.get(attribute)
        for e2e in outer.findall(E2E)
        for k in e2e.findall(KEY)
        for attribute in ("identity-sha256", "cert-sha256")
    }
    assert slipped.fingerprint not in named
    for e2e in outer.findall(E2E):
        with pytest.raises(InvalidEnvelope):
            open_envelope(e2e, slipped.private_key)
    assert body not in wire.text()


async def test_a_one_way_subscription_still_authenticates(
    connect_client: Connector, account: Any, tmp_path: Path
) -> None:
    """Alice receives Bob's presence, Bob not hers: her node is closed to him, so
    her stanzas introduce her device (PROTOCOL.md 13.7); Bob pins it from there
    and both directions are authenticated. Without it, Bob could not tell who
    wrote and refused Alice's messages."""
    alice_jid, alice_pw = await account("alice")
    bob_jid, bob_pw = await account("bob")
    alice = await connect(connect_client, alice_jid, alice_pw, tmp_path / "A1", "A1")
    bob = await connect(connect_client, bob_jid, bob_pw, tmp_path / "B1", "B1")
    bob.auto_subscribe = False
    alice.send_presence(pto=bob_jid, ptype="subscribe")
    await eventually(
        lambda: (
            alice.client_roster[bob_jid]["subscription"] == "to"
            and bob.client_roster[alice_jid]["subscription"] == "from"
        ),
        lambda: "the one-way subscription did not complete",
    )
    got_bob = queue_of(bob, "message")
    body = secret("one way")
    alice.send_message(mto=bob_jid, mbody=body, mtype="chat")
    msg = await next_matching(got_bob, lambda m: m["body"] == body, "Alice's message")
    info = bob.plugin["objenc"].encryption_info(msg)
    assert info is not None and info.authenticated
    assert info.sender_fingerprint == alice.plugin["objenc"].fingerprint
    assert info.sender_trust is TrustState.TOFU

    got_alice = queue_of(alice, "message")
    reply = secret("and back")
    bob.send_message(mto=alice_jid, mbody=reply, mtype="chat")
    answer = await next_matching(got_alice, lambda m: m["body"] == reply, "Bob's reply")
    info = alice.plugin["objenc"].encryption_info(answer)
    assert info is not None and info.authenticated
    assert info.sender_fingerprint == bob.plugin["objenc"].fingerprint
