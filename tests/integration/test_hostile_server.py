"""Through a real server, Prosody and ejabberd (issue 9): what someone who holds the user's password
(or runs the server) can publish on the user's own certificate node, and the
verification that covers every certificate of both accounts."""

from __future__ import annotations

import asyncio
import base64
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from objenc_peers import befriend, eventually, queue_of, secret, tap
from slixmpp import JID, ClientXMPP

from slixmpp_objenc.core import Identity, InvalidEnvelope, generate_identity, open_envelope
from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.core.identities import DeviceKeys, generate_device_keys
from slixmpp_objenc.core.verification import VerificationError
from slixmpp_objenc.plugin import NODE_CERTS
from slixmpp_objenc.stanza import Certificate
from slixmpp_objenc.store import TrustState

WAIT = 20.0
PLUGINS = ["xep_0030", "xep_0199", "xep_0280", "objenc"]
E2E = f"{{{NS_OBJENC}}}e2e"
KEY = f"{{{NS_OBJENC}}}key"

Connector = Callable[..., Awaitable[ClientXMPP]]


async def connect(
    connect_client: Connector,
    jid: str,
    password: str,
    data_dir: Path,
    resource: str,
    **config: Any,
) -> ClientXMPP:
    client = await connect_client(
        jid,
        password,
        plugins=PLUGINS,
        pconfig={"objenc": {"data_dir": str(data_dir), "key_size": 2048, **config}},
        resource=resource,
    )
    await client.plugin["objenc"].ready()
    await client.plugin["xep_0280"].enable()
    # its session start read its own account's node (a new device's first contact)
    await eventually(
        lambda: not getattr(client.plugin["objenc"].keyring, "own_first_contact", False),
        lambda: f"{client.boundjid.full} never read its own node",
    )
    return client


async def log_in_with_the_password(
    connect_client: Connector, jid: str, password: str, identity: Identity
) -> ClientXMPP:
    """Someone with only the password: a plain client (no objenc) publishes a
    certificate of its own on the account's certificate node."""
    attacker = await connect_client(
        jid, password, plugins=["xep_0030", "xep_0060", "xep_0163"], resource="attacker"
    )
    from slixmpp.plugins.xep_0060 import stanza as pubsub_stanza
    from slixmpp.xmlstream import register_stanza_plugin

    register_stanza_plugin(pubsub_stanza.Item, Certificate)
    payload = Certificate()
    payload["value"] = base64.b64encode(identity.certificate.public_bytes(Encoding.DER)).decode()
    await attacker.plugin["xep_0060"].publish(
        None, NODE_CERTS, id=identity.fingerprint, payload=payload, timeout=WAIT
    )
    return attacker


async def publish_a_device_with_the_password(
    connect_client: Connector, jid: str, password: str, keys: DeviceKeys
) -> ClientXMPP:
    """The same, with a device of the authenticated profile (identity and
    encryption certificate of its own)."""
    attacker = await connect_client(
        jid, password, plugins=["xep_0030", "xep_0060", "xep_0163"], resource="attacker"
    )
    payload = ET.Element(f"{{{NS_OBJENC}}}device")
    for name, certificate in (
        ("identity", keys.identity_certificate),
        ("encryption", keys.encryption_certificate),
    ):
        child = ET.SubElement(payload, f"{{{NS_OBJENC}}}{name}")
        child.text = base64.b64encode(certificate.public_bytes(Encoding.DER)).decode()
    await attacker.plugin["xep_0060"].publish(
        None, NODE_CERTS, id=keys.fingerprint, payload=payload, timeout=WAIT
    )
    return attacker


def sent_messages(wire: list[str], to_bare: str) -> list[ET.Element]:
    found = []
    for text in wire:
        element = ET.fromstring(text)
        kind = element.tag.rsplit("}", 1)[-1]
        to = JID(element.get("to", "")).bare
        if kind == "message" and to == to_bare and element.find(E2E) is not None:
            found.append(element)
    return found


