"""Issue 10, part 2: the plugin can be loaded at any moment of a session (poezio
loads plugins inside session_start) and unloaded, through a real server (Prosody and ejabberd).

Whatever the moment (before connecting, after the resource is bound, inside
session_start), the same state follows: keys ready, our certificate
published, the PEP interest on and announced in caps, our own other devices
known. plugin_end undoes what it can at once and closes the store in the
background; registering again works.
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

import slixmpp_objenc
from slixmpp_objenc.core.constants import NS_OBJENC
from slixmpp_objenc.plugin import NODE_CERTS

pytestmark = pytest.mark.integration

Connector = Callable[..., Awaitable[ClientXMPP]]
BASE_PLUGINS = ["xep_0030", "xep_0060", "xep_0115", "xep_0163", "xep_0199"]
MOMENTS = ("before-connect", "after-bind", "in-session-start")


def objenc_config(data_dir: Path) -> dict[str, Any]:
    return {"data_dir": str(data_dir), "key_size": 2048}


async def connect_at(
    connect_client: Connector, jid: str, password: str, data_dir: Path, moment: str
) -> ClientXMPP:
    """A client whose objenc plugin is registered at ``moment``."""
    config = objenc_config(data_dir)

    def factory(full_jid: str, secret_: str) -> ClientXMPP:
        client = ClientXMPP(full_jid, secret_)

        def register(_event: Any) -> None:
            client.register_plugin("objenc", module=slixmpp_objenc, pconfig=config)

        if moment == "before-connect":
            client.register_plugin("objenc", module=slixmpp_objenc, pconfig=config)
        elif moment == "after-bind":
            client.add_event_handler("session_bind", register)
        else:
            client.add_event_handler("session_start", register)
        return client

    client = await connect_client(jid, password, plugins=BASE_PLUGINS, client_factory=factory)
    await eventually(lambda: "objenc" in client.plugin, lambda: f"objenc loaded ({moment})")
    plugin = client.plugin["objenc"]
    await plugin.ready()
    await publication_settled(client)
    return client


async def published_fingerprints(client: ClientXMPP) -> set[str]:
    try:
        result = await client.plugin["xep_0060"].get_items(
            client.boundjid.bare, NODE_CERTS, timeout=WAIT
        )
    except IqError as exc:  # the node is created by the first publish: not yet
        if exc.condition == "item-not-found":
            return set()
        raise
    return {item["id"] for item in result["pubsub"]["items"]}


async def announced_features(observer: ClientXMPP, full_jid: str) -> set[str]:
    info = await observer.plugin["xep_0030"].get_info(jid=full_jid, timeout=WAIT)
    return set(info["disco_info"]["features"])


@pytest.mark.parametrize("moment", MOMENTS)
async def test_every_moment_leads_to_the_same_state(
    connect_client: Connector, account: Any, tmp_path: Path, moment: str
) -> None:
    jid, password = await account("late")
    # a first device of the account, registered the ordinary way
    first = await connect_at(connect_client, jid, password, tmp_path / "1", "before-connect")
    first_fp = first.plugin["objenc"].fingerprint
    for _ in range(100):  # on the node before the second device first reads it
        if first_fp in await published_fingerprints(first):
            break
        await asyncio.sleep(0.1)
    # the device under test, registered at `moment`
    client = await connect_at(connect_client, jid, password, tmp_path / "2", moment)
    plugin = client.plugin["objenc"]
    fingerprint = plugin.fingerprint

    async def both_published() -> bool:
        return {first_fp, fingerprint} <= await published_fingerprints(client)

    for _ in range(100):
        if await both_published():
            break
        await asyncio.sleep(0.1)
    assert await both_published(), "our certificate is not on our PEP node"
    # the PEP interest is on, and announced (disco, hence caps), as anyone asking
    # sees it (our first device would hold its stanzas: this device is new to it)
    observer = await connect_client(plugins=["xep_0030"])
    features = await announced_features(observer, client.boundjid.full)
    assert NODE_CERTS + "+notify" in features and NS_OBJENC in features
    # our own other device is known (this device's first read of its own node)
    await eventually(
        lambda: plugin.keyring.record(jid, first_fp) is not None,
        lambda: f"the first device's certificate not known ({moment})",
    )
    # and it encrypts to a contact
    contact = await connect_at(
        connect_client, *(await account("contact")), tmp_path / "c", "before-connect"
    )
    await befriend(client, contact)
    got = queue_of(contact, "message")
    body = secret(moment)
    wire = tap(client)
    client.send_message(mto=contact.boundjid.bare, mbody=body, mtype="chat")
    msg = await asyncio.wait_for(got.get(), WAIT)
    assert msg["body"] == body
    assert contact.plugin["objenc"].encryption_info(msg) is not None
    assert body not in wire.text()


async def test_unloaded_and_registered_again(
    connect_client: Connector, account: Any, tmp_path: Path
) -> None:
    jid, password = await account("reload")
    client = await connect_at(connect_client, jid, password, tmp_path / "a", "before-connect")
    old = client.plugin["objenc"]
    fingerprint = old.fingerprint
    client.plugin.disable("objenc")
    # undone at once: no filter of ours is left, the features are withdrawn
    disco = client.plugin["xep_0030"]
    info = await disco.get_info(jid=client.boundjid.full, local=True)
    features = set(info["features"])
    assert NS_OBJENC not in features and NODE_CERTS + "+notify" not in features
    await asyncio.wait_for(old.close(), WAIT)  # the store closes in the background
    # registered again on the same store: the same identity, working
    client.register_plugin("objenc", module=slixmpp_objenc, pconfig=objenc_config(tmp_path / "a"))
    again = client.plugin["objenc"]
    assert again is not old
    await again.ready()
    assert again.fingerprint == fingerprint
    contact = await connect_at(
        connect_client, *(await account("contact")), tmp_path / "c", "before-connect"
    )
    await befriend(client, contact)
    got = queue_of(contact, "message")
    body = secret("again")
    client.send_message(mto=contact.boundjid.bare, mbody=body, mtype="chat")
    msg = await asyncio.wait_for(got.get(), WAIT)
    assert msg["body"] == body and contact.plugin["objenc"].encryption_info(msg) is not None
