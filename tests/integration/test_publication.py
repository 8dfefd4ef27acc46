"""Our certificate on the servers people run (Prosody 0.12, ejabberd 23.01):
published contacts-only whatever the server takes, one item per device kept,
unreadable to strangers, and the zero-configuration first message encrypted.

ejabberd 23.01 refuses ``pubsub#max_items`` as a publish-option and creates
PEP nodes keeping one item: there the plugin configures the node as its owner
(``core/publication.py``); Prosody takes the publish-options.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from objenc_peers import WAIT, befriend, eventually, publication_settled, queue_of, secret, tap
from slixmpp import ClientXMPP
from slixmpp.exceptions import IqError

from slixmpp_objenc import Publication
from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.core.publication import NODE_MAX_ITEMS
from slixmpp_objenc.plugin import NODE_CERTS

PLUGINS = ["xep_0030", "xep_0199", "objenc"]
Connector = Callable[..., Awaitable[ClientXMPP]]
WAY = {"prosody": "publish-options", "ejabberd": "node-configuration"}
"""How each server gets our node contacts-only (the README's server table)."""


async def device(connect_client: Connector, jid: str, password: str, data_dir: Path) -> ClientXMPP:
    client = await connect_client(
        jid,
        password,
        plugins=PLUGINS,
        pconfig={"objenc": {"data_dir": str(data_dir), "key_size": 2048}},
    )
    plugin = client.plugin["objenc"]
    await plugin.ready()
    await publication_settled(client)
    return client


async def node_configuration(client: ClientXMPP) -> dict[str, Any]:
    result = await client.plugin["xep_0060"].get_node_config(None, NODE_CERTS, timeout=WAIT)
    values: dict[str, Any] = result["pubsub_owner"]["configure"]["form"].get_values()
    return values


async def items_seen_by(reader: ClientXMPP, owner: str) -> set[str]:
    result = await reader.plugin["xep_0060"].get_items(owner, NODE_CERTS, timeout=WAIT)
    return {item["id"] for item in result["pubsub"]["items"]}


async def test_every_device_is_published_contacts_only(
    server_kind: str, connect_client: Connector, account: Any, tmp_path: Path
) -> None:
    jid, password = await account("devices")
    first = await device(connect_client, jid, password, tmp_path / "1")
    second = await device(connect_client, jid, password, tmp_path / "2")
    states: list[Publication] = [c.plugin["objenc"].publication for c in (first, second)]
    for state in states:
        assert state.published, state
        assert state.way == WAY[server_kind], state
    config = await node_configuration(second)
    assert config["pubsub#access_model"] == "presence"
    assert str(config["pubsub#max_items"]) in ("max", str(NODE_MAX_ITEMS)), config
    # a contact finds both devices: the second did not replace the first
    contact_jid, contact_pw = await account("contact")
    contact = await connect_client(contact_jid, contact_pw, plugins=["xep_0030", "xep_0060"])
    await befriend(contact, first)
    # each device: its <device/> item (authenticated profile) and its RSA one
    fingerprints = {c.plugin["objenc"].fingerprint for c in (first, second)}
    fingerprints |= {c.plugin["objenc"].identity.fingerprint for c in (first, second)}
    assert await items_seen_by(contact, jid) == fingerprints
    # a stranger finds nothing
    stranger = await connect_client(plugins=["xep_0030", "xep_0060"])
    with pytest.raises(IqError) as refused:
        await items_seen_by(stranger, jid)
    assert refused.value.condition in ("forbidden", "not-authorized", "item-not-found")
    # a third session of a device already published changes nothing
    assert await first.plugin["objenc"].publish_certificate() is True
    assert await items_seen_by(contact, jid) == fingerprints


async def test_zero_configuration_first_message_is_encrypted(
    server: Any, connect_client: Connector, account: Any, tmp_path: Path
) -> None:
    alice_jid, alice_pw = await account("alice")
    bob_jid, bob_pw = await account("bob")
    alice = await device(connect_client, alice_jid, alice_pw, tmp_path / "alice")
    bob = await device(connect_client, bob_jid, bob_pw, tmp_path / "bob")
    await befriend(alice, bob)
    wire = tap(alice)
    inbox = queue_of(bob, "message")
    body = secret("first-message")
    alice.send_message(mto=bob_jid, mbody=body, mtype="chat")
    msg = await asyncio.wait_for(inbox.get(), WAIT)
    assert msg["body"] == body
    assert bob.plugin["objenc"].encryption_info(msg) is not None
    assert len([x for x in wire.sent if x.startswith("<message") and NS_OBJENC in x]) == 1
    assert body not in wire.text()
    # the server archived the message: as ciphertext only
    await eventually(
        lambda: NS_OBJENC.encode() in server.user_store_bytes(bob_jid, "archive"),
        lambda: "the encrypted message in the server's archive",
    )
    assert body not in server.stored_files_text()