async def test_a_certificate_published_with_the_password_cannot_read_what_we_send(
    connect_client: Connector, account: Any, tmp_path: Path
) -> None:
    victim_jid, victim_pw = await account("victim")
    friend_jid, friend_pw = await account("friend")
    victim = await connect(connect_client, victim_jid, victim_pw, tmp_path / "V1", "V1")
    friend = await connect(connect_client, friend_jid, friend_pw, tmp_path / "F1", "F1")
    await befriend(victim, friend)
    await victim.plugin["objenc"].discover(friend_jid)
    await friend.plugin["objenc"].discover(victim_jid)
    held = queue_of(victim, "objenc_own_device_held")

    # a second login with the victim's password publishes the attacker's certificate
    attacker_identity = generate_identity(victim_jid, key_size=2048)
    attacker = await log_in_with_the_password(
        connect_client, victim_jid, victim_pw, attacker_identity
    )
    event = await asyncio.wait_for(held.get(), WAIT)  # the victim is told...
    assert (event.jid, event.new_fingerprint) == (victim_jid, attacker_identity.fingerprint)
    record = victim.plugin["objenc"].keyring.record(victim_jid, attacker_identity.fingerprint)
    assert record is not None and record.trust is TrustState.UNTRUSTED  # ...and holds it

    # the next message the victim sends is not readable with the attacker's key
    wire = tap(victim)
    carbons = queue_of(attacker, "message")
    got = queue_of(friend, "message")
    body = secret("for the friend only")
    victim.send_message(mto=friend_jid, mbody=body, mtype="chat")
    msg = await asyncio.wait_for(got.get(), WAIT)
    assert msg["body"] == body
    [outer] = sent_messages(wire.sent, friend_jid)
    # one copy, of the authenticated profile, for the two devices' identities
    [e2e] = outer.findall(E2E)
    named = {k.get("identity-sha256") for k in e2e.findall(KEY)}
    assert attacker_identity.fingerprint not in named
    devices = {
        victim.plugin["objenc"].fingerprint,
        friend.plugin["objenc"].fingerprint,
    }
    assert named == devices
    with pytest.raises(InvalidEnvelope):
        open_envelope(e2e, attacker_identity.private_key, key_id=attacker_identity.fingerprint)
    with pytest.raises(InvalidEnvelope):
        open_envelope(e2e, attacker_identity.private_key)
    assert body not in wire.text()
    # what the server hands the attacker's session (a carbon, if any) is no better
    await asyncio.sleep(0.5)
    while not carbons.empty():
        assert body not in str(carbons.get_nowait())

    # the victim's client restarts: still held, still not used
    await victim.plugin["objenc"].close()
    victim.disconnect()
    await asyncio.sleep(0.3)
    victim = await connect(connect_client, victim_jid, victim_pw, tmp_path / "V1", "V1")
    await asyncio.sleep(1.0)  # its own node is read again at session start
    record = victim.plugin["objenc"].keyring.record(victim_jid, attacker_identity.fingerprint)
    assert record is not None and record.trust is TrustState.UNTRUSTED
    assert attacker_identity.fingerprint not in {
        p.fingerprint for p in victim.plugin["objenc"].directory.own_devices()
    }
    # rejected: never asked about again
    await victim.plugin["objenc"].reject_key_change(victim_jid, attacker_identity.fingerprint)
    assert (
        victim.plugin["objenc"].keyring.record(victim_jid, attacker_identity.fingerprint).trust
        is TrustState.REVOKED
    )


