"""Issue 10, part 1, through Prosody and ejabberd: sending never changes the application's
stanza, so everything that refers to a message by the id its sender chose
works end to end: corrections (XEP-0308), receipts (XEP-0184), chat markers
(XEP-0333), replies (XEP-0461) and retractions (XEP-0424). The wire carries
a fresh outer id; the contact sees the application's id."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from objenc_peers import WAIT, befriend, next_matching, queue_of, secret, tap
from test_real_life import connect

pytestmark = pytest.mark.integration


async def knows_each_other(a: Any, b: Any) -> None:
    for _ in range(100):
        if await a.plugin["objenc"].discover(b.boundjid.bare) and await b.plugin["objenc"].discover(
            a.boundjid.bare
        ):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the two never found each other's certificates")


def reference(kind: str, target: str) -> ET.Element:
    return {
        "correction": ET.Element("{urn:xmpp:message-correct:0}replace", {"id": target}),
        "receipt": ET.Element("{urn:xmpp:receipts}received", {"id": target}),
        "marker": ET.Element("{urn:xmpp:chat-markers:0}displayed", {"id": target}),
        "reply": ET.Element("{urn:xmpp:reply:0}reply", {"id": target}),
        "retraction": ET.Element("{urn:xmpp:message-retract:1}retract", {"id": target}),
    }[kind]


async def test_references_by_id_work_end_to_end(
    connect_client: Any, account: Any, tmp_path: Path
) -> None:
    alice_jid, alice_pw = await account("alice")
    bob_jid, bob_pw = await account("bob")
    alice = await connect(connect_client, alice_jid, alice_pw, tmp_path / "A", carbons=False)
    bob = await connect(connect_client, bob_jid, bob_pw, tmp_path / "B", carbons=False)
    await befriend(alice, bob)
    await knows_each_other(alice, bob)
    got = queue_of(bob, "message")
    wire = tap(alice)

    text = secret("original")
    original = alice.make_message(mto=bob_jid, mbody=text, mtype="chat")
    original["id"] = "app-1"
    original.send()
    seen = await asyncio.wait_for(got.get(), WAIT)
    # the application's object is as it made it; the contact sees that id
    assert original["id"] == "app-1" and original["body"] == text
    assert original.xml.find("{urn:ietf:params:xml:ns:xmpp-objenc:0}e2e") is None
    assert seen["id"] == "app-1" and seen["body"] == text
    assert bob.plugin["objenc"].encryption_info(seen) is not None
    outer_ids = [e.get("id") for e in wire.stanzas_with(bob_jid)]
    assert "app-1" not in outer_ids  # a fresh outer id on the wire

    decrypted = {c: queue_of(c, "objenc_decrypted") for c in (alice, bob)}
    for kind in ("correction", "receipt", "marker", "reply", "retraction"):
        sender, receiver = (bob, alice) if kind in ("receipt", "marker") else (alice, bob)
        body = secret(kind) if kind in ("correction", "reply") else None
        msg = sender.make_message(mto=receiver.boundjid.bare, mbody=body, mtype="chat")
        msg.xml.append(reference(kind, "app-1"))
        msg.send()
        tag = reference(kind, "").tag
        arrived = await next_matching(
            decrypted[receiver], lambda s, tag=tag: s.xml.find(tag) is not None, kind
        )
        assert receiver.plugin["objenc"].encryption_info(arrived) is not None, kind
        element = arrived.xml.find(tag)
        assert element is not None and element.get("id") == "app-1", kind
