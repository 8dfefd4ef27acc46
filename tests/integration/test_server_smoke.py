"""Smoke tests of the throwaway server harness itself (Prosody and ejabberd)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from slixmpp import ClientXMPP

from slixmpp_objenc.testing import RegistrationError, XmppServer

WAIT = 10.0


def _next_message(client: ClientXMPP, body: str) -> asyncio.Future[Any]:
    """A future resolved by the first message whose body is *body*."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def on_message(msg: Any) -> None:
        if msg["body"] == body and not future.done():
            future.set_result(msg)

    client.add_event_handler("message", on_message)
    future.add_done_callback(lambda _f: client.del_event_handler("message", on_message))
    return future


async def test_chat_message_between_two_fresh_accounts(connect_client: Any) -> None:
    alice = await connect_client()
    bob = await connect_client()
    body = f"hello-{uuid.uuid4().hex}"
    received = _next_message(bob, body)

    alice.send_message(mto=bob.boundjid.full, mbody=body, mtype="chat")

    msg = await asyncio.wait_for(received, WAIT)
    assert msg["type"] == "chat"
    assert msg["from"] == alice.boundjid
    assert msg["to"] == bob.boundjid


async def test_ping_server(server: XmppServer, connect_client: Any) -> None:
    client = await connect_client(plugins=["xep_0030", "xep_0199"])
    rtt = await client.plugin["xep_0199"].ping(jid=server.domain, timeout=WAIT)
    assert 0 <= rtt < WAIT


async def test_server_advertises_needed_features(server: XmppServer, connect_client: Any) -> None:
    client = await connect_client(plugins=["xep_0030"])
    disco = client.plugin["xep_0030"]
    server_info = await disco.get_info(jid=server.domain, timeout=WAIT)
    server_features = set(server_info["disco_info"]["features"])
    assert {"urn:xmpp:ping", "urn:xmpp:carbons:2", "jabber:iq:register"} <= server_features
    account_info = await disco.get_info(jid=client.boundjid.bare, timeout=WAIT)
    account_features = set(account_info["disco_info"]["features"])
    assert "urn:xmpp:mam:2" in account_features


async def test_stream_management_is_enabled(connect_client: Any) -> None:
    client = await connect_client(plugins=["xep_0030", "xep_0198"])
    sm = client.plugin["xep_0198"]
    if not sm.enabled_in:
        await client.wait_until("sm_enabled", WAIT)
    assert sm.sm_id, "server did not offer a resumable XEP-0198 session"


async def test_offline_message_is_stored_then_delivered(
    server: XmppServer, account: Any, connect_client: Any
) -> None:
    bob_jid, bob_password = await account()
    alice = await connect_client()
    body = f"offline-{uuid.uuid4().hex}"

    alice.send_message(mto=bob_jid, mbody=body, mtype="chat")

    text = await server.wait_for_stored_text(body, WAIT)
    assert body in text
    # ejabberd writes its archive first and the offline store a moment later
    await server.wait_for_store_bytes(bob_jid, "offline", body.encode(), WAIT)

    # Bob comes online and gets it from the offline store.
    loop = asyncio.get_running_loop()
    delivered: asyncio.Future[Any] = loop.create_future()

    def factory(jid: str, password: str) -> ClientXMPP:
        client = ClientXMPP(jid, password)

        def on_message(msg: Any) -> None:
            if msg["body"] == body and not delivered.done():
                delivered.set_result(msg)

        client.add_event_handler("message", on_message)
        return client

    await connect_client(bob_jid, bob_password, client_factory=factory)
    msg = await asyncio.wait_for(delivered, WAIT)
    assert msg["from"].bare == alice.boundjid.bare


async def test_mam_archive_on_disk_contains_exchanged_message(
    server: XmppServer, connect_client: Any
) -> None:
    alice = await connect_client()
    bob = await connect_client()
    body = f"archived-{uuid.uuid4().hex}"
    received = _next_message(bob, body)

    alice.send_message(mto=bob.boundjid.full, mbody=body, mtype="chat")
    await asyncio.wait_for(received, WAIT)

    await server.wait_for_stored_text(body, WAIT)
    # Both sides archive the chat message (default_archive_policy = true).
    for client in (alice, bob):
        assert body.encode() in server.user_store_bytes(client.boundjid.bare, "archive")
    assert body.encode() not in server.user_store_bytes(bob.boundjid.bare, "offline")


async def test_registering_an_existing_account_fails(server: XmppServer, account: Any) -> None:
    jid, _password = await account()
    with pytest.raises(RegistrationError, match="conflict"):
        await server.register(jid.split("@", 1)[0], "other-password", timeout=WAIT)


async def test_wrong_password_is_reported(server: XmppServer, account: Any) -> None:
    jid, _password = await account()
    with pytest.raises(Exception, match="authentication failed"):
        await server.connect_client(jid, "not-the-password", timeout=WAIT)


async def test_kill_and_restart_keep_accounts_and_port(
    server_factory: Callable[[], XmppServer],
) -> None:
    server = server_factory()
    jid, password = await server.create_account()
    port = server.c2s_port
    await server.wait_for_disk()  # ejabberd: past the write cache a crash loses

    server.kill()
    assert not server.is_running
    server.restart()

    assert server.is_running
    assert server.c2s_port == port
    client = await server.connect_client(jid, password, timeout=WAIT)
    try:
        assert client.boundjid.bare == jid
    finally:
        await server.disconnect_client(client)


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")
def test_server_listens_only_on_its_loopback_c2s_port(server: XmppServer) -> None:
    pid = server.pid
    assert pid is not None and server.is_running
    fd_dir = Path(f"/proc/{pid}/fd")
    inodes = set()
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    listening = []
    for table in ("tcp", "tcp6"):
        lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A = LISTEN
                listening.append((table, local))
    assert listening == [("tcp", f"0100007F:{server.c2s_port:04X}")], listening