async def test_a_new_device_of_ours_is_used_once_accepted_and_verified(
    connect_client: Connector, account: Any, tmp_path: Path
) -> None:
    """A second client of our own: it pins the first (its first contact with its
    own account), the first holds it until accepted, then the two verify each
    other with the 6 characters (encrypted iqs between our own clients)."""
    jid, password = await account("owner")
    first = await connect(connect_client, jid, password, tmp_path / "D1", "D1")
    held = queue_of(first, "objenc_own_device_held")
    second = await connect(connect_client, jid, password, tmp_path / "D2", "D2")
    fp1, fp2 = first.plugin["objenc"].fingerprint, second.plugin["objenc"].fingerprint
    await eventually(
        lambda: second.plugin["objenc"].keyring.record(jid, fp1) is not None,
        lambda: f"D2 holds {second.plugin['objenc'].keyring.records(jid)}",
    )
    assert second.plugin["objenc"].keyring.record(jid, fp1).trust is TrustState.TOFU
    event = await asyncio.wait_for(held.get(), WAIT)
    assert event.new_fingerprint == fp2
    assert fp2 not in {p.fingerprint for p in first.plugin["objenc"].directory.own_devices()}

    await first.plugin["objenc"].accept_key_change(jid, fp2)
    assert fp2 in {p.fingerprint for p in first.plugin["objenc"].directory.own_devices()}

    # each client learns that the other encrypts (caps/disco) before the iqs go
    await eventually(
        lambda: (
            first.plugin["objenc"].resources.encrypting(second.boundjid.full)
            and second.plugin["objenc"].resources.encrypting(first.boundjid.full)
        ),
        lambda: "our two clients did not learn that the other encrypts",
    )
    theirs = queue_of(second, "objenc_sas")
    ours = await first.plugin["objenc"].start_verification(second.boundjid.full)
    their = await asyncio.wait_for(theirs.get(), WAIT)
    assert ours.sas == their.sas
    assert set(ours.peer_fingerprints) == {fp1, fp2} == set(their.peer_fingerprints)
    await first.plugin["objenc"].confirm_verification(ours.sid, matched=True)
    await second.plugin["objenc"].confirm_verification(their.sid, matched=True)
    assert first.plugin["objenc"].keyring.record(jid, fp2).trust is TrustState.VERIFIED
    assert second.plugin["objenc"].keyring.record(jid, fp1).trust is TrustState.VERIFIED


async def test_verification_covers_every_certificate_of_the_contact(
    connect_client: Connector, account: Any, tmp_path: Path
) -> None:
    """A certificate slipped onto bob's node before alice's first contact is pinned
    by alice with bob's real one. Bob's client does not count it as his, so the
    verification fails and names it; once it is gone from alice's view, the
    verification covers exactly what alice encrypts to."""
    alice_jid, alice_pw = await account("alice")
    bob_jid, bob_pw = await account("bob")
    alice = await connect(connect_client, alice_jid, alice_pw, tmp_path / "A1", "A1")
    bob = await connect(connect_client, bob_jid, bob_pw, tmp_path / "B1", "B1")
    slipped = generate_device_keys(bob_jid)
    bob_held = queue_of(bob, "objenc_own_device_held")
    intruder = await publish_a_device_with_the_password(connect_client, bob_jid, bob_pw, slipped)
    await asyncio.wait_for(bob_held.get(), WAIT)
    intruder.disconnect()
    await befriend(alice, bob)
    usable = await alice.plugin["objenc"].discover(bob_jid)
    bob_fp = bob.plugin["objenc"].fingerprint
    assert {p.fingerprint for p in usable} == {bob_fp, slipped.fingerprint}  # first contact
    await bob.plugin["objenc"].discover(alice_jid)

    failed = queue_of(bob, "objenc_sas_failed")
    with pytest.raises(VerificationError, match=slipped.fingerprint[:16]):
        await alice.plugin["objenc"].start_verification(bob.boundjid.full)
    reason = (await asyncio.wait_for(failed.get(), WAIT)).reason
    assert slipped.fingerprint[:16] in reason
    # nothing was marked verified
    assert alice.plugin["objenc"].keyring.record(bob_jid, bob_fp).trust is TrustState.TOFU

    # alice drops the slipped certificate; now both sides hold the same sets
    await alice.plugin["objenc"].set_trust(bob_jid, slipped.fingerprint, TrustState.REVOKED)
    theirs = queue_of(bob, "objenc_sas")
    ours = await alice.plugin["objenc"].start_verification(bob.boundjid.full)
    their = await asyncio.wait_for(theirs.get(), WAIT)
    assert ours.sas == their.sas and ours.peer_fingerprints == (bob_fp,)
    await alice.plugin["objenc"].confirm_verification(ours.sid, matched=True)
    assert alice.plugin["objenc"].keyring.record(bob_jid, bob_fp).trust is TrustState.VERIFIED
    assert [p.fingerprint for p in alice.plugin["objenc"].keyring.usable(bob_jid)] == [bob_fp]
